//! One conformance suite, run against every state store with its real backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_components::state::{
    self, Concurrency, DeleteRequest, Feature, InvalidRequest, MAX_TTL, Operation, SetRequest,
    StateError, StateStore,
};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::{PostgresServer, RedisServer};

async fn build(kind: &str, values: &[(&str, &str)]) -> Arc<dyn StateStore> {
    try_build(kind, values)
        .await
        .unwrap_or_else(|error| panic!("{kind} builds: {error}"))
}

async fn try_build(
    kind: &str,
    values: &[(&str, &str)],
) -> Result<Arc<dyn StateStore>, tandem_spec::ResourceError> {
    let component = Component::new("statestore", kind);
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    state::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
}

fn set(key: &str, value: &[u8]) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: Bytes::copy_from_slice(value),
        etag: None,
        concurrency: Concurrency::LastWrite,
        ttl: None,
    }
}

fn delete(key: &str, etag: Option<&str>) -> DeleteRequest {
    DeleteRequest {
        key: key.into(),
        etag: etag.map(str::to_owned),
        concurrency: Concurrency::LastWrite,
    }
}

async fn value(store: &Arc<dyn StateStore>, key: &str) -> Option<Vec<u8>> {
    store
        .get(key)
        .await
        .unwrap()
        .map(|stored| stored.value.to_vec())
}

/// Every test key lives under a prefix unique to this run, so suites sharing a
/// server never meet.
fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}||{name}")
}

async fn crud(store: Arc<dyn StateStore>, p: &str) {
    let k = key(p, "order-1");
    assert_eq!(store.get(&k).await.unwrap(), None);
    let first = store
        .set(set(&k, br#"{"product":"falafel"}"#))
        .await
        .unwrap();
    let stored = store.get(&k).await.unwrap().unwrap();
    assert_eq!(stored.value.as_ref(), br#"{"product":"falafel"}"#);
    assert_eq!(stored.etag, first);
    let second = store.set(set(&k, b"2")).await.unwrap();
    assert_ne!(first, second, "every write gets a new ETag");
    assert_eq!(value(&store, &k).await.as_deref(), Some(&b"2"[..]));
    store.delete(delete(&k, None)).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None);
    store
        .delete(delete(&k, None))
        .await
        .expect("deleting a missing key is fine");
}

async fn bulk(store: Arc<dyn StateStore>, p: &str) {
    let keys: Vec<String> = (0..5).map(|n| key(p, &format!("bulk-{n}"))).collect();
    for (n, k) in keys.iter().enumerate().take(4) {
        store.set(set(k, n.to_string().as_bytes())).await.unwrap();
    }
    let results = store.bulk_get(&keys).await;
    assert_eq!(results.len(), 5);
    for (n, result) in results.iter().enumerate().take(4) {
        assert_eq!(
            result.as_ref().unwrap().as_ref().unwrap().value,
            n.to_string().as_bytes()
        );
    }
    assert_eq!(results[4].as_ref().unwrap(), &None);
}

async fn etags(store: Arc<dyn StateStore>, p: &str) {
    let k = key(p, "etag");
    let etag = store.set(set(&k, b"v1")).await.unwrap();
    // Two writers read the same ETag and race: exactly one wins.
    let writers: Vec<_> = (0..2)
        .map(|n| {
            let store = store.clone();
            let request = SetRequest {
                etag: Some(etag.clone()),
                concurrency: Concurrency::FirstWrite,
                ..set(&k, format!("writer {n}").as_bytes())
            };
            tokio::spawn(async move { store.set(request).await })
        })
        .collect();
    let mut wins = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StateError::EtagMismatch(_)) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1, "first write wins exactly once");

    let stale = store
        .set(SetRequest {
            etag: Some(etag.clone()),
            ..set(&k, b"late")
        })
        .await;
    assert!(
        matches!(stale, Err(StateError::EtagMismatch(_))),
        "{stale:?}"
    );
    let invalid = store
        .set(SetRequest {
            etag: Some("not-an-etag".into()),
            ..set(&k, b"x")
        })
        .await;
    assert!(
        matches!(invalid, Err(StateError::InvalidEtag(_))),
        "{invalid:?}"
    );

    // first-write without an ETag only creates.
    let create_again = store
        .set(SetRequest {
            concurrency: Concurrency::FirstWrite,
            ..set(&k, b"x")
        })
        .await;
    assert!(matches!(create_again, Err(StateError::EtagMismatch(_))));
    let fresh = key(p, "etag-fresh");
    store
        .set(SetRequest {
            concurrency: Concurrency::FirstWrite,
            ..set(&fresh, b"x")
        })
        .await
        .unwrap();

    let current = store.get(&k).await.unwrap().unwrap().etag;
    let wrong_delete = store.delete(delete(&k, Some(&etag))).await;
    assert!(matches!(wrong_delete, Err(StateError::EtagMismatch(_))));
    store.delete(delete(&k, Some(&current))).await.unwrap();

    // An ETag read before a delete never matches the key created again afterwards.
    let recreated = store.set(set(&k, b"again")).await.unwrap();
    assert_ne!(recreated, current);
    let old = store
        .set(SetRequest {
            etag: Some(current),
            ..set(&k, b"x")
        })
        .await;
    assert!(matches!(old, Err(StateError::EtagMismatch(_))));
}

/// `operations` as one transaction, or — on a store without transactions — one at a
/// time (a transaction of one operation), after checking that the store refuses them
/// together, writing nothing.
async fn apply(store: &Arc<dyn StateStore>, operations: Vec<Operation>) {
    if store.features().contains(&Feature::Transactional) || operations.len() < 2 {
        store.transact(operations).await.unwrap();
        return;
    }
    let refused = store.transact(operations.clone()).await;
    assert!(
        matches!(
            refused,
            Err(StateError::Invalid(InvalidRequest::TooManyOperations {
                max: 1,
                ..
            }))
        ),
        "{refused:?}"
    );
    for operation in operations {
        store.transact(vec![operation]).await.unwrap();
    }
}

async fn transactions(store: Arc<dyn StateStore>, p: &str) {
    if !store.features().contains(&Feature::Transactional) {
        // Several operations are refused before anything is written; one is applied.
        let (a, b) = (key(p, "tx-a"), key(p, "tx-b"));
        store.set(set(&b, b"b")).await.unwrap();
        apply(
            &store,
            vec![
                Operation::Upsert(set(&a, b"a")),
                Operation::Delete(delete(&b, None)),
            ],
        )
        .await;
        assert_eq!(value(&store, &a).await.as_deref(), Some(&b"a"[..]));
        assert_eq!(value(&store, &b).await, None);
        return;
    }
    let (a, b, c) = (key(p, "tx-a"), key(p, "tx-b"), key(p, "tx-c"));
    store.set(set(&b, b"b")).await.unwrap();
    let c_etag = store.set(set(&c, b"c")).await.unwrap();
    store
        .transact(vec![
            Operation::Upsert(set(&a, b"a")),
            Operation::Delete(delete(&b, None)),
        ])
        .await
        .unwrap();
    assert_eq!(value(&store, &a).await.as_deref(), Some(&b"a"[..]));
    assert_eq!(value(&store, &b).await, None);

    // A failing operation rolls back the ones before it.
    store.set(set(&c, b"c2")).await.unwrap(); // c_etag is stale now
    let failed = store
        .transact(vec![
            Operation::Upsert(set(&a, b"changed")),
            Operation::Upsert(set(&b, b"back")),
            Operation::Delete(delete(&c, Some(&c_etag))),
        ])
        .await;
    assert!(
        matches!(failed, Err(StateError::EtagMismatch(_))),
        "{failed:?}"
    );
    assert_eq!(value(&store, &a).await.as_deref(), Some(&b"a"[..]));
    assert_eq!(value(&store, &b).await, None);
    assert_eq!(value(&store, &c).await.as_deref(), Some(&b"c2"[..]));
}

