//! What keeps one client from being served at everyone else's expense: caps per address and in total on control
//! sessions, on connections still saying hello and on bulk transfers ([`PerAddress`]), and a token bucket that
//! paces each session's requests. Over a limit, a client is slowed down (its requests and transfers wait their
//! turn, without holding a thread) rather than refused; only a new connection beyond its address's share is
//! turned away, with a reason.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Things one client address holds at once (control sessions, connections still saying hello, bulk transfers),
/// capped per address and in total.
#[derive(Default)]
pub struct PerAddress {
    open: Mutex<Counts>,
    /// Woken on every release, so a waiting [`PerAddress::acquire`] tries again.
    released: Notify,
}

#[derive(Default)]
struct Counts {
    by_address: HashMap<IpAddr, usize>,
    total: usize,
}

/// Which cap a [`PerAddress::take`] ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Address,
    Total,
}

/// One place in a [`PerAddress`]; given back on drop.
pub struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// A place for `ip`, unless it already holds `per_address` or everyone together holds `total`.
    pub fn take(self: &Arc<Self>, ip: IpAddr, per_address: usize, total: usize) -> Result<AddressSlot, Full> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= total {
            return Err(Full::Total);
        }
        let count = open.by_address.entry(ip).or_default();
        if *count >= per_address {
            return Err(Full::Address);
        }
        *count += 1;
        open.total += 1;
        Ok(AddressSlot { owner: self.clone(), ip })
    }

    /// Waits, without holding a thread, until [`PerAddress::take`] succeeds.
    pub async fn acquire(self: &Arc<Self>, ip: IpAddr, per_address: usize, total: usize) -> AddressSlot {
        loop {
            // Registered before trying, so a release between the try and the wait is not missed.
            let released = self.released.notified();
            if let Ok(slot) = self.take(ip, per_address, total) {
                return slot;
            }
            released.await;
        }
    }

    /// How many places `ip` holds now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.by_address.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.by_address.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.ip);
            }
        }
        open.total = open.total.saturating_sub(1);
        drop(open);
        self.owner.released.notify_waiters();
    }
}

/// A token bucket: up to `burst` requests at once, refilled at `per_second`.
pub struct RequestPace {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RequestPace {
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = f64::from(per_second.max(1));
        RequestPace { per_second, burst: per_second, tokens: per_second, last: now }
    }

    /// Takes a token for a request arriving at `now`; if there is none, how long until there is (the request
    /// waits that long, and the session reads nothing more meanwhile).
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        let wait = (1.0 - self.tokens) / self.per_second;
        // The token this request waits for is spent on it.
        self.tokens -= 1.0;
        Some(Duration::from_secs_f64(wait))
    }

    /// Waits, if need be, until a request may run.
    pub async fn acquire(&mut self) {
        if let Some(wait) = self.take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_of_sessions_and_a_closed_one_frees_its_slot() {
        let sessions = Arc::new(PerAddress::default());
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let first = sessions.take(a, 2, 3).unwrap();
        let _second = sessions.take(a, 2, 3).unwrap();
        assert_eq!(sessions.take(a, 2, 3).err(), Some(Full::Address), "a third session from one address waits");
        let _third = sessions.take(b, 2, 3).expect("another address is not affected");
        assert_eq!(sessions.take(c, 2, 3).err(), Some(Full::Total), "but the total is capped");
        drop(first);
        assert_eq!(sessions.held_by(a), 1);
        assert!(sessions.take(a, 2, 3).is_ok());
    }

    #[test]
    fn a_burst_passes_then_requests_are_paced_to_the_rate() {
        let start = Instant::now();
        let mut pace = RequestPace::new(100, start);
        for _ in 0..100 {
            assert_eq!(pace.take(start), None, "the burst runs at once");
        }
        // The next ones wait 10 ms each, one behind the other.
        let waits: Vec<Duration> = (0..3).map(|_| pace.take(start).unwrap()).collect();
        assert_eq!(waits.iter().map(|w| w.as_millis()).collect::<Vec<_>>(), [10, 20, 30]);
        // A second later the bucket has refilled (less what was borrowed) and the rate holds on average.
        let later = start + Duration::from_secs(1);
        let passed = (0..200).take_while(|_| pace.take(later).is_none()).count();
        assert_eq!(passed, 97);
    }
}
