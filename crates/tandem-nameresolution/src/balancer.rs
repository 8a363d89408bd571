//! Spreading calls over the instances of an app id, round robin, past dead ones.
//!
//! Each app id has a turn counter: the address list is taken in a fixed (sorted) order,
//! and every call starts one step further along it. An address that refused a
//! connection is put in quarantine: for a few seconds it goes to the back of the line,
//! behind every healthy address, and is tried first again only once the quarantine is
//! over — an instance that restarts on the same port rejoins on its own, and one that is
//! gone for good is dropped by the resolver soon anyway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long an address that refused a connection is passed over.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(5);

/// Round-robin turns and quarantined addresses, per app id. Shared by all calls
/// (`&self` everywhere; the state sits behind one short-held lock).
#[derive(Debug)]
pub struct Balancer {
    quarantine: Duration,
    apps: Mutex<HashMap<String, AppTurns>>,
}

#[derive(Debug, Default)]
struct AppTurns {
    next: usize,
    /// Address → when its quarantine ends.
    dead: HashMap<SocketAddr, Instant>,
}

impl Default for Balancer {
    fn default() -> Self {
        Self::new(DEFAULT_QUARANTINE)
    }
}

impl Balancer {
    /// A balancer that passes over a dead address for `quarantine`.
    pub fn new(quarantine: Duration) -> Self {
        Self {
            quarantine,
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// All of `addresses`, in the order to try them for this call: healthy addresses
    /// first, starting at this call's turn, then the quarantined ones, the one whose
    /// quarantine ends first in front. Successive calls for one `app_id` start at
    /// successive addresses.
    pub fn order(&self, app_id: &str, addresses: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut sorted = addresses.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() {
            return sorted;
        }
        let now = Instant::now();
        let mut apps = self.apps.lock();
        let turns = apps.entry(app_id.to_owned()).or_default();
        // Forget quarantines that are over, and addresses the app no longer has.
        turns
            .dead
            .retain(|address, until| *until > now && sorted.binary_search(address).is_ok());
        let start = turns.next % sorted.len();
        turns.next = turns.next.wrapping_add(1);
        let (mut healthy, mut quarantined): (Vec<_>, Vec<_>) = sorted[start..]
            .iter()
            .chain(&sorted[..start])
            .copied()
            .partition(|address| !turns.dead.contains_key(address));
        quarantined.sort_by_key(|address| turns.dead[address]);
        healthy.append(&mut quarantined);
        healthy
    }

    /// The address to call: the first of [`order`](Self::order), `None` only when there
    /// are no addresses.
    pub fn pick(&self, app_id: &str, addresses: &[SocketAddr]) -> Option<SocketAddr> {
        self.order(app_id, addresses).first().copied()
    }

    /// `address` refused a connection: pass it over for the quarantine.
    pub fn report_dead(&self, app_id: &str, address: SocketAddr) {
        let until = Instant::now() + self.quarantine;
        let mut apps = self.apps.lock();
        apps.entry(app_id.to_owned())
            .or_default()
            .dead
            .insert(address, until);
    }

    /// `address` answered: end its quarantine early, if it was in one.
    pub fn report_alive(&self, app_id: &str, address: SocketAddr) {
        let mut apps = self.apps.lock();
        if let Some(turns) = apps.get_mut(app_id) {
            turns.dead.remove(&address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn two_instances_take_turns() {
        let balancer = Balancer::default();
        let both = [address(2), address(1)];
        let picks: Vec<u16> = (0..4)
            .map(|_| balancer.pick("orders", &both).unwrap().port())
            .collect();
        assert_eq!(picks, [1, 2, 1, 2]);
        // Another app id has its own turns.
        assert_eq!(balancer.pick("cart", &both).unwrap().port(), 1);
        assert_eq!(balancer.pick("orders", &both).unwrap().port(), 1);
    }

    #[test]
    fn order_lists_every_address_once() {
        let balancer = Balancer::default();
        let three = [address(1), address(2), address(3), address(2)];
        assert_eq!(
            balancer.order("a", &three),
            [address(1), address(2), address(3)]
        );
        assert_eq!(
            balancer.order("a", &three),
            [address(2), address(3), address(1)]
        );
        assert!(balancer.order("a", &[]).is_empty());
        assert_eq!(balancer.pick("a", &[]), None);
    }

    #[test]
    fn a_dead_address_is_skipped_then_retried_after_quarantine() {
        let balancer = Balancer::new(Duration::from_millis(150));
        let both = [address(1), address(2)];
        balancer.report_dead("orders", address(1));
        for _ in 0..4 {
            assert_eq!(balancer.pick("orders", &both), Some(address(2)));
        }
        assert_eq!(
            balancer.order("orders", &both),
            [address(2), address(1)],
            "still tried, last"
        );
        std::thread::sleep(Duration::from_millis(200));
        let picks: Vec<u16> = (0..2)
            .map(|_| balancer.pick("orders", &both).unwrap().port())
            .collect();
        assert!(picks.contains(&1), "back in the rotation: {picks:?}");
    }

    #[test]
    fn all_dead_still_gives_an_address() {
        let balancer = Balancer::default();
        let both = [address(1), address(2)];
        balancer.report_dead("orders", address(2));
        balancer.report_dead("orders", address(1));
        assert_eq!(
            balancer.order("orders", &both),
            [address(2), address(1)],
            "the quarantine that ends first goes first"
        );
    }

    #[test]
    fn alive_ends_the_quarantine() {
        let balancer = Balancer::default();
        let one = [address(1), address(2)];
        balancer.report_dead("orders", address(1));
        balancer.report_alive("orders", address(1));
        let picks: Vec<u16> = (0..2)
            .map(|_| balancer.pick("orders", &one).unwrap().port())
            .collect();
        assert_eq!(picks, [1, 2]);
    }

    #[test]
    fn shared_between_threads() {
        let balancer = std::sync::Arc::new(Balancer::default());
        let both = [address(1), address(2)];
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let balancer = balancer.clone();
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|_| balancer.pick("orders", &both) == Some(address(1)))
                        .count()
                })
            })
            .collect();
        let ones: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ones, 200, "exactly every other call");
    }
}