async fn ttl(store: Arc<dyn StateStore>, p: &str) {
    if !store.features().contains(&Feature::Ttl) {
        return;
    }
    let k = key(p, "ttl");
    store
        .set(SetRequest {
            ttl: Some(Duration::from_secs(1)),
            ..set(&k, b"short-lived")
        })
        .await
        .unwrap();
    assert!(store.get(&k).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        store.get(&k).await.unwrap(),
        None,
        "expired values are gone"
    );
    // Writing without a TTL makes a value permanent again.
    store
        .set(SetRequest {
            ttl: Some(Duration::from_secs(1)),
            ..set(&k, b"x")
        })
        .await
        .unwrap();
    store.set(set(&k, b"forever")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(value(&store, &k).await.as_deref(), Some(&b"forever"[..]));
}

/// The largest value a store holds, if it has a limit (DynamoDB's 400 KB items): larger
/// values are then checked to be refused, writing nothing, instead of stored.
type MaxValue = Option<usize>;

/// `value` is written and reads back, or — past `max` — is refused as invalid and
/// leaves the key as it was.
async fn round_trips_or_is_refused(
    store: &Arc<dyn StateStore>,
    k: &str,
    bytes: &[u8],
    max: MaxValue,
) {
    match max {
        Some(max) if bytes.len() > max => {
            let before = value(store, k).await;
            let refused = store.set(set(k, bytes)).await;
            assert!(
                matches!(refused, Err(StateError::Invalid(_))),
                "{refused:?}"
            );
            let in_transaction = store
                .transact(vec![
                    Operation::Upsert(set(&format!("{k}-companion"), b"c")),
                    Operation::Upsert(set(k, bytes)),
                ])
                .await;
            assert!(
                matches!(in_transaction, Err(StateError::Invalid(_))),
                "{in_transaction:?}"
            );
            assert_eq!(value(store, &format!("{k}-companion")).await, None);
            assert_eq!(value(store, k).await, before);
            // Just under the limit works.
            let fits = &bytes[..max - 1024];
            store.set(set(k, fits)).await.unwrap();
            assert_eq!(value(store, k).await.unwrap(), fits);
        }
        _ => {
            store.set(set(k, bytes)).await.unwrap();
            assert_eq!(value(store, k).await.unwrap(), bytes);
        }
    }
}

async fn unusual_data(store: Arc<dyn StateStore>, p: &str, max: MaxValue) {
    let unicode = key(p, "ключ-🔑-鍵 with spaces/and||bars");
    store
        .set(set(&unicode, "värde ✓".as_bytes()))
        .await
        .unwrap();
    assert_eq!(value(&store, &unicode).await.unwrap(), "värde ✓".as_bytes());
    let binary = key(p, "binary");
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    store.set(set(&binary, &bytes)).await.unwrap();
    assert_eq!(value(&store, &binary).await.unwrap(), bytes);
    let large = key(p, "large");
    let mebibyte: Vec<u8> = (0..1024 * 1024).map(|n| (n % 251) as u8).collect();
    round_trips_or_is_refused(&store, &large, &mebibyte, max).await;
}

/// The largest TTL works; anything longer is refused with a typed error and writes
/// nothing — alone or in the middle of a transaction — and the store keeps working.
async fn ttl_extremes(store: Arc<dyn StateStore>, p: &str) {
    let far = key(p, "ttl-max");
    let etag = store
        .set(SetRequest {
            ttl: Some(MAX_TTL),
            ..set(&far, b"for centuries")
        })
        .await
        .expect("MAX_TTL is accepted");
    let stored = store.get(&far).await.unwrap().expect("the key is there");
    assert_eq!(
        (stored.value.as_ref(), stored.etag.as_str()),
        (&b"for centuries"[..], etag.as_str())
    );

    let too_long = key(p, "ttl-too-long");
    for ttl in [MAX_TTL + Duration::from_secs(1), Duration::MAX] {
        let refused = store
            .set(SetRequest {
                ttl: Some(ttl),
                ..set(&too_long, b"never written")
            })
            .await;
        assert!(
            matches!(
                refused,
                Err(StateError::Invalid(InvalidRequest::TtlOutOfRange { .. }))
            ),
            "{ttl:?}: {refused:?}"
        );
        assert_eq!(store.get(&too_long).await.unwrap(), None, "{ttl:?}");
        // Overwriting an existing key with a bad TTL leaves the old value.
        let refused = store
            .set(SetRequest {
                ttl: Some(ttl),
                ..set(&far, b"overwritten")
            })
            .await;
        assert!(
            matches!(refused, Err(StateError::Invalid(_))),
            "{refused:?}"
        );
        let kept = store.get(&far).await.unwrap().unwrap();
        assert_eq!(
            (kept.value.as_ref(), kept.etag),
            (&b"for centuries"[..], etag.clone())
        );
    }

    let (x, y, z) = (key(p, "ttl-tx-x"), key(p, "ttl-tx-y"), key(p, "ttl-tx-z"));
    store.set(set(&z, b"z before")).await.unwrap();
    let refused = store
        .transact(vec![
            Operation::Upsert(set(&x, b"x")),
            Operation::Upsert(SetRequest {
                ttl: Some(MAX_TTL + Duration::from_secs(1)),
                ..set(&y, b"y")
            }),
            Operation::Upsert(set(&z, b"z")),
            Operation::Delete(delete(&far, None)),
        ])
        .await;
    assert!(
        matches!(refused, Err(StateError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(
        value(&store, &x).await,
        None,
        "nothing of the transaction is written"
    );
    assert_eq!(value(&store, &y).await, None);
    assert_eq!(value(&store, &z).await.as_deref(), Some(&b"z before"[..]));
    assert!(value(&store, &far).await.is_some());

    // Still working, for writes with and without TTLs.
    apply(
        &store,
        vec![
            Operation::Upsert(set(&x, b"x")),
            Operation::Upsert(SetRequest {
                ttl: Some(Duration::from_secs(3600)),
                ..set(&y, b"y")
            }),
        ],
    )
    .await;
    assert_eq!(value(&store, &x).await.as_deref(), Some(&b"x"[..]));
    assert_eq!(value(&store, &y).await.as_deref(), Some(&b"y"[..]));
}

/// Values of a few megabytes, empty values, and unicode keys round-trip, alone and
/// in transactions.
async fn extreme_data(store: Arc<dyn StateStore>, p: &str, max: MaxValue) {
    let big = key(p, "big");
    let megabytes: Vec<u8> = (0..4 * 1024 * 1024).map(|n| (n % 253) as u8).collect();
    round_trips_or_is_refused(&store, &big, &megabytes, max).await;

    let empty = key(p, "empty");
    let etag = store.set(set(&empty, b"")).await.unwrap();
    let stored = store
        .get(&empty)
        .await
        .unwrap()
        .expect("an empty value exists");
    assert_eq!((stored.value.len(), stored.etag), (0, etag));

    let unicode = key(p, "日本語-ключ-🔑");
    apply(
        &store,
        vec![
            Operation::Upsert(set(&unicode, "🔑".as_bytes())),
            Operation::Upsert(set(&empty, b"")),
        ],
    )
    .await;
    assert_eq!(value(&store, &unicode).await.unwrap(), "🔑".as_bytes());
    assert_eq!(value(&store, &empty).await.unwrap(), b"");
    assert!(
        store.features().contains(&Feature::Etag),
        "{:?}",
        store.features()
    );
}

async fn conformance(store: Arc<dyn StateStore>) {
    conformance_within(store, None).await;
}

async fn conformance_within(store: Arc<dyn StateStore>, max: MaxValue) {
    let p = format!("conformance-{}", uuid_like());
    crud(store.clone(), &p).await;
    bulk(store.clone(), &p).await;
    etags(store.clone(), &p).await;
    transactions(store.clone(), &p).await;
    ttl(store.clone(), &p).await;
    unusual_data(store.clone(), &p, max).await;
    ttl_extremes(store.clone(), &p).await;
    extreme_data(store.clone(), &p, max).await;
    listing(store, &p).await;
}

/// A store with the query API lists exactly the live values under a prefix (taken
/// literally: `%` and `_` are not wildcards); one without it says so.
async fn listing(store: Arc<dyn StateStore>, p: &str) {
    let prefix = format!("{p}-list_%||");
    if !store.features().contains(&Feature::Query) {
        assert!(store.scan(&prefix).await.unwrap().is_none());
        return;
    }
    for name in ["a", "b", "gone", "brief"] {
        let mut request = set(
            &format!("{prefix}{name}"),
            format!("{{\"n\":\"{name}\"}}").as_bytes(),
        );
        if name == "brief" {
            request.ttl = Some(Duration::from_millis(300));
        }
        store.set(request).await.unwrap();
    }
    store
        .set(set(&format!("{p}-listX%||a"), b"1"))
        .await
        .unwrap();
    store
        .set(set(&format!("{p}-list_%|other"), b"1"))
        .await
        .unwrap();
    store
        .delete(delete(&format!("{prefix}gone"), None))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut found = store
        .scan(&prefix)
        .await
        .unwrap()
        .expect("the store lists its keys");
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, [format!("{prefix}a"), format!("{prefix}b")]);
    assert_eq!(&found[0].1.value[..], br#"{"n":"a"}"#);
    assert_eq!(
        Some(found[0].1.etag.clone()),
        store
            .get(&found[0].0)
            .await
            .unwrap()
            .map(|stored| stored.etag)
    );
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn in_memory_conforms() {
    conformance(build("state.in-memory", &[]).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db").display().to_string();
    conformance(build("state.sqlite", &[("connectionString", &path)]).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_is_shared_by_two_sidecars_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tandem.db").display().to_string();
    let a = build("state.sqlite", &[("connectionString", &path)]).await;
    let b = build("state.sqlite", &[("connectionString", &path)]).await;
    let etag = a.set(set("shared", b"from a")).await.unwrap();
    let seen = b.get("shared").await.unwrap().unwrap();
    assert_eq!(
        (seen.value.as_ref(), seen.etag.as_str()),
        (&b"from a"[..], etag.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_conforms() {
    let server = RedisServer::start();
    conformance(build("state.redis", &[("redisHost", &server.address())]).await).await;
}

/// Keys are hashes `{data, version}` as in Dapr's component: tandem reads what daprd
/// wrote, and writes what daprd reads.
#[tokio::test(flavor = "multi_thread")]
async fn redis_uses_daprs_layout() {
    let server = RedisServer::start();
    let store = build("state.redis", &[("redisHost", &server.address())]).await;

    server
        .cli(&[
            "HSET",
            "app||from-dapr",
            "data",
            r#"{"n":1}"#,
            "version",
            "3",
        ])
        .unwrap();
    let stored = store.get("app||from-dapr").await.unwrap().unwrap();
    assert_eq!(
        (stored.value.as_ref(), stored.etag.as_str()),
        (&br#"{"n":1}"#[..], "3")
    );
    let etag = store
        .set(SetRequest {
            etag: Some("3".into()),
            ..set("app||from-dapr", b"from tandem")
        })
        .await
        .unwrap();
    assert_eq!(etag, "4", "the key's own version, plus one");
    assert_eq!(
        server.cli(&["HGET", "app||from-dapr", "data"]).as_deref(),
        Some("from tandem")
    );
    assert_eq!(
        server.cli(&["HGET", "app||from-dapr", "version"]),
        Some(etag)
    );

    // A key that is not a hash is an error, and a transaction touching it changes nothing.
    server.cli(&["SET", "app||plain", "x"]).unwrap();
    assert!(matches!(
        store.get("app||plain").await,
        Err(StateError::Store(_))
    ));
    let failed = store
        .transact(vec![
            Operation::Upsert(set("app||tx-first", b"1")),
            Operation::Upsert(set("app||plain", b"2")),
        ])
        .await;
    assert!(matches!(failed, Err(StateError::Store(_))), "{failed:?}");
    assert_eq!(store.get("app||tx-first").await.unwrap(), None);
    assert_eq!(server.cli(&["GET", "app||plain"]).as_deref(), Some("x"));

    // Operations on one key within a transaction see each other.
    store
        .transact(vec![
            Operation::Upsert(set("app||twice", b"1")),
            Operation::Delete(delete("app||twice", None)),
            Operation::Upsert(SetRequest {
                concurrency: Concurrency::FirstWrite,
                ..set("app||twice", b"2")
            }),
        ])
        .await
        .unwrap();
    assert_eq!(
        value(&store, "app||twice").await.as_deref(),
        Some(&b"2"[..])
    );
}

/// Each key has its own version, counted as daprd counts it: `HINCRBY version 1` on
/// every write, from 1 for a new key (also after a delete), in single writes and
/// transactions alike.
#[tokio::test(flavor = "multi_thread")]
async fn redis_etags_are_daprs_per_key_versions() {
    let server = RedisServer::start();
    let store = build("state.redis", &[("redisHost", &server.address())]).await;
    let mut etags = Vec::new();
    for name in ["app||key_1", "app||key_2", "app||key_3"] {
        etags.push(store.set(set(name, b"v1")).await.unwrap());
    }
    store
        .transact(vec![Operation::Upsert(set("app||key_1", b"v2"))])
        .await
        .unwrap();
    etags.push(store.get("app||key_1").await.unwrap().unwrap().etag);
    assert_eq!(etags, ["1", "1", "1", "2"]);

    // Several writes to one key in one transaction count one each.
    store
        .transact(vec![
            Operation::Upsert(set("app||key_2", b"a")),
            Operation::Upsert(SetRequest {
                etag: Some("2".into()),
                ..set("app||key_2", b"b")
            }),
        ])
        .await
        .unwrap();
    let stored = store.get("app||key_2").await.unwrap().unwrap();
    assert_eq!(
        (stored.value.as_ref(), stored.etag.as_str()),
        (&b"b"[..], "3")
    );

    // A deleted key starts over at 1, as on Dapr.
    store.delete(delete("app||key_3", Some("1"))).await.unwrap();
    assert_eq!(store.set(set("app||key_3", b"again")).await.unwrap(), "1");

    // What daprd's scripts would read: a hash with `data` and a numeric `version`.
    assert_eq!(
        server.cli(&["HGET", "app||key_1", "version"]).as_deref(),
        Some("2")
    );
    assert_eq!(
        server.cli(&["HGET", "app||key_1", "data"]).as_deref(),
        Some("v2")
    );
}

/// Hashes exactly as daprd leaves them — with a `first-write` field, or data without a
/// version — are read and updated to the next version.
#[tokio::test(flavor = "multi_thread")]
async fn redis_reads_and_updates_what_daprd_wrote() {
    let server = RedisServer::start();
    let store = build("state.redis", &[("redisHost", &server.address())]).await;

    // daprd's first-write save of a new key: data, version 1, first-write 0.
    server
        .cli(&[
            "HSET",
            "app||dapr-fw",
            "data",
            "\"hi\"",
            "version",
            "1",
            "first-write",
            "0",
        ])
        .unwrap();
    let stored = store.get("app||dapr-fw").await.unwrap().unwrap();
    assert_eq!(
        (stored.value.as_ref(), stored.etag.as_str()),
        (&b"\"hi\""[..], "1")
    );
    // daprd refuses a write without an ETag to such a key; so does tandem.
    let refused = store.set(set("app||dapr-fw", b"no etag")).await;
    assert!(
        matches!(refused, Err(StateError::EtagMismatch(_))),
        "{refused:?}"
    );
    let etag = store
        .set(SetRequest {
            etag: Some("1".into()),
            ..set("app||dapr-fw", b"with etag")
        })
        .await
        .unwrap();
    assert_eq!(etag, "2");
    assert_eq!(
        server.cli(&["HGET", "app||dapr-fw", "version"]).as_deref(),
        Some("2")
    );

    // A hash with data and no version reads as version 0; its next write makes it 1.
    server
        .cli(&["HSET", "app||data-only", "data", "x"])
        .unwrap();
    assert_eq!(
        store.get("app||data-only").await.unwrap().unwrap().etag,
        "0"
    );
    assert_eq!(
        store
            .set(SetRequest {
                etag: Some("0".into()),
                ..set("app||data-only", b"y")
            })
            .await
            .unwrap(),
        "1"
    );

    // An ETag naming a key that does not exist is a mismatch, and creates nothing.
    let missing = store
        .set(SetRequest {
            etag: Some("1".into()),
            ..set("app||missing", b"x")
        })
        .await;
    assert!(
        matches!(missing, Err(StateError::EtagMismatch(_))),
        "{missing:?}"
    );
    assert_eq!(
        server.cli(&["EXISTS", "app||missing"]).as_deref(),
        Some("0")
    );

    // A version HINCRBY cannot increment is refused before anything is written.
    server
        .cli(&["HSET", "app||odd-version", "data", "x", "version", "v7"])
        .unwrap();
    let refused = store
        .transact(vec![
            Operation::Upsert(set("app||before-odd", b"1")),
            Operation::Upsert(set("app||odd-version", b"2")),
        ])
        .await;
    assert!(matches!(refused, Err(StateError::Store(_))), "{refused:?}");
    assert_eq!(store.get("app||before-odd").await.unwrap(), None);
}

/// A TTL Redis would refuse (or any failure after the first write) must never leave
/// half a transaction behind: Redis does not roll a script back.
#[tokio::test(flavor = "multi_thread")]
async fn redis_transactions_are_all_or_nothing() {
    let server = RedisServer::start();
    let store = build("state.redis", &[("redisHost", &server.address())]).await;
    let refused = store
        .transact(vec![
            Operation::Upsert(set("app||x", b"x")),
            Operation::Upsert(SetRequest {
                ttl: Some(Duration::from_secs(u64::MAX / 2)),
                ..set("app||y", b"y")
            }),
            Operation::Upsert(set("app||z", b"z")),
        ])
        .await;
    assert!(refused.is_err());
    assert_eq!(
        server
            .cli(&["EXISTS", "app||x", "app||y", "app||z"])
            .as_deref(),
        Some("0")
    );
    let refused = store
        .set(SetRequest {
            ttl: Some(Duration::from_secs(u64::MAX / 2)),
            ..set("app||single", b"s")
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(server.cli(&["EXISTS", "app||single"]).as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_applies_the_default_ttl() {
    let server = RedisServer::start();
    let store = build(
        "state.redis",
        &[("redisHost", &server.address()), ("ttlInSeconds", "100")],
    )
    .await;
    store.set(set("app||default-ttl", b"x")).await.unwrap();
    let ttl: i64 = server
        .cli(&["PTTL", "app||default-ttl"])
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100_000).contains(&ttl), "PTTL {ttl}");
    store
        .set(SetRequest {
            ttl: Some(Duration::from_secs(5)),
            ..set("app||default-ttl", b"x")
        })
        .await
        .unwrap();
    let ttl: i64 = server
        .cli(&["PTTL", "app||default-ttl"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=5_000).contains(&ttl),
        "the write's own TTL wins: PTTL {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_recovers_after_a_server_restart() {
    let mut server = RedisServer::start();
    let store = build("state.redis", &[("redisHost", &server.address())]).await;
    store.set(set("app||before", b"1")).await.unwrap();
    // An empty server again: no data, and no loaded scripts (NOSCRIPT). The first
    // request after it meets the dead connection, and must still succeed.
    server.stop();
    server.restart();
    store.set(set("app||after", b"2")).await.unwrap();
    assert_eq!(store.get("app||before").await.unwrap(), None);
    assert_eq!(
        value(&store, "app||after").await.as_deref(),
        Some(&b"2"[..])
    );
}

/// A password with `@`, `/` and `#` works (it never goes through a URL), the store
/// hands the same connection to the cache's notices, and a wrong password is never
/// repeated in the error.
#[tokio::test(flavor = "multi_thread")]
async fn redis_passwords_with_url_characters_work_and_are_never_shown() {
    const PASSWORD: &str = "p@ss/w#rd?SENTINEL-8f3a%";
    let server = RedisServer::start();
    server
        .cli(&[
            "ACL",
            "SETUSER",
            "state-user",
            "on",
            &format!(">{PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ])
        .unwrap();
    server
        .cli(&["CONFIG", "SET", "requirepass", PASSWORD])
        .unwrap();
    let host = server.address();
    for user in [Some("state-user"), None] {
        let mut values = vec![
            ("redisHost", host.as_str()),
            ("redisPassword", PASSWORD),
            ("redisDB", "3"),
        ];
        values.extend(user.map(|user| ("redisUsername", user)));
        let store = build("state.redis", &values).await;
        let etag = store.set(set("app||auth", b"ok")).await.unwrap();
        assert_eq!(store.get("app||auth").await.unwrap().unwrap().etag, etag);

        // The notice channel is the store's own connection: same user, password and db.
        let info = store.notice_channel().expect("state.redis carries notices");
        assert_eq!(info.redis_settings().db(), 3);
        let client = redis::Client::open(info).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let data: Option<String> = redis::cmd("HGET")
            .arg("app||auth")
            .arg("data")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(data.as_deref(), Some("ok"));
    }

    for user in [Some("state-user"), None] {
        let wrong = format!("{PASSWORD}-wrong");
        let mut values = vec![
            ("redisHost", host.as_str()),
            ("redisPassword", wrong.as_str()),
        ];
        values.extend(user.map(|user| ("redisUsername", user)));
        let error = try_build("state.redis", &values).await.err().unwrap();
        let message = error.to_string();
        assert!(message.contains("redisHost"), "{message}");
        assert!(!message.contains("SENTINEL"), "{message}");
    }
    assert!(
        build("state.in-memory", &[])
            .await
            .notice_channel()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_settings_errors_name_the_field() {
    let error = try_build(
        "state.redis",
        &[("redisHost", "127.0.0.1:6379"), ("enableTLS", "true")],
    )
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("enableTLS"), "{error}");
    let error = try_build("state.redis", &[]).await.err().unwrap();
    assert!(error.to_string().contains("redisHost"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_conforms() {
    let server = PostgresServer::start();
    conformance(
        build(
            "state.postgresql",
            &[("connectionString", &server.connection_string())],
        )
        .await,
    )
    .await;
}

/// Idle pooled connections die with the server; the component connects again by itself.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_reconnects_after_a_server_restart() {
    let mut server = PostgresServer::start();
    let store = build(
        "state.postgresql",
        &[
            ("connectionString", &server.connection_string()),
            ("timeout", "5s"),
        ],
    )
    .await;
    store.set(set("app||kept", b"before")).await.unwrap();

    server.restart();
    // The first request after the restart already works: the dead pooled connection
    // is replaced rather than reported.
    assert_eq!(
        value(&store, "app||kept").await.as_deref(),
        Some(&b"before"[..])
    );

    // While the server is down, requests fail (they do not hang)...
    server.stop();
    let down = store.set(set("app||kept", b"lost")).await;
    assert!(matches!(down, Err(StateError::Store(_))), "{down:?}");
    // ...and once it is back, they succeed again.
    server.start_again();
    store.set(set("app||kept", b"after")).await.unwrap();
    assert_eq!(
        value(&store, "app||kept").await.as_deref(),
        Some(&b"after"[..])
    );
}

/// A schema-qualified `tableName`, and expired rows deleted by the cleanup task.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_cleans_up_expired_rows() {
    let server = PostgresServer::start();
    let (client, connection) =
        tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE SCHEMA tandem_test")
        .await
        .unwrap();
    let store = build(
        "state.postgresql",
        &[
            ("connectionString", &server.connection_string()),
            ("tableName", "tandem_test.app_state"),
            ("cleanupInterval", "200ms"),
        ],
    )
    .await;
    store
        .set(SetRequest {
            ttl: Some(Duration::from_millis(300)),
            ..set("app||short", b"x")
        })
        .await
        .unwrap();
    store.set(set("app||long", b"y")).await.unwrap();
    let rows = async || -> i64 {
        client
            .query_one("SELECT count(*) FROM tandem_test.app_state", &[])
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(rows().await, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rows().await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired row is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value(&store, "app||long").await.as_deref(), Some(&b"y"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_errors_name_the_field_but_never_the_password() {
    let port = tandem_testkit::free_port(); // nothing listens there
    for connection_string in [
        format!("host=127.0.0.1 port={port} user=app password=hunter2-secret dbname=app"),
        format!("postgres://app:hunter2-secret@127.0.0.1:{port}/app"),
        "host=127.0.0.1 password='hunter2-secret".to_owned(),
        "host=127.0.0.1 password=hunter2-secret bogus".to_owned(),
    ] {
        let error = try_build(
            "state.postgresql",
            &[("connectionString", &connection_string), ("timeout", "3s")],
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{connection_string} must not build"));
        let message = error.to_string();
        assert!(message.contains("connectionString"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    let server = PostgresServer::start();
    let error = try_build(
        "state.postgresql",
        &[
            ("connectionString", &server.connection_string()),
            ("tableName", "state; DROP TABLE x"),
        ],
    )
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("tableName"), "{error}");
}

mod mysql {
    //! `state.mysql` against the MariaDB of the test machine (127.0.0.1:3306, `root`
    //! without a password, database `test`); every test uses tables of its own and
    //! drops them, even when it fails.

    use super::*;
    use mysql_async::prelude::Queryable;

    const CONNECTION: &str = "root:@tcp(127.0.0.1:3306)/";
    const SERVER_URL: &str = "mysql://root@127.0.0.1:3306/test";

    /// A state table and a metadata table of this test's own, dropped at the end.
    struct Tables {
        state: String,
        meta: String,
    }

    impl Tables {
        fn new() -> Self {
            let id = uuid::Uuid::new_v4().simple().to_string();
            Self {
                state: format!("tandem_state_{id}"),
                meta: format!("tandem_meta_{id}"),
            }
        }

        /// Metadata for a store on these tables, plus `extra`.
        fn metadata<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
            let mut values = vec![
                ("connectionString", CONNECTION),
                ("schemaName", "test"),
                ("tableName", self.state.as_str()),
                ("metadataTableName", self.meta.as_str()),
            ];
            values.extend_from_slice(extra);
            values
        }

        async fn build(&self, extra: &[(&str, &str)]) -> Arc<dyn StateStore> {
            build("state.mysql", &self.metadata(extra)).await
        }
    }

    impl Drop for Tables {
        fn drop(&mut self) {
            let statement = format!(
                "DROP TABLE IF EXISTS test.`{}`, test.`{}`",
                self.state, self.meta
            );
            // Drop runs inside the test's runtime: use a runtime of its own.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let mut conn = mysql_async::Conn::from_url(SERVER_URL).await.unwrap();
                    conn.query_drop(statement).await.unwrap();
                    conn.disconnect().await.unwrap();
                });
            })
            .join()
            .unwrap();
        }
    }

    async fn connect() -> mysql_async::Conn {
        mysql_async::Conn::from_url(SERVER_URL).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_conforms() {
        let tables = Tables::new();
        conformance(tables.build(&[]).await).await;
    }

    /// Rows as daprd writes and reads them: bytes as a base64 JSON string with
    /// `isbinary`, UUID ETags; and rows daprd wrote are read and updated.
    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_uses_daprs_layout() {
        let tables = Tables::new();
        let store = tables.build(&[]).await;
        let mut conn = connect().await;
        let etag = store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(60)),
                ..set("app||tandem", b"\x00bytes\xff")
            })
            .await
            .unwrap();
        assert!(uuid::Uuid::try_parse(&etag).is_ok(), "{etag}");
        let row: (String, i8, String, Option<i64>) = conn
            .query_first(format!(
                "SELECT CAST(value AS CHAR), isbinary, eTag, \
                 TIMESTAMPDIFF(SECOND, CURRENT_TIMESTAMP, expiredate) FROM test.`{}` \
                 WHERE id = 'app||tandem'",
                tables.state
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.0.as_str(), row.1, row.2.as_str()),
            ("\"AGJ5dGVz/w==\"", 1, etag.as_str())
        );
        let left = row.3.expect("an expiry");
        assert!((58..=61).contains(&left), "{left}s left");

        // What daprd's HTTP API stores (JSON, not binary) and its gRPC API (binary).
        conn.query_drop(format!(
            "INSERT INTO test.`{0}` (id, value, isbinary, eTag) VALUES \
             ('app||json', '{{\"a\":1}}', 0, '3f1c2b9e-0000-4000-8000-000000000001'), \
             ('app||grpc', '\"aGk=\"', 1, '3f1c2b9e-0000-4000-8000-000000000002')",
            tables.state
        ))
        .await
        .unwrap();
        let json = store.get("app||json").await.unwrap().unwrap();
        assert_eq!(
            (json.value.as_ref(), json.etag.as_str()),
            (&br#"{"a":1}"#[..], "3f1c2b9e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            value(&store, "app||grpc").await.as_deref(),
            Some(&b"hi"[..])
        );
        // daprd's ETag works for tandem's write.
        store
            .set(SetRequest {
                etag: Some("3f1c2b9e-0000-4000-8000-000000000002".into()),
                ..set("app||grpc", b"updated")
            })
            .await
            .unwrap();
        assert_eq!(
            value(&store, "app||grpc").await.as_deref(),
            Some(&b"updated"[..])
        );

        // Keys differ by case and trailing spaces; a key longer than the column is
        // refused before anything is written.
        for key in ["app||k", "app||K", "app||k "] {
            store.set(set(key, key.as_bytes())).await.unwrap();
        }
        for key in ["app||k", "app||K", "app||k "] {
            assert_eq!(value(&store, key).await.unwrap(), key.as_bytes(), "{key:?}");
        }
        let long = format!("app||{}", "x".repeat(251));
        let refused = store.set(set(&long, b"x")).await;
        assert!(
            matches!(
                refused,
                Err(StateError::Invalid(InvalidRequest::KeyTooLong { .. }))
            ),
            "{refused:?}"
        );
        let fits = format!("app||{}", "ключ".repeat(62));
        assert_eq!(fits.chars().count(), 253);
        store.set(set(&fits, b"fits")).await.unwrap();
        assert_eq!(value(&store, &fits).await.as_deref(), Some(&b"fits"[..]));
    }

    /// Racing `first-write`s of a new key, and of a key whose row expired but is still
    /// in the table: exactly one creates it, the others are ETag mismatches.
    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_first_write_races_have_one_winner() {
        let tables = Tables::new();
        let store = tables.build(&[]).await;
        store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(1)),
                ..set("app||expiring", b"old")
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1600)).await;
        for key in ["app||fresh", "app||expiring"] {
            let writers: Vec<_> = (0..8)
                .map(|n| {
                    let store = store.clone();
                    let request = SetRequest {
                        concurrency: Concurrency::FirstWrite,
                        ..set(key, format!("writer {n}").as_bytes())
                    };
                    tokio::spawn(async move { store.set(request).await })
                })
                .collect();
            let mut wins = 0;
            for writer in writers {
                match writer.await.unwrap() {
                    Ok(_) => wins += 1,
                    Err(StateError::EtagMismatch(_)) => {}
                    Err(other) => panic!("{key}: unexpected error: {other}"),
                }
            }
            assert_eq!(wins, 1, "{key}");
            let stored = value(&store, key).await.unwrap();
            assert!(stored.starts_with(b"writer "), "{key}");
        }
    }

    /// A table from a daprd before 1.11 (no `expiredate`, no `row_id`) gets the columns
    /// a current daprd adds, and works.
    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_upgrades_an_old_daprd_table() {
        let tables = Tables::new();
        let mut conn = connect().await;
        conn.query_drop(format!(
            "CREATE TABLE test.`{}` (id VARCHAR(255) NOT NULL PRIMARY KEY, value JSON NOT NULL, \
             isbinary BOOLEAN NOT NULL, insertDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             updateDate TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, \
             eTag VARCHAR(36) NOT NULL)",
            tables.state
        ))
        .await
        .unwrap();
        let store = tables.build(&[]).await;
        let columns: Vec<String> = conn
            .exec(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_schema = 'test' AND table_name = ? ORDER BY ordinal_position",
                (tables.state.as_str(),),
            )
            .await
            .unwrap();
        assert!(columns.iter().any(|c| c == "expiredate"), "{columns:?}");
        assert!(columns.iter().any(|c| c == "row_id"), "{columns:?}");
        store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(30)),
                ..set("app||old", b"works")
            })
            .await
            .unwrap();
        assert_eq!(
            value(&store, "app||old").await.as_deref(),
            Some(&b"works"[..])
        );
        // A second sidecar on the same, now current, table.
        tables.build(&[]).await;
    }

    /// Expired rows are deleted by the cleanup task, which records its turn in the
    /// metadata table as daprd does.
    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_cleans_up_expired_rows() {
        let tables = Tables::new();
        let store = tables.build(&[("cleanupInterval", "300ms")]).await;
        store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(1)),
                ..set("app||short", b"x")
            })
            .await
            .unwrap();
        store.set(set("app||long", b"y")).await.unwrap();
        let mut conn = connect().await;
        let count = format!("SELECT COUNT(*) FROM test.`{}`", tables.state);
        let rows: Option<i64> = conn.query_first(&count).await.unwrap();
        assert_eq!(rows, Some(2));
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        loop {
            let rows: Option<i64> = conn.query_first(&count).await.unwrap();
            if rows == Some(1) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the expired row is still there"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let last: Option<String> = conn
            .query_first(format!(
                "SELECT value FROM test.`{}` WHERE id = 'last-cleanup'",
                tables.meta
            ))
            .await
            .unwrap();
        assert!(last.is_some());
        assert_eq!(value(&store, "app||long").await.as_deref(), Some(&b"y"[..]));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn mysql_errors_name_the_field_but_never_the_password() {
        let port = tandem_testkit::free_port(); // nothing listens there
        let unreachable = format!("app:hunter2-secret@tcp(127.0.0.1:{port})/");
        let wrong_password = "root:hunter2-secret@tcp(127.0.0.1:3306)/".to_owned();
        for connection in [unreachable, wrong_password] {
            let error = try_build(
                "state.mysql",
                &[("connectionString", &connection), ("timeoutInSeconds", "3")],
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("{connection} must not build"));
            let message = error.to_string();
            assert!(message.contains("connectionString"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }

        let tables = Tables::new();
        for (field, value) in [
            (
                "connectionString",
                "root:hunter2-secret@tcp(127.0.0.1:3306)/test",
            ),
            ("connectionString", "root:hunter2-secret@tcp(127.0.0.1:3306"),
            ("tableName", "state; DROP TABLE x"),
            ("schemaName", "a-b"),
            ("metadataTableName", ""),
            ("timeoutInSeconds", "soon"),
            ("timeoutInSeconds", "-5"),
            ("cleanupInterval", "often"),
            ("pemPath", "/nonexistent/ca.pem"),
        ] {
            let mut values = tables.metadata(&[]);
            values.retain(|(name, _)| *name != field);
            values.push((field, value));
            if field == "pemPath" {
                values.retain(|(name, _)| *name != "connectionString");
                values.push(("connectionString", "root:@tcp(127.0.0.1:3306)/?tls=custom"));
            }
            if field == "metadataTableName" {
                // Empty is the default; the same name as the state table is refused.
                values.retain(|(name, _)| *name != "metadataTableName");
                values.push(("metadataTableName", tables.state.as_str()));
            }
            let error = try_build("state.mysql", &values)
                .await
                .err()
                .unwrap_or_else(|| panic!("{field}={value} must not build"));
            let message = error.to_string();
            assert!(message.contains(field), "{field}: {message}");
            assert!(message.contains("statestore"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }

        // Zero or negative cleanup intervals turn the cleanup off, as in Dapr.
        for interval in ["0", "-1", "-1s"] {
            tables.build(&[("cleanupInterval", interval)]).await;
        }
    }
}

mod dynamodb {
    //! `state.aws.dynamodb` against a private `moto_server` per test (any credentials;
    //! `TANDEM_MOTO_SERVER` names the program when `.venv` is elsewhere).

    use super::*;
    use std::io::{Read, Write};
    use tandem_testkit::MotoServer;

    /// One DynamoDB JSON call straight to the emulator (moto does not check the
    /// signature); the answer's JSON body.
    fn call(server: &MotoServer, action: &str, body: &serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let address = server.endpoint().trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             X-Amz-Target: DynamoDB_20120810.{action}\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=test-access/20261204/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{action}: {answer}");
        let (_, json) = answer.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(json).unwrap()
    }

    fn create_table(server: &MotoServer, table: &str, partition_key: &str) {
        call(
            server,
            "CreateTable",
            &serde_json::json!({
                "TableName": table,
                "KeySchema": [{"AttributeName": partition_key, "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": partition_key, "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
            }),
        );
    }

    async fn try_store(
        server: &MotoServer,
        extra: &[(&str, &str)],
    ) -> Result<Arc<dyn StateStore>, tandem_spec::ResourceError> {
        let endpoint = server.endpoint();
        let mut values = vec![
            ("endpoint", endpoint.as_str()),
            ("region", "us-east-1"),
            ("accessKey", "test-access"),
            ("secretKey", "test-secret"),
        ];
        values.extend_from_slice(extra);
        try_build("state.aws.dynamodb", &values).await
    }

    async fn store(server: &MotoServer, extra: &[(&str, &str)]) -> Arc<dyn StateStore> {
        try_store(server, extra)
            .await
            .unwrap_or_else(|error| panic!("state.aws.dynamodb builds: {error}"))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dynamodb_conforms() {
        let server = MotoServer::start();
        create_table(&server, "state", "key");
        let store = store(
            &server,
            &[("table", "state"), ("ttlAttributeName", "expiresAt")],
        )
        .await;
        assert!(store.features().contains(&Feature::Ttl));
        // DynamoDB holds items of 400 KB; moto counts a binary value by its base64
        // text, so values just under 300 KiB are what fits on both.
        conformance_within(store, Some(299 * 1024)).await;
    }

    /// Items as daprd writes and reads them: the key under `partitionKey`, the bytes
    /// in a binary `value`, a hex `etag`, the expiry in epoch seconds; and items daprd
    /// wrote (a string value from its HTTP API) are read and updated.
    #[tokio::test(flavor = "multi_thread")]
    async fn dynamodb_uses_daprs_layout() {
        let server = MotoServer::start();
        create_table(&server, "Contracts", "ContractID");
        let store = store(
            &server,
            &[
                ("table", "Contracts"),
                ("partitionKey", "ContractID"),
                ("ttlAttributeName", "expiresAt"),
            ],
        )
        .await;
        let etag = store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(60)),
                ..set("app||tandem", b"\x00bytes\xff")
            })
            .await
            .unwrap();
        assert!(u64::from_str_radix(&etag, 16).is_ok(), "{etag}");
        let item = call(
            &server,
            "GetItem",
            &serde_json::json!({"TableName": "Contracts", "Key": {"ContractID": {"S": "app||tandem"}}}),
        );
        let item = &item["Item"];
        assert_eq!(item["value"]["B"], "AGJ5dGVz/w==", "{item}");
        assert_eq!(item["etag"]["S"], etag.as_str(), "{item}");
        let expires: i64 = item["expiresAt"]["N"].as_str().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (now + 58..=now + 61).contains(&expires),
            "{expires} vs {now}"
        );

        // daprd's HTTP API stores JSON as a string; its ETag works for tandem's write.
        call(
            &server,
            "PutItem",
            &serde_json::json!({"TableName": "Contracts", "Item": {
                "ContractID": {"S": "app||json"},
                "value": {"S": "{\"a\":1}"},
                "etag": {"S": "1a2b3c4d5e6f7a8b"},
            }}),
        );
        let json = store.get("app||json").await.unwrap().unwrap();
        assert_eq!(
            (json.value.as_ref(), json.etag.as_str()),
            (&br#"{"a":1}"#[..], "1a2b3c4d5e6f7a8b")
        );
        store
            .set(SetRequest {
                etag: Some("1a2b3c4d5e6f7a8b".into()),
                ..set("app||json", b"updated")
            })
            .await
            .unwrap();
        assert_eq!(
            value(&store, "app||json").await.as_deref(),
            Some(&b"updated"[..])
        );

        // An item whose expiry passed but that DynamoDB has not deleted yet is gone
        // for reads, ETag checks and first-write.
        call(
            &server,
            "PutItem",
            &serde_json::json!({"TableName": "Contracts", "Item": {
                "ContractID": {"S": "app||expired"},
                "value": {"B": "eA=="},
                "etag": {"S": "ab"},
                "expiresAt": {"N": (now - 5).to_string()},
            }}),
        );
        assert_eq!(store.get("app||expired").await.unwrap(), None);
        let stale = store.delete(delete("app||expired", Some("ab"))).await;
        assert!(
            matches!(stale, Err(StateError::EtagMismatch(_))),
            "{stale:?}"
        );
        store
            .set(SetRequest {
                concurrency: Concurrency::FirstWrite,
                ..set("app||expired", b"new")
            })
            .await
            .unwrap();
        assert_eq!(
            value(&store, "app||expired").await.as_deref(),
            Some(&b"new"[..])
        );
    }

    /// Several operations on one key in a transaction (DynamoDB allows one per item),
    /// more than 100 operations, keys longer than DynamoDB's 2048 bytes, and bulk reads
    /// of more than one batch with duplicates.
    #[tokio::test(flavor = "multi_thread")]
    async fn dynamodb_transactions_and_bulk_reads_within_dynamodbs_limits() {
        let server = MotoServer::start();
        create_table(&server, "state", "key");
        let store = store(&server, &[("table", "state")]).await;
        let etag = store.set(set("app||twice", b"0")).await.unwrap();
        store
            .transact(vec![
                Operation::Upsert(SetRequest {
                    etag: Some(etag.clone()),
                    ..set("app||twice", b"1")
                }),
                Operation::Upsert(set("app||other", b"o")),
                Operation::Upsert(set("app||twice", b"2")),
            ])
            .await
            .unwrap();
        assert_eq!(
            value(&store, "app||twice").await.as_deref(),
            Some(&b"2"[..])
        );
        // The first operation's stale ETag fails the whole transaction.
        let stale = store
            .transact(vec![
                Operation::Upsert(set("app||other", b"changed")),
                Operation::Delete(delete("app||twice", Some(&etag))),
                Operation::Upsert(set("app||twice", b"3")),
            ])
            .await;
        assert!(
            matches!(stale, Err(StateError::EtagMismatch(_))),
            "{stale:?}"
        );
        assert_eq!(
            value(&store, "app||other").await.as_deref(),
            Some(&b"o"[..])
        );
        assert_eq!(
            value(&store, "app||twice").await.as_deref(),
            Some(&b"2"[..])
        );

        let many: Vec<Operation> = (0..101)
            .map(|n| Operation::Upsert(set(&format!("app||many-{n}"), b"x")))
            .collect();
        let refused = store.transact(many).await;
        assert!(
            matches!(
                refused,
                Err(StateError::Invalid(
                    InvalidRequest::TooManyOperations { .. }
                ))
            ),
            "{refused:?}"
        );
        assert_eq!(store.get("app||many-0").await.unwrap(), None);
        let hundred: Vec<Operation> = (0..100)
            .map(|n| Operation::Upsert(set(&format!("app||many-{n}"), n.to_string().as_bytes())))
            .collect();
        store.transact(hundred).await.unwrap();

        let mut keys: Vec<String> = (0..150).map(|n| format!("app||many-{n}")).collect();
        keys.push("app||many-7".into());
        let results = store.bulk_get(&keys).await;
        assert_eq!(results.len(), 151);
        for (n, result) in results.iter().enumerate().take(100) {
            let stored = result.as_ref().unwrap().as_ref().unwrap();
            assert_eq!(stored.value, n.to_string().as_bytes());
        }
        assert!(
            results[100..150]
                .iter()
                .all(|r| r.as_ref().unwrap().is_none())
        );
        assert_eq!(
            results[150].as_ref().unwrap().as_ref().unwrap().value,
            &b"7"[..]
        );

        let long = format!("app||{}", "x".repeat(2044));
        let refused = store.set(set(&long, b"x")).await;
        assert!(
            matches!(
                refused,
                Err(StateError::Invalid(InvalidRequest::KeyTooLong { .. }))
            ),
            "{refused:?}"
        );
    }

    /// Without `ttlAttributeName` TTLs are ignored, as on daprd, and not offered.
    #[tokio::test(flavor = "multi_thread")]
    async fn dynamodb_ignores_ttls_without_a_ttl_attribute() {
        let server = MotoServer::start();
        create_table(&server, "state", "key");
        let store = store(&server, &[("table", "state")]).await;
        assert!(!store.features().contains(&Feature::Ttl));
        store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(1)),
                ..set("app||kept", b"x")
            })
            .await
            .unwrap();
        let item = call(
            &server,
            "GetItem",
            &serde_json::json!({"TableName": "state", "Key": {"key": {"S": "app||kept"}}}),
        );
        let attributes: Vec<&String> = item["Item"].as_object().unwrap().keys().collect();
        assert_eq!(attributes.len(), 3, "{attributes:?}");
        assert_eq!(value(&store, "app||kept").await.as_deref(), Some(&b"x"[..]));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dynamodb_errors_name_the_field_but_never_the_secret() {
        let server = MotoServer::start();
        create_table(&server, "state", "key");
        for (field, extra) in [
            ("table", vec![]),
            ("table", vec![("table", "missing-table")]),
            ("table", vec![("table", "a b")]),
            (
                "partitionKey",
                vec![("table", "state"), ("partitionKey", "id")],
            ),
            (
                "partitionKey",
                vec![("table", "state"), ("partitionKey", "value")],
            ),
            (
                "ttlAttributeName",
                vec![("table", "state"), ("ttlAttributeName", "etag")],
            ),
            (
                "assumeRoleArn",
                vec![
                    ("table", "state"),
                    ("assumeRoleArn", "arn:aws:iam::1:role/x"),
                ],
            ),
            (
                "endpoint",
                vec![("table", "state"), ("endpoint", "localhost:4566")],
            ),
        ] {
            let error = try_store(&server, &extra)
                .await
                .err()
                .unwrap_or_else(|| panic!("{extra:?} must not build"));
            let message = error.to_string();
            assert!(message.contains(field), "{field}: {message}");
            assert!(!message.contains("test-secret"), "{message}");
        }
        // Nothing listening: the table cannot be read, and the key is never shown.
        let port = tandem_testkit::free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let error = try_build(
            "state.aws.dynamodb",
            &[
                ("table", "state"),
                ("endpoint", &endpoint),
                ("region", "us-east-1"),
                ("accessKey", "AKIDSENTINEL"),
                ("secretKey", "hunter2-secret"),
            ],
        )
        .await
        .err()
        .unwrap();
        let message = error.to_string();
        assert!(message.contains("table"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(!message.contains("AKIDSENTINEL"), "{message}");
    }
}

mod azure_blob {
    //! `state.azure.blobstorage` against a private Azurite per test.

    use super::*;
    use tandem_testkit::AzuriteServer;

    fn metadata<'a>(server: &'a str, container: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("accountName", AzuriteServer::ACCOUNT),
            ("accountKey", AzuriteServer::KEY),
            ("endpoint", server),
            ("containerName", container),
        ]
    }

    async fn try_versioned(
        version: &str,
        values: &[(&str, &str)],
    ) -> Result<Arc<dyn StateStore>, tandem_spec::ResourceError> {
        let mut component = Component::new("statestore", "state.azure.blobstorage");
        component.version = version.into();
        let values: BTreeMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        state::registry()
            .build(&ComponentMetadata::new(component, values))
            .await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_blob_conforms() {
        let server = AzuriteServer::start();
        let endpoint = server.blob_endpoint();
        let store = try_versioned("v2", &metadata(&endpoint, "state"))
            .await
            .unwrap_or_else(|error| panic!("state.azure.blobstorage builds: {error}"));
        assert_eq!(store.features(), [Feature::Etag]);
        conformance(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_blob_uses_daprs_blob_names_and_etags() {
        let server = AzuriteServer::start();
        let endpoint = server.blob_endpoint();
        let v2 = try_versioned("v2", &metadata(&endpoint, "shared"))
            .await
            .unwrap();
        let v1 = try_versioned("v1", &metadata(&endpoint, "shared"))
            .await
            .expect("an existing container is used as it is");
        // v1 names the blob `order`, v2 `app||order`: two different blobs.
        let etag = v2.set(set("app||order", b"v2 value")).await.unwrap();
        assert!(etag.starts_with("\"0x") && etag.ends_with('"'), "{etag}");
        assert_eq!(v1.get("app||order").await.unwrap(), None);
        v1.set(set("app||order", b"v1 value")).await.unwrap();
        assert_eq!(value(&v2, "order").await.as_deref(), Some(&b"v1 value"[..]));
        assert_eq!(
            value(&v2, "app||order").await.as_deref(),
            Some(&b"v2 value"[..])
        );
        // Names that would be URL dot segments are blobs like any other.
        for name in [".", "..", "app||."] {
            v2.set(set(name, name.as_bytes())).await.unwrap();
        }
        for name in [".", "..", "app||."] {
            assert_eq!(value(&v2, name).await.as_deref(), Some(name.as_bytes()));
        }
        assert_eq!(value(&v1, "app||..").await.as_deref(), Some(&b".."[..]));
        // A TTL is ignored, as on daprd.
        v2.set(SetRequest {
            ttl: Some(Duration::from_secs(1)),
            ..set("app||brief", b"stays")
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            value(&v2, "app||brief").await.as_deref(),
            Some(&b"stays"[..])
        );
        // An ETag without quotes is Azure's all the same.
        let stored = v2.get("app||order").await.unwrap().unwrap();
        let bare = stored.etag.trim_matches('"').to_owned();
        v2.set(SetRequest {
            etag: Some(bare),
            ..set("app||order", b"updated")
        })
        .await
        .unwrap();
        // Deleting with an ETag of a blob that is gone is a mismatch.
        let etag = v2.get("app||order").await.unwrap().unwrap().etag;
        v2.delete(delete("app||order", None)).await.unwrap();
        let gone = v2.delete(delete("app||order", Some(&etag))).await;
        assert!(matches!(gone, Err(StateError::EtagMismatch(_))), "{gone:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_blob_errors_name_the_field_but_never_the_key() {
        let server = AzuriteServer::start();
        let endpoint = server.blob_endpoint();
        let fails = |values: Vec<(&'static str, String)>| async move {
            let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match try_versioned("v2", &values).await {
                Ok(_) => panic!("{values:?} builds"),
                Err(error) => error.to_string(),
            }
        };
        let base = |container: &str| -> Vec<(&'static str, String)> {
            vec![
                ("accountName", AzuriteServer::ACCOUNT.to_owned()),
                ("accountKey", AzuriteServer::KEY.to_owned()),
                ("endpoint", endpoint.clone()),
                ("containerName", container.to_owned()),
            ]
        };
        let wrong_key = "d3Jvbmcgc2VjcmV0IGtleSB2YWx1ZQ==";
        let mut values = base("state");
        values[1].1 = wrong_key.to_owned();
        let message = fails(values).await;
        assert!(message.contains("accountKey"), "{message}");
        assert!(!message.contains(wrong_key), "{message}");

        let mut values = base("state");
        values[1].1 = "not base64!".to_owned();
        let message = fails(values).await;
        assert!(
            message.contains("accountKey") && !message.contains("not base64!"),
            "{message}"
        );

        let message = fails(base("Bad_Name")).await;
        assert!(message.contains("containerName"), "{message}");

        let mut values = base("state");
        values.push(("disableEntityManagement", "true".to_owned()));
        let message = fails(values).await;
        assert!(message.contains("containerName"), "{message}");

        let mut values = base("state");
        values.push(("azureClientId", "id".to_owned()));
        let message = fails(values).await;
        assert!(message.contains("azureClientId"), "{message}");

        let mut values = base("state");
        values.push(("publicAccessLevel", "everyone".to_owned()));
        let message = fails(values).await;
        assert!(message.contains("publicAccessLevel"), "{message}");

        let mut values = base("state");
        values[2].1 = format!("http://127.0.0.1:{}", tandem_testkit::free_port());
        values.push(("retryCount", "0".to_owned()));
        let message = fails(values).await;
        assert!(message.contains("endpoint"), "{message}");
        assert!(!message.contains(AzuriteServer::KEY), "{message}");
    }
}

mod azure_table {
    //! `state.azure.tablestorage` against a private Azurite per test.

    use super::*;
    use tandem_testkit::AzuriteServer;

    fn service_url(server: &AzuriteServer) -> String {
        format!("{}/{}", server.table_endpoint(), AzuriteServer::ACCOUNT)
    }

    async fn try_store(
        server: &AzuriteServer,
        extra: &[(&str, &str)],
    ) -> Result<Arc<dyn StateStore>, tandem_spec::ResourceError> {
        let url = service_url(server);
        let mut values = vec![
            ("accountName", AzuriteServer::ACCOUNT),
            ("accountKey", AzuriteServer::KEY),
            ("serviceURL", url.as_str()),
            ("tableName", "state"),
        ];
        values.extend_from_slice(extra);
        try_build("state.azure.tablestorage", &values).await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_table_conforms() {
        let server = AzuriteServer::start();
        let store = try_store(&server, &[])
            .await
            .unwrap_or_else(|error| panic!("state.azure.tablestorage builds: {error}"));
        assert_eq!(store.features(), [Feature::Etag]);
        // Azure keeps a property (the value) to 64 KiB.
        conformance_within(store, Some(64 * 1024)).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_table_uses_daprs_entity_layout() {
        let server = AzuriteServer::start();
        let store = try_store(&server, &[]).await.unwrap();
        let etag = store.set(set("app||order", b"{\"n\":1}")).await.unwrap();
        assert!(etag.starts_with("W/\"datetime'"), "{etag}");
        let again = try_store(&server, &[("skipCreateTable", "true")])
            .await
            .expect("an existing table is used as it is");
        assert_eq!(
            value(&again, "app||order").await.as_deref(),
            Some(&b"{\"n\":1}"[..])
        );
        // A key without `||` is a partition of its own with an empty row key; it does
        // not meet `key||`'s... which has the same layout, as on daprd.
        store.set(set("solo", b"1")).await.unwrap();
        assert_eq!(value(&store, "solo||").await.as_deref(), Some(&b"1"[..]));
        // Keys with Azure's forbidden characters work.
        store.set(set("app||a/b#c?d%", b"odd")).await.unwrap();
        assert_eq!(
            value(&store, "app||a/b#c?d%").await.as_deref(),
            Some(&b"odd"[..])
        );
        assert_eq!(value(&store, "app||a%2Fb#c?d%").await, None);
        // Text and binary values of up to 64 KiB, nothing more.
        let text = "ü".repeat(32 * 1024);
        store.set(set("app||text", text.as_bytes())).await.unwrap();
        assert_eq!(value(&store, "app||text").await.unwrap(), text.as_bytes());
        let longer = "ü".repeat(32 * 1024 + 1);
        let refused = store.set(set("app||text", longer.as_bytes())).await;
        assert!(
            matches!(refused, Err(StateError::Invalid(_))),
            "{refused:?}"
        );
        // Deleting with an ETag of an entity that is gone is a mismatch.
        let etag = store.get("app||order").await.unwrap().unwrap().etag;
        store.delete(delete("app||order", None)).await.unwrap();
        let gone = store.delete(delete("app||order", Some(&etag))).await;
        assert!(matches!(gone, Err(StateError::EtagMismatch(_))), "{gone:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn azure_table_errors_name_the_field_but_never_the_key() {
        let server = AzuriteServer::start();
        let message = |result: Result<Arc<dyn StateStore>, tandem_spec::ResourceError>| match result
        {
            Ok(_) => panic!("builds"),
            Err(error) => error.to_string(),
        };
        let wrong_key = "d3Jvbmcgc2VjcmV0IGtleSB2YWx1ZQ==";
        let text = message(try_store(&server, &[("accountKey", wrong_key)]).await);
        // `accountKey` given twice: the last wins in the map, as in a YAML mapping.
        assert!(
            text.contains("accountKey") && !text.contains(wrong_key),
            "{text}"
        );
        let text = message(try_store(&server, &[("tableName", "bad-name")]).await);
        assert!(text.contains("tableName"), "{text}");
        let url = service_url(&server);
        let text = message(
            try_build(
                "state.azure.tablestorage",
                &[
                    ("accountName", AzuriteServer::ACCOUNT),
                    ("accountKey", AzuriteServer::KEY),
                    ("serviceURL", url.as_str()),
                    ("tableName", "missing"),
                    ("skipCreateTable", "true"),
                ],
            )
            .await,
        );
        assert!(text.contains("tableName"), "{text}");
        let text = message(try_store(&server, &[("azureTenantId", "t")]).await);
        assert!(text.contains("azureTenantId"), "{text}");
        let text = message(try_store(&server, &[("cosmosDbMode", "maybe")]).await);
        assert!(text.contains("cosmosDbMode"), "{text}");
    }
}

mod mongodb {
    //! `state.mongodb` against a private `tests/mongo/server.py` per test: a MongoDB
    //! wire-protocol front over mongomock, as no MongoDB server can be installed where
    //! tandem is tested (`TANDEM_MONGO_PYTHON` names its Python when `.venv` is
    //! elsewhere). Raw documents are read with the same driver the store uses.

    use super::*;
    use ::mongodb::bson::{Bson, Document, doc};
    use futures_util::TryStreamExt;
    use tandem_components::state::query::Query;
    use tandem_testkit::MongoServer;

    async fn try_store(
        server: &MongoServer,
        extra: &[(&str, &str)],
    ) -> Result<Arc<dyn StateStore>, tandem_spec::ResourceError> {
        let host = server.host();
        let params = MongoServer::params();
        let mut values = vec![("host", host.as_str()), ("params", params.as_str())];
        values.extend_from_slice(extra);
        try_build("state.mongodb", &values).await
    }

    async fn store(server: &MongoServer, extra: &[(&str, &str)]) -> Arc<dyn StateStore> {
        try_store(server, extra)
            .await
            .unwrap_or_else(|error| panic!("state.mongodb builds: {error}"))
    }

    /// The collection, straight through the driver.
    async fn raw(
        server: &MongoServer,
        database: &str,
        collection: &str,
    ) -> ::mongodb::Collection<Document> {
        ::mongodb::Client::with_uri_str(server.uri())
            .await
            .unwrap()
            .database(database)
            .collection(collection)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn mongodb_conforms() {
        let server = MongoServer::start();
        let store = store(&server, &[("operationTimeout", "20s")]).await;
        assert_eq!(
            store.features(),
            [
                Feature::Etag,
                Feature::Transactional,
                Feature::Ttl,
                Feature::Query
            ]
        );
        conformance(store).await;
    }

    /// Documents as daprd writes and reads them: `_id`, the value (a JSON object as a
    /// document, other bytes as a string), a UUID `_etag`, `_ttl` as a date or null,
    /// and daprd's TTL index; a document daprd wrote (doubles from its HTTP API) is
    /// read, and updated with its ETag.
    #[tokio::test(flavor = "multi_thread")]
    async fn mongodb_uses_daprs_layout() {
        let server = MongoServer::start();
        let store = store(&server, &[]).await;
        let collection = raw(&server, "daprStore", "daprCollection").await;

        let etag = store
            .set(set(
                "app||order",
                br#"{"id":7,"items":["a","b"],"paid":true}"#,
            ))
            .await
            .unwrap();
        let document = collection
            .find_one(doc! {"_id": "app||order"})
            .await
            .unwrap()
            .unwrap();
        // Numbers are doubles, as daprd's HTTP API stores them.
        assert_eq!(
            document,
            doc! {
                "_id": "app||order",
                "value": {"id": 7.0, "items": ["a", "b"], "paid": true},
                "_etag": &etag,
                "_ttl": Bson::Null,
            }
        );
        assert!(uuid::Uuid::try_parse(&etag).is_ok(), "{etag}");

        store.set(set("app||text", b"plain text")).await.unwrap();
        store.set(set("app||quoted", br#""hi""#)).await.unwrap();
        for (key, value) in [("app||text", "plain text"), ("app||quoted", r#""hi""#)] {
            let document = collection
                .find_one(doc! {"_id": key})
                .await
                .unwrap()
                .unwrap();
            assert_eq!(document.get_str("value").unwrap(), value);
        }

        let before = std::time::SystemTime::now();
        store
            .set(SetRequest {
                ttl: Some(Duration::from_secs(3600)),
                ..set("app||brief", b"x")
            })
            .await
            .unwrap();
        let document = collection
            .find_one(doc! {"_id": "app||brief"})
            .await
            .unwrap()
            .unwrap();
        let expiry = document.get_datetime("_ttl").unwrap().to_system_time();
        let ahead = expiry.duration_since(before).unwrap();
        assert!(
            ahead >= Duration::from_secs(3599) && ahead <= Duration::from_secs(3610),
            "{ahead:?}"
        );

        let indexes: Vec<_> = collection
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let ttl_index = indexes
            .iter()
            .find(|index| index.keys == doc! {"_ttl": 1})
            .expect("daprd's TTL index");
        assert_eq!(
            ttl_index.options.as_ref().unwrap().expire_after,
            Some(Duration::ZERO)
        );

        // What daprd's HTTP API stores for {"n":3,"f":0.5}: doubles.
        let daprd_etag = "2f0c9f1e-8e57-4a8e-9d5b-5c1f2f3a4b5c";
        collection
            .insert_one(doc! {
                "_id": "app||daprd",
                "value": {"n": 3.0, "f": 0.5},
                "_etag": daprd_etag,
                "_ttl": Bson::Null,
            })
            .await
            .unwrap();
        let stored = store.get("app||daprd").await.unwrap().unwrap();
        assert_eq!(stored.etag, daprd_etag);
        let json: serde_json::Value = serde_json::from_slice(&stored.value).unwrap();
        assert_eq!(json, serde_json::json!({"n": 3, "f": 0.5}));
        assert!(!String::from_utf8_lossy(&stored.value).contains("3.0"));
        store
            .set(SetRequest {
                etag: Some(daprd_etag.into()),
                ..set("app||daprd", br#"{"n":4}"#)
            })
            .await
            .unwrap();
        let document = collection
            .find_one(doc! {"_id": "app||daprd"})
            .await
            .unwrap()
            .unwrap();
        assert_eq!(document.get_document("value").unwrap(), &doc! {"n": 4.0});
        assert_ne!(document.get_str("_etag").unwrap(), daprd_etag);

        // An expired document is gone for reads at once, whatever MongoDB still holds.
        collection
            .insert_one(doc! {
                "_id": "app||expired",
                "value": "old",
                "_etag": daprd_etag,
                "_ttl": ::mongodb::bson::DateTime::from_millis(1_000),
            })
            .await
            .unwrap();
        assert_eq!(store.get("app||expired").await.unwrap(), None);
    }

    /// `databaseName` and `collectionName` choose where documents go.
    #[tokio::test(flavor = "multi_thread")]
    async fn mongodb_uses_the_named_database_and_collection() {
        let server = MongoServer::start();
        let store = store(
            &server,
            &[("databaseName", "orders"), ("collectionName", "state")],
        )
        .await;
        store.set(set("app||k", b"v")).await.unwrap();
        let collection = raw(&server, "orders", "state").await;
        let found = collection.find_one(doc! {"_id": "app||k"}).await.unwrap();
        assert_eq!(found.unwrap().get_str("value").unwrap(), "v");
    }

    /// The sidecar's query engine over the store's listing: Dapr's query language
    /// (filters on value paths, sort, page and token) gives daprd's answers.
    #[tokio::test(flavor = "multi_thread")]
    async fn mongodb_answers_queries() {
        let server = MongoServer::start();
        let store = store(&server, &[]).await;
        let people = [
            (
                "1",
                r#"{"person":{"org":"Dev Ops","id":1036},"city":"Seattle","state":"WA"}"#,
            ),
            (
                "2",
                r#"{"person":{"org":"Hardware","id":1028},"city":"Portland","state":"OR"}"#,
            ),
            (
                "3",
                r#"{"person":{"org":"Finance","id":1071},"city":"Sacramento","state":"CA"}"#,
            ),
            (
                "4",
                r#"{"person":{"org":"Dev Ops","id":1042},"city":"Spokane","state":"WA"}"#,
            ),
            (
                "5",
                r#"{"person":{"org":"Hardware","id":1007},"city":"Los Angeles","state":"CA"}"#,
            ),
        ];
        for (key, value) in people {
            store
                .set(set(&format!("app||{key}"), value.as_bytes()))
                .await
                .unwrap();
        }
        store
            .set(set("other||9", people[0].1.as_bytes()))
            .await
            .unwrap();
        let query = Query::parse(
            br#"{"filter":{"OR":[{"EQ":{"state":"CA"}},{"AND":[{"EQ":{"person.org":"Dev Ops"}},{"GT":{"person.id":1040}}]}]},
                 "sort":[{"key":"person.id","order":"DESC"}],"page":{"limit":2}}"#,
        )
        .unwrap();
        let listed = store.scan("app||").await.unwrap().unwrap();
        assert_eq!(listed.len(), 5);
        let page = query.run(listed.clone());
        let keys: Vec<&str> = page.results.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["app||3", "app||4"]);
        assert_eq!(page.token.as_deref(), Some("2"));
        let next = Query {
            skip: 2,
            ..query.clone()
        }
        .run(listed);
        let keys: Vec<&str> = next.results.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["app||5"]);
    }

    /// As daprd, transactions need `replicaSet=` in the connection; without it they are
    /// refused with an error saying so, and single writes still work.
    #[tokio::test(flavor = "multi_thread")]
    async fn mongodb_transactions_need_a_replica_set() {
        let server = MongoServer::start();
        let store = store(&server, &[("params", "directConnection=true")]).await;
        store.set(set("app||a", b"1")).await.unwrap();
        let refused = store
            .transact(vec![Operation::Upsert(set("app||b", b"2"))])
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("replica set"), "{refused}");
        assert_eq!(value(&store, "app||b").await, None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn mongodb_errors_name_the_field_but_never_the_password() {
        let server = MongoServer::start();
        for (extra, field) in [
            (&[("readConcern", "eventual")][..], "readConcern"),
            (&[("writeConcern", "all")][..], "writeConcern"),
            (&[("operationTimeout", "soon")][..], "operationTimeout"),
            (&[("databaseName", "a.b")][..], "databaseName"),
            (&[("collectionName", "system.users")][..], "collectionName"),
            (&[("server", "cluster.example.com")][..], "server"),
            (&[("username", "app")][..], "password"),
        ] {
            let error = try_store(&server, extra)
                .await
                .err()
                .unwrap_or_else(|| panic!("{extra:?} must not build"));
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
        let error = try_build("state.mongodb", &[("databaseName", "x")])
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("host"), "{error}");
        for uri in ["http://x", "mongodb+srv://cluster.example.com/"] {
            let error = try_build("state.mongodb", &[("connectionString", uri)])
                .await
                .err()
                .unwrap();
            assert!(error.to_string().contains("connectionString"), "{error}");
        }

        // Nothing listens there: the error names the field and the host, never the password.
        let port = tandem_testkit::free_port();
        let host = format!("127.0.0.1:{port}");
        let uri = format!("mongodb://app:hunter2-secret@{host}/?directConnection=true");
        for values in [
            vec![
                ("host", host.as_str()),
                ("username", "app"),
                ("password", "hunter2-secret"),
                ("operationTimeout", "1s"),
            ],
            vec![
                ("connectionString", uri.as_str()),
                ("operationTimeout", "1s"),
            ],
        ] {
            let error = try_build("state.mongodb", &values).await.err().unwrap();
            let message = error.to_string();
            assert!(message.contains(&host), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
