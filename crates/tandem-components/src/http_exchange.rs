//! One HTTP request and its whole answer, within a time limit: what the components'
//! small HTTP clients (`aws.rs`, `azure.rs`, `bindings/influx.rs`) send, over the one
//! kind of connection they share ([`https_client`]). Each client turns an
//! [`ExchangeError`] into its own error, naming its endpoint.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// The client they use: HTTP(S) over rustls.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for `http://` and `https://` endpoints (HTTP/1.1, the web's roots of
/// trust): connecting gives up after 5 s, idle connections are dropped after 30 s.
pub(crate) fn https_client() -> HttpsClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

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
