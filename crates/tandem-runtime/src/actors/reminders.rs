//! Timers and reminders.
//!
//! A timer belongs to one activation: a task that runs its turns until the actor is
//! deactivated or the timer is removed. A reminder is durable: registered in the
//! actor state store — the list of a type's reminders under Dapr's key `actors||{type}`
//! and each reminder's progress (how often it fired, when it is next due) in its own
//! record — so it survives restarts of the sidecar and the app, and any host of the
//! type can fire it. Before firing, a host advances the progress record with a
//! compare-and-swap on its ETag: of two hosts that both think a reminder is theirs,
//! one fires it, and each due time fires at most once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tandem_components::state::{
    Concurrency, DeleteRequest, Operation, SetRequest, StateError, StateStore,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::activation::Activation;
use super::schedule::{Schedule, ScheduleError};
use super::{Actors, Turn, TurnKind};
use crate::error::Error;

/// How late a fire may be and still count as on time.
const LATE: Duration = Duration::from_millis(500);

/// The answer header with which an app cancels the reminder that called it.
pub(crate) const CANCEL_HEADER: &str = "x-daprremindercancel";

fn is_true(value: &http::HeaderValue) -> bool {
    matches!(
        value.to_str().map(str::to_ascii_lowercase).as_deref(),
        Ok("true" | "1" | "yes" | "on")
    )
}

/// How often each host reads its types' reminder lists, to see reminders other hosts
/// registered or removed.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A reminder to register (`POST /v1.0/actors/{type}/{id}/reminders/{name}`).
#[derive(Debug, Clone, Default)]
pub struct ReminderRequest {
    pub actor_type: String,
    pub actor_id: String,
    pub name: String,
    pub due_time: String,
    pub period: String,
    pub ttl: String,
    pub data: serde_json::Value,
}

/// A timer to start (`POST /v1.0/actors/{type}/{id}/timers/{name}`).
#[derive(Debug, Clone, Default)]
pub struct TimerRequest {
    pub actor_type: String,
    pub actor_id: String,
    pub name: String,
    pub due_time: String,
    pub period: String,
    pub ttl: String,
    pub callback: String,
    pub data: serde_json::Value,
}

impl TimerRequest {
    pub(crate) fn schedule(&self) -> Result<Schedule, ScheduleError> {
        Schedule::timer(&self.due_time, &self.period, &self.ttl, SystemTime::now())
    }
}

/// A registered reminder, as `GET .../reminders/{name}` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReminderInfo {
    pub actor_type: String,
    pub actor_id: String,
    pub name: String,
    pub due_time: String,
    pub period: String,
    pub ttl: String,
    pub data: serde_json::Value,
    /// When it was registered (RFC 3339).
    pub registered_time: String,
}

/// One reminder in a type's list, in daprd's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredReminder {
    #[serde(rename = "actorID")]
    actor_id: String,
    actor_type: String,
    name: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    period: String,
    #[serde(default)]
    due_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    ttl: String,
    #[serde(default)]
    registered_time: String,
    /// Milliseconds since the epoch, the registration instant schedules count from.
    #[serde(default)]
    registered_ms: u64,
    /// Tells a re-registered reminder's progress record from an older one's.
    #[serde(default)]
    generation: String,
}

/// A reminder's progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    generation: String,
    fired: u32,
    /// When it is next due, in milliseconds since the epoch.
    next_ms: u64,
}

/// The reminders as this host last read them, and a bell rung when they change here.
#[derive(Default)]
pub(crate) struct Reminders {
    changed: Notify,
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339 in UTC, as daprd writes times.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn list_key(actor_type: &str) -> String {
    format!("actors||{actor_type}")
}

impl Actors {
    fn progress_key(&self, actor_type: &str, actor_id: &str, name: &str) -> String {
        format!("tandem-actors||reminder||{actor_type}||{actor_id}||{name}")
    }

    fn reminder_store(&self) -> Result<&Arc<dyn StateStore>, Error> {
        Ok(&self.store()?.store)
    }

    /// Reminders are managed on a sidecar whose app hosts their type, as in daprd.
    fn check_hosted(&self, actor_type: &str) -> Result<(), Error> {
        self.store()?;
        if !self.config().hosts(actor_type) {
            return Err(Error::ActorReminderNotHosted);
        }
        Ok(())
    }

