//! One HTTP request and its whole answer, within a time limit: what the cloud
//! components' small clients (`aws.rs`, `azure.rs`) send after signing a request. Each
//! client turns an [`ExchangeError`] into its own error, naming its endpoint.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// The client both use: HTTP(S) over rustls.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an exchange got no whole answer.
pub(crate) enum ExchangeError {
    /// The request could not be sent (connection refused, TLS, ...).
    Unreachable(hyper_util::client::legacy::Error),
    /// The answer broke off while it was read.
    Body(hyper::Error),
    /// No whole answer within the limit.
    Timeout,
}

/// Sends `request` and reads its answer whole: the status, headers and body.
pub(crate) async fn exchange(
    client: &HttpsClient,
    request: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, HeaderMap, Bytes), ExchangeError> {
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(ExchangeError::Unreachable)?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(ExchangeError::Body)?
            .to_bytes();
        Ok((status, parts.headers, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ExchangeError::Timeout))
}
