//! Placement without a placement service: the actor state store is the membership
//! table, each host's lease and each actor's owner record.
//!
//! - **Membership**: `tandem-actors||hosts` lists every host (id, internal address,
//!   app id, actor types); changed only when a host joins, leaves or is evicted, by
//!   compare-and-swap on its ETag.
//! - **Leases**: each host rewrites its own beat record `tandem-actors||host||{id}`
//!   every [`BEAT_INTERVAL`], always with the ETag of its previous beat. It may run
//!   actor turns only until `t0 + LEASE`, where `t0` is taken *before* its last beat
//!   that succeeded. Another host declares it dead only after seeing the same beat
//!   record unchanged for [`DEAD_AFTER`] (> `LEASE`) on its own clock, and evicts it
//!   by deleting that record *with the ETag it saw*: a beat that lands in between
//!   changes the ETag and the eviction fails; an eviction that lands first makes the
//!   next beat fail, and the evicted host stops and joins again under a new id. So a
//!   host is evicted only after its lease has run out.
//! - **Owners**: `tandem-actors||actor||{type}||{id}` names the host an actor is
//!   active on. It is created by the host that activates the actor (first-write) and
//!   taken over only from a host that left or was evicted (compare-and-swap on the
//!   record's ETag), so at any moment one live host holds it. Its ETag is the
//!   activation's fencing token: actor state is written in a transaction that also
//!   rewrites the owner record with the ETag the activation holds, so a superseded
//!   activation cannot write.
//!
//! New actors go to the live host of their type that rendezvous hashing prefers, so
//! they spread over the hosts and a host that joins gets its share.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tandem_components::state::{
    Concurrency, DeleteRequest, SetRequest, StateError, StateStore, Stored,
};
use tokio::time::Instant;

/// How often a host renews its lease and refreshes its view of the others.
pub(crate) const BEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a host may run actor turns after its last successful beat began.
pub(crate) const LEASE: Duration = Duration::from_secs(5);
/// How long a beat record must stay unchanged before another host declares its host
/// dead: the lease plus room for clocks that run up to 20% apart.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(6);
/// A turn starts only with at least this much lease left, so that a turn that has
/// started has a lease behind it even if the next beats fail.
pub(crate) const TURN_MARGIN: Duration = Duration::from_millis(1500);

/// One host in the membership table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HostEntry {
    /// Where other sidecars reach its internal port.
    pub address: String,
    pub app_id: String,
    pub types: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Table {
    #[serde(default)]
    hosts: BTreeMap<String, HostEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    beat: u64,
}

/// An actor's owner record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OwnerRecord {
    host: String,
}

/// Who holds an actor, as the store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub host: String,
    /// The record's ETag: compare-and-swap over it.
    pub etag: String,
}

/// Why placement could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlacementError {
    #[error("the actor state store failed: {0}")]
    Store(#[from] StateError),
    #[error("the placement record {key} is not tandem's: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// This host's membership.
#[derive(Debug, Clone)]
struct Me {
    id: String,
    beat: u64,
    etag: String,
    /// Turns may run until then.
    lease_until: Instant,
}

/// A beat record as last seen, and since when it has not changed.
#[derive(Debug, Clone)]
struct Seen {
    etag: Option<String>,
    since: Instant,
}

/// What this host knows of the others.
#[derive(Debug, Default)]
struct View {
    table: Table,
    table_etag: Option<String>,
    seen: HashMap<String, Seen>,
    refreshed: Option<Instant>,
}

/// The result of one beat.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BeatOutcome {
    /// The lease is renewed.
    Renewed,
    /// Another host evicted this one: its actors must go, and it joins again.
    Evicted,
    /// The store did not answer; the lease runs out unless a later beat succeeds.
    Failed,
}

