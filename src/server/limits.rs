//! What keeps one client from being served at everyone else's expense: a cap on control sessions per address,
//! a per-session gate on transfers running at once, and a token bucket that paces each session's requests.
//! Over a limit, a client is slowed down (its requests and transfers wait their turn) rather than refused; only
//! a new session beyond its address's share is turned away, with a reason.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Control sessions per client address.
#[derive(Default)]
pub struct SessionsPerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One session's place in [`SessionsPerAddress`]; given back on drop.
pub struct SessionSlot {
    owner: Arc<SessionsPerAddress>,
    ip: IpAddr,
}

impl SessionsPerAddress {
    /// A slot for a new session from `ip`, unless it already has `max`.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<SessionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SessionSlot { owner: self.clone(), ip })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
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
        let sessions = Arc::new(SessionsPerAddress::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = sessions.take(a, 2).unwrap();
        let _second = sessions.take(a, 2).unwrap();
        assert!(sessions.take(a, 2).is_none(), "a third session from one address waits for a free slot");
        assert!(sessions.take(b, 2).is_some(), "another address is not affected");
        drop(first);
        assert!(sessions.take(a, 2).is_some());
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
