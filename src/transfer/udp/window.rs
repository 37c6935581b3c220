//! Selective-repeat window logic, sans-IO: plain state machines over sequence numbers and microsecond clocks, so
//! every loss, duplication and reordering pattern can be tested without a socket.
//!
//! [`SendWindow`] decides what the sender sends next. It keeps packets in flight up to the smaller of its
//! congestion window and the receiver's advertised window. Acks carry a cumulative point plus SACK ranges. A
//! packet counts as lost when a packet sent at least a reorder window later (a quarter of the minimum RTT, at
//! least [`MIN_REORDER_WINDOW_US`]) was acknowledged and it sits at least [`REORDER_THRESHOLD`] sequence numbers
//! below the highest acknowledged one, as in TCP's RACK, so reordering is not mistaken for loss; or when the retransmission timer (RFC 6298: smoothed RTT
//! plus four deviations, doubled on each expiry) runs out; then the packets overdue by a whole timeout count as
//! lost, one retransmission may go out even if the window is full (a probe), and the timer is re-armed.
//!
//! How much may be in flight, and how fast it goes out, is [`Bbr`]'s: a model of the path's bottleneck rate and
//! propagation delay sets a pacing rate and a window of about two bandwidth-delay products, so random loss is
//! only repaired, never taken for congestion. Packets leave paced: a packet is due one pacing interval after the
//! one before, with at most [`PACING_CREDIT_US`] of sending saved up, so a train handed to the kernel at once is
//! short. After a retransmission timeout only the timer's probe goes out until an ack shows the path is back.
//!
//! [`ReceiveWindow`] stores packets that arrive ahead of the next expected one and releases payloads strictly in
//! order, so the receiver can write and hash the file as one sequential stream.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::congestion::{Bbr, SendState};

/// Packets acknowledged above a missing one before it counts as lost (as TCP's three duplicate acks).
pub const REORDER_THRESHOLD: u32 = 3;
/// Packets may arrive this much out of their sending order (µs) before one counts as lost.
pub const MIN_REORDER_WINDOW_US: u64 = 1_000;
/// Sending time that may be saved up while the sender waits for something else, and spent in one train.
pub const PACING_CREDIT_US: f64 = 1_000.0;
/// Bounds on the retransmission timeout in microseconds: low enough for loopback, high enough to stop a storm.
const MIN_RTO_US: u64 = 5_000;
const MAX_RTO_US: u64 = 2_000_000;
const INITIAL_RTO_US: u64 = 200_000;

/// RTT estimation and the retransmission timeout, as in RFC 6298.
#[derive(Debug, Clone)]
pub struct Rtt {
    srtt_us: Option<f64>,
    rttvar_us: f64,
    rto_us: u64,
}

impl Default for Rtt {
    fn default() -> Self {
        Rtt { srtt_us: None, rttvar_us: 0.0, rto_us: INITIAL_RTO_US }
    }
}

impl Rtt {
    pub fn sample(&mut self, rtt_us: u64) {
        let r = rtt_us as f64;
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2.0;
            }
            Some(srtt) => {
                self.rttvar_us = 0.75 * self.rttvar_us + 0.25 * (srtt - r).abs();
                self.srtt_us = Some(0.875 * srtt + 0.125 * r);
            }
        }
        let srtt = self.srtt_us.unwrap_or(r);
        // At least two round trips: loss detection by acks (RACK) needs about one and a reorder window, and a
        // timeout that beats it stalls the sender for nothing on a path whose delay jitters.
        let rto = (srtt + (4.0 * self.rttvar_us).max(1000.0)).max(2.0 * srtt);
        self.rto_us = (rto as u64).clamp(MIN_RTO_US, MAX_RTO_US);
    }

    pub fn rto_us(&self) -> u64 {
        self.rto_us
    }

    pub fn srtt_us(&self) -> Option<f64> {
        self.srtt_us
    }

    fn back_off(&mut self) {
        self.rto_us = (self.rto_us * 2).min(MAX_RTO_US);
    }
}

/// What to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    New(u32),
    Retransmit(u32),
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    sent_us: u64,
    /// What the congestion model knew at the send, for the delivery-rate sample its ack makes.
    state: SendState,
}

