//! Congestion control for tandem's UDP transfers, after BBR: the sender keeps a model of the path, its bottleneck
//! rate (the highest delivery rate measured over the last ten round trips) and its propagation delay (the lowest
//! RTT of the last ten seconds), and sends at a paced rate near that bottleneck with about two bandwidth-delay
//! products in flight. Loss does not steer it: a radio link or a flaky tunnel drops packets without being full,
//! and a sender that halves on every loss (as loss-based TCP does) crawls there. Only when a round trip loses more
//! than a fifth of its packets, which no random loss does, is the model cut, since then the path really is full.
//!
//! The phases: Startup doubles the rate every round trip until it stops growing, or until a whole round trip's
//! packets all waited in a queue (the pipe is full either way; the second notices it before a deep queue fills,
//! a shallow one overflows, or the flow's own losses pile up); Drain empties
//! the queue Startup built; ProbeBw cruises at the bottleneck rate, probing 25% above it for one round trip in
//! eight and draining after; ProbeRtt, when no lower RTT has been seen for ten seconds, holds four packets in
//! flight for 200 ms so the queue empties and the true propagation delay shows, which is also what lets
//! competing flows see theirs. Sans-IO: plain numbers and a clock given by the caller.

use std::collections::VecDeque;

/// Startup's gain, 2/ln 2: the smallest that doubles the delivery rate every round trip.
const STARTUP_GAIN: f64 = 2.885;
/// ProbeBw's pacing gains, one phase per round trip: probe above the model, drain what that queued, cruise.
const PROBE_BW_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Window in bandwidth-delay products once the pipe is full: room for acks that come late or in bunches.
const CWND_GAIN: f64 = 2.0;
/// Round trips the bottleneck-rate filter remembers.
const BW_ROUNDS: u64 = 10;
/// A minimum RTT older than this is measured again (ProbeRtt).
const MIN_RTT_LIFE_US: u64 = 10_000_000;
/// How long ProbeRtt holds its small window once it is reached.
const PROBE_RTT_US: u64 = 200_000;
/// Round trips without 25% more bandwidth after which Startup takes the pipe to be full.
const FULL_PIPE_ROUNDS: u32 = 3;
/// Share of a round trip's packets that must be lost before loss counts as congestion.
pub const LOSS_CEILING: f64 = 0.2;
/// After a round trip lost more than [`LOSS_CEILING`], pacing stays under this share of the bottleneck estimate
/// for [`BW_ROUNDS`] round trips.
const LOSS_CUT: f64 = 0.85;
/// A round trip whose lowest RTT passes the minimum by this factor and [`QUEUE_SLACK_US`] had a standing queue.
const QUEUE_FACTOR: f64 = 1.25;
const QUEUE_SLACK_US: f64 = 2_000.0;
pub const MIN_CWND: f64 = 4.0;
pub const INITIAL_CWND: f64 = 32.0;
/// Packets the window holds beyond the model: a train the kernel sends at once, and a delayed ack's worth.
const CWND_HEADROOM: f64 = 64.0;
/// The RTT assumed for the first pacing rate, before any sample.
const INITIAL_RTT_US: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Startup,
    Drain,
    /// In phase `phase` of [`PROBE_BW_GAINS`] since `since_us`.
    ProbeBw {
        phase: usize,
        since_us: u64,
    },
    /// Holding a small window until `until_us` (unset until the flight has shrunk to it).
    ProbeRtt {
        until_us: Option<u64>,
    },
}

/// What the model knew when a packet was sent, which its ack turns into a delivery-rate sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendState {
    /// Packets delivered before this one was sent.
    pub delivered: u64,
    /// When the last of those was delivered.
    pub delivered_us: u64,
    /// When the packet delivered last then had been sent.
    pub first_sent_us: u64,
    pub sent_us: u64,
}

