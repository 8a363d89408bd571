//! The lock stores against real servers: `lock.redis` on a private Redis, `lock.sqlite`
//! on a file of its own. The same checks for both: mutual exclusion under contention,
//! owners, expiry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tandem_components::lock::{self, LockStore, UnlockStatus};
use tandem_spec::{Component, ComponentMetadata};
use tandem_testkit::RedisServer;

async fn build(kind: &str, values: &[(&str, &str)]) -> Result<Arc<dyn LockStore>, String> {
    let values: BTreeMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let component = Component {
        file: Some("components/lock.yaml".into()),
        ..Component::new("lockstore", kind)
    };
    lock::registry()
        .build(&ComponentMetadata::new(component, values))
        .await
        .map_err(|error| error.to_string())
}

/// Owners, statuses and expiry, as Dapr's lock API defines them.
async fn owners_and_expiry(store: Arc<dyn LockStore>) {
    let second = Duration::from_secs(1);
    assert!(store.try_lock("l", "alice", second * 10).await.unwrap());
    assert!(!store.try_lock("l", "bob", second).await.unwrap(), "held");
    assert!(
        !store.try_lock("l", "alice", second).await.unwrap(),
        "not re-entrant"
    );
    assert_eq!(
        store.unlock("l", "bob").await.unwrap(),
        UnlockStatus::LockBelongsToOthers
    );
    assert_eq!(
        store.unlock("l", "alice").await.unwrap(),
        UnlockStatus::Success
    );
    assert_eq!(
        store.unlock("l", "alice").await.unwrap(),
        UnlockStatus::LockDoesNotExist
    );
    // A lock nobody gives back frees itself when it expires.
    assert!(store.try_lock("e", "alice", second).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(store.try_lock("e", "bob", second * 10).await.unwrap());
    assert_eq!(
        store.unlock("e", "alice").await.unwrap(),
        UnlockStatus::LockBelongsToOthers
    );
    assert!(store.try_lock("x", "alice", second).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        store.unlock("x", "alice").await.unwrap(),
        UnlockStatus::LockDoesNotExist,
        "expired"
    );
}

/// 16 workers, each taking the lock 10 times around a critical section that checks
/// nobody else is inside: mutual exclusion, and every worker gets its turns.
async fn mutual_exclusion(stores: Vec<Arc<dyn LockStore>>) {
    let inside = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..16 {
        let store = stores[worker % stores.len()].clone();
        let (inside, entered) = (inside.clone(), entered.clone());
        workers.push(tokio::spawn(async move {
            let owner = format!("worker-{worker}");
            let mut turns = 0;
            while turns < 10 {
                if !store
                    .try_lock("counter", &owner, Duration::from_secs(30))
                    .await
                    .unwrap()
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_micros(200)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                entered.fetch_add(1, Ordering::SeqCst);
                assert_eq!(
                    store.unlock("counter", &owner).await.unwrap(),
                    UnlockStatus::Success
                );
                turns += 1;
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(entered.load(Ordering::SeqCst), 160);
}

#[tokio::test]
async fn redis_locks_exclude_expire_and_know_their_owners() {
    let server = RedisServer::start();
    let address = server.address();
    let settings = [("redisHost", address.as_str())];
    let store = || build("lock.redis", &settings);
    owners_and_expiry(store().await.unwrap()).await;
    // Several components on one Redis, as several sidecars would be.
    mutual_exclusion(vec![
        store().await.unwrap(),
        store().await.unwrap(),
        store().await.unwrap(),
    ])
    .await;
}

#[tokio::test]
async fn sqlite_locks_exclude_expire_and_know_their_owners() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tandem.db").display().to_string();
    let settings = [("connectionString", file.as_str())];
    let store = || build("lock.sqlite", &settings);
    owners_and_expiry(store().await.unwrap()).await;
    // Several components on one file, as several sidecars on one machine would be.
    mutual_exclusion(vec![
        store().await.unwrap(),
        store().await.unwrap(),
        store().await.unwrap(),
    ])
    .await;
}

#[tokio::test]
async fn unusable_settings_name_the_field() {
    for (values, field) in [
        (vec![], "redisHost"),
        (
            vec![("redisHost", "127.0.0.1:1"), ("failover", "true")],
            "failover",
        ),
        (
            vec![("redisHost", "127.0.0.1:1"), ("redisType", "cluster")],
            "redisType",
        ),
    ] {
        let error = build("lock.redis", &values).await.err().unwrap();
        assert!(error.starts_with("components/lock.yaml"), "{error}");
        assert!(error.contains(field), "{field}: {error}");
    }
}
