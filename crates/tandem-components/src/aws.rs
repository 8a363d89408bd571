//! A small AWS client for the AWS components (`pubsub.aws.snssqs`, `bindings.aws.*`,
//! `state.aws.dynamodb`): credentials, Signature Version 4 and the wire protocols the
//! components speak — AWS JSON 1.0 (SQS, DynamoDB), the query protocol with XML
//! answers (SNS, STS) and S3's REST requests (with presigned URLs) — over hyper with
//! rustls. Not the AWS SDK: only what the components use.
//!
//! Credentials come from the component's metadata, else the simple parts of AWS's
//! default chain: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), then the shared credentials file (`~/.aws/credentials` or
//! `AWS_SHARED_CREDENTIALS_FILE`, profile `AWS_PROFILE` or `default`). They are read
//! once, when the component is built, and never appear in a message or a log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::http_exchange::ExchangeError;
use bytes::Bytes;
use http_body_util::Full;

use ring::{digest, hmac};
use tandem_spec::{ComponentMetadata, ResourceError};

/// Access key, secret key and optional session token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The access key identifies, the rest is secret: neither is shown.
        f.write_str("Credentials { .. }")
    }
}

/// Where credentials come from, looked up in this order.
pub struct CredentialSources {
    pub env: fn(&str) -> Option<String>,
    pub home: Option<PathBuf>,
}

impl Default for CredentialSources {
    fn default() -> Self {
        Self {
            env: |name| std::env::var(name).ok().filter(|value| !value.is_empty()),
            home: dirs::home_dir(),
        }
    }
}

impl Credentials {
    /// `accessKey`/`secretKey`/`sessionToken` (or Dapr's deprecated `awsAccountID` and
    /// `awsSecret`), else the environment, else the shared credentials file.
    pub fn read(
        metadata: &ComponentMetadata,
        sources: &CredentialSources,
    ) -> Result<Self, ResourceError> {
        let access = field(metadata, "accessKey", "awsAccountID");
        let secret = field(metadata, "secretKey", "awsSecret");
        match (access, secret) {
            (Some(access_key), Some(secret_key)) => {
                return Ok(Self {
                    access_key: access_key.to_owned(),
                    secret_key: secret_key.to_owned(),
                    session_token: metadata.get("sessionToken").map(str::to_owned),
                });
            }
            (Some(_), None) => {
                return Err(metadata.field_error("secretKey", "is required with accessKey"));
            }
            (None, Some(_)) => {
                return Err(metadata.field_error("accessKey", "is required with secretKey"));
            }
            (None, None) => {}
        }
        let env = sources.env;
        if let (Some(access_key), Some(secret_key)) =
            (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        {
            return Ok(Self {
                access_key,
                secret_key,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                sources
                    .home
                    .as_ref()
                    .map(|home| home.join(".aws/credentials"))
            });
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
        if let Some(file) = &file
            && let Ok(text) = std::fs::read_to_string(file)
        {
            let values = ini_section(&text, &profile);
            if let (Some(access_key), Some(secret_key)) = (
                values.get("aws_access_key_id"),
                values.get("aws_secret_access_key"),
            ) {
                return Ok(Self {
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    session_token: values.get("aws_session_token").cloned(),
                });
            }
        }
        let file = file.map_or_else(
            || "~/.aws/credentials".to_owned(),
            |file| file.display().to_string(),
        );
        Err(metadata.field_error(
            "accessKey",
            format!(
                "no AWS credentials found: set accessKey and secretKey, or the environment's \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile '{profile}' in {file}"
            ),
        ))
    }
}

/// The region: `region` (or Dapr's deprecated `awsRegion`), else `AWS_REGION`, else
/// `AWS_DEFAULT_REGION`.
pub fn region(
    metadata: &ComponentMetadata,
    sources: &CredentialSources,
) -> Result<String, ResourceError> {
    let region = field(metadata, "region", "awsRegion")
        .map(str::to_owned)
        .or_else(|| (sources.env)("AWS_REGION"))
        .or_else(|| (sources.env)("AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            metadata.field_error(
                "region",
                "is required (or the environment's AWS_REGION or AWS_DEFAULT_REGION)",
            )
        })?;
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(metadata.field_error(
            "region",
            format!("'{region}' is not an AWS region such as us-east-1"),
        ));
    }
    Ok(region)
}

