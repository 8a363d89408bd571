//! The actor runtime on one host with an app that records its turns: what must hold
//! however callers behave.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tandem_resiliency::Resiliencies;
use tandem_spec::{Component, ComponentMetadata};
use tokio_util::sync::CancellationToken;

use super::app::{ActorAnswer, ActorApp, Turn, TurnError, TurnKind};
use super::host_config::HostConfig;
use super::{Actors, ActorsParts};
use crate::invoke::peer_auth::PeerKey;

/// An app whose turns take a while and count how many run at once.
#[derive(Default)]
struct SlowApp {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    finished: AtomicUsize,
}

#[async_trait]
impl ActorApp for SlowApp {
    async fn turn(&self, _: &Turn) -> Result<ActorAnswer, TurnError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(ActorAnswer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        })
    }

    async fn deactivate(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

async fn host(app: Arc<SlowApp>) -> (Arc<Actors>, CancellationToken) {
    host_with(app, Arc::new(PeerKey::generate())).await
}

async fn host_with(
    app: Arc<dyn ActorApp>,
    peer_key: Arc<PeerKey>,
) -> (Arc<Actors>, CancellationToken) {
    let store = tandem_components::state::registry()
        .build(&ComponentMetadata::new(
            Component::new("actorstore", "state.in-memory"),
            BTreeMap::new(),
        ))
        .await
        .expect("the in-memory store builds");
    let shutdown = CancellationToken::new();
    let actors = Actors::new(ActorsParts {
        app_id: "app".into(),
        namespace: None,
        store: Some(("actorstore".into(), store)),
        resiliency: Arc::new(Resiliencies::new(&[], "app")),
        peer_key,
        max_body_size: 1 << 20,
        address: Some("127.0.0.1:1".parse().expect("an address")),
        shutdown: shutdown.clone(),
    });
    let config = HostConfig::parse(br#"{"entities":["T"]}"#).expect("a host configuration");
    actors.host(config, app).await;
    (actors, shutdown)
}

fn call(id: &str) -> Turn {
    Turn {
        actor_type: "T".into(),
        actor_id: id.into(),
        kind: TurnKind::Method { name: "m".into() },
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// A caller that goes away mid-turn (its connection cut: a forwarding sidecar killed, a
/// client that hangs up) drops its future; the app still runs that turn, so the next
/// call must wait for it rather than enter beside it.
#[tokio::test]
async fn a_caller_that_goes_away_does_not_end_the_turn() {
    let app = Arc::new(SlowApp::default());
    let (actors, shutdown) = host(app.clone()).await;
    let first = tokio::spawn({
        let actors = actors.clone();
        async move { actors.invoke(call("a")).await }
    });
    // Once the app runs the first turn, its caller goes away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.running.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first turn never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    assert!(first.await.is_err_and(|error| error.is_cancelled()));
    actors
        .invoke(call("a"))
        .await
        .expect("the second call runs");
    assert_eq!(
        app.most_at_once.load(Ordering::SeqCst),
        1,
        "two turns ran at once"
    );
    assert_eq!(app.finished.load(Ordering::SeqCst), 2);
    shutdown.cancel();
}

/// An app that is gone: its port refuses every connection.
struct GoneApp;

#[async_trait]
impl ActorApp for GoneApp {
    async fn turn(&self, _: &Turn) -> Result<ActorAnswer, TurnError> {
        Err(TurnError {
            reason: "calling the app at http://127.0.0.1:1 failed: connection refused".into(),
            undelivered: true,
        })
    }

    async fn deactivate(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// A host whose app was killed before its sidecar hands a forwarded call back to be
/// routed again (the caller's sidecar retries until the host is seen gone) instead of
/// failing it; a call made on the host itself fails at once.
#[tokio::test]
async fn a_forwarded_call_to_a_gone_app_is_handed_back() {
    let key = Arc::new(PeerKey::generate());
    let (actors, shutdown) = host_with(Arc::new(GoneApp), key.clone()).await;
    let path = format!("{}T/a", super::FORWARD_PREFIX);
    let mut headers = HeaderMap::new();
    headers.insert(
        super::TURN_HEADER,
        http::HeaderValue::from_static("method%20m"),
    );
    key.sign_headers(&mut headers, "app", super::ACTORS_CALLEE, "PUT", &path)
        .expect("names that fit in headers");
    let answer = actors
        .serve_forwarded(&path, headers, Bytes::new())
        .await
        .expect("an answer, not an error");
    assert!(
        answer.headers.contains_key(super::RETRY_HEADER),
        "{answer:?}"
    );
    let error = actors.invoke(call("b")).await.unwrap_err();
    assert!(
        error.to_string().contains("connection refused"),
        "a local call fails with the reason: {error}"
    );
    shutdown.cancel();
}

fn reminder(id: &str, name: &str) -> super::ReminderRequest {
    super::ReminderRequest {
        actor_type: "T".into(),
        actor_id: id.into(),
        name: name.into(),
        due_time: "1h".into(),
        period: String::new(),
        ttl: String::new(),
        data: serde_json::Value::Null,
    }
}

/// Unregistering by type removes one actor's reminders, or all of the type's.
#[tokio::test]
async fn reminders_go_by_actor_or_by_type() {
    let (actors, shutdown) = host(Arc::new(SlowApp::default())).await;
    for (id, name) in [("a", "r1"), ("a", "r2"), ("b", "r1")] {
        actors
            .register_reminder(reminder(id, name))
            .await
            .expect("registered");
    }
    let names = |list: Vec<super::ReminderInfo>| {
        list.into_iter()
            .map(|r| format!("{}/{}", r.actor_id, r.name))
            .collect::<Vec<_>>()
    };
    actors
        .unregister_reminders("T", Some("a"))
        .await
        .expect("a's removed");
    let left = actors.list_reminders("T", None).await.expect("listed");
    assert_eq!(names(left), ["b/r1"]);
    actors
        .unregister_reminders("T", None)
        .await
        .expect("all removed");
    assert!(
        actors
            .list_reminders("T", None)
            .await
            .expect("listed")
            .is_empty()
    );
    shutdown.cancel();
}
