//! `tandem publish` and `tandem invoke`: the Dapr CLI's `publish` and `invoke`, through
//! the HTTP API of a sidecar running on this machine, found in the registry of running
//! apps (`~/.tandem/apps/`, as `tandem list` shows it).
//!
//! Flags, messages and exit codes are the Dapr CLI's (`cmd/publish.go`, `cmd/invoke.go`,
//! `pkg/standalone/{publish,invoke}.go`): the payload from `--data` or `--data-file`, a
//! CloudEvent payload sent as `application/cloudevents+json`, `--metadata` as
//! `metadata.*` query parameters, `-u DIR` to reach the sidecar on its Unix socket
//! `DIR/dapr-<app id>-http.socket`; `✅  ...` on success, `❌  ...` and exit code 1 on
//! failure. Where the Dapr CLI says less than it knows, tandem adds to its message: the
//! sidecar's error answer, and which sidecar could not be reached.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use tandem_nameresolution::{Entry, list as registered};

use crate::personality::{failure, success, warning};
use crate::sidecar::tandem_home;

/// `publish`'s flags, as the Dapr CLI names them.
#[derive(Args, Clone)]
pub struct PublishArgs {
    /// The id of the publishing app: its sidecar publishes the event.
    #[arg(short = 'i', long = "publish-app-id", value_name = "ID")]
    pub app_id: String,
    /// The name of the pub/sub component.
    #[arg(short = 'p', long = "pubsub", value_name = "NAME")]
    pub pubsub: String,
    /// The topic to publish to.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// The event, as a JSON string.
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    pub data: Option<String>,
    /// A file holding the event.
    #[arg(short = 'f', long = "data-file", value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// The publish metadata as a JSON object, e.g. '{"rawPayload":"true"}'.
    #[arg(short = 'm', long = "metadata", value_name = "JSON")]
    pub metadata: Option<String>,
    /// Reach the sidecar on its Unix socket in this folder (as `run -u` made it).
    #[arg(short = 'u', long = "unix-domain-socket", value_name = "DIR")]
    pub unix_domain_socket: Option<PathBuf>,
    #[command(flatten)]
    pub log: crate::personality::LogFormat,
}

/// `invoke`'s flags, as the Dapr CLI names them.
#[derive(Args, Clone)]
pub struct InvokeArgs {
    /// The id of the app to invoke.
    #[arg(short = 'a', long = "app-id", value_name = "ID")]
    pub app_id: String,
    /// The method to invoke: a path, with a query string if wanted.
    #[arg(short = 'm', long = "method")]
    pub method: String,
    /// The request body, as a JSON string.
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    pub data: Option<String>,
    /// A file holding the request body.
    #[arg(short = 'f', long = "data-file", value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// The HTTP verb.
    #[arg(short = 'v', long = "verb", default_value = "POST")]
    pub verb: String,
    /// Reach the sidecar on its Unix socket in this folder (as `run -u` made it).
    #[arg(short = 'u', long = "unix-domain-socket", value_name = "DIR")]
    pub unix_domain_socket: Option<PathBuf>,
    #[command(flatten)]
    pub log: crate::personality::LogFormat,
}

/// `publish`.
pub async fn publish(args: PublishArgs) -> u8 {
    let Some(payload) = payload(args.data.as_deref(), args.data_file.as_deref(), "publish") else {
        return 1;
    };
    if args.unix_domain_socket.is_some() {
        warning("Unix domain sockets are currently a preview feature");
    }
    let metadata = match args.metadata.as_deref().filter(|text| !text.is_empty()) {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(metadata) => metadata,
            Err(error) => {
                failure(&format!("Error parsing metadata as JSON. Error: {error}"));
                return 1;
            }
        },
    };
    match publish_event(&args, payload, &metadata).await {
        Ok(()) => {
            success("Event published successfully");
            0
        }
        Err(error) => {
            failure(&format!("Error publishing topic {}: {error}", args.topic));
            1
        }
    }
}

