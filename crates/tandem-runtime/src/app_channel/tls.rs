//! TLS to the app, for `--app-protocol https` and `grpcs`. As with `daprd`, the app's
//! certificate is not verified — the app is this sidecar's own, next to it (usually on
//! loopback) and usually with a self-signed certificate; the handshake's signatures are
//! still checked, so the connection is encrypted to whoever holds the presented key.

use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A connector to the app: plain TCP for `http`/`h2c`/`grpc`, TLS (certificate not
/// verified) for `https`/`grpcs`. `http2_only` offers only HTTP/2 over TLS (gRPC).
pub(crate) fn connector(mut tcp: HttpConnector, http2_only: bool) -> HttpsConnector<HttpConnector> {
    tcp.enforce_http(false);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    // The ring provider supports the default versions; should it ever not, the
    // connector still serves plain connections and TLS ones fail with a clear error.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_or_else(
            |_| empty_config(),
            |builder| {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth()
            },
        );
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    if http2_only {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().enable_http2().wrap_connector(tcp)
    }
}

fn empty_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Whether `protocol` (`--app-protocol`) talks to the app over TLS.
pub(crate) fn is_tls(protocol: &str) -> bool {
    matches!(protocol, "https" | "grpcs")
}

/// Accepts the app's certificate, whatever it is, but checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
