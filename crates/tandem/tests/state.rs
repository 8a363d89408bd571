//! The state API and its first-level cache, end to end through the binary: values
//! written over HTTP read back identically over gRPC, ETag conflicts, transactions, a
//! write through one sidecar seen by another with a warm cache, stampede protection,
//! and a lost backplane.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Sidecar;
use serde_json::{Value, json};
use tandem_proto::common::{Etag, StateItem};
use tandem_proto::runtime::{GetStateRequest, SaveStateRequest};
use tandem_testkit::RedisServer;

/// A state store on a SQLite file shared by every sidecar of the test, with a
/// first-level cache that keeps entries for a minute unless told otherwise.
fn write_store(dir: &Path, database: &Path, backplane: Option<&str>) {
    let backplane = backplane
        .map(|address| format!("  - name: cacheBackplane\n    value: \"{address}\"\n"))
        .unwrap_or_default();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("statestore.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: cacheTTL\n    value: 60s\n  - name: cacheMaxEntries\n    value: \"1000\"\n{backplane}",
            database.display()
        ),
    )
    .unwrap();
}

async fn start(dir: &Path) -> Sidecar {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Sidecar::start_as("cache-test", &dir, None, None))
        .await
        .unwrap()
}

async fn cache_stats(http: &reqwest::Client, sidecar: &Sidecar) -> Value {
    let metadata: Value = http
        .get(sidecar.url("/v1.0/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    metadata["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|component| component["name"] == "statestore")
        .unwrap()["cache"]
        .clone()
}

async fn save(http: &reqwest::Client, sidecar: &Sidecar, body: Value) -> reqwest::Response {
    http.post(sidecar.url("/v1.0/state/statestore"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn read(
    http: &reqwest::Client,
    sidecar: &Sidecar,
    key: &str,
) -> (u16, String, Option<String>) {
    let response = http
        .get(sidecar.url(&format!("/v1.0/state/statestore/{key}")))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|etag| etag.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), etag)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_and_grpc_see_the_same_values_etags_and_transactions() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &dir.path().join("state.db"), None);
    let sidecar = start(dir.path()).await;
    let http = reqwest::Client::new();

    // Sent as text: the stored value is exactly the JSON written, key order included.
    let saved = http
        .post(sidecar.url("/v1.0/state/statestore"))
        .header("content-type", "application/json")
        .body(r#"[{"key": "order", "value": {"product":"falafel","n":2}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 204);
    let (status, body, etag) = read(&http, &sidecar, "order").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"product":"falafel","n":2}"#)
    );
    let etag = etag.expect("an ETag header");

    let mut grpc = sidecar.grpc().await;
    let got = grpc
        .get_state(GetStateRequest {
            store_name: "statestore".into(),
            key: "order".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data, br#"{"product":"falafel","n":2}"#);
    assert_eq!(got.etag, etag);

    // A stale ETag: 409 over HTTP, ABORTED over gRPC.
    grpc.save_state(SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![StateItem {
            key: "order".into(),
            value: b"\"over grpc\"".to_vec(),
            etag: Some(Etag {
                value: etag.clone(),
            }),
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    let stale = save(
        &http,
        &sidecar,
        json!([{"key": "order", "value": 1, "etag": etag}]),
    )
    .await;
    assert_eq!(stale.status(), 409);
    assert_eq!(
        stale.json::<Value>().await.unwrap()["errorCode"],
        "ERR_STATE_SAVE"
    );
    let status = grpc
        .save_state(SaveStateRequest {
            store_name: "statestore".into(),
            states: vec![StateItem {
                key: "order".into(),
                value: b"1".to_vec(),
                etag: Some(Etag { value: etag }),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(read(&http, &sidecar, "order").await.1, "\"over grpc\"");

    // Transactions are all or nothing; deletes take If-Match.
    let transaction = http
        .post(sidecar.url("/v1.0/state/statestore/transaction"))
        .json(&json!({"operations": [
            {"operation": "upsert", "request": {"key": "a", "value": "A"}},
            {"operation": "delete", "request": {"key": "order", "etag": "1"}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(transaction.status(), 409);
    assert_eq!(read(&http, &sidecar, "a").await.0, 204);
    let (_, _, etag) = read(&http, &sidecar, "order").await;
    let deleted = http
        .delete(sidecar.url("/v1.0/state/statestore/order"))
        .header("If-Match", etag.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(read(&http, &sidecar, "order").await.0, 204);

    let bulk: Value = http
        .post(sidecar.url("/v1.0/state/statestore/bulk"))
        .json(&json!({"keys": ["a", "missing"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk, json!([{"key": "a"}, {"key": "missing"}]));
    let unknown = save(&http, &sidecar, json!([])).await;
    assert_eq!(unknown.status(), 204);
    common::assert_error(
        http.get(sidecar.url("/v1.0/state/nope/a"))
            .send()
            .await
            .unwrap(),
        400,
        "ERR_STATE_STORE_NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_sidecar_reaches_another_sidecars_warm_cache() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("state.db");
    write_store(&dir.path().join("a"), &database, Some(&redis.address()));
    write_store(&dir.path().join("b"), &database, Some(&redis.address()));
    let (a, b) = (
        start(&dir.path().join("a")).await,
        start(&dir.path().join("b")).await,
    );
    let http = reqwest::Client::new();

    save(&http, &a, json!([{"key": "price", "value": 10}])).await;
    assert_eq!(read(&http, &b, "price").await.1, "10");
    assert_eq!(read(&http, &b, "price").await.1, "10");
    assert_eq!(
        cache_stats(&http, &b).await["l1Hits"],
        1,
        "B's second read came from its cache"
    );

    save(&http, &a, json!([{"key": "price", "value": 12}])).await;
    // The cache keeps entries for a minute: only the backplane can make B see 12 now.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if read(&http, &b, "price").await.1 == "12" {
            break;
        }
        assert!(Instant::now() < deadline, "B still serves the old value");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_reads_of_a_cold_key_make_one_store_read() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &dir.path().join("state.db"), None);
    let sidecar = start(dir.path()).await;
    let http = reqwest::Client::new();
    // Written by another sidecar of the store: this one's cache has never seen it.
    let other = tempfile::tempdir().unwrap();
    write_store(other.path(), &dir.path().join("state.db"), None);
    let writer = start(other.path()).await;
    save(
        &http,
        &writer,
        json!([{"key": "hot", "value": "x".repeat(1024)}]),
    )
    .await;

    let before = cache_stats(&http, &sidecar).await["storeReads"]
        .as_u64()
        .unwrap();
    let reads = (0..1000).map(|_| {
        let (http, url) = (http.clone(), sidecar.url("/v1.0/state/statestore/hot"));
        tokio::spawn(async move { http.get(url).send().await.unwrap().status().as_u16() })
    });
    for read in reads.collect::<Vec<_>>() {
        assert_eq!(read.await.unwrap(), 200);
    }
    let stats = cache_stats(&http, &sidecar).await;
    assert_eq!(stats["storeReads"].as_u64().unwrap() - before, 1, "{stats}");
    assert_eq!(stats["l2Hits"], 1);
    assert_eq!(stats["l1Hits"].as_u64().unwrap() + 1, 1000);
    assert_eq!(stats["entries"], 1);
    assert!(stats["bytes"].as_u64().unwrap() > 0 || stats["entries"] == 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_backplane_empties_and_bypasses_the_cache_until_it_is_back() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("state.db");
    write_store(&dir.path().join("a"), &database, Some(&redis.address()));
    write_store(&dir.path().join("b"), &database, Some(&redis.address()));
    let (a, b) = (
        start(&dir.path().join("a")).await,
        start(&dir.path().join("b")).await,
    );
    let http = reqwest::Client::new();
    save(&http, &a, json!([{"key": "k", "value": 1}])).await;
    read(&http, &b, "k").await;
    assert_eq!(cache_stats(&http, &b).await["entries"], 1);

    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache_stats(&http, &b).await["active"] != false {
        assert!(
            Instant::now() < deadline,
            "B did not notice the backplane is gone"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cache_stats(&http, &b).await["entries"],
        0,
        "the cache was emptied"
    );
    // A's notice cannot travel now, yet B is never stale: it reads the store.
    save(&http, &a, json!([{"key": "k", "value": 2}])).await;
    assert_eq!(read(&http, &b, "k").await.1, "2");
    assert_eq!(read(&http, &b, "k").await.1, "2");
    assert_eq!(cache_stats(&http, &b).await["entries"], 0);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while cache_stats(&http, &b).await["active"] != true {
        assert!(
            Instant::now() < deadline,
            "B did not reconnect to the backplane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read(&http, &b, "k").await;
    let hits = cache_stats(&http, &b).await["l1Hits"].as_u64().unwrap();
    read(&http, &b, "k").await;
    assert_eq!(
        cache_stats(&http, &b).await["l1Hits"].as_u64().unwrap(),
        hits + 1,
        "the cache is used again"
    );
}

/// A `state.redis` store whose own client does not retry, and a Resiliency resource
/// giving it a patient outbound retry policy.
fn write_redis_store_with_retries(dir: &Path, redis: &RedisServer) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("statestore.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: maxRetries\n    value: \"0\"\n  - name: dialTimeout\n    value: 200ms\n  - name: cacheTTL\n    value: 60s\n",
            redis.address()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("resiliency.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: store-retries\nspec:\n  policies:\n    retries:\n      patient:\n        policy: constant\n        duration: 200ms\n        maxRetries: 50\n  targets:\n    components:\n      statestore:\n        outbound:\n          retry: patient\n",
    )
    .unwrap();
}

/// Stops `redis`, and starts it again (empty) on the same port after `down`.
fn outage(mut redis: RedisServer, down: Duration) -> std::thread::JoinHandle<RedisServer> {
    redis.stop();
    std::thread::spawn(move || {
        std::thread::sleep(down);
        redis.restart();
        redis
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn saves_and_cold_reads_go_through_the_stores_outbound_policy() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_redis_store_with_retries(dir.path(), &redis);
    let sidecar = start(dir.path()).await;
    let http = reqwest::Client::new();

    // Redis goes away for a second and a half: the save is retried until it is back.
    let back = outage(redis, Duration::from_millis(1500));
    let started = Instant::now();
    let saved = save(&http, &sidecar, json!([{"key": "order", "value": 1}])).await;
    assert_eq!(saved.status(), 204, "{}", saved.text().await.unwrap());
    assert!(started.elapsed() >= Duration::from_secs(1));
    let redis = back.join().unwrap();

    // Same for a read the first level does not have.
    let back = outage(redis, Duration::from_millis(1500));
    let (status, _, _) = read(&http, &sidecar, "never-cached").await;
    assert_eq!(status, 204);
    let redis = back.join().unwrap();
    drop(redis);
}