/// The sender's side of selective repeat with congestion control.
#[derive(Debug)]
pub struct SendWindow {
    total: u32,
    next_new: u32,
    /// Every sequence number below this is acknowledged.
    cumulative: u32,
    in_flight: BTreeMap<u32, Flight>,
    lost: BTreeSet<u32>,
    /// Highest sequence number acknowledged so far, and the latest send time among acknowledged packets.
    highest_acked: Option<u32>,
    latest_acked_sent_us: u64,
    peer_window: u32,
    /// The receiver's buffer: it drops any packet this far or further beyond its cumulative point.
    peer_capacity: u32,
    bbr: Bbr,
    /// When the next packet is due, by the pacing rate (µs, fractional so fast rates do not round to zero).
    next_send_us: f64,
    /// A retransmission timeout fired and no ack has come since: only probes go out.
    timed_out: bool,
    /// The retransmission timer does not fire again before this time.
    timer_rearmed_us: u64,
    /// Retransmissions allowed beyond a full window, granted by the timer.
    probes: u32,
    pub rtt: Rtt,
    pub retransmits: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    pub last_progress_us: u64,
}

impl SendWindow {
    /// A window for `total` packets; `peer_window` is the receiver's buffer, from its start request.
    pub fn new(total: u32, peer_window: u32, now_us: u64) -> Self {
        SendWindow {
            total,
            next_new: 0,
            cumulative: 0,
            in_flight: BTreeMap::new(),
            lost: BTreeSet::new(),
            highest_acked: None,
            latest_acked_sent_us: 0,
            peer_window: peer_window.max(1),
            peer_capacity: peer_window.max(1),
            bbr: Bbr::new(now_us),
            next_send_us: now_us as f64,
            timed_out: false,
            timer_rearmed_us: 0,
            probes: 0,
            rtt: Rtt::default(),
            retransmits: 0,
            timeouts: 0,
            last_progress_us: now_us,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.cumulative >= self.total
    }

    pub fn cumulative(&self) -> u32 {
        self.cumulative
    }

    /// Packets the congestion model allows in flight.
    pub fn cwnd(&self) -> f64 {
        self.bbr.cwnd()
    }

    /// The congestion model, for statistics and tests.
    pub fn congestion(&self) -> &Bbr {
        &self.bbr
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the window has room for another packet and something to put there (pacing aside).
    fn has_room(&self) -> bool {
        let limit = self.bbr.cwnd().min(self.peer_window as f64);
        let room = !self.timed_out && (self.in_flight.len() as f64) < limit;
        room && (!self.lost.is_empty() || self.may_send_new())
    }

    /// Whether a new packet is left to send and fits in the receiver's buffer.
    fn may_send_new(&self) -> bool {
        self.next_new < self.total && self.next_new < self.cumulative.saturating_add(self.peer_capacity)
    }

    fn may_probe(&self) -> bool {
        self.probes > 0 && !self.lost.is_empty()
    }

    /// True if [`SendWindow::next_packet`] would give a packet at `now_us`.
    pub fn can_send(&self, now_us: u64) -> bool {
        (self.has_room() && self.next_send_us <= now_us as f64) || self.may_probe()
    }

    /// When the sender should look again, if it cannot send now: the next pacing slot when the window has room,
    /// or the retransmission timer, whichever is sooner.
    pub fn next_event_us(&self) -> Option<u64> {
        let paced = self.has_room().then_some(self.next_send_us.ceil() as u64);
        match (paced, self.deadline_us()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The packet due at `now_us`, lost ones first; `None` when the window is full, the pacing rate says wait, or
    /// all is sent.
    pub fn next_packet(&mut self, now_us: u64) -> Option<Next> {
        if !self.has_room() || self.next_send_us > now_us as f64 {
            if self.may_probe() {
                self.probes -= 1;
                return self.lost.pop_first().map(Next::Retransmit);
            }
            return None;
        }
        if let Some(seq) = self.lost.pop_first() {
            return Some(Next::Retransmit(seq));
        }
        self.may_send_new().then(|| {
            self.next_new += 1;
            Next::New(self.next_new - 1)
        })
    }

    pub fn on_sent(&mut self, next: Next, now_us: u64) {
        let seq = match next {
            Next::New(seq) => seq,
            Next::Retransmit(seq) => {
                self.retransmits += 1;
                seq
            }
        };
        self.in_flight.insert(seq, Flight { sent_us: now_us, state: self.bbr.on_send(now_us) });
        let interval = 1e6 / self.bbr.pacing_pps().max(1.0);
        self.next_send_us = self.next_send_us.max(now_us as f64 - PACING_CREDIT_US) + interval;
    }

    /// Applies an acknowledgement: cumulative point, SACK ranges, the receiver's window and an RTT sample.
    pub fn on_ack(&mut self, cumulative: u32, ranges: &[(u32, u32)], peer_window: u32, echo_us: u32, now_us: u64) {
        self.peer_window = peer_window.max(1);
        let cumulative = cumulative.min(self.total);
        let mut newly_acked = 0u32;
        if cumulative > self.cumulative {
            let acked: Vec<u32> = self.in_flight.range(..cumulative).map(|(s, _)| *s).collect();
            for seq in acked {
                self.acknowledge(seq, now_us);
                newly_acked += 1;
            }
            self.lost = self.lost.split_off(&cumulative);
            newly_acked = newly_acked.max(cumulative - self.cumulative);
            self.cumulative = cumulative;
            self.mark_highest(cumulative - 1);
        }
        for &(first, end) in ranges {
            let (first, end) = (first.max(self.cumulative), end.min(self.total));
            if first >= end {
                continue;
            }
            let acked: Vec<u32> = self.in_flight.range(first..end).map(|(s, _)| *s).collect();
            for seq in acked {
                self.acknowledge(seq, now_us);
                newly_acked += 1;
            }
            let lost_acked: Vec<u32> = self.lost.range(first..end).copied().collect();
            for seq in lost_acked {
                self.lost.remove(&seq);
            }
            self.mark_highest(end - 1);
        }
        if newly_acked > 0 {
            self.last_progress_us = now_us;
            self.timed_out = false;
            let sample = (now_us as u32).wrapping_sub(echo_us) as u64;
            if sample < MAX_RTO_US * 4 {
                self.rtt.sample(sample);
                self.bbr.on_rtt(sample, now_us);
            }
        }
        self.detect_losses();
        self.bbr.update(self.in_flight.len(), now_us);
    }

    fn acknowledge(&mut self, seq: u32, now_us: u64) {
        if let Some(flight) = self.in_flight.remove(&seq) {
            self.latest_acked_sent_us = self.latest_acked_sent_us.max(flight.sent_us);
            self.bbr.on_delivered(flight.state, now_us);
        }
    }

    fn mark_highest(&mut self, seq: u32) {
        self.highest_acked = Some(self.highest_acked.map_or(seq, |h| h.max(seq)));
    }

    /// Packets sent before an acknowledged one and far enough below the highest acknowledged are lost.
    fn detect_losses(&mut self) {
        let Some(highest) = self.highest_acked else { return };
        let Some(below) = highest.checked_sub(REORDER_THRESHOLD - 1) else { return };
        let reorder_window = self.bbr.min_rtt_us().map_or(0, |rtt| rtt / 4).max(MIN_REORDER_WINDOW_US);
        let lost: Vec<u32> = self
            .in_flight
            .range(..below)
            .filter(|(_, f)| f.sent_us + reorder_window <= self.latest_acked_sent_us)
            .map(|(s, _)| *s)
            .collect();
        self.bbr.on_lost(lost.len() as u64);
        for seq in lost {
            self.in_flight.remove(&seq);
            self.lost.insert(seq);
        }
    }

    /// When the retransmission timer fires: the oldest packet in flight plus the timeout, in µs.
    pub fn deadline_us(&self) -> Option<u64> {
        let oldest = self.in_flight.values().map(|f| f.sent_us).min()?;
        Some((oldest + self.rtt.rto_us()).max(self.timer_rearmed_us))
    }

    /// Retransmission timer: packets overdue by a whole timeout are lost (the oldest at least), one goes out as a
    /// probe, nothing else does until an ack comes, and the timer backs off.
    pub fn on_timeout(&mut self, now_us: u64) {
        if self.deadline_us().is_none_or(|deadline| deadline > now_us) {
            return;
        }
        let rto = self.rtt.rto_us();
        let Some((&oldest, _)) = self.in_flight.iter().min_by_key(|(_, f)| f.sent_us) else { return };
        let mut overdue: Vec<u32> =
            self.in_flight.iter().filter(|(_, f)| f.sent_us + rto <= now_us).map(|(s, _)| *s).collect();
        if overdue.is_empty() {
            overdue.push(oldest);
        }
        self.bbr.on_lost(overdue.len() as u64);
        for seq in overdue {
            self.in_flight.remove(&seq);
            self.lost.insert(seq);
        }
        self.probes = 1;
        self.timed_out = true;
        self.timeouts += 1;
        self.rtt.back_off();
        self.timer_rearmed_us = now_us + self.rtt.rto_us();
    }
}

/// The receiver's side: buffers packets ahead of the next expected one and hands payloads out in order.
#[derive(Debug)]
pub struct ReceiveWindow {
    total: u32,
    /// Next sequence number to hand out in order.
    next: u32,
    /// Packets `next ..` that have arrived; index 0 is `next`.
    ahead: VecDeque<Option<Bytes>>,
    capacity: u32,
    stored: u32,
    pub duplicates: u64,
    /// Send time of the last data packet, to echo for RTT.
    pub last_sent_us: u32,
}

/// What became of one arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    Stored,
    /// Arrived before, or already handed out.
    Duplicate,
    /// Beyond the window or the end of the file: a misbehaving sender.
    OutOfRange,
}

impl ReceiveWindow {
    pub fn new(total: u32, capacity: u32) -> Self {
        ReceiveWindow {
            total,
            next: 0,
            ahead: VecDeque::new(),
            capacity: capacity.max(1),
            stored: 0,
            duplicates: 0,
            last_sent_us: 0,
        }
    }

    pub fn on_data(&mut self, seq: u32, payload: Bytes) -> Arrival {
        if seq < self.next {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        if seq >= self.total || seq - self.next >= self.capacity {
            return Arrival::OutOfRange;
        }
        let index = (seq - self.next) as usize;
        if self.ahead.len() <= index {
            self.ahead.resize(index + 1, None);
        }
        if self.ahead[index].is_some() {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.ahead[index] = Some(payload);
        self.stored += 1;
        Arrival::Stored
    }

    /// Takes `seq` straight through when it is the next expected packet and nothing waits ahead of it, so the
    /// caller can copy its payload out without storing it. Returns false if the packet must go through
    /// [`ReceiveWindow::on_data`].
    pub fn take_in_order(&mut self, seq: u32) -> bool {
        if seq == self.next && self.ahead.is_empty() && seq < self.total {
            self.next += 1;
            true
        } else {
            false
        }
    }

    /// The next payload in order, if it has arrived.
    pub fn pop_ready(&mut self) -> Option<Bytes> {
        let payload = self.ahead.front_mut()?.take()?;
        self.ahead.pop_front();
        self.next += 1;
        self.stored -= 1;
        Some(payload)
    }

    pub fn cumulative(&self) -> u32 {
        self.next
    }

    /// True while packets wait ahead of a missing one.
    pub fn has_gap(&self) -> bool {
        !self.ahead.is_empty()
    }

    pub fn is_complete(&self) -> bool {
        self.next >= self.total
    }

    /// Room left for packets ahead of the gap.
    pub fn free(&self) -> u32 {
        self.capacity - self.stored
    }

    /// Ranges held above the cumulative point, lowest first, at most `max`: when there are more, the lowest half
    /// (what the sender must resend first) and the highest half (what arrived last, so the sender's loss detection
    /// sees how far the data has got). The sender keeps what each ack tells it, so as new data arrives on top every
    /// range is reported while it is among the highest.
    pub fn ranges(&self, max: usize) -> Vec<(u32, u32)> {
        let mut ranges = Vec::new();
        let mut start: Option<u32> = None;
        for (i, slot) in self.ahead.iter().enumerate() {
            let seq = self.next + i as u32;
            match (slot.is_some(), start) {
                (true, None) => start = Some(seq),
                (false, Some(first)) => {
                    ranges.push((first, seq));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(first) = start {
            ranges.push((first, self.next + self.ahead.len() as u32));
        }
        if ranges.len() > max {
            let low = max / 2;
            ranges.drain(low..ranges.len() - (max - low));
        }
        ranges
    }
}