    /// Reads a type's reminder list and its ETag.
    async fn read_list(
        &self,
        actor_type: &str,
    ) -> Result<(Vec<StoredReminder>, Option<String>), StateError> {
        let store = self.reminder_store().map_err(StateError::unavailable)?;
        match store.get(&list_key(actor_type)).await? {
            None => Ok((Vec::new(), None)),
            Some(stored) => {
                let list = serde_json::from_slice(&stored.value).unwrap_or_else(|error| {
                    tracing::warn!(
                        "the reminder list of actor type {actor_type} is not readable ({error}); it is treated as empty"
                    );
                    Vec::new()
                });
                Ok((list, Some(stored.etag)))
            }
        }
    }

    /// Changes a type's reminder list together with other writes, in one transaction
    /// that fails if the list changed meanwhile (then it is read and changed again).
    async fn change_list(
        &self,
        actor_type: &str,
        change: impl Fn(&mut Vec<StoredReminder>) -> Vec<Operation>,
    ) -> Result<(), StateError> {
        let store = self.reminder_store().map_err(StateError::unavailable)?;
        loop {
            let (mut list, etag) = self.read_list(actor_type).await?;
            let mut operations = change(&mut list);
            operations.push(Operation::Upsert(SetRequest {
                key: list_key(actor_type),
                value: Bytes::from(serde_json::to_vec(&list).unwrap_or_default()),
                concurrency: if etag.is_some() {
                    Concurrency::LastWrite
                } else {
                    Concurrency::FirstWrite
                },
                etag,
                ttl: None,
            }));
            match store.transact(operations).await {
                Err(StateError::EtagMismatch(_)) => continue,
                done => {
                    self.reminders().changed.notify_one();
                    return done;
                }
            }
        }
    }

    /// Registers (or replaces) a reminder.
    pub async fn register_reminder(&self, request: ReminderRequest) -> Result<(), Error> {
        self.check_hosted(&request.actor_type)?;
        if request.actor_type.is_empty() || request.actor_id.is_empty() || request.name.is_empty() {
            return Err(Error::Malformed(
                "the actor type, actor id and reminder name must not be empty".into(),
            ));
        }
        let now = SystemTime::now();
        let schedule = Schedule::reminder(&request.due_time, &request.period, &request.ttl, now)
            .map_err(|error| Error::ActorReminderCreate {
                reason: error.to_string(),
            })?;
        let Some(first) = schedule.first() else {
            return Err(Error::ActorReminderCreate {
                reason: "the reminder would never fire: its ttl ends before its due time".into(),
            });
        };
        let generation = uuid::Uuid::new_v4().simple().to_string();
        let reminder = StoredReminder {
            actor_id: request.actor_id.clone(),
            actor_type: request.actor_type.clone(),
            name: request.name.clone(),
            data: request.data.clone(),
            period: request.period.clone(),
            due_time: request.due_time.clone(),
            ttl: request.ttl.clone(),
            registered_time: rfc3339(now),
            registered_ms: millis(now),
            generation: generation.clone(),
        };
        let progress = Progress {
            generation,
            fired: 0,
            next_ms: millis(first),
        };
        let progress_key = self.progress_key(&request.actor_type, &request.actor_id, &request.name);
        self.change_list(&request.actor_type, |list| {
            list.retain(|kept| !(kept.actor_id == reminder.actor_id && kept.name == reminder.name));
            list.push(reminder.clone());
            vec![Operation::Upsert(SetRequest {
                key: progress_key.clone(),
                value: Bytes::from(serde_json::to_vec(&progress).unwrap_or_default()),
                etag: None,
                concurrency: Concurrency::LastWrite,
                ttl: None,
            })]
        })
        .await
        .map_err(|error| Error::ActorReminderCreate {
            reason: error.to_string(),
        })
    }

