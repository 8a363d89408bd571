//! One conformance suite, run against every state store with its real backend.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tandem_components::state::{
    self, Concurrency, DeleteRequest, Operation, SetRequest, StateError, StateStore,
};
use tandem_spec::{Component, ComponentMetadata};

async fn build(kind: &str, values: &[(&str, &str)]) -> Arc<dyn StateStore> {
    let component = Component {
        name: "statestore".into(),
        namespace: None,
        kind: kind.into(),
        version: "v1".into(),
        metadata: Vec::new(),
        secret_store: None,
        scopes: Vec::new(),
        file: None,
    };
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    state::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .unwrap_or_else(|error| panic!("{kind} builds: {error}"))
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

async fn transactions(store: Arc<dyn StateStore>, p: &str) {
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

async fn unusual_data(store: Arc<dyn StateStore>, p: &str) {
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
    store.set(set(&large, &mebibyte)).await.unwrap();
    assert_eq!(value(&store, &large).await.unwrap(), mebibyte);
}

async fn conformance(store: Arc<dyn StateStore>) {
    let p = format!("conformance-{}", uuid_like());
    crud(store.clone(), &p).await;
    bulk(store.clone(), &p).await;
    etags(store.clone(), &p).await;
    transactions(store.clone(), &p).await;
    ttl(store.clone(), &p).await;
    unusual_data(store, &p).await;
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
