//! The local resolver: the sidecars on this machine, from the registry under
//! `<tandem home>/apps/`.
//!
//! Reading the registry costs a directory listing and a few small files, so a read is
//! reused for a moment ([`FRESH`]) — but only for app ids it found: an app that started
//! a moment ago is looked for again at once rather than reported missing. An instance
//! that stopped within that moment refuses connections, and the balancer passes it over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ResolveError;
use crate::registry::{self, Entry};

/// How long one read of the registry answers for app ids it found.
pub const FRESH: Duration = Duration::from_secs(1);

/// The sidecars registered on this machine, reached on `127.0.0.1:<internal port>`.
#[derive(Debug)]
pub struct Local {
    home: PathBuf,
    last_read: Mutex<Option<(Instant, Arc<Vec<Entry>>)>>,
}

impl Local {
    /// The resolver over the registry in `home` (the tandem home: `TANDEM_HOME` or
    /// `~/.tandem`).
    pub fn new(home: &Path) -> Self {
        Self {
            home: home.to_owned(),
            last_read: Mutex::new(None),
        }
    }

    pub(crate) async fn resolve(
        &self,
        app_id: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<SocketAddr>, ResolveError> {
        if let Some(entries) = self.recent() {
            let found = addresses(&entries, app_id, namespace);
            if !found.is_empty() {
                return Ok(found);
            }
        }
        let entries = self.read().await;
        let found = addresses(&entries, app_id, namespace);
        if found.is_empty() {
            return Err(ResolveError::NotRunning {
                app_id: app_id.to_owned(),
                namespace: namespace.map(str::to_owned),
            });
        }
        Ok(found)
    }

    fn recent(&self) -> Option<Arc<Vec<Entry>>> {
        let last_read = self.last_read.lock();
        last_read
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, entries)| entries.clone())
    }

    /// Reads the registry on a blocking thread (it is file system work) and keeps it.
    async fn read(&self) -> Arc<Vec<Entry>> {
        let home = self.home.clone();
        let entries = tokio::task::spawn_blocking(move || registry::list(&home))
            .await
            .unwrap_or_default();
        let entries = Arc::new(entries);
        *self.last_read.lock() = Some((Instant::now(), entries.clone()));
        entries
    }
}

/// The internal addresses of the entries for `app_id` in `namespace`, sorted. An entry
/// without an internal port (0) cannot be called and is left out, and so are instances
/// whose app failed its health checks while another instance is healthy (with none
/// healthy they are kept: their sidecar answers why the call cannot be served).
fn addresses(entries: &[Entry], app_id: &str, namespace: Option<&str>) -> Vec<SocketAddr> {
    let candidates: Vec<&Entry> = entries
        .iter()
        .filter(|entry| entry.internal_port != 0 && entry.matches(app_id, namespace))
        .collect();
    let any_healthy = candidates.iter().any(|entry| !entry.app_unhealthy);
    let mut found: Vec<SocketAddr> = candidates
        .into_iter()
        .filter(|entry| !(any_healthy && entry.app_unhealthy))
        .map(Entry::internal_address)
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registration;
    use crate::{NameResolution, Resolver};

    fn register(home: &Path, app_id: &str, internal_port: u16) -> Registration {
        Registration::register(home, Entry::new(app_id, 1, 2, internal_port)).unwrap()
    }

    #[tokio::test]
    async fn finds_every_instance_and_says_what_is_missing() {
        let home = tempfile::tempdir().unwrap();
        let _a = register(home.path(), "orders", 40002);
        let _b = register(home.path(), "orders", 40001);
        let _c = register(home.path(), "cart", 40003);
        let resolver = Resolver::Local(Local::new(home.path()));
        let found = resolver.resolve("orders", None).await.unwrap();
        let ports: Vec<u16> = found.iter().map(SocketAddr::port).collect();
        assert_eq!(ports, [40001, 40002]);
        assert!(found.iter().all(|address| address.ip().is_loopback()));

        let missing = resolver.resolve("payments", None).await.unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no sidecar with app id 'payments' is running on this machine (tandem list shows the running ones)"
        );
        let elsewhere = resolver.resolve("orders", Some("prod")).await.unwrap_err();
        assert!(
            elsewhere.to_string().contains("in namespace 'prod'"),
            "{elsewhere}"
        );
        assert!(resolver.resolve("orders", Some("default")).await.is_ok());
    }

    #[tokio::test]
    async fn unhealthy_instances_are_passed_over_while_one_is_healthy() {
        let home = tempfile::tempdir().unwrap();
        let healthy = register(home.path(), "orders", 40041);
        let sick = register(home.path(), "orders", 40042);
        sick.update(|entry| entry.app_unhealthy = true).unwrap();
        let resolver = Resolver::Local(Local::new(home.path()));
        let found = resolver.resolve("orders", None).await.unwrap();
        assert_eq!(
            found.iter().map(SocketAddr::port).collect::<Vec<_>>(),
            [40041]
        );
        healthy.update(|entry| entry.app_unhealthy = true).unwrap();
        tokio::time::sleep(FRESH + Duration::from_millis(50)).await;
        let found = resolver.resolve("orders", None).await.unwrap();
        assert_eq!(found.len(), 2, "none healthy: all are kept");
    }

    #[tokio::test]
    async fn an_app_that_just_started_is_found_at_once() {
        let home = tempfile::tempdir().unwrap();
        let resolver = Resolver::Local(Local::new(home.path()));
        assert!(resolver.resolve("late", None).await.is_err());
        let _late = register(home.path(), "late", 40010);
        assert_eq!(resolver.resolve("late", None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_stopped_instance_leaves_after_the_fresh_read() {
        let home = tempfile::tempdir().unwrap();
        let resolver = Resolver::Local(Local::new(home.path()));
        let _one = register(home.path(), "orders", 40021);
        let two = register(home.path(), "orders", 40022);
        assert_eq!(resolver.resolve("orders", None).await.unwrap().len(), 2);
        drop(two);
        tokio::time::sleep(FRESH + Duration::from_millis(50)).await;
        assert_eq!(resolver.resolve("orders", None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn locate_takes_turns_over_instances() {
        let home = tempfile::tempdir().unwrap();
        let _a = register(home.path(), "orders", 40031);
        let _b = register(home.path(), "orders", 40032);
        let names = NameResolution::new(Resolver::Local(Local::new(home.path())));
        let first = names.locate("orders", None).await.unwrap();
        let second = names.locate("orders", None).await.unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0], "the next call starts at the other one");
        names.unreachable("orders", first[0]);
        for _ in 0..3 {
            assert_eq!(names.locate("orders", None).await.unwrap()[0], first[1]);
        }
    }
}
