//! A small Azure Storage client for the Azure state stores (`state.azure.blobstorage`,
//! `state.azure.tablestorage`): the account's credentials, Shared Key signing and
//! signed REST requests over hyper with rustls. Not the Azure SDK: only what the
//! components use.
//!
//! The account key is decoded once, when the component is built, and never appears
//! in a message, a log or `Debug` output.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::http_exchange::ExchangeError;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;

use ring::hmac;
use tandem_spec::{ComponentMetadata, ResourceError};

/// The REST API version every request asks for: one Azure and Azurite both serve.
pub const API_VERSION: &str = "2021-12-02";

/// Dapr's names of the account's name, key and endpoint, first the preferred one.
pub const ACCOUNT_NAME: &[&str] = &["accountName", "storageAccount", "storageAccountName"];
pub const ACCOUNT_KEY: &[&str] = &[
    "accountKey",
    "accessKey",
    "storageAccessKey",
    "storageAccountKey",
];
pub const ENDPOINT: &[&str] = &[
    "endpoint",
    "storageEndpoint",
    "storageAccountEndpoint",
    "queueEndpointUrl",
];

/// Dapr's Azure AD (Entra ID) and managed identity fields, and its connection string:
/// tandem signs with the account key only, so these are refused by name rather than
/// ignored (tandem would otherwise sign as someone else than intended).
pub const UNSERVED: &[&str] = &[
    "azureTenantId",
    "azureClientId",
    "azureClientSecret",
    "azureCertificate",
    "azureCertificateFile",
    "azureCertificatePassword",
    "azureFederatedTokenFile",
    "azureEnvironment",
    "connectionString",
];

/// The first of `names` that is set, with the name it was set under.
pub fn first_of<'a>(
    metadata: &'a ComponentMetadata,
    names: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    names
        .iter()
        .find_map(|name| metadata.get(name).map(|value| (*name, value)))
}

/// Refuses the fields of [`UNSERVED`].
pub fn refuse_unserved(metadata: &ComponentMetadata) -> Result<(), ResourceError> {
    for field in UNSERVED {
        if metadata.get(field).is_some() {
            return Err(metadata.field_error(
                field,
                "Azure AD (Entra ID), managed identities and connection strings are not \
                 available in tandem: give accountName and accountKey",
            ));
        }
    }
    Ok(())
}

