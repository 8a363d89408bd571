//! gRPC proxying: a caller calls any gRPC method on its own sidecar with `dapr-app-id`
//! metadata, and the call reaches the target app's gRPC server through both sidecars.
//! The target here is a tonic server of a test service (`tandemtest.Echo`, written by
//! hand over tonic's generic server with string messages) with unary, server-streaming,
//! client-streaming and bidirectional methods; two real `tandem sidecar`s share one
//! `TANDEM_HOME` and so find each other.

mod common;

use std::time::Duration;

use axum::http;
use axum::http::uri::PathAndQuery;
use axum::routing::post;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use common::Sidecar;

type Codec = ProstCodec<String, String>;

/// Sends on drop: the app's handler was dropped, its call cancelled.
struct Cancelled(mpsc::UnboundedSender<()>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn text(request_metadata: &tonic::metadata::MetadataMap, name: &str) -> String {
    request_metadata
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// `Say`: greets, and tells what metadata it got; `fail` fails with details and
/// metadata. `Wait`: never answers, and reports when it is cancelled.
async fn say(request: Request<String>) -> Result<Response<String>, Status> {
    let metadata = request.metadata().clone();
    let message = request.into_inner();
    if message == "fail" {
        let mut trailers = tonic::metadata::MetadataMap::new();
        trailers.insert("x-why", MetadataValue::from_static("because"));
        return Err(Status::with_details_and_metadata(
            Code::FailedPrecondition,
            "not today",
            bytes::Bytes::from_static(b"\x08\x09rich details"),
            trailers,
        ));
    }
    let mut response = Response::new(format!(
        "hello {message}; app-id={} token={} caller={} callee={} tenant={} timeout={}",
        text(&metadata, "dapr-app-id"),
        text(&metadata, "dapr-api-token"),
        text(&metadata, "dapr-caller-app-id"),
        text(&metadata, "dapr-callee-app-id"),
        text(&metadata, "x-tenant"),
        text(&metadata, "grpc-timeout") != "-",
    ));
    response
        .metadata_mut()
        .insert("x-greeted", MetadataValue::from_static("yes"));
    Ok(response)
}

/// Starts the test app; returns its port and where its cancelled calls are reported.
async fn start_app() -> (u16, mpsc::UnboundedReceiver<()>) {
    let (cancelled, cancellations) = mpsc::unbounded_channel();
    let router = axum::Router::new()
        .route(
            "/tandemtest.Echo/Say",
            post(|request: http::Request<axum::body::Body>| async move {
                tonic::server::Grpc::new(Codec::default())
                    .unary(tower::service_fn(say), request)
                    .await
            }),
        )
        .route(
            "/tandemtest.Echo/Wait",
            post(move |request: http::Request<axum::body::Body>| {
                let cancelled = cancelled.clone();
                async move {
                    let wait = tower::service_fn(move |_: Request<String>| {
                        let guard = Cancelled(cancelled.clone());
                        async move {
                            std::future::pending::<()>().await;
                            drop(guard);
                            Ok::<_, Status>(Response::new(String::new()))
                        }
                    });
                    tonic::server::Grpc::new(Codec::default())
                        .unary(wait, request)
                        .await
                }
            }),
        )
        .route(
            "/tandemtest.Echo/Count",
            post(|request: http::Request<axum::body::Body>| async move {
                // `N`: N messages; `N!`: then an error status with details.
                let count = tower::service_fn(|request: Request<String>| async move {
                    let asked = request.into_inner();
                    let fail = asked.ends_with('!');
                    let n: usize = asked.trim_end_matches('!').parse().unwrap_or(0);
                    let mut items: Vec<Result<String, Status>> =
                        (0..n).map(|i| Ok(i.to_string())).collect();
                    if fail {
                        items.push(Err(Status::with_details(
                            Code::Aborted,
                            "stopped after the messages",
                            bytes::Bytes::from_static(b"stream details"),
                        )));
                    }
                    Ok::<_, Status>(Response::new(tokio_stream::iter(items)))
                });
                tonic::server::Grpc::new(Codec::default())
                    .server_streaming(count, request)
                    .await
            }),
        )
        .route(
            "/tandemtest.Echo/Join",
            post(|request: http::Request<axum::body::Body>| async move {
                let join = tower::service_fn(|request: Request<Streaming<String>>| async move {
                    let parts: Vec<String> = request
                        .into_inner()
                        .filter_map(|item| async move { item.ok() })
                        .collect()
                        .await;
                    Ok::<_, Status>(Response::new(parts.join(",")))
                });
                tonic::server::Grpc::new(Codec::default())
                    .client_streaming(join, request)
                    .await
            }),
        )
        .route(
            "/tandemtest.Echo/Chat",
            post(|request: http::Request<axum::body::Body>| async move {
                // Each message answered as it comes, before the next is read.
                let chat = tower::service_fn(|request: Request<Streaming<String>>| async move {
                    let replies = request
                        .into_inner()
                        .map(|item| item.map(|message| message.to_uppercase()));
                    Ok::<_, Status>(Response::new(replies))
                });
                tonic::server::Grpc::new(Codec::default())
                    .streaming(chat, request)
                    .await
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (port, cancellations)
}

async fn channel(port: u16) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A request for `app_id` through the caller's sidecar, with the caller's token.
fn request<T>(message: T, app_id: &str) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("dapr-app-id", app_id.parse().unwrap());
    metadata.insert("dapr-api-token", MetadataValue::from_static("caller-token"));
    request
}

async fn unary(
    channel: &Channel,
    method: &'static str,
    request: Request<String>,
) -> Result<Response<String>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(request, PathAndQuery::from_static(method), Codec::default())
        .await
}

struct Pair {
    _dir: tempfile::TempDir,
    caller: Sidecar,
    target: Sidecar,
    /// The target sidecar's internal port.
    internal: u16,
    cancellations: mpsc::UnboundedReceiver<()>,
}

/// `caller` (no app, `DAPR_API_TOKEN=caller-token`) and `target` (the test app over
/// gRPC, `APP_API_TOKEN=app-token`, at most one call in the app at once).
async fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (app_port, cancellations) = start_app().await;
    let home = dir.path().join("home");
    let resources = dir.path().to_owned();
    let internal = tandem_testkit::free_port();
    let (caller, target) = tokio::task::spawn_blocking(move || {
        let internal = internal.to_string();
        let target = Sidecar::start_with(
            &home,
            "target",
            &resources,
            Some(app_port),
            None,
            &[
                "--app-protocol",
                "grpc",
                "--app-max-concurrency",
                "1",
                "--dapr-internal-grpc-port",
                &internal,
            ],
            None,
            &[("APP_API_TOKEN", "app-token")],
        );
        let caller = Sidecar::start_with(
            &home,
            "caller",
            &resources,
            None,
            Some("caller-token"),
            &[],
            None,
            &[],
        );
        (caller, target)
    })
    .await
    .unwrap();
    Pair {
        _dir: dir,
        caller,
        target,
        internal,
        cancellations,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_call_goes_through_both_sidecars() {
    let pair = pair().await;
    let channel = channel(pair.caller.grpc).await;

    // Unary: metadata in (dapr-app-id gone, the app's token in place of the caller's,
    // the callers proven), response headers out.
    let mut call = request("there".to_owned(), "target");
    call.metadata_mut()
        .insert("x-tenant", MetadataValue::from_static("acme"));
    call.set_timeout(Duration::from_secs(30));
    let answer = unary(&channel, "/tandemtest.Echo/Say", call).await.unwrap();
    assert_eq!(answer.metadata().get("x-greeted").unwrap(), "yes");
    assert_eq!(
        answer.into_inner(),
        "hello there; app-id=- token=app-token caller=caller callee=target tenant=acme timeout=true"
    );

    // An error status with details and metadata, as the app gave it.
    let failure = unary(
        &channel,
        "/tandemtest.Echo/Say",
        request("fail".into(), "target"),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.code(), Code::FailedPrecondition);
    assert_eq!(failure.message(), "not today");
    assert_eq!(failure.details(), b"\x08\x09rich details");
    assert_eq!(failure.metadata().get("x-why").unwrap(), "because");

    let mut grpc = tonic::client::Grpc::new(channel.clone());

    // Server streaming, then its trailers: a status after the messages.
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            request("3!".to_owned(), "target"),
            PathAndQuery::from_static("/tandemtest.Echo/Count"),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let failure = loop {
        match stream.message().await {
            Ok(Some(message)) => got.push(message),
            Ok(None) => panic!("the stream ended without the app's status"),
            Err(status) => break status,
        }
    };
    assert_eq!(got, ["0", "1", "2"]);
    assert_eq!(failure.code(), Code::Aborted);
    assert_eq!(failure.message(), "stopped after the messages");
    assert_eq!(failure.details(), b"stream details");

    // Client streaming.
    grpc.ready().await.unwrap();
    let parts = tokio_stream::iter(["a", "b", "c"].map(str::to_owned));
    let joined = grpc
        .client_streaming(
            request(parts, "target"),
            PathAndQuery::from_static("/tandemtest.Echo/Join"),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(joined, "a,b,c");

    // Bidirectional: each reply arrives before the next message is sent.
    grpc.ready().await.unwrap();
    let (send, outgoing) = mpsc::channel::<String>(1);
    let mut replies = grpc
        .streaming(
            request(
                tokio_stream::wrappers::ReceiverStream::new(outgoing),
                "target",
            ),
            PathAndQuery::from_static("/tandemtest.Echo/Chat"),
            Codec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    for word in ["ping", "pong", "done"] {
        send.send(word.to_owned()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .expect("the reply came while the call was open")
            .unwrap()
            .unwrap();
        assert_eq!(reply, word.to_uppercase());
    }
    drop(send);
    assert!(replies.message().await.unwrap().is_none());

    // An app calling itself through its own sidecar: no hop between sidecars, and the
    // caller it claims is replaced by the one it is.
    let own = self::channel(pair.target.grpc).await;
    let mut call = Request::new("me".to_owned());
    let metadata = call.metadata_mut();
    metadata.insert("dapr-app-id", MetadataValue::from_static("target"));
    metadata.insert("dapr-caller-app-id", MetadataValue::from_static("mallory"));
    let answer = unary(&own, "/tandemtest.Echo/Say", call).await.unwrap();
    assert_eq!(
        answer.into_inner(),
        "hello me; app-id=- token=app-token caller=target callee=target tenant=- timeout=false"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_proxied_call_cancels_the_apps() {
    let mut pair = pair().await;
    let channel = channel(pair.caller.grpc).await;

    // The caller gives up: the app's handler is dropped.
    let waiting = unary(
        &channel,
        "/tandemtest.Echo/Wait",
        request(String::new(), "target"),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), waiting)
            .await
            .is_err()
    );
    tokio::time::timeout(Duration::from_secs(5), pair.cancellations.recv())
        .await
        .expect("the app's call was cancelled");

    // A deadline: the caller gets an error, the app's call is cancelled.
    let mut call = request(String::new(), "target");
    call.set_timeout(Duration::from_millis(300));
    let failure = tokio::time::timeout(
        Duration::from_secs(10),
        unary(&channel, "/tandemtest.Echo/Wait", call),
    )
    .await
    .expect("the deadline ended the call")
    .unwrap_err();
    assert!(
        matches!(failure.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{failure:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), pair.cancellations.recv())
        .await
        .expect("the app's call was cancelled at the deadline");

    // `--app-max-concurrency 1` counts proxied calls: a second call waits for the
    // first, and goes on when it is cancelled.
    let held = tokio::spawn({
        let channel = channel.clone();
        async move {
            unary(
                &channel,
                "/tandemtest.Echo/Wait",
                request(String::new(), "target"),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = tokio::spawn({
        let channel = channel.clone();
        async move {
            unary(
                &channel,
                "/tandemtest.Echo/Say",
                request("two".into(), "target"),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "the second call waited for the app's one place"
    );
    held.abort();
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second call went on once the first was cancelled")
        .unwrap()
        .unwrap();
    assert!(second.into_inner().starts_with("hello two"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecars_own_api_tokens_and_unknown_targets() {
    let pair = pair().await;
    let channel = channel(pair.caller.grpc).await;

    // No token: refused before anything is proxied.
    let mut call = Request::new("x".to_owned());
    call.metadata_mut()
        .insert("dapr-app-id", MetadataValue::from_static("target"));
    let refused = unary(&channel, "/tandemtest.Echo/Say", call)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // An app id no sidecar serves: daprd's name resolution's answer.
    let unknown = unary(
        &channel,
        "/tandemtest.Echo/Say",
        request("x".into(), "nobody"),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::Unknown);
    assert_eq!(unknown.message(), "couldn't find service: nobody");

    // No dapr-app-id: nothing to proxy to.
    let mut call = Request::new("x".to_owned());
    call.metadata_mut()
        .insert("dapr-api-token", MetadataValue::from_static("caller-token"));
    let unimplemented = unary(&channel, "/tandemtest.Echo/Say", call)
        .await
        .unwrap_err();
    assert_eq!(unimplemented.code(), Code::Unimplemented);
    assert_eq!(
        unimplemented.message(),
        "unknown method Say for service tandemtest.Echo"
    );

    // The target's internal port takes proxied calls from sidecars holding the key only.
    let internal = self::channel(pair.internal).await;
    let mut call = Request::new("x".to_owned());
    let metadata = call.metadata_mut();
    metadata.insert("tandem-grpc-proxy", MetadataValue::from_static("1"));
    metadata.insert("dapr-caller-app-id", MetadataValue::from_static("caller"));
    metadata.insert("dapr-callee-app-id", MetadataValue::from_static("target"));
    metadata.insert(
        "tandem-peer-auth",
        MetadataValue::from_static("v1 1 0123456789abcdef"),
    );
    let forged = unary(&internal, "/tandemtest.Echo/Say", call)
        .await
        .unwrap_err();
    // Refused as any unproven call there: 401 with tandem's mark, nothing reaches the app.
    assert!(forged.message().contains("401"), "{forged:?}");
    assert_eq!(forged.metadata().get("tandem-peer-refused").unwrap(), "1");

    // The Dapr API stays the sidecar's own, dapr-app-id or not.
    let mut dapr = tandem_proto::runtime::dapr_client::DaprClient::new(channel.clone());
    let metadata = dapr
        .get_metadata(request(
            tandem_proto::runtime::GetMetadataRequest::default(),
            "target",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.id, "caller");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_target_app_is_not_called() {
    let dir = tempfile::tempdir().unwrap();
    // The test app serves no health-check service: every probe fails.
    let (app_port, _cancellations) = start_app().await;
    let home = dir.path().join("home");
    let resources = dir.path().to_owned();
    let (caller, _target) = tokio::task::spawn_blocking(move || {
        let target = Sidecar::start_with(
            &home,
            "sick",
            &resources,
            Some(app_port),
            None,
            &[
                "--app-protocol",
                "grpc",
                "--enable-app-health-check",
                "--app-health-probe-interval",
                "1",
            ],
            None,
            &[],
        );
        let caller = Sidecar::start_in(&home, "caller", &resources, None, None);
        (caller, target)
    })
    .await
    .unwrap();
    let channel = channel(caller.grpc).await;
    let mut call = Request::new("x".to_owned());
    call.metadata_mut()
        .insert("dapr-app-id", MetadataValue::from_static("sick"));
    let refused = unary(&channel, "/tandemtest.Echo/Say", call)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert!(
        refused.message().ends_with("app is not in a healthy state"),
        "{refused:?}"
    );
}