/// The `endpoint` metadata (emulators, other regions' hosts): an `http://` or `https://`
/// URL with a host. Case-insensitive, so Dapr's deprecated `Endpoint` is the same name.
pub fn endpoint(metadata: &ComponentMetadata) -> Result<Option<http::Uri>, ResourceError> {
    let Some(value) = metadata.get("endpoint") else {
        return Ok(None);
    };
    endpoint_url(metadata, value, value).map(Some)
}

/// `text`, the URL made of the `endpoint` metadata `value`, checked: `http://` or
/// `https://` with a host. Errors quote `value`, as written.
pub(crate) fn endpoint_url(
    metadata: &ComponentMetadata,
    value: &str,
    text: &str,
) -> Result<http::Uri, ResourceError> {
    let uri: http::Uri = text.parse().map_err(|_| {
        metadata.field_error(
            "endpoint",
            format!("'{value}' is not a URL such as http://localhost:4566"),
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(metadata.field_error(
            "endpoint",
            format!("'{value}' is not an http:// or https:// URL with a host"),
        ));
    }
    Ok(uri)
}

/// The AWS partition a region belongs to, as Dapr derives it.
pub fn partition_of(region: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("cn-", "aws-cn"),
        ("eusc-", "aws-eusc"),
        ("us-iso-", "aws-iso"),
        ("us-isob-", "aws-iso-b"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-isof-", "aws-iso-f"),
        ("us-gov-", "aws-us-gov"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

fn field<'a>(metadata: &'a ComponentMetadata, name: &str, deprecated: &str) -> Option<&'a str> {
    metadata.get(name).or_else(|| metadata.get(deprecated))
}

/// The `key = value` pairs of `[section]` of an INI file.
fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            values.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    values
}

/// Why a call to AWS failed. Never holds credentials.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("cannot reach {endpoint}: {source}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("no answer from {endpoint} within {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("reading the answer of {endpoint}: {source}")]
    Body {
        endpoint: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{endpoint} answered {status}: {code}: {message}")]
    Service {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{endpoint} answered something unexpected: {what}")]
    Unexpected { endpoint: String, what: String },
}

impl AwsError {
    /// The service's error code (`NotFound`, `AWS.SimpleQueueService.NonExistentQueue`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The failure may mean the endpoint lost what it held: it could not be reached,
    /// or an entity is gone.
    pub fn may_have_lost_state(&self) -> bool {
        !matches!(self, Self::Service { .. }) || self.is_not_found()
    }

    /// The entity the call named does not exist (an SNS topic, an SQS queue).
    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|code| {
            code == "NotFound"
                || code.contains("NonExistentQueue")
                || code.contains("QueueDoesNotExist")
        })
    }
}

/// Signs and sends requests to AWS services (or to an emulator at `endpoint`).
#[derive(Clone)]
pub struct Client {
    http: crate::http_exchange::HttpsClient,
    credentials: std::sync::Arc<Credentials>,
    region: String,
    /// Every service at this URL (an emulator), instead of AWS's own endpoints.
    endpoint: Option<http::Uri>,
}

impl Client {
    pub fn new(credentials: Credentials, region: String, endpoint: Option<http::Uri>) -> Self {
        let http = crate::http_exchange::https_client();
        Self {
            http,
            credentials: std::sync::Arc::new(credentials),
            region,
            endpoint,
        }
    }

    /// The URL of `service`: the emulator's, or AWS's regional endpoint.
    pub fn endpoint(&self, service: &str) -> http::Uri {
        if let Some(endpoint) = &self.endpoint {
            return endpoint.clone();
        }
        let suffix = if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{service}.{}.{suffix}/", self.region)
            .parse()
            .expect("a region holds letters, digits and dashes")
    }

    /// An AWS JSON 1.0 call: `X-Amz-Target: {prefix}.{action}`, JSON in and out.
    pub async fn json(
        &self,
        service: &str,
        prefix: &str,
        action: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, AwsError> {
        let payload = serde_json::to_vec(&body).expect("JSON values serialize");
        let headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            ("x-amz-target".to_owned(), format!("{prefix}.{action}")),
        ];
        let (status, answer, endpoint) = self
            .send(service, headers, Bytes::from(payload), timeout)
            .await?;
        let parsed = if answer.is_empty() {
            Ok(serde_json::Value::Object(Default::default()))
        } else {
            serde_json::from_slice::<serde_json::Value>(&answer)
        };
        if (200..300).contains(&status) {
            return parsed.map_err(|why| AwsError::Unexpected {
                endpoint,
                what: format!("{action}: not JSON ({why})"),
            });
        }
        let (code, message) = match &parsed {
            // `__type` is `com.amazonaws.sqs#QueueDoesNotExist` or the like.
            Ok(value) => (
                value
                    .get("__type")
                    .and_then(|kind| kind.as_str())
                    .map(|kind| kind.rsplit('#').next().unwrap_or(kind).to_owned()),
                value
                    .get("message")
                    .or_else(|| value.get("Message"))
                    .and_then(|message| message.as_str())
                    .map(str::to_owned),
            ),
            // Some errors (signatures, gateways) come in XML even to JSON calls.
            Err(_) => {
                let text = String::from_utf8_lossy(&answer);
                (xml_value(&text, "Code"), xml_value(&text, "Message"))
            }
        };
        Err(AwsError::Service {
            endpoint,
            status,
            code: code.unwrap_or_else(|| "unknown".to_owned()),
            message: message.unwrap_or_default(),
        })
    }

    /// A query-protocol call (`Action=...&Version=...`, form-encoded), answered in XML.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<String, AwsError> {
        let mut form = format!("Action={}&Version={}", encode(action), encode(version));
        for (name, value) in params {
            form.push('&');
            form.push_str(&encode(name));
            form.push('=');
            form.push_str(&encode(value));
        }
        let headers = vec![(
            "content-type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        )];
        let (status, answer, endpoint) = self
            .send(service, headers, Bytes::from(form), timeout)
            .await?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(AwsError::Service {
            endpoint,
            status,
            code: xml_value(&text, "Code").unwrap_or_else(|| "unknown".to_owned()),
            message: xml_value(&text, "Message").unwrap_or_default(),
        })
    }

    /// Signs and sends one POST to the service's endpoint; returns the status, the body
    /// and the endpoint (for messages).
    async fn send(
        &self,
        service: &str,
        headers: Vec<(String, String)>,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(u16, Bytes, String), AwsError> {
        let uri = self.endpoint(service);
        let path = uri.path().to_owned();
        let answer = self
            .request(
                service,
                "POST",
                &uri,
                &path,
                &[],
                headers,
                payload,
                false,
                timeout,
            )
            .await?;
        Ok((answer.status, answer.body, answer.endpoint))
    }

    /// Signs and sends one request of a REST protocol (S3): `method` to `base`'s scheme
    /// and authority, at `path` (already URI-encoded, see [`encode_path`]) with `query`
    /// (not encoded), the extra `headers` and `payload`. With `content_sha256`, the
    /// payload's SHA-256 goes in a signed `x-amz-content-sha256` header, as S3 wants.
    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &self,
        service: &str,
        method: &str,
        base: &http::Uri,
        path: &str,
        query: &[(String, String)],
        mut headers: Vec<(String, String)>,
        payload: Bytes,
        content_sha256: bool,
        timeout: Duration,
    ) -> Result<Answer, AwsError> {
        let endpoint = format!(
            "{}://{}",
            base.scheme_str().unwrap_or("https"),
            base.authority().map_or("", |authority| authority.as_str())
        );
        let host = base
            .authority()
            .map(|authority| authority.as_str().to_owned())
            .unwrap_or_default();
        headers.push(("host".to_owned(), host));
        if content_sha256 {
            headers.push((
                "x-amz-content-sha256".to_owned(),
                hex(digest::digest(&digest::SHA256, &payload).as_ref()),
            ));
        }
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let authorization = sign(
            &self.credentials,
            &self.region,
            service,
            &amz_date(time::OffsetDateTime::now_utc()),
            method,
            path,
            &pairs,
            &mut headers,
            &payload,
        );
        let path = if path.is_empty() { "/" } else { path };
        let url = if query.is_empty() {
            format!("{endpoint}{path}")
        } else {
            format!("{endpoint}{path}?{}", canonical_query(&pairs))
        };
        let method =
            http::Method::from_bytes(method.as_bytes()).map_err(|why| AwsError::Unexpected {
                endpoint: endpoint.clone(),
                what: format!("the method cannot be used: {why}"),
            })?;
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header("authorization", authorization)
            .body(Full::new(payload))
            .map_err(|why| AwsError::Unexpected {
                endpoint: endpoint.clone(),
                what: format!("the request cannot be built: {why}"),
            })?;
        match crate::http_exchange::exchange(&self.http, request, timeout).await {
            Ok((status, headers, body)) => Ok(Answer {
                status,
                headers,
                body,
                endpoint,
            }),
            Err(ExchangeError::Unreachable(source)) => {
                Err(AwsError::Unreachable { endpoint, source })
            }
            Err(ExchangeError::Body(source)) => Err(AwsError::Body { endpoint, source }),
            Err(ExchangeError::Timeout) => Err(AwsError::Timeout {
                endpoint,
                after: timeout,
            }),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A presigned URL (SigV4 in the query string, `UNSIGNED-PAYLOAD`): a GET of `path`
    /// (already URI-encoded) at `base`, good for `expires` from `now` (`amz_date`).
    pub fn presign(
        &self,
        service: &str,
        base: &http::Uri,
        path: &str,
        amz_date: &str,
        expires: Duration,
    ) -> String {
        presign(
            &self.credentials,
            &self.region,
            service,
            base,
            path,
            amz_date,
            expires,
        )
    }
}

/// What a [`Client::request`] was answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// `scheme://authority` asked, for messages.
    pub endpoint: String,
}

impl Answer {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The S3-style XML error of a failed answer (`<Code>`, `<Message>`); a HEAD or a
    /// bodiless error is named by its status.
    pub fn into_error(self) -> AwsError {
        let text = String::from_utf8_lossy(&self.body);
        let code = xml_value(&text, "Code").unwrap_or_else(|| match self.status {
            404 => "NotFound".to_owned(),
            403 => "Forbidden".to_owned(),
            _ => "unknown".to_owned(),
        });
        AwsError::Service {
            endpoint: self.endpoint,
            status: self.status,
            code,
            message: xml_value(&text, "Message").unwrap_or_default(),
        }
    }
}

/// An S3 object key (or any path) URI-encoded as S3 signs it: each `/`-separated
/// segment encoded with [`encode`], the slashes kept.
pub fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// `name=value` pairs encoded with [`encode`], sorted, joined with `&`: SigV4's
/// canonical query string, which is also a valid one to send.
fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut query: Vec<(String, String)> = query
        .iter()
        .map(|(name, value)| (encode(name), encode(value)))
        .collect();
    query.sort();
    query
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A presigned GET URL, as [`Client::presign`]; separate for the documentation's test
/// vector.
pub fn presign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    base: &http::Uri,
    path: &str,
    amz_date: &str,
    expires: Duration,
) -> String {
    let endpoint = format!(
        "{}://{}",
        base.scheme_str().unwrap_or("https"),
        base.authority().map_or("", |authority| authority.as_str())
    );
    let host = base
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .unwrap_or_default();
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let credential = format!("{}/{scope}", credentials.access_key);
    let seconds = expires.as_secs().to_string();
    let mut query: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", &seconds),
        ("X-Amz-SignedHeaders", "host"),
    ];
    if let Some(token) = &credentials.session_token {
        query.push(("X-Amz-Security-Token", token));
    }
    let path = if path.is_empty() { "/" } else { path };
    let canonical = canonical_query(&query);
    let canonical_request =
        format!("GET\n{path}\n{canonical}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let key = signing_key(&credentials.secret_key, date, region, service);
    let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    format!("{endpoint}{path}?{canonical}&X-Amz-Signature={signature}")
}

/// `YYYYMMDD'T'HHMMSS'Z'`, the form SigV4 signs.
pub fn amz_date(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Signs a request with AWS Signature Version 4: adds `x-amz-date` (and
/// `x-amz-security-token` with a session token) to `headers`, which must hold `host`,
/// and returns the `Authorization` header's value. `path` is the request's path as sent
/// (already percent-encoded where needed); `query` its parameters, not encoded.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &mut Vec<(String, String)>,
    payload: &[u8],
) -> String {
    headers.push(("x-amz-date".to_owned(), amz_date.to_owned()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    // Canonical headers: lowercase names, values trimmed with inner runs of spaces
    // collapsed, sorted by name, repeated names joined with commas.
    let mut canonical: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers.iter() {
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value);
    }
    let canonical_headers: String = canonical
        .iter()
        .map(|(name, values)| format!("{name}:{}\n", values.join(",")))
        .collect();
    let signed_headers = canonical.keys().cloned().collect::<Vec<_>>().join(";");
    let canonical_query = canonical_query(query);
    let path = if path.is_empty() { "/" } else { path };
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        hex(digest::digest(&digest::SHA256, payload).as_ref())
    );
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let key = signing_key(&credentials.secret_key, date, region, service);
    let signature = hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key
    )
}

/// The SigV4 signing key: HMACs of date, region, service and `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
    for part in [date, region, service, "aws4_request"] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// AWS's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XY`.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The text of the first `<name>...</name>` element of an XML answer, unescaped.
pub fn xml_value(xml: &str, name: &str) -> Option<String> {
    xml_values(xml, name).into_iter().next()
}

/// The texts of every `<name>...</name>` element of an XML answer, unescaped.
pub fn xml_values(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        values.push(xml_unescape(&after[..end]));
        rest = &after[end + close.len()..];
    }
    values
}

/// Resolves XML's five named entities and numeric character references.
pub fn xml_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let resolved = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match resolved {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Test support shared by the AWS components' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    use super::{Client, xml_value};

    /// Makes an IAM user allowed everything on a moto that checks signatures, with the
    /// three calls such a moto takes unchecked (`INITIAL_NO_AUTH_ACTION_COUNT` counts
    /// them); returns its access key and secret.
    pub(crate) async fn signing_user(anyone: &Client, timeout: Duration) -> (String, String) {
        let iam = |action: &'static str, params: Vec<(&str, &str)>| {
            let params: Vec<(String, String)> = params
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            async move {
                anyone
                    .query("iam", "2010-05-08", action, &params, timeout)
                    .await
                    .unwrap()
            }
        };
        iam("CreateUser", vec![("UserName", "tandem")]).await;
        let key = iam("CreateAccessKey", vec![("UserName", "tandem")]).await;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        iam(
            "PutUserPolicy",
            vec![
                ("UserName", "tandem"),
                ("PolicyName", "everything"),
                ("PolicyDocument", policy),
            ],
        )
        .await;
        (
            xml_value(&key, "AccessKeyId").unwrap(),
            xml_value(&key, "SecretAccessKey").unwrap(),
        )
    }
}