/// A storage account's name and decoded key.
#[derive(Clone)]
pub struct Account {
    pub name: String,
    key: hmac::Key,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is secret and never shown.
        f.debug_struct("Account")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// `accountName` and `accountKey` (or Dapr's other names of them).
    pub fn read(metadata: &ComponentMetadata) -> Result<Self, ResourceError> {
        refuse_unserved(metadata)?;
        let Some((_, name)) = first_of(metadata, ACCOUNT_NAME) else {
            return Err(metadata.field_error(ACCOUNT_NAME[0], "is required but not set"));
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(metadata.field_error(
                ACCOUNT_NAME[0],
                format!("'{name}' is not a storage account name: lowercase letters and digits"),
            ));
        }
        let Some((field, key)) = first_of(metadata, ACCOUNT_KEY) else {
            return Err(metadata.field_error(
                ACCOUNT_KEY[0],
                "is required but not set (tandem signs with the account key; Azure AD is \
                 not available)",
            ));
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| {
                // Never the value: it is the secret.
                metadata.field_error(field, "is not a base64 storage account key")
            })?;
        Ok(Self {
            name: name.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// The base64 HMAC-SHA256 of `text` with the account key.
    fn signature(&self, text: &str) -> String {
        let tag = hmac::sign(&self.key, text.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    }
}

/// A service's endpoint: `endpoint` (an emulator's, `http://127.0.0.1:10000`, where
/// the account is the first path segment), else Azure's
/// `https://{account}.{service}.core.windows.net`.
pub fn service_url(
    metadata: &ComponentMetadata,
    names: &[&'static str],
    account: &Account,
    service: &str,
) -> Result<String, ResourceError> {
    match first_of(metadata, names) {
        None => Ok(format!(
            "https://{}.{service}.core.windows.net",
            account.name
        )),
        Some((field, value)) => {
            let uri: http::Uri = value.trim().parse().map_err(|why| {
                metadata.field_error(field, format!("'{value}' is not a URL: {why}"))
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return Err(metadata.field_error(
                    field,
                    format!("'{value}' is not an http:// or https:// URL"),
                ));
            }
            let base = value.trim().trim_end_matches('/');
            // Azure's own endpoint names the account in its host; any other (an
            // emulator, a private one) names it in the path, as Dapr builds it.
            if uri
                .host()
                .is_some_and(|host| host.starts_with(&format!("{}.", account.name)))
            {
                Ok(base.to_owned())
            } else {
                Ok(format!("{base}/{}", account.name))
            }
        }
    }
}

/// Percent-encodes every byte but RFC 3986's unreserved ones, for one path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `Date` and `x-ms-date`: RFC 1123 in GMT.
fn http_date(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    let weekday = now.weekday().to_string();
    let month = now.month().to_string();
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        &weekday[..3],
        now.day(),
        &month[..3],
        now.year(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Why a call to Azure Storage failed. Never holds the account key.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
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

impl AzureError {
    /// The service's error code (`BlobNotFound`, `ConditionNotMet`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of a service's refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Service { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which Shared Key string-to-sign a service wants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Service {
    /// Blob (and Queue): every standard header and the `x-ms-` headers.
    Blob,
    /// Table: the date, content type and MD5 only, and only `comp` of the query.
    Table,
}

/// One answer.
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

    /// The error of a failed answer: the code in `x-ms-error-code` (every service sends
    /// it), else in the XML or JSON body, else the status.
    pub fn into_error(self) -> AzureError {
        let text = String::from_utf8_lossy(&self.body);
        let code = self
            .header("x-ms-error-code")
            .map(str::to_owned)
            .or_else(|| crate::aws::xml_value(&text, "Code"))
            .unwrap_or_else(|| format!("status {}", self.status));
        let message = crate::aws::xml_value(&text, "Message")
            .or_else(|| {
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|json| {
                        json.pointer("/odata.error/message/value")
                            .and_then(|value| value.as_str())
                            .map(str::to_owned)
                    })
            })
            .unwrap_or_default();
        // Azure's messages carry a request id and time on later lines: the first says it.
        let message = message.lines().next().unwrap_or_default().to_owned();
        AzureError::Service {
            endpoint: self.endpoint,
            status: self.status,
            code,
            message,
        }
    }
}

/// Signs and sends requests to one storage account's service.
#[derive(Clone)]
pub struct Client {
    http: crate::http_exchange::HttpsClient,
    account: std::sync::Arc<Account>,
    /// `scheme://authority[/account]`: what paths are appended to.
    base: String,
    service: Service,
    /// How many times a request that failed on the way (not refused) is tried again.
    retries: u32,
}

impl Client {
    pub fn new(account: Account, base: String, service: Service, retries: u32) -> Self {
        let http = crate::http_exchange::https_client();
        Self {
            http,
            account: std::sync::Arc::new(account),
            base,
            service,
            retries,
        }
    }

    /// The service's URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Signs and sends `method` at `path` (segments already encoded with [`encode`],
    /// starting with `/`) with `query` (not encoded), `headers` and `body`. A request
    /// that could not be sent or was not answered is tried again up to the client's
    /// retry count; an answer of the service, any status, is returned as it is.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, AzureError> {
        let mut attempt = 0;
        loop {
            let result = self
                .send_once(method.clone(), path, query, headers, body.clone(), timeout)
                .await;
            match result {
                Err(AzureError::Unreachable { .. } | AzureError::Timeout { .. })
                    if attempt < self.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        method: http::Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Answer, AzureError> {
        let url_text = format!("{}{path}", self.base);
        let uri: http::Uri = url_text.parse().map_err(|why| AzureError::Unexpected {
            endpoint: self.base.clone(),
            what: format!("the URL cannot be built: {why}"),
        })?;
        let endpoint = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map_or("", |authority| authority.as_str())
        );
        let mut all: BTreeMap<String, String> = headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        all.insert(
            "x-ms-date".into(),
            http_date(time::OffsetDateTime::now_utc()),
        );
        all.insert("x-ms-version".into(), API_VERSION.into());
        let length = body.len();
        let authorization = format!(
            "SharedKey {}:{}",
            self.account.name,
            self.account.signature(&self.string_to_sign(
                method.as_str(),
                uri.path(),
                query,
                &all,
                length
            ))
        );
        let mut url = url_text;
        for (index, (name, value)) in query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.push_str(&encode(name));
            url.push('=');
            url.push_str(&encode(value));
        }
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in &all {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header("authorization", authorization)
            .header("content-length", length.to_string())
            .body(Full::new(body))
            .map_err(|why| AzureError::Unexpected {
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
                Err(AzureError::Unreachable { endpoint, source })
            }
            Err(ExchangeError::Body(source)) => Err(AzureError::Body { endpoint, source }),
            Err(ExchangeError::Timeout) => Err(AzureError::Timeout {
                endpoint,
                after: timeout,
            }),
        }
    }

    /// Shared Key's string to sign (`path` as sent, still encoded).
    fn string_to_sign(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &BTreeMap<String, String>,
        length: usize,
    ) -> String {
        let header = |name: &str| headers.get(name).map_or("", String::as_str);
        let resource = format!("/{}{path}", self.account.name);
        match self.service {
            Service::Table => {
                // Table's Shared Key signs `comp` alone of the query.
                let comp = query
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("comp"))
                    .map_or(String::new(), |(_, value)| format!("?comp={value}"));
                format!(
                    "{method}\n{}\n{}\n{}\n{resource}{comp}",
                    header("content-md5"),
                    header("content-type"),
                    header("x-ms-date"),
                )
            }
            Service::Blob => {
                let length = if length == 0 {
                    String::new()
                } else {
                    length.to_string()
                };
                let mut text = format!(
                    "{method}\n{}\n{}\n{length}\n{}\n{}\n\n{}\n{}\n{}\n{}\n{}\n",
                    header("content-encoding"),
                    header("content-language"),
                    header("content-md5"),
                    header("content-type"),
                    header("if-modified-since"),
                    header("if-match"),
                    header("if-none-match"),
                    header("if-unmodified-since"),
                    header("range"),
                );
                for (name, value) in headers {
                    if name.starts_with("x-ms-") {
                        text.push_str(&format!("{name}:{}\n", value.trim()));
                    }
                }
                text.push_str(&resource);
                let mut params: BTreeMap<String, Vec<&str>> = BTreeMap::new();
                for (name, value) in query {
                    params
                        .entry(name.to_ascii_lowercase())
                        .or_default()
                        .push(value);
                }
                for (name, mut values) in params {
                    values.sort_unstable();
                    text.push_str(&format!("\n{name}:{}", values.join(",")));
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            name: "devstoreaccount1".into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, b"key"),
        }
    }

    #[test]
    fn blob_string_to_sign_follows_shared_key() {
        let client = Client::new(
            account(),
            "http://127.0.0.1:10000/devstoreaccount1".into(),
            Service::Blob,
            0,
        );
        let headers: BTreeMap<String, String> = [
            ("x-ms-version", "2021-12-02"),
            ("x-ms-date", "Fri, 04 Dec 2026 13:00:00 GMT"),
            ("if-match", "\"0x1\""),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let text = client.string_to_sign(
            "PUT",
            "/devstoreaccount1/c",
            &[("restype", "container"), ("comp", "acl")],
            &headers,
            5,
        );
        assert_eq!(
            text,
            "PUT\n\n\n5\n\napplication/json\n\n\n\"0x1\"\n\n\n\n\
             x-ms-date:Fri, 04 Dec 2026 13:00:00 GMT\nx-ms-version:2021-12-02\n\
             /devstoreaccount1/devstoreaccount1/c\ncomp:acl\nrestype:container"
        );
    }

    #[test]
    fn table_string_to_sign_keeps_comp_only() {
        let client = Client::new(
            account(),
            "http://h/devstoreaccount1".into(),
            Service::Table,
            0,
        );
        let headers: BTreeMap<String, String> = [("x-ms-date".to_owned(), "D".to_owned())]
            .into_iter()
            .collect();
        let text = client.string_to_sign(
            "GET",
            "/devstoreaccount1/t()",
            &[("$filter", "x")],
            &headers,
            0,
        );
        assert_eq!(text, "GET\n\n\nD\n/devstoreaccount1/devstoreaccount1/t()");
    }

    #[test]
    fn dates_and_encoding() {
        let date = time::macros::datetime!(2026-12-04 13:05:09 UTC);
        assert_eq!(http_date(date), "Fri, 04 Dec 2026 13:05:09 GMT");
        assert_eq!(encode("a b/ü|"), "a%20b%2F%C3%BC%7C");
        assert!(!format!("{:?}", account()).contains("key"));
    }
}