    /// Removes a reminder; removing one that does not exist is not an error.
    pub async fn unregister_reminder(
        &self,
        actor_type: &str,
        actor_id: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.check_hosted(actor_type)?;
        let progress_key = self.progress_key(actor_type, actor_id, name);
        self.change_list(actor_type, |list| {
            list.retain(|kept| !(kept.actor_id == actor_id && kept.name == name));
            vec![Operation::Delete(DeleteRequest {
                key: progress_key.clone(),
                etag: None,
                concurrency: Concurrency::LastWrite,
            })]
        })
        .await
        .map_err(|error| Error::ActorReminderDelete {
            reason: error.to_string(),
        })
    }

    /// Removes every reminder of an actor type, or of one actor of it, in one rewrite
    /// of the type's list.
    pub async fn unregister_reminders(
        &self,
        actor_type: &str,
        actor_id: Option<&str>,
    ) -> Result<(), Error> {
        self.check_hosted(actor_type)?;
        self.change_list(actor_type, |list| {
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|reminder| actor_id.is_none_or(|id| reminder.actor_id == id));
            *list = kept;
            gone.iter()
                .map(|reminder| {
                    Operation::Delete(DeleteRequest {
                        key: self.progress_key(actor_type, &reminder.actor_id, &reminder.name),
                        etag: None,
                        concurrency: Concurrency::LastWrite,
                    })
                })
                .collect()
        })
        .await
        .map_err(|error| Error::ActorReminderDelete {
            reason: error.to_string(),
        })
    }

    /// The reminders of an actor type, or of one actor of it.
    pub async fn list_reminders(
        &self,
        actor_type: &str,
        actor_id: Option<&str>,
    ) -> Result<Vec<ReminderInfo>, Error> {
        self.check_hosted(actor_type)?;
        let (list, _) =
            self.read_list(actor_type)
                .await
                .map_err(|error| Error::ActorReminderGet {
                    reason: error.to_string(),
                })?;
        Ok(list
            .into_iter()
            .filter(|reminder| actor_id.is_none_or(|id| reminder.actor_id == id))
            .map(|reminder| ReminderInfo {
                actor_type: reminder.actor_type,
                actor_id: reminder.actor_id,
                name: reminder.name,
                due_time: reminder.due_time,
                period: reminder.period,
                ttl: reminder.ttl,
                data: reminder.data,
                registered_time: reminder.registered_time,
            })
            .collect())
    }

    /// One reminder.
    pub async fn get_reminder(
        &self,
        actor_type: &str,
        actor_id: &str,
        name: &str,
    ) -> Result<Option<ReminderInfo>, Error> {
        Ok(self
            .list_reminders(actor_type, Some(actor_id))
            .await?
            .into_iter()
            .find(|reminder| reminder.name == name))
    }

