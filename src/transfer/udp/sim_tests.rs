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
        while let Some(next) = sender.next_packet() {
            let seq = match next {
                Next::New(seq) | Next::Retransmit(seq) => seq,
            };
            net.send(now, true, Message::Data { seq, sent_us: now as u32 });
            sender.on_sent(next, now);
        }
        // Advance the clock to the next delivery or the sender's timer, whichever comes first.
        let next_delivery = net.queue.peek().map(|Reverse((at, ..))| *at);
        let timer = sender.deadline_us();
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
                        ranges: receiver.ranges(32),
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
        let next = window.next_packet().unwrap();
        window.on_sent(next, i * 1_000);
    }
    assert!(!window.can_send(), "the initial window is full");
    let deadline = window.deadline_us().unwrap();
    window.on_timeout(deadline);
    // Only the oldest is overdue; the window halved below what is still in flight, yet the probe goes out.
    assert_eq!(window.in_flight(), 31);
    assert!(window.cwnd() < 31.0);
    assert_eq!(window.next_packet(), Some(Next::Retransmit(0)));
    assert_eq!(window.next_packet(), None, "one probe per timeout");
}
