//! Slows token guessing down: an address that fails to authenticate `max_auth_failures` times is refused before
//! hello until `auth_lockout` has passed since its last failure. Server-wide, once more than
//! [`GLOBAL_FACTOR`] × `max_auth_failures` failures came in within one lockout period (guesses spread over many
//! addresses), a single failure locks an address out. A success clears its address's count.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many addresses' worth of failures the server takes within one lockout period before it locks out every
/// address at its first failure.
pub const GLOBAL_FACTOR: u32 = 4;
/// Addresses remembered at most; stale ones go first, so a sweep over many addresses costs bounded memory.
const MAX_REMEMBERED: usize = 65_536;

#[derive(Default)]
pub struct AuthFailures {
    /// A std mutex: held for a few map operations, never across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_address: HashMap<IpAddr, Failures>,
    /// When the most recent failures happened, server-wide, oldest first; only the last lockout period counts.
    recent: VecDeque<Instant>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl AuthFailures {
    /// How much longer `ip` is refused, if it is.
    pub fn locked(&self, ip: IpAddr, max: u32, lockout: Duration, now: Instant) -> Option<Duration> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.forget_before(now, lockout);
        let global_flood = inner.recent.len() >= (GLOBAL_FACTOR * max.max(1)) as usize;
        let threshold = if global_flood { 1 } else { max.max(1) };
        let failures = inner.by_address.get(&ip)?;
        let until = failures.last + lockout;
        (failures.count >= threshold && now < until).then(|| until - now)
    }

    /// Notes a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr, max: u32, lockout: Duration, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.forget_before(now, lockout);
        if inner.by_address.len() >= MAX_REMEMBERED && !inner.by_address.contains_key(&ip) {
            inner.by_address.retain(|_, f| now.saturating_duration_since(f.last) < lockout);
            if inner.by_address.len() >= MAX_REMEMBERED {
                // Every one is recent: the flood itself already locks out at the first failure.
                return;
            }
        }
        let failures = inner.by_address.entry(ip).or_insert(Failures { count: 0, last: now });
        // A failure long after the last one starts a new count.
        if now.saturating_duration_since(failures.last) >= lockout {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        let keep = (GLOBAL_FACTOR * max.max(1)) as usize;
        if inner.recent.len() >= keep {
            inner.recent.pop_front();
        }
        inner.recent.push_back(now);
    }

    /// Clears `ip`'s count after it proved the token.
    pub fn succeeded(&self, ip: IpAddr) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_address.remove(&ip);
    }
}

impl Inner {
    fn forget_before(&mut self, now: Instant, lockout: Duration) {
        while self.recent.front().is_some_and(|at| now.saturating_duration_since(*at) >= lockout) {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_address_is_locked_out_after_its_failures_and_let_in_again_later() {
        let (failures, start) = (AuthFailures::default(), Instant::now());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..4 {
            failures.failed(a, 5, MINUTE, start);
        }
        assert_eq!(failures.locked(a, 5, MINUTE, start), None, "four failures are allowed");
        failures.failed(a, 5, MINUTE, start);
        assert_eq!(failures.locked(a, 5, MINUTE, start + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(failures.locked(b, 5, MINUTE, start), None, "another address is not affected");
        assert_eq!(failures.locked(a, 5, MINUTE, start + MINUTE), None, "the lockout ends");
        failures.failed(b, 5, MINUTE, start);
        failures.succeeded(b);
        assert_eq!(failures.locked(b, 5, MINUTE, start), None);
    }

    #[test]
    fn guesses_spread_over_many_addresses_lock_each_out_at_its_first_failure() {
        let (failures, start) = (AuthFailures::default(), Instant::now());
        for n in 0..(GLOBAL_FACTOR * 5) {
            let ip = IpAddr::from([10, 0, 1, n as u8]);
            failures.failed(ip, 5, MINUTE, start);
        }
        let fresh: IpAddr = "10.0.2.1".parse().unwrap();
        assert_eq!(failures.locked(fresh, 5, MINUTE, start), None, "an address that never failed gets in");
        failures.failed(fresh, 5, MINUTE, start);
        assert!(failures.locked(fresh, 5, MINUTE, start).is_some(), "its first failure locks it out");
        assert_eq!(failures.locked(fresh, 5, MINUTE, start + MINUTE), None);
    }
}
