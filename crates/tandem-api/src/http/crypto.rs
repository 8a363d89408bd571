//! `PUT /v1.0-alpha1/crypto/{component}/encrypt` and `/decrypt`: Dapr's `dapr.io/enc/v1`
//! scheme over HTTP. The body is read as a stream and encrypted or decrypted as it
//! arrives; the answer (`application/octet-stream`) is sent whole once the message has
//! been processed, as daprd does, so a failure late in the body is still an error
//! status rather than a cut-off answer.
//!
//! Headers: `dapr-key-name` and `dapr-key-wrap-algorithm` (required to encrypt),
//! `dapr-data-encryption-cipher`, `dapr-omit-decryption-key-name`,
//! `dapr-decryption-key-name`; to decrypt, `dapr-key-name` optionally overrides the key
//! the message names.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use tandem_runtime::{EncryptOptions, Error};
use tokio_stream::StreamExt;

use super::Api;
use super::extract::Path;
use crate::error::ApiError;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/v1.0-alpha1/crypto/{component}/encrypt", put(encrypt))
        .route("/v1.0-alpha1/crypto/{component}/decrypt", put(decrypt))
}

/// A header's value as text; Go's `Header.Get` passes any bytes, so UTF-8 key names
/// (which `HeaderValue::to_str` refuses) are kept.
fn text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Dapr's truthy words (`kit/strings.IsTruthy`).
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "true" | "t" | "on" | "1"
    )
}

/// Counts a body's bytes against `--max-body-size`, as every other body is: the answer
/// is kept whole until the end (as daprd), so the body's size bounds its memory.
struct Limit {
    total: usize,
    limit: usize,
}

impl Limit {
    fn take(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.total = self.total.saturating_add(chunk.len());
        if self.total > self.limit {
            return Err(ApiError::body_read(format!(
                "the request body is larger than the {}-byte limit (--max-body-size)",
                self.limit
            )));
        }
        Ok(())
    }
}

fn octets(data: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        data,
    )
        .into_response()
}

async fn encrypt(
    State(api): State<Api>,
    Path(component): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let crypto = api.runtime.crypto();
    // daprd's order: the component, then the required headers.
    crypto.check_component(&component)?;
    let key_name = text(&headers, "dapr-key-name");
    if key_name.is_empty() {
        return Err(Error::CryptoBadRequest("missing header 'dapr-key-name'".into()).into());
    }
    let key_wrap_algorithm = text(&headers, "dapr-key-wrap-algorithm");
    if key_wrap_algorithm.is_empty() {
        return Err(
            Error::CryptoBadRequest("missing header 'dapr-key-wrap-algorithm'".into()).into(),
        );
    }
    let mut encryptor = crypto
        .encryptor(&EncryptOptions {
            component,
            key_name,
            key_wrap_algorithm,
            data_encryption_cipher: text(&headers, "dapr-data-encryption-cipher"),
            omit_decryption_key_name: truthy(&text(&headers, "dapr-omit-decryption-key-name")),
            decryption_key_name: text(&headers, "dapr-decryption-key-name"),
        })
        .await?;
    let mut out = encryptor.header().to_vec();
    let mut limit = Limit {
        total: 0,
        limit: api.max_body_size,
    };
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ApiError::body_read)?;
        limit.take(&chunk)?;
        out.extend(
            encryptor
                .update(&chunk)
                .map_err(|error| ApiError::from(Error::Crypto(error.to_string())))?,
        );
    }
    out.extend(encryptor.finish());
    Ok(octets(out))
}

async fn decrypt(
    State(api): State<Api>,
    Path(component): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut session = api
        .runtime
        .crypto()
        .decrypt_session(&component, &text(&headers, "dapr-key-name"))?;
    let mut out = Vec::new();
    let mut limit = Limit {
        total: 0,
        limit: api.max_body_size,
    };
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ApiError::body_read)?;
        limit.take(&chunk)?;
        out.extend(session.update(&chunk).await?);
    }
    out.extend(session.finish().await?);
    Ok(octets(out))
}

#[cfg(test)]
mod tests {
    use super::truthy;

    #[test]
    fn truthy_words_are_daprs() {
        for word in ["1", "true", "T", "yes", "Y", "on", " true "] {
            assert!(truthy(word), "{word}");
        }
        for word in ["", "0", "false", "no", "2"] {
            assert!(!truthy(word), "{word}");
        }
    }
}