#[cfg(test)]
mod tests {
    use tandem_spec::Component;

    use super::*;

    /// The example credentials of AWS's SigV4 documentation and test suite.
    fn example() -> Credentials {
        Credentials {
            access_key: "AKIDEXAMPLE".to_owned(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: None,
        }
    }

    /// aws-sig-v4-test-suite, `get-vanilla`.
    #[test]
    fn sigv4_matches_the_test_suite_s_get_vanilla() {
        let mut headers = vec![("Host".to_owned(), "example.amazonaws.com".to_owned())];
        let authorization = sign(
            &example(),
            "us-east-1",
            "service",
            "20150830T123600Z",
            "GET",
            "/",
            &[],
            &mut headers,
            b"",
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The IAM `ListUsers` example of AWS's SigV4 documentation.
    #[test]
    fn sigv4_matches_the_documentation_s_iam_example() {
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            ),
            ("Host".to_owned(), "iam.amazonaws.com".to_owned()),
        ];
        let authorization = sign(
            &example(),
            "us-east-1",
            "iam",
            "20150830T123600Z",
            "GET",
            "/",
            &[("Action", "ListUsers"), ("Version", "2010-05-08")],
            &mut headers,
            b"",
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// A POST as the SQS client sends it — JSON body, `x-amz-target`, session token —
    /// against the signature botocore 1.44.8's `SigV4Auth` computes for the same
    /// request and clock (an independent implementation).
    #[test]
    fn sigv4_of_an_sqs_json_call_matches_botocore() {
        let credentials = Credentials {
            session_token: Some("session-token-example".to_owned()),
            ..example()
        };
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.0".to_owned(),
            ),
            (
                "x-amz-target".to_owned(),
                "AmazonSQS.ReceiveMessage".to_owned(),
            ),
            ("host".to_owned(), "sqs.us-east-1.amazonaws.com".to_owned()),
        ];
        let authorization = sign(
            &credentials,
            "us-east-1",
            "sqs",
            "20150830T123600Z",
            "POST",
            "/",
            &[],
            &mut headers,
            br#"{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/123456789012/orders","MaxNumberOfMessages":10}"#,
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sqs/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=72233dac9f3e6236346102d9952293b343bcec4cac58ea513c3f53ccaca69f56"
        );
        assert!(headers.contains(&(
            "x-amz-security-token".to_owned(),
            "session-token-example".to_owned()
        )));
    }

    /// The S3 documentation's example credentials (not the SigV4 suite's).
    fn s3_example() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            session_token: None,
        }
    }

    /// S3's "Signature Calculations for the Authorization Header: Transferring Payload
    /// in a Single Chunk", example GET Object: a Range header and the signed
    /// `x-amz-content-sha256` of the empty payload.
    #[test]
    fn sigv4_matches_the_s3_documentation_s_get_object_example() {
        let mut headers = vec![
            (
                "host".to_owned(),
                "examplebucket.s3.amazonaws.com".to_owned(),
            ),
            ("range".to_owned(), "bytes=0-9".to_owned()),
            (
                "x-amz-content-sha256".to_owned(),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
            ),
        ];
        let authorization = sign(
            &s3_example(),
            "us-east-1",
            "s3",
            "20130524T000000Z",
            "GET",
            "/test.txt",
            &[],
            &mut headers,
            b"",
        );
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// S3's "Authenticating Requests: Using Query Parameters" example: a GET of
    /// `test.txt` presigned for a day.
    #[test]
    fn presigned_urls_match_the_s3_documentation_s_example() {
        let url = presign(
            &s3_example(),
            "us-east-1",
            "s3",
            &"https://examplebucket.s3.amazonaws.com".parse().unwrap(),
            "/test.txt",
            "20130524T000000Z",
            Duration::from_secs(86_400),
        );
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn object_keys_are_encoded_segment_by_segment() {
        assert_eq!(
            encode_path("photos/été 2013/a+b (1)~x_y-z.jpg"),
            "photos/%C3%A9t%C3%A9%202013/a%2Bb%20%281%29~x_y-z.jpg"
        );
        assert_eq!(encode_path("test$file.text"), "test%24file.text");
    }

    #[test]
    fn a_session_token_is_signed_and_credentials_are_never_shown() {
        let credentials = Credentials {
            session_token: Some("token-secret".to_owned()),
            ..example()
        };
        let mut headers = vec![("host".to_owned(), "sqs.us-east-1.amazonaws.com".to_owned())];
        let authorization = sign(
            &credentials,
            "us-east-1",
            "sqs",
            "20150830T123600Z",
            "POST",
            "/",
            &[],
            &mut headers,
            b"{}",
        );
        assert!(authorization.contains("SignedHeaders=host;x-amz-date;x-amz-security-token"));
        assert!(!authorization.contains("EXAMPLEKEY"));
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("AKIDEXAMPLE") && !shown.contains("secret"));
    }

    #[test]
    fn dates_are_formatted_as_sigv4_signs_them() {
        let when = time::OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
        assert_eq!(amz_date(when), "20150830T123600Z");
    }

    #[test]
    fn values_are_encoded_as_aws_wants() {
        assert_eq!(encode("a b+c/~d_e.f-g*"), "a%20b%2Bc%2F~d_e.f-g%2A");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn xml_values_are_found_and_unescaped() {
        let xml = "<R><TopicArn>arn:aws:sns:us-east-1:1:a&amp;b</TopicArn>\
                   <Code>X</Code><Message>&lt;it&gt; &quot;is&quot; &apos;&#65;&#x42;&amp;c</Message></R>";
        assert_eq!(
            xml_value(xml, "TopicArn").as_deref(),
            Some("arn:aws:sns:us-east-1:1:a&b")
        );
        assert_eq!(
            xml_value(xml, "Message").as_deref(),
            Some("<it> \"is\" 'AB&c")
        );
        assert_eq!(xml_value(xml, "Missing"), None);
        assert_eq!(xml_unescape("a & b &bogus; c"), "a & b &bogus; c");
        assert_eq!(
            xml_values("<m>1</m><m>2</m>", "m"),
            vec!["1".to_owned(), "2".to_owned()]
        );
    }

    /// Against moto checking signatures (`INITIAL_NO_AUTH_ACTION_COUNT`): it recomputes
    /// each request's SigV4 signature with botocore from the secret of the IAM access
    /// key the request names, so a wrong signature — of a JSON or of a query call — is
    /// refused.
    #[tokio::test]
    async fn an_emulator_that_checks_signatures_takes_ours() {
        let server =
            tandem_testkit::MotoServer::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]);
        let endpoint: http::Uri = server.endpoint().parse().unwrap();
        let timeout = Duration::from_secs(10);
        let client = |access_key: &str, secret_key: &str| {
            Client::new(
                Credentials {
                    access_key: access_key.to_owned(),
                    secret_key: secret_key.to_owned(),
                    session_token: None,
                },
                "us-east-1".to_owned(),
                Some(endpoint.clone()),
            )
        };
        // The three requests moto takes unchecked make a user, its key and its rights.
        let anyone = client("AKIDANYONE", "anything");
        let (access_key, secret_key) =
            crate::aws::test_support::signing_user(&anyone, timeout).await;

        let good = client(&access_key, &secret_key);
        good.json(
            "sqs",
            "AmazonSQS",
            "CreateQueue",
            serde_json::json!({"QueueName": "signed"}),
            timeout,
        )
        .await
        .unwrap();
        let params = [("Name".to_owned(), "signed".to_owned())];
        let answer = good
            .query("sns", "2010-03-31", "CreateTopic", &params, timeout)
            .await
            .unwrap();
        assert!(xml_value(&answer, "TopicArn").is_some(), "{answer}");

        let wrong = client(&access_key, "not-the-secret");
        let error = wrong
            .json(
                "sqs",
                "AmazonSQS",
                "CreateQueue",
                serde_json::json!({"QueueName": "unsigned"}),
                timeout,
            )
            .await
            .unwrap_err();
        assert!(
            error
                .code()
                .is_some_and(|code| code.contains("SignatureDoesNotMatch")),
            "{error}"
        );
        let error = wrong
            .query("sns", "2010-03-31", "CreateTopic", &params, timeout)
            .await
            .unwrap_err();
        assert!(
            error
                .code()
                .is_some_and(|code| code.contains("SignatureDoesNotMatch")),
            "{error}"
        );
        assert!(!error.to_string().contains("not-the-secret"), "{error}");
    }

    fn metadata(values: &[(&str, &str)]) -> ComponentMetadata {
        ComponentMetadata::new(
            Component::new("aws", "pubsub.aws.snssqs"),
            values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn credentials_come_from_metadata_then_the_environment_then_the_file() {
        let nowhere = CredentialSources {
            env: no_env,
            home: None,
        };
        let from_metadata = Credentials::read(
            &metadata(&[
                ("accessKey", "AK"),
                ("secretKey", "SK"),
                ("sessionToken", "T"),
            ]),
            &nowhere,
        )
        .unwrap();
        assert_eq!(from_metadata.access_key, "AK");
        assert_eq!(from_metadata.session_token.as_deref(), Some("T"));
        let deprecated = Credentials::read(
            &metadata(&[("awsAccountID", "AK"), ("awsSecret", "SK")]),
            &nowhere,
        )
        .unwrap();
        assert_eq!(deprecated.secret_key, "SK");
        let half = Credentials::read(&metadata(&[("accessKey", "AK")]), &nowhere)
            .unwrap_err()
            .to_string();
        assert!(half.contains("secretKey"), "{half}");
        let half = Credentials::read(&metadata(&[("secretKey", "hunter2")]), &nowhere)
            .unwrap_err()
            .to_string();
        assert!(
            half.contains("accessKey") && !half.contains("hunter2"),
            "{half}"
        );

        let from_env = CredentialSources {
            env: |name| match name {
                "AWS_ACCESS_KEY_ID" => Some("ENVAK".to_owned()),
                "AWS_SECRET_ACCESS_KEY" => Some("ENVSK".to_owned()),
                _ => None,
            },
            home: None,
        };
        let credentials = Credentials::read(&metadata(&[]), &from_env).unwrap();
        assert_eq!(credentials.access_key, "ENVAK");
        assert_eq!(credentials.session_token, None);

        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[other]\naws_access_key_id = NO\naws_secret_access_key = NO\n\n\
             [default]\naws_access_key_id = FILEAK\naws_secret_access_key = FILESK\n",
        )
        .unwrap();
        let from_file = CredentialSources {
            env: no_env,
            home: Some(home.path().to_owned()),
        };
        let credentials = Credentials::read(&metadata(&[]), &from_file).unwrap();
        assert_eq!(credentials.access_key, "FILEAK");
        assert_eq!(credentials.secret_key, "FILESK");

        let error = Credentials::read(&metadata(&[]), &nowhere)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no AWS credentials"), "{error}");
    }

    #[test]
    fn the_region_comes_from_metadata_or_the_environment() {
        let nowhere = CredentialSources {
            env: no_env,
            home: None,
        };
        assert_eq!(
            region(&metadata(&[("region", "eu-west-1")]), &nowhere).unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            region(&metadata(&[("awsRegion", "eu-west-2")]), &nowhere).unwrap(),
            "eu-west-2"
        );
        let env = CredentialSources {
            env: |name| (name == "AWS_DEFAULT_REGION").then(|| "ap-south-1".to_owned()),
            home: None,
        };
        assert_eq!(region(&metadata(&[]), &env).unwrap(), "ap-south-1");
        assert!(region(&metadata(&[]), &nowhere).is_err());
        assert!(
            region(&metadata(&[("region", "us east")]), &nowhere)
                .unwrap_err()
                .to_string()
                .contains("region")
        );
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("us-east-1"), "aws");
    }
}