    /// Fires `reminder` if it is due and this host is the one to fire it. Returns when
    /// it is next due, as far as this host knows.
    async fn fire_if_due(self: &Arc<Self>, reminder: &StoredReminder) -> Option<SystemTime> {
        let store = self.reminder_store().ok()?.clone();
        let key = self.progress_key(&reminder.actor_type, &reminder.actor_id, &reminder.name);
        let stored = match store.get(&key).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!("reading reminder progress {key}: {error}");
                return Some(SystemTime::now() + RELOAD_INTERVAL);
            }
        };
        let progress: Progress = serde_json::from_slice(&stored.value).ok()?;
        if progress.generation != reminder.generation {
            // Re-registered meanwhile: the list will say so on the next read.
            return Some(SystemTime::now() + RELOAD_INTERVAL);
        }
        let due = time_of(progress.next_ms);
        if due > SystemTime::now() {
            return Some(due);
        }
        if !self
            .fires_here(&reminder.actor_type, &reminder.actor_id)
            .await
        {
            return Some(SystemTime::now() + RELOAD_INTERVAL);
        }
        let schedule = Schedule::reminder(
            &reminder.due_time,
            &reminder.period,
            &reminder.ttl,
            time_of(reminder.registered_ms),
        )
        .ok()?;
        let fired = progress.fired.saturating_add(1);
        // A fire that comes late (no host could fire it: all were down, or the actor's
        // host had just died) happens once, now, and the schedule continues from it:
        // missed periods are not fired in a burst, and two fires are never closer than
        // a period. A fire on time keeps the schedule's own grid.
        let now = SystemTime::now();
        let late = now.duration_since(due).unwrap_or_default() > LATE;
        let next = schedule.next(fired, if late { now } else { due });
        // Advance first: whoever wins this write fires this due time, once.
        let advanced = match next {
            Some(next) => store
                .set(SetRequest {
                    key: key.clone(),
                    value: Bytes::from(
                        serde_json::to_vec(&Progress {
                            generation: progress.generation.clone(),
                            fired,
                            next_ms: millis(next),
                        })
                        .unwrap_or_default(),
                    ),
                    etag: Some(stored.etag.clone()),
                    concurrency: Concurrency::LastWrite,
                    ttl: None,
                })
                .await
                .map(|_| ()),
            None => {
                store
                    .delete(DeleteRequest {
                        key: key.clone(),
                        etag: Some(stored.etag.clone()),
                        concurrency: Concurrency::LastWrite,
                    })
                    .await
            }
        };
        match advanced {
            Ok(()) => {}
            Err(StateError::EtagMismatch(_)) => return Some(SystemTime::now()),
            Err(error) => {
                tracing::warn!("advancing reminder {}: {error}", reminder.name);
                return Some(SystemTime::now() + RELOAD_INTERVAL);
            }
        }
        if next.is_none() {
            // Its last fire: it leaves the list.
            let (actor_id, name) = (reminder.actor_id.clone(), reminder.name.clone());
            let removed = self
                .change_list(&reminder.actor_type, |list| {
                    list.retain(|kept| !(kept.actor_id == actor_id && kept.name == name));
                    Vec::new()
                })
                .await;
            if let Err(error) = removed {
                tracing::warn!("removing finished reminder {name}: {error}");
            }
        }
        let turn = Turn {
            actor_type: reminder.actor_type.clone(),
            actor_id: reminder.actor_id.clone(),
            kind: TurnKind::Reminder {
                name: reminder.name.clone(),
                data: reminder.data.clone(),
                due_time: reminder.due_time.clone(),
                period: reminder.period.clone(),
            },
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let this = self.clone();
        tokio::spawn(async move {
            let actor = format!("{}/{}", turn.actor_type, turn.actor_id);
            let (actor_type, actor_id, name) = (
                turn.actor_type.clone(),
                turn.actor_id.clone(),
                match &turn.kind {
                    TurnKind::Reminder { name, .. } => name.clone(),
                    _ => String::new(),
                },
            );
            match this.invoke(turn).await {
                // The app may end its reminder by answering with `X-DaprReminderCancel`.
                Ok(answer) if answer.headers.get(CANCEL_HEADER).is_some_and(is_true) => {
                    if let Err(error) = this
                        .unregister_reminder(&actor_type, &actor_id, &name)
                        .await
                    {
                        tracing::warn!("cancelling reminder {name} of actor {actor}: {error}");
                    }
                }
                Ok(answer) if answer.status.is_success() => {}
                Ok(answer) => {
                    tracing::warn!(
                        "a reminder of actor {actor}: the app answered {}",
                        answer.status
                    );
                }
                Err(error) => {
                    tracing::warn!("a reminder of actor {actor} could not be delivered: {error}");
                }
            }
        });
        next
    }

    /// Whether this host fires reminders of the actor: it holds the actor, or nobody
    /// does and rendezvous hashing prefers this host.
    async fn fires_here(&self, actor_type: &str, actor_id: &str) -> bool {
        let Some(placement) = &self.placement else {
            return false;
        };
        let Some(me) = placement.host_id() else {
            return false;
        };
        if self
            .active
            .lock()
            .contains_key(&super::ActorKey::new(actor_type, actor_id))
        {
            return true;
        }
        match placement.owner(actor_type, actor_id).await {
            Ok(Some(owner)) if owner.host == me => true,
            Ok(Some(owner)) if placement.is_live(&owner.host) => false,
            Ok(_) => placement.preferred(actor_type, actor_id).as_ref() == Some(&me),
            Err(_) => false,
        }
    }
}

