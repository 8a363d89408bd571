//! The gRPC app channel (`--app-protocol grpc`): a real `tandem sidecar` calling a gRPC
//! app that serves Dapr's `AppCallback` service (written here with tonic) — its
//! subscriptions read with `ListTopicSubscriptions`, events delivered with
//! `OnTopicEvent` and its answers honoured, invocations made with `OnInvoke` from HTTP
//! and gRPC callers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tandem_proto::common::{InvokeRequest, InvokeResponse, http_extension::Verb};
use tandem_proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use tandem_proto::runtime::{
    BindingEventRequest, BindingEventResponse, ListInputBindingsResponse,
    ListTopicSubscriptionsResponse, TopicEventRequest, TopicEventResponse, TopicRoutes,
    TopicSubscription, topic_event_response::TopicEventResponseStatus,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use common::Sidecar;

/// What the app saw of one event.
#[derive(Debug, Clone)]
struct Seen {
    topic: String,
    path: String,
    data: String,
    kind: String,
    extensions: Vec<String>,
}

/// A gRPC app: subscribes to `orders` (no route: the empty path) and `typed` (route
/// `/typed`), answers events by their data (`retry-once`, `drop`, `unhandled`), and
/// echoes invocations.
struct App {
    seen: mpsc::UnboundedSender<Seen>,
    retried: Mutex<HashMap<String, u32>>,
}

#[tonic::async_trait]
impl AppCallback for App {
    async fn on_invoke(
        &self,
        request: Request<InvokeRequest>,
    ) -> Result<Response<InvokeResponse>, Status> {
        let tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let message = request.into_inner();
        if message.method == "missing" {
            return Err(Status::not_found("no such order"));
        }
        let extension = message.http_extension.unwrap_or_default();
        let data = message.data.unwrap_or_default();
        let echo = format!(
            "{} {}?{} [{}] tenant={} type={} body={}",
            extension.verb().as_str_name(),
            message.method,
            extension.querystring,
            message.content_type,
            tenant,
            data.type_url,
            String::from_utf8_lossy(&data.value)
        );
        let type_url = if message.method == "typed" {
            "type.googleapis.com/test.Echo".to_owned()
        } else {
            String::new()
        };
        Ok(Response::new(InvokeResponse {
            data: Some(prost_types::Any {
                type_url,
                value: echo.into_bytes(),
            }),
            content_type: "text/plain".into(),
        }))
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<ListTopicSubscriptionsResponse>, Status> {
        let subscription = |topic: &str, default: &str| TopicSubscription {
            pubsub_name: "pubsub".into(),
            topic: topic.into(),
            routes: Some(TopicRoutes {
                rules: Vec::new(),
                default: default.into(),
            }),
            ..Default::default()
        };
        Ok(Response::new(ListTopicSubscriptionsResponse {
            subscriptions: vec![subscription("orders", ""), subscription("typed", "/typed")],
        }))
    }

    async fn on_topic_event(
        &self,
        request: Request<TopicEventRequest>,
    ) -> Result<Response<TopicEventResponse>, Status> {
        let event = request.into_inner();
        let data = String::from_utf8_lossy(&event.data).into_owned();
        let mut extensions: Vec<String> = event
            .extensions
            .map(|extensions| extensions.fields.into_keys().collect())
            .unwrap_or_default();
        extensions.sort();
        let _ = self.seen.send(Seen {
            topic: event.topic,
            path: event.path,
            data: data.clone(),
            kind: event.r#type,
            extensions,
        });
        let status = if data.contains("retry-once") {
            let mut retried = self.retried.lock();
            let count = retried.entry(data.clone()).or_default();
            *count += 1;
            if *count == 1 {
                TopicEventResponseStatus::Retry
            } else {
                TopicEventResponseStatus::Success
            }
        } else if data.contains("drop") {
            TopicEventResponseStatus::Drop
        } else if data.contains("unhandled") {
            return Err(Status::unimplemented("no handler"));
        } else {
            TopicEventResponseStatus::Success
        };
        Ok(Response::new(TopicEventResponse {
            status: status as i32,
        }))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<ListInputBindingsResponse>, Status> {
        Err(Status::unimplemented("no bindings"))
    }

    async fn on_binding_event(
        &self,
        _: Request<BindingEventRequest>,
    ) -> Result<Response<BindingEventResponse>, Status> {
        Err(Status::unimplemented("no bindings"))
    }
}

/// Starts the app on a free port; returns the port and what it sees.
async fn start_app() -> (u16, mpsc::UnboundedReceiver<Seen>) {
    let (seen, received) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = AppCallbackServer::new(App {
        seen,
        retried: Mutex::default(),
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (port, received)
}

fn resources() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .unwrap();
    dir
}

fn grpc_sidecar(resources: &std::path::Path, app_port: u16) -> Sidecar {
    Sidecar::start_with(
        &resources.join("home"),
        "grpc-app",
        resources,
        Some(app_port),
        None,
        &["--app-protocol", "grpc"],
        None,
        &[],
    )
}

async fn next(received: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("an event within 10 s")
        .unwrap()
}

async fn publish(sidecar: &Sidecar, topic: &str, body: &str) {
    let status = reqwest::Client::new()
        .post(sidecar.url(&format!("/v1.0/publish/pubsub/{topic}")))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204, "publishing to {topic}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_apps_get_the_events_they_subscribe_to_and_their_answers_count() {
    let (port, mut seen) = start_app().await;
    let resources = resources();
    let sidecar = grpc_sidecar(resources.path(), port);

    // The subscriptions were read with ListTopicSubscriptions.
    let metadata: serde_json::Value = reqwest::get(sidecar.url("/v1.0/metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topics: Vec<&str> = metadata["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|subscription| subscription["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["orders", "typed"], "{metadata}");

    publish(&sidecar, "orders", r#"{"n": 1}"#).await;
    let event = next(&mut seen).await;
    assert_eq!(event.topic, "orders");
    assert_eq!(
        event.path, "",
        "no route: the empty path, as daprd sends it"
    );
    assert_eq!(event.data, r#"{"n":1}"#);
    assert_eq!(event.kind, "com.dapr.event.sent");
    for attribute in ["pubsubname", "topic", "traceparent", "time"] {
        assert!(
            event.extensions.contains(&attribute.to_owned()),
            "{attribute} in {:?}",
            event.extensions
        );
    }
    assert!(!event.extensions.contains(&"data".to_owned()));

    publish(&sidecar, "typed", r#""with a route""#).await;
    let event = next(&mut seen).await;
    assert_eq!(
        (event.path.as_str(), event.data.as_str()),
        ("/typed", r#""with a route""#)
    );

    // RETRY: delivered again; DROP and Unimplemented: not.
    publish(&sidecar, "orders", r#""retry-once""#).await;
    assert_eq!(next(&mut seen).await.data, r#""retry-once""#);
    assert_eq!(next(&mut seen).await.data, r#""retry-once""#);
    publish(&sidecar, "orders", r#""drop""#).await;
    assert_eq!(next(&mut seen).await.data, r#""drop""#);
    publish(&sidecar, "orders", r#""unhandled""#).await;
    assert_eq!(next(&mut seen).await.data, r#""unhandled""#);
    let more = tokio::time::timeout(Duration::from_secs(2), seen.recv()).await;
    assert!(more.is_err(), "nothing comes again: {more:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_apps_are_invoked_from_http_and_grpc_callers() {
    let (port, _seen) = start_app().await;
    let resources = resources();
    let sidecar = grpc_sidecar(resources.path(), port);
    let client = reqwest::Client::new();

    // HTTP caller: verb, method, query, content type and headers reach the app.
    let answer = client
        .put(sidecar.url("/v1.0/invoke/grpc-app/method/orders/42?x=1"))
        .header("content-type", "text/plain")
        .header("x-tenant", "acme")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/plain");
    assert_eq!(
        answer.text().await.unwrap(),
        "PUT orders/42?x=1 [text/plain] tenant=acme type= body=hi"
    );
    // The app's error: daprd's HTTP status for its code, and the status as JSON.
    let answer = client
        .post(sidecar.url("/v1.0/invoke/grpc-app/method/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"code": 5, "message": "no such order"})
    );
    // A typed answer is protobuf to an HTTP caller, as daprd says it.
    let answer = client
        .post(sidecar.url("/v1.0/invoke/grpc-app/method/typed"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["content-type"], "application/x-protobuf");
    assert!(answer.headers().get("x-tandem-data-type-url").is_none());

    // gRPC caller: the typed message's type URL goes both ways; the app's error status
    // comes back as it was.
    let mut grpc = sidecar.grpc().await;
    let mut request = tonic::Request::new(tandem_proto::runtime::InvokeServiceRequest {
        id: "grpc-app".into(),
        message: Some(InvokeRequest {
            method: "typed".into(),
            data: Some(prost_types::Any {
                type_url: "type.googleapis.com/test.Ask".into(),
                value: b"q".to_vec(),
            }),
            content_type: String::new(),
            http_extension: Some(tandem_proto::common::HttpExtension {
                verb: Verb::Post as i32,
                querystring: String::new(),
            }),
        }),
    });
    request
        .metadata_mut()
        .insert("x-tenant", "grpc-caller".parse().unwrap());
    let answer = grpc.invoke_service(request).await.unwrap().into_inner();
    let data = answer.data.unwrap();
    assert_eq!(data.type_url, "type.googleapis.com/test.Echo");
    assert_eq!(
        String::from_utf8(data.value).unwrap(),
        "POST typed? [application/x-protobuf] tenant=grpc-caller type=type.googleapis.com/test.Ask body=q"
    );
    let failed = grpc
        .invoke_service(tandem_proto::runtime::InvokeServiceRequest {
            id: "grpc-app".into(),
            message: Some(InvokeRequest {
                method: "missing".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    assert_eq!(failed.message(), "no such order");
}
