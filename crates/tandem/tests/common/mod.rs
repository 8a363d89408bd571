//! What the binary's tests share: a `tandem sidecar` process on free ports.
#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_proto::runtime::dapr_client::DaprClient;
use tandem_testkit::free_port;

/// A `tandem sidecar` process, killed on drop.
pub struct Sidecar {
    pub process: Child,
    pub http: u16,
    pub grpc: u16,
}

impl Sidecar {
    /// A sidecar for app `api-test` on `resources`.
    pub fn start(resources: &Path, app_port: Option<u16>, token: Option<&str>) -> Self {
        Self::start_as("api-test", resources, app_port, token)
    }

    /// A sidecar for app `app_id`; its `TANDEM_HOME` is `resources/home`.
    pub fn start_as(
        app_id: &str,
        resources: &Path,
        app_port: Option<u16>,
        token: Option<&str>,
    ) -> Self {
        Self::start_in(&resources.join("home"), app_id, resources, app_port, token)
    }

    /// A sidecar whose `TANDEM_HOME` is `home`: sidecars sharing one find each other.
    pub fn start_in(
        home: &Path,
        app_id: &str,
        resources: &Path,
        app_port: Option<u16>,
        token: Option<&str>,
    ) -> Self {
        Self::start_with(home, app_id, resources, app_port, token, &[], None, &[])
    }

    /// A sidecar with `extra` flags and `env` variables, its log written to `log`
    /// when given.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        home: &Path,
        app_id: &str,
        resources: &Path,
        app_port: Option<u16>,
        token: Option<&str>,
        extra: &[&str],
        log: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let (http, grpc) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .args(["sidecar", "--app-id", app_id, "--resources-path"])
            .arg(resources)
            .args([
                "--dapr-http-port",
                &http.to_string(),
                "--dapr-grpc-port",
                &grpc.to_string(),
            ])
            .args(extra)
            .env("TANDEM_HOME", home)
            .env_remove("DAPR_API_TOKEN")
            .env_remove("TANDEM_INTERNAL_KEY")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::null(),
            });
        if let Some(port) = app_port {
            command.args(["--app-port", &port.to_string()]);
        }
        if let Some(token) = token {
            command.env("DAPR_API_TOKEN", token);
        }
        let sidecar = Self {
            process: command.spawn().unwrap(),
            http,
            grpc,
        };
        sidecar.wait_ready();
        sidecar
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let status = get_status(&self.url("/v1.0/healthz"));
            if status == Some(204) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sidecar did not become ready");
    }

    pub async fn grpc(&self) -> DaprClient<tonic::transport::Channel> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.grpc))
                .unwrap()
                .connect()
                .await
                .unwrap();
        DaprClient::new(channel)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The status of a plain blocking GET: readiness is polled from a blocking thread.
pub fn get_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let (host, path) = address.split_once('/')?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Checks a Dapr error answer: its status and `errorCode`; returns its body.
pub async fn assert_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], code, "{body}");
    body
}

/// Sends `method path` exactly as written (HTTP clients normalise `..` away) and
/// returns the status and body.
pub fn raw_request(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
