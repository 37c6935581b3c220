//! Connections still saying hello (and proving the token), capped per address and in total. When the total is
//! reached, a newcomer does not find the door shut: the oldest handshake of the address holding the most is
//! evicted to make room, as long as that address holds more than the newcomer's would. A few addresses that open
//! hundreds of half-finished hellos thus cost each other their places, never a client from another address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::limits::Full;

#[derive(Default)]
pub struct Handshakes {
    /// A std mutex: held only for map operations, never across an await.
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// Per address, its handshakes oldest first: a number and the token that evicts it.
    by_address: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
    total: usize,
    next: u64,
}

/// One connection's place among those saying hello; given back on drop. `evicted` is cancelled if a newcomer
/// took the place.
pub struct HandshakeSlot {
    owner: Arc<Handshakes>,
    ip: IpAddr,
    id: u64,
    pub evicted: CancellationToken,
}

impl Handshakes {
    /// A place for `ip`, unless it already holds `per_address`, or everyone together holds `total` and no address
    /// holds more than `ip` would with this one.
    pub fn take(self: &Arc<Self>, ip: IpAddr, per_address: usize, total: usize) -> Result<HandshakeSlot, Full> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open.by_address.get(&ip).map_or(0, VecDeque::len);
        if held >= per_address {
            return Err(Full::Address);
        }
        if open.total >= total {
            let (top, top_held) = open
                .by_address
                .iter()
                .map(|(ip, queue)| (*ip, queue.len()))
                .max_by_key(|(_, len)| *len)
                .ok_or(Full::Total)?;
            if top_held <= held + 1 {
                return Err(Full::Total);
            }
            let queue = open.by_address.get_mut(&top).ok_or(Full::Total)?;
            if let Some((_, evicted)) = queue.pop_front() {
                evicted.cancel();
                open.total -= 1;
            }
        }
        let (id, evicted) = (open.next, CancellationToken::new());
        open.next += 1;
        open.by_address.entry(ip).or_default().push_back((id, evicted.clone()));
        open.total += 1;
        Ok(HandshakeSlot { owner: self.clone(), ip, id, evicted })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = open.by_address.get_mut(&self.ip) else { return };
        // An evicted slot has left the queue already, and was counted out then.
        let Some(at) = queue.iter().position(|(id, _)| *id == self.id) else { return };
        queue.remove(at);
        if queue.is_empty() {
            open.by_address.remove(&self.ip);
        }
        open.total -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_evicts_the_oldest_of_the_biggest_holder_never_a_lone_newcomer() {
        let pool = Arc::new(Handshakes::default());
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let held_a: Vec<_> = (0..3).map(|_| pool.take(a, 3, 5).unwrap()).collect();
        let held_b: Vec<_> = (0..2).map(|_| pool.take(b, 3, 5).unwrap()).collect();
        assert_eq!(pool.take(a, 3, 5).err(), Some(Full::Address));
        assert_eq!(pool.take(b, 3, 5).err(), Some(Full::Total), "b would hold as many as a: nobody is evicted");
        let newcomer = pool.take(c, 3, 5).expect("c gets in by evicting a's oldest");
        assert!(held_a[0].evicted.is_cancelled() && !held_a[1].evicted.is_cancelled());
        assert!(held_b.iter().all(|slot| !slot.evicted.is_cancelled()));
        drop(held_a);
        assert!(!newcomer.evicted.is_cancelled());
        let _again = pool.take(a, 3, 5).expect("a's places came back, the evicted one only once");
        let _more = pool.take(a, 3, 5).unwrap();
        assert_eq!(pool.take(a, 3, 5).err(), Some(Full::Total));
    }
}
