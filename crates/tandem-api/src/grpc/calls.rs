//! A layer over the gRPC API that names what it does not serve and logs calls.
//!
//! tonic answers a method or service it does not know with a bare `UNIMPLEMENTED` and
//! no message, so a client (and its user) cannot tell a missing building block from a
//! typo. Here that answer gets grpc-go's wording — `unknown method M for service S`,
//! as daprd would say it — and a log line; with `--enable-api-logging`, every call is
//! logged as the HTTP API logs them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response, Uri};

/// Wraps the gRPC server's service.
#[derive(Clone)]
pub(crate) struct CallsLayer {
    pub log_calls: bool,
}

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls {
            inner,
            log_calls: self.log_calls,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Calls<S> {
    inner: S,
    log_calls: bool,
}

impl<S, B, RB> tower::Service<Request<B>> for Calls<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // A `Uri` clone shares its bytes: no copy on the hot path.
        let uri = request.uri().clone();
        Answer {
            inner: self.inner.call(request),
            uri,
            log_calls: self.log_calls,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's answer, looked at when it comes.
    pub(crate) struct Answer<F> {
        #[pin]
        inner: F,
        uri: Uri,
        log_calls: bool,
    }
}

impl<F, RB, E> Future for Answer<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let path = this.uri.path();
        let status = response.headers().get("grpc-status").cloned();
        // A proxied call's status is the target app's, passed on as it was.
        let proxied = response
            .extensions()
            .get::<super::proxy::Proxied>()
            .is_some();
        let unimplemented = !proxied
            && status.as_ref().is_some_and(|code| code == "12")
            && !response.headers().contains_key("grpc-message");
        if unimplemented {
            let message = unknown_call(path);
            if *this.log_calls {
                tracing::info!(target: "tandem::api", "gRPC API called: {path} -> UNIMPLEMENTED ({message})");
            } else {
                tracing::debug!("gRPC call {path} refused: {message}");
            }
            if let Ok(value) = HeaderValue::try_from(percent_encode(&message)) {
                response.headers_mut().insert("grpc-message", value);
            }
        } else if *this.log_calls {
            // A call's status is in the headers only when it failed before answering;
            // otherwise it follows in the trailers, after the answer (0 here).
            let code = status
                .as_ref()
                .and_then(|code| code.to_str().ok())
                .unwrap_or("0");
            tracing::info!(target: "tandem::api", "gRPC API called: {path} -> {code}");
        }
        Poll::Ready(Ok(response))
    }
}

/// grpc-go's words for a call nobody serves: `/pkg.Service/Method`.
fn unknown_call(path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    match trimmed.rsplit_once('/') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            format!("unknown method {method} for service {service}")
        }
        _ => format!("malformed method name: {path:?}"),
    }
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%`.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_calls_are_named_as_grpc_go_names_them() {
        assert_eq!(
            unknown_call("/dapr.proto.runtime.v1.Dapr/InvokeActor"),
            "unknown method InvokeActor for service dapr.proto.runtime.v1.Dapr"
        );
        assert_eq!(unknown_call("/"), "malformed method name: \"/\"");
        assert_eq!(percent_encode("a%b é"), "a%25b %C3%A9");
    }
}