async fn publish_event(
    args: &PublishArgs,
    payload: Vec<u8>,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    for (value, missing) in [
        (&args.app_id, "publishAppID is missing"),
        (&args.pubsub, "pubsubName is missing"),
        (&args.topic, "topic is missing"),
    ] {
        if value.is_empty() {
            return Err(missing.into());
        }
    }
    let instance = registered(&tandem_home())
        .into_iter()
        .find(|entry| entry.app_id == args.app_id)
        .ok_or("couldn't find a running Dapr instance")?;
    let path = format!(
        "/v1.0/publish/{}/{}{}",
        encode_path(&args.pubsub),
        encode_path(&args.topic),
        query(metadata)
    );
    let sidecar = Sidecar::of(&instance, args.unix_domain_socket.as_deref());
    let content_type = if is_cloud_event(&payload) {
        "application/cloudevents+json"
    } else {
        "application/json"
    };
    let (status, body) = sidecar.send("POST", &path, content_type, payload).await?;
    if !(200..300).contains(&status) {
        let mut message = format!(
            "unexpected status code {status} on publishing to {} in {}",
            args.topic, args.pubsub
        );
        append_answer(&mut message, &body);
        return Err(message);
    }
    Ok(())
}

/// A payload with every required CloudEvent attribute is sent as a CloudEvent (the
/// sidecar then keeps its envelope), as the Dapr CLI decides.
fn is_cloud_event(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload).is_ok_and(
        |event| {
            ["id", "source", "specversion", "type", "data"]
                .iter()
                .all(|attribute| event.contains_key(*attribute))
        },
    )
}

/// `?metadata.k=v&...` from the `--metadata` object; text values as they are, others as
/// JSON.
fn query(metadata: &serde_json::Map<String, serde_json::Value>) -> String {
    // Sorted by name: the same line whatever order serde_json's map keeps (the
    // workspace's `preserve_order`, which bson turns on, makes it the order given).
    let mut fields: Vec<_> = metadata.iter().collect();
    fields.sort_by_key(|(key, _)| key.as_str());
    let pairs: Vec<String> = fields
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!(
                "metadata.{}={}",
                utf8_percent_encode(key, QUERY_VALUE),
                utf8_percent_encode(&value, QUERY_VALUE)
            )
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// `invoke`.
pub async fn invoke(args: InvokeArgs) -> u8 {
    let Some(payload) = payload(args.data.as_deref(), args.data_file.as_deref(), "invoke") else {
        return 1;
    };
    if args.unix_domain_socket.is_some() {
        warning("Unix domain sockets are currently a preview feature");
    }
    match invoke_method(&args, payload).await {
        Ok(answer) => {
            if !answer.is_empty() {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&answer);
                let _ = stdout.write_all(b"\n");
                let _ = stdout.flush();
            }
            success("App invoked successfully");
            0
        }
        Err(error) => {
            failure(&format!("error invoking app {}: {error}", args.app_id));
            1
        }
    }
}

async fn invoke_method(args: &InvokeArgs, payload: Vec<u8>) -> Result<Bytes, String> {
    // The app's own sidecar; else any running one, which finds the app by name
    // resolution (or calls the HTTPEndpoint of that name).
    let running = registered(&tandem_home());
    let instance = running
        .iter()
        .find(|entry| entry.app_id == args.app_id)
        .or_else(|| running.first())
        .ok_or_else(|| format!("app ID {} not found", args.app_id))?;
    let path = format!(
        "/v1.0/invoke/{}/method/{}",
        encode_path(&args.app_id),
        encode_path(args.method.trim_start_matches('/'))
    );
    let sidecar = Sidecar::of(instance, args.unix_domain_socket.as_deref());
    let (status, body) = sidecar
        .send(&args.verb, &path, "application/json", payload)
        .await?;
    if !(200..400).contains(&status) {
        // As the Dapr CLI says it: the status line, e.g. `500 Internal Server Error`.
        let reason = hyper::StatusCode::from_u16(status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or_default();
        let mut message = format!("{status} {reason}").trim_end().to_owned();
        // The sidecar's own error (the app not found, not reachable) is worth showing;
        // the app's error answers are its business, as with the Dapr CLI.
        if is_dapr_error(&body) {
            append_answer(&mut message, &body);
        }
        return Err(message);
    }
    Ok(body)
}

/// The body from `--data` or `--data-file` (empty without either); `None` after saying
/// why not.
fn payload(data: Option<&str>, file: Option<&Path>, command: &str) -> Option<Vec<u8>> {
    let data = data.filter(|data| !data.is_empty());
    let file = file.filter(|file| !file.as_os_str().is_empty());
    match (data, file) {
        (Some(_), Some(_)) => {
            failure(&format!(
                "Only one of --data and --data-file allowed in the same {command} command"
            ));
            None
        }
        (None, Some(file)) => match std::fs::read(file) {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                failure(&format!(
                    "Error reading payload from '{}'. Error: {error}",
                    file.display()
                ));
                None
            }
        },
        (data, None) => Some(data.unwrap_or_default().as_bytes().to_vec()),
    }
}

