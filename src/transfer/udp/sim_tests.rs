//! Property tests of the window logic over a simulated network: random loss, duplication and reordering in both
//! directions, with a virtual clock. Every run must end with every sequence number delivered exactly once, in
//! order, and without the sender retransmitting endlessly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bytes::Bytes;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::window::{Next, ReceiveWindow, SendWindow};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Message {
    Data { seq: u32, sent_us: u32 },
    Ack { cumulative: u32, ranges: Vec<(u32, u32)>, window: u32, echo_us: u32 },
}

struct Network {
    rng: StdRng,
    loss: f64,
    duplicate: f64,
    jitter_us: u64,
    /// Deliveries by time: (time, tie-breaker, to receiver?, message).
    queue: BinaryHeap<Reverse<(u64, u64, bool, Message)>>,
    counter: u64,
}

impl Network {
    fn send(&mut self, now: u64, to_receiver: bool, message: Message) {
        let copies = if self.rng.random_bool(self.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let delay = 100 + self.rng.random_range(0..=self.jitter_us);
            self.counter += 1;
            self.queue.push(Reverse((now + delay, self.counter, to_receiver, message.clone())));
        }
    }
}

/// Runs one transfer of `total` packets; returns the order the receiver released them in and the retransmissions.
fn simulate(total: u32, loss: f64, duplicate: f64, jitter_us: u64, seed: u64) -> (Vec<u32>, u64) {
    let mut net =
        Network { rng: StdRng::seed_from_u64(seed), loss, duplicate, jitter_us, queue: BinaryHeap::new(), counter: 0 };
    let mut sender = SendWindow::new(total, 64, 0);
    let mut receiver = ReceiveWindow::new(total, 64);
    let mut delivered = Vec::new();
    let mut now = 0u64;
    for _ in 0..2_000_000 {
        if sender.is_complete() && receiver.is_complete() {
            return (delivered, sender.retransmits);
        }
        while let Some(next) = sender.next_packet(now) {
            let seq = match next {
                Next::New(seq) | Next::Retransmit(seq) => seq,
            };
            net.send(now, true, Message::Data { seq, sent_us: now as u32 });
            sender.on_sent(next, now);
        }
        // Advance the clock to the next delivery or the sender's next pacing slot or timer, whichever is first.
        let next_delivery = net.queue.peek().map(|Reverse((at, ..))| *at);
        let timer = sender.next_event_us();
        now = match (next_delivery, timer) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => now + 1_000,
        }
        .max(now);
        sender.on_timeout(now);
        while net.queue.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Some(Reverse((_, _, to_receiver, message))) = net.queue.pop() else { break };
            match (to_receiver, message) {
                (true, Message::Data { seq, sent_us }) => {
                    receiver.last_sent_us = sent_us;
                    receiver.on_data(seq, Bytes::from(seq.to_be_bytes().to_vec()));
                    while let Some(payload) = receiver.pop_ready() {
                        delivered.push(u32::from_be_bytes(payload[..].try_into().unwrap()));
                    }
                    let ack = Message::Ack {
                        cumulative: receiver.cumulative(),
                        ranges: receiver.ranges(64),
                        window: receiver.free(),
                        echo_us: receiver.last_sent_us,
                    };
                    net.send(now, false, ack);
                }
                (false, Message::Ack { cumulative, ranges, window, echo_us }) => {
                    sender.on_ack(cumulative, &ranges, window, echo_us, now);
                }
                _ => unreachable!("messages go one way each"),
            }
        }
    }
    panic!("transfer of {total} packets did not finish (loss {loss}, seed {seed})");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_packet_arrives_exactly_once_in_order(
        total in 0u32..400,
        loss in 0.0f64..0.4,
        duplicate in 0.0f64..0.2,
        jitter_us in 0u64..3_000,
        seed in any::<u64>(),
    ) {
        let (delivered, _) = simulate(total, loss, duplicate, jitter_us, seed);
        prop_assert_eq!(delivered, (0..total).collect::<Vec<_>>());
    }
}

#[test]
fn a_clean_network_needs_no_retransmission() {
    let (delivered, retransmits) = simulate(2000, 0.0, 0.0, 0, 1);
    assert_eq!(delivered.len(), 2000);
    assert_eq!(retransmits, 0);
}

#[test]
fn retransmissions_stay_close_to_the_loss_rate() {
    // 10% each way, with up to 0.2 ms of reordering: about 11% of packets need sending again (lost
    // retransmissions included); reordering must not add many more.
    for seed in 1..=3 {
        let (delivered, retransmits) = simulate(20_000, 0.10, 0.0, 200, seed);
        assert_eq!(delivered.len(), 20_000);
        assert!(retransmits < 20_000 * 17 / 100, "seed {seed}: {retransmits} retransmissions");
    }
}

#[test]
fn a_timeout_always_lets_one_retransmission_through_a_full_window() {
    // 32 packets in flight, sent 1 ms apart; no ack comes back.
    let mut window = SendWindow::new(100, 64, 0);
    for i in 0..32 {
        let next = window.next_packet(i * 1_000).unwrap();
        window.on_sent(next, i * 1_000);
    }
    assert!(!window.can_send(32_000), "the initial window is full");
    let deadline = window.deadline_us().unwrap();
    window.on_timeout(deadline);
    // Only the oldest is overdue; the probe goes out, and nothing else until an ack shows the path is back.
    assert_eq!(window.in_flight(), 31);
    assert_eq!(window.next_packet(deadline), Some(Next::Retransmit(0)));
    assert_eq!(window.next_packet(deadline + 1_000_000), None, "one probe per timeout");
}

