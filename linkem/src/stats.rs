//! Per-direction counters: updated by the wire thread without locks, read as a snapshot at any time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) received_packets: AtomicU64,
    pub(crate) received_bytes: AtomicU64,
    pub(crate) forwarded_packets: AtomicU64,
    pub(crate) forwarded_bytes: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) queue_dropped: AtomicU64,
    pub(crate) cut_dropped: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) peak_queue_bytes: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            received_packets: self.received_packets.load(Relaxed),
            received_bytes: self.received_bytes.load(Relaxed),
            forwarded_packets: self.forwarded_packets.load(Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Relaxed),
            lost: self.lost.load(Relaxed),
            queue_dropped: self.queue_dropped.load(Relaxed),
            cut_dropped: self.cut_dropped.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            peak_queue_bytes: self.peak_queue_bytes.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
        }
    }
}

/// What one direction of the wire has done so far. Packets count IP packets; bytes count their whole length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Read from the sending namespace.
    pub received_packets: u64,
    pub received_bytes: u64,
    /// Handed to the receiving namespace (a duplicate counts twice).
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped because the queue was full.
    pub queue_dropped: u64,
    /// Dropped because the link was cut.
    pub cut_dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Packets the receiving namespace refused.
    pub write_errors: u64,
    /// The most bytes the queue held at once.
    pub peak_queue_bytes: u64,
    /// Packets on the wire now (accepted, not yet delivered).
    pub in_flight: u64,
}

impl DirectionStats {
    /// Every packet received has been forwarded or dropped (nothing in flight).
    pub fn settled(&self) -> bool {
        self.in_flight == 0
            && self.received_packets + self.duplicated
                == self.forwarded_packets + self.lost + self.queue_dropped + self.cut_dropped + self.write_errors
    }

    pub fn dropped(&self) -> u64 {
        self.lost + self.queue_dropped + self.cut_dropped
    }
}

impl fmt::Display for DirectionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets ({} bytes) in, {} ({} bytes) out; lost {}, queue drops {} (peak {} bytes), cut {}, \
             duplicated {}, reordered {}",
            self.received_packets,
            self.received_bytes,
            self.forwarded_packets,
            self.forwarded_bytes,
            self.lost,
            self.queue_dropped,
            self.peak_queue_bytes,
            self.cut_dropped,
            self.duplicated,
            self.reordered
        )?;
        if self.write_errors > 0 {
            write!(f, ", {} refused by the receiver", self.write_errors)?;
        }
        Ok(())
    }
}

/// Both directions' counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub a_to_b: DirectionStats,
    pub b_to_a: DirectionStats,
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "A→B: {}", self.a_to_b)?;
        write!(f, "B→A: {}", self.b_to_a)
    }
}