/// Whether `body` is a sidecar's error answer (`{"errorCode": "ERR_...", ...}`).
fn is_dapr_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|answer| answer.contains_key("errorCode"))
}

/// A sidecar's error answer (`{"errorCode":...}`), added to the Dapr CLI's message,
/// which names only the status.
fn append_answer(message: &mut String, body: &[u8]) {
    let answer = String::from_utf8_lossy(body);
    let answer = answer.trim();
    if !answer.is_empty() {
        message.push_str(": ");
        message.push_str(answer);
    }
}

/// Characters a request path cannot hold as they are; `/`, `?`, `&`, `=` and `%` stay,
/// so that a method may carry its own path and query as the Dapr CLI passes them.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

fn encode_path(text: &str) -> String {
    utf8_percent_encode(text, PATH).to_string()
}

/// A query parameter's name or value: everything but letters, digits and `-._~`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a sidecar's HTTP API is reached.
struct Sidecar<'a> {
    app_id: &'a str,
    address: Address,
}

enum Address {
    Tcp(u16),
    Unix(PathBuf),
}

impl<'a> Sidecar<'a> {
    /// `instance`'s HTTP port on loopback, or its socket `DIR/dapr-<app id>-http.socket`.
    fn of(instance: &'a Entry, socket_dir: Option<&Path>) -> Self {
        let address = match socket_dir {
            Some(dir) => Address::Unix(dir.join(format!("dapr-{}-http.socket", instance.app_id))),
            None => Address::Tcp(instance.http_port),
        };
        Self {
            app_id: &instance.app_id,
            address,
        }
    }

    fn describe(&self) -> String {
        match &self.address {
            Address::Tcp(port) => format!("127.0.0.1:{port}"),
            Address::Unix(path) => path.display().to_string(),
        }
    }

    /// One request on a new connection: the answer's status and body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let method = hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("net/http: invalid method {method:?}"))?;
        let host = match &self.address {
            Address::Tcp(port) => format!("127.0.0.1:{port}"),
            Address::Unix(_) => "localhost".to_owned(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host)
            .header(CONTENT_TYPE, content_type);
        // The Dapr CLI sends no token; a sidecar that wants one would refuse it.
        if let Some(token) = std::env::var("DAPR_API_TOKEN")
            .ok()
            .filter(|token| !token.is_empty())
        {
            request = request.header("dapr-api-token", token);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| format!("cannot make the request for {path}: {error}"))?;
        let unreachable = |error: &dyn std::fmt::Display| {
            format!(
                "cannot reach the sidecar of app '{}' at {}: {error}",
                self.app_id,
                self.describe()
            )
        };
        let response = match &self.address {
            Address::Tcp(port) => {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map_err(|error| unreachable(&error))?;
                exchange(stream, request).await
            }
            Address::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|error| unreachable(&error))?;
                exchange(stream, request).await
            }
        };
        response.map_err(|error| unreachable(&error))
    }
}

/// HTTP/1.1 over `stream`: sends `request`, reads the whole answer.
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(u16, Bytes), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = connection.await;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_events_are_recognised_by_their_attributes() {
        assert!(is_cloud_event(
            br#"{"id":"1","source":"s","specversion":"1.0","type":"t","data":{}}"#
        ));
        assert!(!is_cloud_event(
            br#"{"id":"1","source":"s","type":"t","data":{}}"#
        ));
        assert!(!is_cloud_event(b"[1,2]"));
        assert!(!is_cloud_event(b"not json"));
    }

    #[test]
    fn metadata_becomes_query_parameters() {
        let metadata =
            serde_json::from_str(r#"{"rawPayload":"true","ttlInSeconds":10,"a b":"x&y"}"#).unwrap();
        assert_eq!(
            query(&metadata),
            "?metadata.a%20b=x%26y&metadata.rawPayload=true&metadata.ttlInSeconds=10"
        );
        assert_eq!(query(&serde_json::Map::new()), "");
    }

    #[test]
    fn paths_keep_their_query_and_lose_what_cannot_be_sent() {
        assert_eq!(encode_path("orders/1?x=2&y=3"), "orders/1?x=2&y=3");
        assert_eq!(encode_path("a b#c"), "a%20b%23c");
        assert_eq!(encode_path("ü"), "%C3%BC");
    }
}