/// A path with a bottleneck: `rate_pps` packets per second leave a drop-tail queue of `queue` packets, then take
/// `rtt_us / 2` to arrive; `loss` of the packets are lost at random (after the bottleneck); acks come back after
/// another `rtt_us / 2`, one per data packet.
struct Path {
    rng: StdRng,
    rate_pps: f64,
    queue: u64,
    one_way_us: u64,
    loss: f64,
    /// When the bottleneck has sent everything it holds.
    busy_until_us: f64,
    /// The longest time a packet waited in the queue.
    max_wait_us: f64,
}

impl Path {
    /// When a data packet sent at `now_us` arrives, if it does.
    fn data(&mut self, now_us: u64) -> Option<u64> {
        let now = now_us as f64;
        let tx_us = 1e6 / self.rate_pps;
        let waiting = ((self.busy_until_us - now).max(0.0) / tx_us) as u64;
        if waiting >= self.queue {
            return None;
        }
        self.max_wait_us = self.max_wait_us.max((self.busy_until_us - now).max(0.0));
        self.busy_until_us = self.busy_until_us.max(now) + tx_us;
        (!self.rng.random_bool(self.loss)).then_some(self.busy_until_us as u64 + self.one_way_us)
    }
}

/// What a transfer over a [`Path`] did: its duration, retransmissions and the longest queueing delay.
struct PathRun {
    elapsed_us: u64,
    retransmits: u64,
    max_wait_us: f64,
}

fn simulate_path(total: u32, rate_pps: f64, rtt_us: u64, queue: u64, loss: f64, seed: u64) -> PathRun {
    let mut path = Path {
        rng: StdRng::seed_from_u64(seed),
        rate_pps,
        queue,
        one_way_us: rtt_us / 2,
        loss,
        busy_until_us: 0.0,
        max_wait_us: 0.0,
    };
    let window = super::RECEIVE_WINDOW;
    let mut sender = SendWindow::new(total, window, 0);
    let mut receiver = ReceiveWindow::new(total, window);
    // Deliveries by time: (time, tie-breaker, to the receiver?, message).
    let mut queue: BinaryHeap<Reverse<(u64, u64, bool, Message)>> = BinaryHeap::new();
    let mut counter = 0u64;
    let mut now = 0u64;
    for _ in 0..20_000_000 {
        if sender.is_complete() {
            assert!(receiver.is_complete());
            return PathRun { elapsed_us: now, retransmits: sender.retransmits, max_wait_us: path.max_wait_us };
        }
        while let Some(next) = sender.next_packet(now) {
            let seq = match next {
                Next::New(seq) | Next::Retransmit(seq) => seq,
            };
            sender.on_sent(next, now);
            if let Some(at) = path.data(now) {
                counter += 1;
                queue.push(Reverse((at, counter, true, Message::Data { seq, sent_us: now as u32 })));
            }
        }
        let next_delivery = queue.peek().map(|Reverse((at, ..))| *at);
        now = match (next_delivery, sender.next_event_us()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(now + 1_000),
        }
        .max(now);
        sender.on_timeout(now);
        while queue.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Some(Reverse((_, _, to_receiver, message))) = queue.pop() else { break };
            match (to_receiver, message) {
                (true, Message::Data { seq, sent_us }) => {
                    receiver.last_sent_us = sent_us;
                    receiver.on_data(seq, Bytes::new());
                    while receiver.pop_ready().is_some() {}
                    let ack = Message::Ack {
                        cumulative: receiver.cumulative(),
                        ranges: receiver.ranges(64),
                        window: receiver.free(),
                        echo_us: receiver.last_sent_us,
                    };
                    counter += 1;
                    queue.push(Reverse((now + path.one_way_us, counter, false, ack)));
                }
                (false, Message::Ack { cumulative, ranges, window, echo_us }) => {
                    sender.on_ack(cumulative, &ranges, window, echo_us, now);
                }
                _ => unreachable!("messages go one way each"),
            }
        }
    }
    panic!("transfer of {total} packets over the path did not finish");
}

#[test]
fn a_long_lossy_path_is_filled_whatever_its_random_loss() {
    // 100 Mbit/s of 1,400-byte packets (about 8,900 a second), 50 ms, a queue of one bandwidth-delay product;
    // 25,000 packets (35 MB) take 2.8 s at the full rate. Retransmissions stay near the loss rate, plus what
    // Startup's overshoot into the queue lost.
    let rate = 100e6 / 8.0 / 1_400.0;
    for loss in [0.01, 0.05] {
        // What the link can carry of the file: the lost share of it goes twice.
        let ideal_us = 25_000.0 / (rate * (1.0 - loss)) * 1e6;
        let run = simulate_path(25_000, rate, 50_000, 446, loss, 7);
        let share = ideal_us / run.elapsed_us as f64;
        // Startup's overshoot into a one-BDP queue and its repair cost several percent of a transfer this short
        // (loss-based congestion control reaches a few percent here).
        assert!(share > 0.8, "{loss} loss: {:.0}% of the link", share * 100.0);
        assert!(
            run.retransmits as f64 <= 25_000.0 * (loss * 1.5 + 0.05),
            "{loss} loss: {} retransmissions",
            run.retransmits
        );
    }
}

#[test]
fn a_deep_queue_stays_nearly_empty() {
    // 20 Mbit/s, 20 ms, a queue of a whole second: a sender that fills queues would add up to a second of delay.
    let rate = 20e6 / 8.0 / 1_400.0;
    let run = simulate_path(20_000, rate, 20_000, rate as u64, 0.0, 3);
    assert!(run.max_wait_us < 150_000.0, "packets waited up to {:.0} ms in the queue", run.max_wait_us / 1e3);
    let ideal_us = 20_000.0 / rate * 1e6;
    assert!(ideal_us / run.elapsed_us as f64 > 0.85, "{:.0}% of the link", ideal_us / run.elapsed_us as f64 * 100.0);
}