/// The reminder loop of a host: reads its types' reminder lists every
/// [`RELOAD_INTERVAL`] (or at once when one changes here) and fires what is due.
pub(crate) async fn run(actors: Arc<Actors>) {
    // When each reminder is next due, as far as this host knows.
    let mut due: HashMap<(String, String, String, String), SystemTime> = HashMap::new();
    let mut reloaded: Option<tokio::time::Instant> = None;
    let mut lists: Vec<StoredReminder> = Vec::new();
    loop {
        let now = SystemTime::now();
        let wake = due
            .values()
            .min()
            .and_then(|soonest| soonest.duration_since(now).ok())
            .unwrap_or(Duration::ZERO)
            .min(RELOAD_INTERVAL);
        let wake = if due.values().any(|at| *at <= now) {
            Duration::ZERO
        } else {
            wake.max(Duration::from_millis(5))
        };
        tokio::select! {
            _ = actors.shutdown.cancelled() => return,
            _ = actors.reminders().changed.notified() => { reloaded = None; }
            _ = tokio::time::sleep(wake) => {}
        }
        if !actors.hosting.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        if reloaded.is_none_or(|at| at.elapsed() >= RELOAD_INTERVAL) {
            let mut fresh = Vec::new();
            for actor_type in actors.config().types.clone() {
                match actors.read_list(&actor_type).await {
                    Ok((list, _)) => fresh.extend(list),
                    Err(error) => {
                        tracing::debug!("reading the reminders of {actor_type}: {error}");
                    }
                }
            }
            reloaded = Some(tokio::time::Instant::now());
            let known: std::collections::HashSet<_> = fresh.iter().map(identity).collect();
            due.retain(|key, _| known.contains(key));
            for reminder in &fresh {
                due.entry(identity(reminder)).or_insert(UNIX_EPOCH);
            }
            lists = fresh;
        }
        let now = SystemTime::now();
        for reminder in &lists {
            let key = identity(reminder);
            if due.get(&key).is_some_and(|at| *at <= now) {
                match actors.fire_if_due(reminder).await {
                    Some(next) => {
                        due.insert(key, next);
                    }
                    None => {
                        due.insert(key, now + RELOAD_INTERVAL * 3600);
                    }
                }
            }
        }
    }
}

fn identity(reminder: &StoredReminder) -> (String, String, String, String) {
    (
        reminder.actor_type.clone(),
        reminder.actor_id.clone(),
        reminder.name.clone(),
        reminder.generation.clone(),
    )
}

/// A timer's task: runs its turns on its activation until it ends, is removed, or the
/// actor is deactivated.
pub(crate) async fn run_timer(
    actors: Arc<Actors>,
    activation: Arc<Activation>,
    request: TimerRequest,
    schedule: Schedule,
    stop: CancellationToken,
) {
    let mut next = schedule.first();
    let mut fired: u32 = 0;
    while let Some(due) = next {
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = actors.shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        let turn = Turn {
            actor_type: request.actor_type.clone(),
            actor_id: request.actor_id.clone(),
            kind: TurnKind::Timer {
                name: request.name.clone(),
                callback: request.callback.clone(),
                data: request.data.clone(),
                due_time: request.due_time.clone(),
                period: request.period.clone(),
            },
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        if stop.is_cancelled() || !actors.timer_turn(&activation, turn).await {
            break;
        }
        fired = fired.saturating_add(1);
        next = schedule.next(fired, due);
    }
    activation.timer_done(&request.name, &stop);
}

/// A reminder turn forwarded from another host: its body is what the app receives.
pub(crate) fn reminder_turn(name: &str, body: &[u8]) -> TurnKind {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |field: &str| {
        body.get(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    TurnKind::Reminder {
        name: name.to_owned(),
        data: body.get("data").cloned().unwrap_or_default(),
        due_time: text("dueTime"),
        period: text("period"),
    }
}

/// A timer turn forwarded from another host.
pub(crate) fn timer_turn(name: &str, body: &[u8]) -> TurnKind {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |field: &str| {
        body.get(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    TurnKind::Timer {
        name: name.to_owned(),
        callback: text("callback"),
        data: body.get("data").cloned().unwrap_or_default(),
        due_time: text("dueTime"),
        period: text("period"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_764_756_000_123)),
            "2025-12-03T10:00:00.123Z"
        );
    }
}
