//! Bulk subscriptions (`bulkSubscribe`) end to end, on a private Redis: events reach an
//! HTTP app in batches (daprd's bulk envelope) and are settled one by one by the app's
//! statuses — `SUCCESS` acknowledged, `RETRY` and entries the answer leaves out
//! delivered again (never acknowledged), `DROP` acknowledged and not delivered again.
//! (Dead-letter topics apply to bulk entries as to single events: the same settling.)

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::Uri;
use common::Sidecar;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tandem_testkit::RedisServer;

const APP_ID: &str = "bulk-test";
const TOTAL: u64 = 40;

#[derive(Default)]
struct Seen {
    /// Batch sizes, in arrival order.
    batches: Vec<usize>,
    /// Deliveries of each number to the bulk route.
    deliveries: HashMap<u64, u32>,
    /// Numbers answered SUCCESS.
    done: Vec<u64>,
}

/// The app: `/batch` takes bulk envelopes and answers per entry — multiples of 7 are
/// left out of the answer the first time, n % 7 == 1 is answered RETRY the first time,
/// n == 5 is DROPped, the rest SUCCESS.
async fn app(seen: Arc<Mutex<Seen>>) -> u16 {
    let router = Router::new().fallback(move |uri: Uri, body: Bytes| {
        let seen = seen.clone();
        async move {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut seen = seen.lock();
            assert_eq!(uri.path(), "/batch");
            assert_eq!(body["type"], "com.dapr.event.sent.bulk");
            let entries = body["entries"].as_array().cloned().unwrap_or_default();
            seen.batches.push(entries.len());
            let mut statuses = Vec::new();
            for entry in entries {
                assert_eq!(entry["contentType"], "application/cloudevents+json");
                let n = entry["event"]["data"]["n"].as_u64().unwrap();
                let count = {
                    let count = seen.deliveries.entry(n).or_default();
                    *count += 1;
                    *count
                };
                let status = if n % 7 == 0 && count == 1 {
                    continue; // left out: must come again
                } else if n % 7 == 1 && count == 1 {
                    "RETRY"
                } else if n == 5 {
                    "DROP"
                } else {
                    seen.done.push(n);
                    "SUCCESS"
                };
                statuses.push(json!({"entryId": entry["entryId"], "status": status}));
            }
            axum::Json(json!({"statuses": statuses}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_subscriptions_settle_each_entry_by_the_app_s_status() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    std::fs::write(
        resources.join("pubsub.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: concurrency\n    value: 20\n  - name: processingTimeout\n    value: 1s\n  - name: redeliverInterval\n    value: 300ms\n",
            redis.address()
        ),
    )
    .unwrap();
    std::fs::write(
        resources.join("subscription.yaml"),
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: numbers\nspec:\n  pubsubname: pubsub\n  topic: numbers\n  routes:\n    default: /batch\n  bulkSubscribe:\n    enabled: true\n    maxMessagesCount: 10\n    maxAwaitDurationMs: 300\n",
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = app(seen.clone()).await;
    let home = dir.path().join("home");
    let sidecar = tokio::task::spawn_blocking(move || {
        Sidecar::start_with(&home, APP_ID, &resources, Some(port), None, &[], None, &[])
    })
    .await
    .unwrap();

    let client = reqwest::Client::new();
    let entries: Vec<Value> = (0..TOTAL)
        .map(|n| json!({"entryId": n.to_string(), "event": {"n": n}, "contentType": "application/json"}))
        .collect();
    let published = client
        .post(sidecar.url("/v1.0-alpha1/publish/bulk/pubsub/numbers"))
        .json(&entries)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 204);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        {
            let seen = seen.lock();
            let mut done = seen.done.clone();
            done.sort_unstable();
            done.dedup();
            if done.len() as u64 == TOTAL - 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "done {done:?}, batches {:?}",
                seen.batches
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::thread::sleep(Duration::from_millis(1500)); // a dropped entry would be back by now
    let seen = seen.lock();
    assert_eq!(seen.deliveries[&5], 1, "a DROPped entry is acknowledged");
    assert!(
        seen.batches.iter().any(|size| *size > 1),
        "events arrive in batches: {:?}",
        seen.batches
    );
    assert!(
        seen.batches.iter().all(|size| *size <= 10),
        "{:?}",
        seen.batches
    );
    for n in (0..TOTAL).filter(|n| n % 7 == 0 || n % 7 == 1) {
        assert!(
            seen.deliveries[&n] >= 2,
            "{n} was left out or retried, so it came again"
        );
    }
    assert!(!seen.done.contains(&5));
    drop(seen);
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.pending("numbers", APP_ID) > 0 {
        assert!(
            Instant::now() < deadline,
            "all settled entries are acknowledged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