/// The placement of one sidecar's actors.
pub(crate) struct Placement {
    store: Arc<dyn StateStore>,
    prefix: String,
    me: Mutex<Option<Me>>,
    view: RwLock<View>,
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, stored: &Stored) -> Result<T, PlacementError> {
    serde_json::from_slice(&stored.value).map_err(|source| PlacementError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// A new host id: random, so a restarted sidecar is a new host.
fn new_host_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Rendezvous hashing's score of `host` for an actor: FNV-1a, stable across builds
/// and machines (every host must compute the same preference).
fn score(host: &str, actor_type: &str, actor_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [host, "\0", actor_type, "\0", actor_id] {
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // A final mix, so ids that differ in their last byte spread too.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

impl Placement {
    /// Placement over `store`; `namespace` keeps deployments that share a store apart.
    pub fn new(store: Arc<dyn StateStore>, namespace: Option<&str>) -> Self {
        let prefix = match namespace {
            Some(namespace) => format!("tandem-actors||{namespace}"),
            None => "tandem-actors".to_owned(),
        };
        Self {
            store,
            prefix,
            me: Mutex::new(None),
            view: RwLock::new(View::default()),
        }
    }

    fn table_key(&self) -> String {
        format!("{}||hosts", self.prefix)
    }

    fn beat_key(&self, host: &str) -> String {
        format!("{}||host||{host}", self.prefix)
    }

    fn owner_key(&self, actor_type: &str, actor_id: &str) -> String {
        format!("{}||actor||{actor_type}||{actor_id}", self.prefix)
    }

    /// This host's id while it is a member.
    pub fn host_id(&self) -> Option<String> {
        self.me.lock().as_ref().map(|me| me.id.clone())
    }

    /// Whether this host may start a turn now: it is a member with enough lease left.
    pub fn may_run_turns(&self) -> bool {
        self.me
            .lock()
            .as_ref()
            .is_some_and(|me| me.lease_until > Instant::now() + TURN_MARGIN)
    }

    /// Whether this host's lease has run out (or it is not a member).
    pub fn lease_expired(&self) -> bool {
        self.me
            .lock()
            .as_ref()
            .is_none_or(|me| me.lease_until <= Instant::now())
    }

    /// Joins the table as a new host serving `entry.types`.
    pub async fn join(&self, entry: HostEntry) -> Result<String, PlacementError> {
        let id = new_host_id();
        let started = Instant::now();
        let etag = self
            .store
            .set(SetRequest {
                key: self.beat_key(&id),
                value: encode(&Beat { beat: 0 }),
                etag: None,
                concurrency: Concurrency::FirstWrite,
                ttl: None,
            })
            .await?;
        self.change_table(|table| {
            table.hosts.insert(id.clone(), entry.clone());
        })
        .await?;
        *self.me.lock() = Some(Me {
            id: id.clone(),
            beat: 0,
            etag,
            lease_until: started + LEASE,
        });
        Ok(id)
    }

    /// Leaves the table (a graceful stop, after every actor here is deactivated).
    pub async fn leave(&self) {
        let Some(me) = self.me.lock().take() else {
            return;
        };
        let removed = self
            .change_table(|table| {
                table.hosts.remove(&me.id);
            })
            .await;
        let deleted = self
            .store
            .delete(DeleteRequest {
                key: self.beat_key(&me.id),
                etag: Some(me.etag),
                concurrency: Concurrency::LastWrite,
            })
            .await;
        if let Err(error) = removed
            .map(|_| ())
            .and(deleted.map_err(PlacementError::from))
        {
            tracing::warn!("leaving the actor placement table: {error}");
        }
    }

    /// Forgets this host's membership (after an eviction), so it can join anew.
    pub fn forget_me(&self) {
        self.me.lock().take();
    }

    /// Read-modify-write of the membership table, retried on a conflict.
    async fn change_table(&self, change: impl Fn(&mut Table)) -> Result<(), PlacementError> {
        let key = self.table_key();
        loop {
            let stored = self.store.get(&key).await?;
            let (mut table, etag) = match &stored {
                Some(stored) => (decode::<Table>(&key, stored)?, Some(stored.etag.clone())),
                None => (Table::default(), None),
            };
            change(&mut table);
            let written = self
                .store
                .set(SetRequest {
                    key: key.clone(),
                    value: encode(&table),
                    concurrency: if etag.is_some() {
                        Concurrency::LastWrite
                    } else {
                        Concurrency::FirstWrite
                    },
                    etag: etag.clone(),
                    ttl: None,
                })
                .await;
            match written {
                Ok(new_etag) => {
                    let mut view = self.view.write();
                    view.table = table;
                    view.table_etag = Some(new_etag);
                    return Ok(());
                }
                Err(StateError::EtagMismatch(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Renews this host's lease: rewrites its beat record over the ETag of the last
    /// beat. Then refreshes the view of the other hosts.
    pub async fn beat(&self) -> BeatOutcome {
        let Some(me) = self.me.lock().clone() else {
            return BeatOutcome::Evicted;
        };
        let started = Instant::now();
        let written = self
            .store
            .set(SetRequest {
                key: self.beat_key(&me.id),
                value: encode(&Beat { beat: me.beat + 1 }),
                etag: Some(me.etag.clone()),
                concurrency: Concurrency::LastWrite,
                ttl: None,
            })
            .await;
        let outcome = match written {
            Ok(etag) => {
                if let Some(current) = self.me.lock().as_mut() {
                    current.beat = me.beat + 1;
                    current.etag = etag;
                    current.lease_until = started + LEASE;
                }
                BeatOutcome::Renewed
            }
            // The record was deleted (or replaced) by an evicting host.
            Err(StateError::EtagMismatch(_)) => BeatOutcome::Evicted,
            Err(error) => {
                tracing::warn!("renewing this host's actor lease failed: {error}");
                BeatOutcome::Failed
            }
        };
        if outcome == BeatOutcome::Renewed
            && let Err(error) = self.refresh().await
        {
            tracing::warn!("reading the actor placement table failed: {error}");
        }
        // A table that no longer lists this host means it was evicted, even if its
        // beat record is back (it cannot be: only this host writes it).
        if outcome == BeatOutcome::Renewed && !self.view.read().table.hosts.contains_key(&me.id) {
            return BeatOutcome::Evicted;
        }
        outcome
    }

    /// Reads the table and every host's beat record, and evicts hosts seen dead.
    pub async fn refresh(&self) -> Result<(), PlacementError> {
        let key = self.table_key();
        let stored = self.store.get(&key).await?;
        let (table, table_etag) = match &stored {
            Some(stored) => (decode::<Table>(&key, stored)?, Some(stored.etag.clone())),
            None => (Table::default(), None),
        };
        let ids: Vec<String> = table.hosts.keys().cloned().collect();
        let keys: Vec<String> = ids.iter().map(|id| self.beat_key(id)).collect();
        let beats = self.store.bulk_get(&keys).await;
        let now = Instant::now();
        let mut dead = Vec::new();
        {
            let mut view = self.view.write();
            let mut seen = HashMap::new();
            for (id, beat) in ids.iter().zip(beats) {
                let etag = match beat {
                    Ok(stored) => stored.map(|stored| stored.etag),
                    // Unknown this time: keep what was seen before.
                    Err(_) => match view.seen.get(id) {
                        Some(previous) => previous.etag.clone(),
                        None => continue,
                    },
                };
                let entry = match view.seen.get(id) {
                    Some(previous) if previous.etag == etag => previous.clone(),
                    _ => Seen { etag, since: now },
                };
                if entry.etag.is_none() || now.duration_since(entry.since) >= DEAD_AFTER {
                    dead.push((id.clone(), entry.etag.clone()));
                }
                seen.insert(id.clone(), entry);
            }
            view.table = table;
            view.table_etag = table_etag;
            view.seen = seen;
            view.refreshed = Some(now);
        }
        let me = self.host_id();
        for (id, etag) in dead {
            if Some(&id) != me.as_ref() {
                self.evict(&id, etag).await?;
            }
        }
        Ok(())
    }

    /// When the view was last refreshed.
    pub fn refreshed(&self) -> Option<Instant> {
        self.view.read().refreshed
    }

    /// Removes a dead host: its beat record (only if still the one seen), then its
    /// table entry.
    async fn evict(&self, id: &str, etag: Option<String>) -> Result<(), PlacementError> {
        if let Some(etag) = etag {
            match self
                .store
                .delete(DeleteRequest {
                    key: self.beat_key(id),
                    etag: Some(etag),
                    concurrency: Concurrency::LastWrite,
                })
                .await
            {
                Ok(()) => {}
                // It beat in the meantime: alive after all.
                Err(StateError::EtagMismatch(_)) => return Ok(()),
                Err(error) => return Err(error.into()),
            }
        }
        tracing::info!(host = %id, "an actor host stopped renewing its lease: evicted, its actors move to other hosts");
        self.change_table(|table| {
            table.hosts.remove(id);
        })
        .await
    }

    /// Whether `host` is a live member as far as this host knows: listed in the table,
    /// and its beat record not missing.
    pub fn is_live(&self, host: &str) -> bool {
        let view = self.view.read();
        view.table.hosts.contains_key(host)
            && view.seen.get(host).is_none_or(|seen| seen.etag.is_some())
    }

    /// Whether `host` has left or been evicted, read from the store itself (never
    /// from this host's view, which may predate `host`'s joining): it is gone if the
    /// table no longer lists it or its beat record is deleted. Only then may its
    /// actors be taken over.
    pub async fn is_gone(&self, host: &str) -> Result<bool, PlacementError> {
        let key = self.table_key();
        let listed = match self.store.get(&key).await? {
            Some(stored) => decode::<Table>(&key, &stored)?.hosts.contains_key(host),
            None => false,
        };
        if !listed {
            return Ok(true);
        }
        Ok(self.store.get(&self.beat_key(host)).await?.is_none())
    }

    /// The address of a member.
    pub fn address_of(&self, host: &str) -> Option<String> {
        self.view
            .read()
            .table
            .hosts
            .get(host)
            .map(|entry| entry.address.clone())
    }

    /// Whether any host serves `actor_type`.
    pub fn is_hosted(&self, actor_type: &str) -> bool {
        self.view
            .read()
            .table
            .hosts
            .values()
            .any(|entry| entry.types.iter().any(|name| name == actor_type))
    }

    /// How many hosts of the table serve `actor_type`.
    #[cfg(test)]
    fn hosts_of_type(&self, actor_type: &str) -> usize {
        self.view
            .read()
            .table
            .hosts
            .values()
            .filter(|entry| entry.types.iter().any(|name| name == actor_type))
            .count()
    }

    /// The live host of `actor_type` that should activate `actor_id`: the highest
    /// rendezvous score.
    pub fn preferred(&self, actor_type: &str, actor_id: &str) -> Option<String> {
        let view = self.view.read();
        view.table
            .hosts
            .iter()
            .filter(|(id, entry)| {
                entry.types.iter().any(|name| name == actor_type)
                    && view.seen.get(*id).is_none_or(|seen| seen.etag.is_some())
            })
            .max_by_key(|(id, _)| score(id, actor_type, actor_id))
            .map(|(id, _)| id.clone())
    }

    /// The owner record of an actor.
    pub async fn owner(
        &self,
        actor_type: &str,
        actor_id: &str,
    ) -> Result<Option<Owner>, PlacementError> {
        let key = self.owner_key(actor_type, actor_id);
        match self.store.get(&key).await? {
            None => Ok(None),
            Some(stored) => {
                let record: OwnerRecord = decode(&key, &stored)?;
                Ok(Some(Owner {
                    host: record.host,
                    etag: stored.etag,
                }))
            }
        }
    }

    /// Makes this host the owner of an actor: over no record (`previous` `None`) or
    /// over the record of a host that is gone. `Ok(None)`: someone else got there
    /// first. Returns the new record's ETag.
    pub async fn claim(
        &self,
        actor_type: &str,
        actor_id: &str,
        previous: Option<&Owner>,
    ) -> Result<Option<String>, PlacementError> {
        let Some(me) = self.host_id() else {
            return Ok(None);
        };
        let written = self
            .store
            .set(SetRequest {
                key: self.owner_key(actor_type, actor_id),
                value: encode(&OwnerRecord { host: me }),
                etag: previous.map(|owner| owner.etag.clone()),
                concurrency: Concurrency::FirstWrite,
                ttl: None,
            })
            .await;
        match written {
            Ok(etag) => Ok(Some(etag)),
            Err(StateError::EtagMismatch(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes this host's owner record of an actor after deactivating it.
    pub async fn release(&self, actor_type: &str, actor_id: &str, etag: &str) {
        let deleted = self
            .store
            .delete(DeleteRequest {
                key: self.owner_key(actor_type, actor_id),
                etag: Some(etag.to_owned()),
                concurrency: Concurrency::LastWrite,
            })
            .await;
        match deleted {
            Ok(()) | Err(StateError::EtagMismatch(_)) => {}
            Err(error) => tracing::warn!(
                "releasing actor {actor_type}/{actor_id}: {error}; the next host takes it over once this one's lease is seen to end"
            ),
        }
    }

    /// The write that fences an activation's state transaction: the owner record
    /// rewritten over the ETag the activation holds.
    pub fn fence(&self, actor_type: &str, actor_id: &str, etag: &str) -> Option<SetRequest> {
        let host = self.host_id()?;
        Some(SetRequest {
            key: self.owner_key(actor_type, actor_id),
            value: encode(&OwnerRecord { host }),
            etag: Some(etag.to_owned()),
            concurrency: Concurrency::LastWrite,
            ttl: None,
        })
    }

    /// The ETag of an owner record this host holds, read again after a fenced write.
    pub async fn own_etag(&self, actor_type: &str, actor_id: &str) -> Option<String> {
        let me = self.host_id()?;
        match self.owner(actor_type, actor_id).await {
            Ok(Some(owner)) if owner.host == me => Some(owner.etag),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> Arc<dyn StateStore> {
        let component = tandem_spec::Component::new("actors", "state.in-memory");
        let metadata = tandem_spec::ComponentMetadata::new(component, Default::default());
        tandem_components::state::registry()
            .build(&metadata)
            .await
            .unwrap()
    }

    /// Two hosts of type `T` sharing one store, both joined: (A, B, A's id, B's id).
    async fn two_hosts() -> (Placement, Placement, String, String) {
        let shared = store().await;
        let (a, b) = (
            Placement::new(shared.clone(), None),
            Placement::new(shared, None),
        );
        let id_a = a.join(entry("10.0.0.1:1")).await.unwrap();
        let id_b = b.join(entry("10.0.0.2:1")).await.unwrap();
        (a, b, id_a, id_b)
    }

    fn entry(address: &str) -> HostEntry {
        HostEntry {
            address: address.into(),
            app_id: "app".into(),
            types: vec!["T".into()],
        }
    }

    /// Time is paused: the lease arithmetic runs on tokio's clock, advanced by hand.
    #[tokio::test(start_paused = true)]
    async fn a_silent_host_is_evicted_only_after_its_lease_and_loses_its_actors() {
        let (a, b, id_a, id_b) = two_hosts().await;
        b.refresh().await.unwrap();
        assert!(a.may_run_turns() && b.is_live(&id_a));

        // Only one host can create an actor's owner record.
        let etag = a.claim("T", "x", None).await.unwrap().unwrap();
        assert_eq!(b.claim("T", "x", None).await.unwrap(), None);
        let owner = b.owner("T", "x").await.unwrap().unwrap();
        assert_eq!(owner.host, id_a);
        assert!(!b.is_gone(&id_a).await.unwrap());

        // A stops beating. Before DEAD_AFTER, B keeps it; A's own lease ends first.
        for _ in 0..5 {
            tokio::time::advance(BEAT_INTERVAL).await;
            assert_eq!(b.beat().await, BeatOutcome::Renewed);
        }
        assert!(
            b.is_live(&id_a),
            "evicted before its lease could have ended"
        );
        assert!(a.lease_expired() && !a.may_run_turns());
        tokio::time::advance(DEAD_AFTER).await;
        assert_eq!(b.beat().await, BeatOutcome::Renewed);
        assert!(!b.is_live(&id_a));
        assert!(b.is_gone(&id_a).await.unwrap());

        // B takes the actor over A's record; A's next beat says it was evicted, and
        // its fenced writes fail.
        let taken = b.claim("T", "x", Some(&owner)).await.unwrap();
        assert!(taken.is_some());
        assert_eq!(a.beat().await, BeatOutcome::Evicted);
        let fence = a.fence("T", "x", &etag).unwrap();
        assert!(matches!(
            a.store.set(fence).await,
            Err(StateError::EtagMismatch(_))
        ));
        assert_eq!(b.preferred("T", "y"), Some(id_b));
    }

    #[tokio::test(start_paused = true)]
    async fn a_beat_that_lands_before_the_eviction_keeps_the_host() {
        let (a, b, id_a, _) = two_hosts().await;
        b.refresh().await.unwrap();
        let seen = b.view.read().seen[&id_a].etag.clone();
        // A was paused for a long while, then beats just before B evicts with what it saw.
        tokio::time::advance(DEAD_AFTER * 2).await;
        assert_eq!(a.beat().await, BeatOutcome::Renewed);
        b.evict(&id_a, seen).await.unwrap();
        assert!(!b.is_gone(&id_a).await.unwrap(), "a live host was evicted");
        assert_eq!(a.beat().await, BeatOutcome::Renewed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_that_leaves_frees_its_place() {
        let (a, b, id_a, _) = two_hosts().await;
        a.leave().await;
        assert!(b.is_gone(&id_a).await.unwrap());
        b.refresh().await.unwrap();
        assert!(!b.is_hosted("U") && b.is_hosted("T"));
        assert_eq!(b.hosts_of_type("T"), 1);
    }

    #[test]
    fn rendezvous_spreads_actors_and_moves_few_when_a_host_joins() {
        let hosts = ["a", "b", "c"];
        fn pick(hosts: &[&'static str], id: &str) -> &'static str {
            hosts
                .iter()
                .copied()
                .max_by_key(|host| score(host, "T", id))
                .unwrap()
        }
        let mut counts = HashMap::new();
        for id in 0..300 {
            *counts.entry(pick(&hosts, &id.to_string())).or_insert(0) += 1;
        }
        for host in hosts {
            assert!(counts[host] > 60, "{counts:?}");
        }
        let moved = (0..300)
            .filter(|id| {
                let id = id.to_string();
                pick(&hosts, &id) != pick(&["a", "b", "c", "d"], &id)
            })
            .count();
        // About a quarter move, all of them to the new host.
        assert!((40..=110).contains(&moved), "{moved}");
    }
}
