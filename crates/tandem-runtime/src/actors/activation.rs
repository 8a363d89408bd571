//! One actor active on this host: its turns, one at a time and in arrival order
//! (tokio's mutex is fair), reentrant calls of the chain that holds the turn, the
//! ETag of its owner record, and its timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::host_config::Reentrancy;

/// An actor's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ActorKey {
    pub actor_type: String,
    pub actor_id: String,
}

impl ActorKey {
    pub fn new(actor_type: &str, actor_id: &str) -> Self {
        Self {
            actor_type: actor_type.to_owned(),
            actor_id: actor_id.to_owned(),
        }
    }
}

#[derive(Debug)]
struct State {
    /// The owner record's ETag while this host holds it; `None` until claimed.
    etag: Option<String>,
    /// Deactivated (or superseded): no more turns; callers route again.
    closed: bool,
    last_used: Instant,
    /// The reentrancy chain holding the turn, and how deep it is.
    chain: Option<String>,
    depth: u32,
    timers: HashMap<String, CancellationToken>,
}

/// One activation.
#[derive(Debug)]
pub(crate) struct Activation {
    key: ActorKey,
    turn: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<State>,
}

/// Why a call could not enter.
#[derive(Debug)]
pub(crate) enum EnterError {
    Closed,
    TooDeep,
}

/// A call inside the actor: the turn itself, or a reentrant call of its chain.
pub(crate) enum Entered {
    Turn(TurnGuard),
    Reentrant(ReentrantGuard),
}

impl Entered {
    /// The reentrancy chain to send to the app.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Entered::Turn(guard) => guard.chain.as_deref(),
            Entered::Reentrant(guard) => Some(&guard.chain),
        }
    }
}

/// Holds the turn; ends it when dropped.
pub(crate) struct TurnGuard {
    activation: Arc<Activation>,
    chain: Option<String>,
    _turn: OwnedMutexGuard<()>,
}

impl TurnGuard {
    pub fn etag(&self) -> Option<String> {
        self.activation.etag()
    }

    pub fn set_etag(&self, etag: String) {
        self.activation.update_etag(etag);
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let mut state = self.activation.state.lock();
        state.chain = None;
        state.depth = 0;
    }
}

/// A reentrant call; leaves the chain one level shallower when dropped.
pub(crate) struct ReentrantGuard {
    activation: Arc<Activation>,
    chain: String,
}

impl Drop for ReentrantGuard {
    fn drop(&mut self) {
        let mut state = self.activation.state.lock();
        state.depth = state.depth.saturating_sub(1);
    }
}

/// An activation closed for good, holding its last turn until dropped.
pub(crate) struct ClosedTurn {
    etag: Option<String>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl ClosedTurn {
    pub fn etag(&self) -> Option<String> {
        self.etag.clone()
    }
}

impl Activation {
    pub fn new(key: ActorKey) -> Arc<Self> {
        Arc::new(Self {
            key,
            turn: Arc::new(tokio::sync::Mutex::new(())),
            state: Mutex::new(State {
                etag: None,
                closed: false,
                last_used: Instant::now(),
                chain: None,
                depth: 0,
                timers: HashMap::new(),
            }),
        })
    }

    pub fn key(&self) -> &ActorKey {
        &self.key
    }

    /// Waits for the turn, or enters at once as part of the chain holding it.
    pub async fn enter(
        self: &Arc<Self>,
        reentrancy: Reentrancy,
        chain: Option<String>,
    ) -> Result<Entered, EnterError> {
        if reentrancy.enabled
            && let Some(chain) = &chain
        {
            let mut state = self.state.lock();
            if state.closed {
                return Err(EnterError::Closed);
            }
            if state.chain.as_ref() == Some(chain) {
                if state.depth >= reentrancy.max_stack_depth {
                    return Err(EnterError::TooDeep);
                }
                state.depth += 1;
                return Ok(Entered::Reentrant(ReentrantGuard {
                    activation: self.clone(),
                    chain: chain.clone(),
                }));
            }
        }
        let turn = self.turn.clone().lock_owned().await;
        let mut state = self.state.lock();
        if state.closed {
            return Err(EnterError::Closed);
        }
        let chain = reentrancy
            .enabled
            .then(|| chain.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()));
        state.chain = chain.clone();
        state.depth = 1;
        Ok(Entered::Turn(TurnGuard {
            activation: self.clone(),
            chain,
            _turn: turn,
        }))
    }

    /// Closes the activation once the turn in progress is done (waiting at most
    /// `wait`, daprd's drain timeout): no more turns, timers stopped. `None` if it was
    /// closed already.
    pub async fn close(&self, wait: Duration) -> Option<ClosedTurn> {
        let turn = if wait.is_zero() {
            None
        } else {
            tokio::time::timeout(wait, self.turn.clone().lock_owned())
                .await
                .ok()
        };
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        state.closed = true;
        for (_, timer) in state.timers.drain() {
            timer.cancel();
        }
        Some(ClosedTurn {
            etag: state.etag.clone(),
            _turn: turn,
        })
    }

    /// Another host holds the actor now: no more turns here.
    pub fn supersede(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.etag = None;
        for (_, timer) in state.timers.drain() {
            timer.cancel();
        }
    }

    pub fn etag(&self) -> Option<String> {
        self.state.lock().etag.clone()
    }

    pub fn update_etag(&self, etag: String) {
        self.state.lock().etag = Some(etag);
    }

    pub fn touch(&self) {
        self.state.lock().last_used = Instant::now();
    }

    pub fn last_used(&self) -> Instant {
        self.state.lock().last_used
    }

    /// Starts (or restarts) timer `name`: the token stops the previous one.
    pub fn set_timer(&self, name: &str) -> CancellationToken {
        let token = CancellationToken::new();
        if let Some(previous) = self
            .state
            .lock()
            .timers
            .insert(name.to_owned(), token.clone())
        {
            previous.cancel();
        }
        token
    }

    pub fn cancel_timer(&self, name: &str) {
        if let Some(timer) = self.state.lock().timers.remove(name) {
            timer.cancel();
        }
    }

    /// A timer that ended by itself leaves the list (unless it was replaced).
    pub fn timer_done(&self, name: &str, token: &CancellationToken) {
        let mut state = self.state.lock();
        if state
            .timers
            .get(name)
            .is_some_and(|current| current.is_cancelled() || std::ptr::eq(current, token))
        {
            state.timers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_one_at_a_time_and_chains_reenter() {
        let activation = Activation::new(ActorKey::new("T", "1"));
        let off = Reentrancy::default();
        let first = activation.enter(off, None).await.unwrap();
        let waiting = {
            let activation = activation.clone();
            tokio::spawn(async move { activation.enter(off, None).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        waiting.await.unwrap().unwrap();

        let on = Reentrancy {
            enabled: true,
            max_stack_depth: 2,
        };
        let turn = activation.enter(on, Some("chain".into())).await.unwrap();
        assert_eq!(turn.chain(), Some("chain"));
        let again = activation.enter(on, Some("chain".into())).await.unwrap();
        assert!(matches!(again, Entered::Reentrant(_)));
        assert!(matches!(
            activation.enter(on, Some("chain".into())).await,
            Err(EnterError::TooDeep)
        ));
        drop(again);
        drop(turn);
        assert!(activation.close(Duration::from_secs(1)).await.is_some());
        assert!(matches!(
            activation.enter(off, None).await,
            Err(EnterError::Closed)
        ));
        assert!(activation.close(Duration::ZERO).await.is_none());
    }
}