#[derive(Debug, Clone)]
pub struct Bbr {
    mode: Mode,
    /// The highest delivery rate (packets per second) of each recent round trip.
    bw_by_round: VecDeque<(u64, f64)>,
    min_rtt_us: Option<u64>,
    min_rtt_at_us: u64,
    delivered: u64,
    delivered_us: u64,
    first_sent_us: u64,
    round: u64,
    /// The round ends when a packet sent after this many deliveries is delivered.
    round_end: u64,
    full_bw: f64,
    full_bw_rounds: u32,
    filled_pipe: bool,
    lost_in_round: u64,
    delivered_in_round: u64,
    /// The lowest RTT sample of this round trip.
    round_min_rtt_us: Option<u64>,
    /// A pacing ceiling (packets per second) after heavy loss, and the round it lasts until.
    loss_cap: Option<(f64, u64)>,
}

impl Bbr {
    pub fn new(now_us: u64) -> Self {
        Bbr {
            mode: Mode::Startup,
            bw_by_round: VecDeque::new(),
            min_rtt_us: None,
            min_rtt_at_us: now_us,
            delivered: 0,
            delivered_us: now_us,
            first_sent_us: now_us,
            round: 0,
            round_end: 0,
            full_bw: 0.0,
            full_bw_rounds: 0,
            filled_pipe: false,
            lost_in_round: 0,
            delivered_in_round: 0,
            round_min_rtt_us: None,
            loss_cap: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The bottleneck rate the model believes in, packets per second; 0 before the first sample.
    pub fn bottleneck_pps(&self) -> f64 {
        self.bw_by_round.iter().map(|(_, bw)| *bw).fold(0.0, f64::max)
    }

    pub fn min_rtt_us(&self) -> Option<u64> {
        self.min_rtt_us
    }

    /// What a packet sent now carries.
    pub fn on_send(&self, now_us: u64) -> SendState {
        SendState {
            delivered: self.delivered,
            delivered_us: self.delivered_us,
            first_sent_us: self.first_sent_us,
            sent_us: now_us,
        }
    }

    /// One packet arrived (acknowledged cumulatively or by a SACK range).
    pub fn on_delivered(&mut self, sent: SendState, now_us: u64) {
        self.delivered += 1;
        self.delivered_in_round += 1;
        self.delivered_us = now_us;
        self.first_sent_us = sent.sent_us;
        // The rate over the packet's flight: what was delivered meanwhile, over the longer of the sending and the
        // acking spans, so acks that arrive bunched together do not inflate it.
        let send_span = sent.sent_us.saturating_sub(sent.first_sent_us);
        let ack_span = now_us.saturating_sub(sent.delivered_us);
        let span = send_span.max(ack_span);
        if span > 0 {
            let rate = (self.delivered - sent.delivered) as f64 * 1e6 / span as f64;
            self.sample_bw(rate);
        }
        if sent.delivered >= self.round_end {
            self.round_end = self.delivered;
            self.start_round();
        }
    }

    /// `count` packets were found lost. In Startup, a loss while packets queue means the queue overflowed: the
    /// pipe is full, and waiting for the end of the round trip would only lose more.
    pub fn on_lost(&mut self, count: u64) {
        self.lost_in_round += count;
        // The round's lowest RTT so far, not the latest: jitter alone lifts single samples.
        if self.mode == Mode::Startup && count > 0 && self.queueing(self.round_min_rtt_us) {
            self.filled_pipe = true;
        }
    }

    /// Whether an RTT shows a queue: well above the minimum.
    fn queueing(&self, rtt_us: Option<u64>) -> bool {
        match (rtt_us, self.min_rtt_us) {
            (Some(rtt), Some(min)) => rtt as f64 > min as f64 * QUEUE_FACTOR + QUEUE_SLACK_US,
            _ => false,
        }
    }

    /// An RTT sample (µs). A minimum older than ten seconds gives way to the sample, and (once the pipe is known
    /// to be full) ProbeRtt drains the queue so the next samples show the path's own delay.
    pub fn on_rtt(&mut self, rtt_us: u64, now_us: u64) {
        self.round_min_rtt_us = Some(self.round_min_rtt_us.map_or(rtt_us, |min| min.min(rtt_us)));
        let expired = now_us.saturating_sub(self.min_rtt_at_us) > MIN_RTT_LIFE_US;
        if expired || self.min_rtt_us.is_none_or(|min| rtt_us <= min) {
            self.min_rtt_us = Some(rtt_us);
            self.min_rtt_at_us = now_us;
        }
        if expired && self.filled_pipe && !matches!(self.mode, Mode::ProbeRtt { .. }) {
            self.mode = Mode::ProbeRtt { until_us: None };
        }
    }

    /// Moves between phases; call after each batch of acks with what is now in flight.
    pub fn update(&mut self, in_flight: usize, now_us: u64) {
        let bdp = self.bdp();
        match self.mode {
            Mode::Startup if self.filled_pipe => self.mode = Mode::Drain,
            Mode::Drain if (in_flight as f64) <= bdp => self.enter_probe_bw(now_us),
            Mode::ProbeBw { phase, since_us } => {
                let round_trip = self.min_rtt_us.unwrap_or(INITIAL_RTT_US);
                let gain = PROBE_BW_GAINS[phase];
                // Probing lasts a round trip and until the flight has grown to match; draining ends early once
                // the extra is gone.
                let done = now_us.saturating_sub(since_us) > round_trip
                    && (gain <= 1.0 || in_flight as f64 >= gain * bdp || self.lost_in_round > 0);
                let drained = gain < 1.0 && (in_flight as f64) <= bdp;
                if done || drained {
                    self.mode = Mode::ProbeBw { phase: (phase + 1) % PROBE_BW_GAINS.len(), since_us: now_us };
                }
            }
            Mode::ProbeRtt { until_us: None } if (in_flight as f64) <= MIN_CWND => {
                let hold = PROBE_RTT_US.max(self.min_rtt_us.unwrap_or(0));
                self.mode = Mode::ProbeRtt { until_us: Some(now_us + hold) };
            }
            Mode::ProbeRtt { until_us: Some(until) } if now_us >= until => {
                self.min_rtt_at_us = now_us;
                if self.filled_pipe { self.enter_probe_bw(now_us) } else { self.mode = Mode::Startup }
            }
            _ => {}
        }
    }

    /// Packets per second to pace at.
    pub fn pacing_pps(&self) -> f64 {
        let bw = self.bottleneck_pps();
        if bw <= 0.0 {
            let rtt = self.min_rtt_us.unwrap_or(INITIAL_RTT_US).max(1) as f64;
            return STARTUP_GAIN * INITIAL_CWND * 1e6 / rtt;
        }
        let gain = match self.mode {
            Mode::Startup => STARTUP_GAIN,
            Mode::Drain => 1.0 / STARTUP_GAIN,
            Mode::ProbeBw { phase, .. } => PROBE_BW_GAINS[phase],
            Mode::ProbeRtt { .. } => 1.0,
        };
        match self.loss_cap {
            Some((cap, _)) => (gain * bw).min(cap),
            None => gain * bw,
        }
    }

    /// Packets allowed in flight.
    pub fn cwnd(&self) -> f64 {
        if matches!(self.mode, Mode::ProbeRtt { .. }) {
            return MIN_CWND;
        }
        if self.bottleneck_pps() <= 0.0 || self.min_rtt_us.is_none() {
            return INITIAL_CWND;
        }
        let gain = if self.mode == Mode::Startup { STARTUP_GAIN } else { CWND_GAIN };
        (gain * self.bdp() + CWND_HEADROOM).max(MIN_CWND)
    }

    /// The bandwidth-delay product in packets.
    fn bdp(&self) -> f64 {
        self.bottleneck_pps() * self.min_rtt_us.unwrap_or(INITIAL_RTT_US) as f64 / 1e6
    }

    fn sample_bw(&mut self, rate: f64) {
        match self.bw_by_round.back_mut() {
            Some((round, best)) if *round == self.round => *best = best.max(rate),
            _ => self.bw_by_round.push_back((self.round, rate)),
        }
    }

    fn start_round(&mut self) {
        let lost = self.lost_in_round as f64;
        let sent = lost + self.delivered_in_round as f64;
        if self.filled_pipe && sent > 0.0 && lost / sent > LOSS_CEILING {
            self.loss_cap = Some((self.bottleneck_pps() * LOSS_CUT, self.round + BW_ROUNDS));
        }
        if self.loss_cap.is_some_and(|(_, until)| self.round >= until) {
            self.loss_cap = None;
        }
        let queued = self.queueing(self.round_min_rtt_us);
        self.lost_in_round = 0;
        self.delivered_in_round = 0;
        self.round_min_rtt_us = None;
        if !self.filled_pipe && queued && self.round > 1 {
            self.filled_pipe = true;
        }
        if !self.filled_pipe {
            let bw = self.bottleneck_pps();
            if bw >= self.full_bw * 1.25 {
                self.full_bw = bw;
                self.full_bw_rounds = 0;
            } else {
                self.full_bw_rounds += 1;
                self.filled_pipe = self.full_bw_rounds >= FULL_PIPE_ROUNDS;
            }
        }
        self.round += 1;
        while self.bw_by_round.front().is_some_and(|(round, _)| round + BW_ROUNDS <= self.round) {
            self.bw_by_round.pop_front();
        }
    }

    fn enter_probe_bw(&mut self, now_us: u64) {
        // Start in a cruising phase: probing right after draining would refill the queue at once.
        self.mode = Mode::ProbeBw { phase: 2 + (self.round as usize % 6), since_us: now_us };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `rounds` round trips of a path of `pps` packets per second and `rtt_us`, a window at a time.
    fn drive(bbr: &mut Bbr, pps: f64, rtt_us: u64, rounds: u32, now: &mut u64) {
        for _ in 0..rounds {
            let per_round = (pps * rtt_us as f64 / 1e6).min(bbr.cwnd()).max(1.0) as u64;
            let sent: Vec<SendState> = (0..per_round).map(|i| bbr.on_send(*now + i * 1_000_000 / pps as u64)).collect();
            for state in sent {
                let at = state.sent_us + rtt_us;
                bbr.on_rtt(rtt_us, at);
                bbr.on_delivered(state, at);
                bbr.update(0, at);
            }
            *now += rtt_us.max(per_round * 1_000_000 / pps as u64);
        }
    }

    #[test]
    fn startup_finds_the_bottleneck_then_cruises_near_it() {
        let mut bbr = Bbr::new(0);
        let mut now = 0;
        drive(&mut bbr, 8_000.0, 50_000, 40, &mut now);
        let bw = bbr.bottleneck_pps();
        assert!((7_000.0..=9_000.0).contains(&bw), "bottleneck estimate {bw}");
        assert!(matches!(bbr.mode(), Mode::ProbeBw { .. }), "{:?}", bbr.mode());
        // About two bandwidth-delay products (400 packets) plus headroom.
        assert!((700.0..=1_000.0).contains(&bbr.cwnd()), "cwnd {}", bbr.cwnd());
    }

    #[test]
    fn random_loss_does_not_shrink_the_model_but_heavy_loss_does() {
        let mut bbr = Bbr::new(0);
        let mut now = 0;
        drive(&mut bbr, 8_000.0, 50_000, 40, &mut now);
        let before = bbr.bottleneck_pps();
        bbr.on_lost(4); // about 1% of a round trip's 400 packets
        drive(&mut bbr, 8_000.0, 50_000, 1, &mut now);
        assert!(bbr.bottleneck_pps() >= before * 0.95, "{} after 1% loss, was {before}", bbr.bottleneck_pps());
        let pacing = bbr.pacing_pps();
        bbr.on_lost(200);
        drive(&mut bbr, 8_000.0, 50_000, 2, &mut now);
        assert!(
            bbr.pacing_pps() <= pacing.max(before) * 0.9,
            "pacing {} after 33% loss, was {pacing}",
            bbr.pacing_pps()
        );
    }

    #[test]
    fn a_stale_minimum_rtt_is_measured_again_with_a_small_window() {
        let mut bbr = Bbr::new(0);
        let mut now = 0;
        drive(&mut bbr, 8_000.0, 50_000, 40, &mut now);
        now += MIN_RTT_LIFE_US + 1_000_000;
        bbr.on_rtt(60_000, now);
        assert_eq!(bbr.mode(), Mode::ProbeRtt { until_us: None });
        assert_eq!(bbr.cwnd(), MIN_CWND);
        bbr.update(4, now);
        bbr.update(4, now + PROBE_RTT_US);
        assert!(matches!(bbr.mode(), Mode::ProbeBw { .. }), "{:?}", bbr.mode());
    }
}
