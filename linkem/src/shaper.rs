//! The wire's model of one direction, with no I/O: given a packet's arrival time and size, it decides the
//! packet's fate (lost, dropped by the full queue, or delivered at a time, perhaps twice). Times are
//! nanoseconds since the wire started, so the model is testable without clocks or devices.

use crate::profile::Profile;
use crate::rng::Rng;

/// What happens to one arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Random loss.
    Lost,
    /// The drop-tail queue had no room for it.
    QueueFull,
    Deliver {
        at: u64,
        /// A second copy is delivered at the same time.
        duplicate: bool,
        /// Held back so that later packets overtake it.
        reordered: bool,
    },
}

pub(crate) struct Shaper {
    profile: Profile,
    /// When the bottleneck finishes sending everything accepted so far.
    busy_until: u64,
    /// The latest delivery time of an in-order packet: jitter never lets a packet leave before it.
    last_delivery: u64,
    loss: Rng,
    jitter: Rng,
    reorder: Rng,
    duplicate: Rng,
}

impl Shaper {
    /// A model for one direction; `direction` keeps the two directions' random streams apart.
    pub(crate) fn new(profile: Profile, direction: u64) -> Shaper {
        let seed = profile.seed ^ direction.wrapping_mul(0x517C_C1B7_2722_0A95);
        Shaper {
            profile,
            busy_until: 0,
            last_delivery: 0,
            loss: Rng::new(seed, 1),
            jitter: Rng::new(seed, 2),
            reorder: Rng::new(seed, 3),
            duplicate: Rng::new(seed, 4),
        }
    }

    /// Takes a new profile from the next packet on; what is queued or in flight keeps its times. The random
    /// streams restart only if the seed changes.
    pub(crate) fn set_profile(&mut self, profile: Profile, direction: u64) {
        if profile.seed != self.profile.seed {
            let fresh = Shaper::new(profile.clone(), direction);
            (self.loss, self.jitter, self.reorder, self.duplicate) =
                (fresh.loss, fresh.jitter, fresh.reorder, fresh.duplicate);
        }
        self.profile = profile;
    }

    /// Bytes waiting for or in the bottleneck at `now`.
    pub(crate) fn backlog_bytes(&self, now: u64) -> u64 {
        let rate = self.profile.rate_bps;
        if rate == 0 {
            return 0;
        }
        let ns = self.busy_until.saturating_sub(now);
        (u128::from(ns) * u128::from(rate) / 8_000_000_000) as u64
    }

    pub(crate) fn arrive(&mut self, now: u64, len: usize) -> Fate {
        let p = &self.profile;
        // Every stream draws once per packet whatever the outcome, so later fates do not shift.
        let lost = self.loss.chance(p.loss);
        let jitter_unit = self.jitter.unit();
        let reordered = self.reorder.chance(p.reorder);
        let duplicate = self.duplicate.chance(p.duplicate);
        if lost {
            return Fate::Lost;
        }

        let len = len as u64;
        let departs = if p.rate_bps == 0 {
            now
        } else {
            let backlog = self.backlog_bytes(now);
            // An idle bottleneck takes any packet, however small the queue.
            if backlog > 0 && backlog + len > p.queue_bytes {
                return Fate::QueueFull;
            }
            let serialise = (u128::from(len) * 8_000_000_000 / u128::from(p.rate_bps)) as u64;
            self.busy_until = self.busy_until.max(now) + serialise;
            self.busy_until
        };

        let jitter = p.jitter.as_nanos() as f64;
        let delay = p.one_way_delay.as_nanos() as f64 + (jitter_unit * 2.0 - 1.0) * jitter;
        let mut at = departs + delay.max(0.0) as u64;
        if reordered {
            at += p.reorder_delay.as_nanos() as u64;
        } else {
            at = at.max(self.last_delivery);
            self.last_delivery = at;
        }
        Fate::Deliver { at, duplicate, reordered }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: u64 = 1_000_000;

    fn deliver_at(fate: Fate) -> u64 {
        match fate {
            Fate::Deliver { at, .. } => at,
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn unlimited_link_delivers_at_once() {
        let mut s = Shaper::new(Profile::unlimited(), 0);
        assert_eq!(s.arrive(5, 1500), Fate::Deliver { at: 5, duplicate: false, reordered: false });
    }

    #[test]
    fn delay_and_serialisation_add_up() {
        // 12 Mbit/s: a 1500-byte packet takes exactly 1 ms on the wire.
        let profile = Profile { queue_bytes: 1_000_000, ..Profile::shaped("t", 12_000_000, Duration::from_millis(20)) };
        let mut s = Shaper::new(profile, 0);
        assert_eq!(deliver_at(s.arrive(0, 1500)), 11 * MS);
        // Arrives while the first is still being sent: waits its turn.
        assert_eq!(deliver_at(s.arrive(0, 1500)), 12 * MS);
        assert_eq!(s.backlog_bytes(0), 3000);
        // Arrives after the bottleneck went idle.
        assert_eq!(deliver_at(s.arrive(50 * MS, 1500)), 61 * MS);
    }

    #[test]
    fn full_queue_drops_the_tail() {
        let profile = Profile { queue_bytes: 4500, ..Profile::shaped("t", 12_000_000, Duration::ZERO) };
        let mut s = Shaper::new(profile, 0);
        let fates: Vec<Fate> = (0..5).map(|_| s.arrive(0, 1500)).collect();
        assert_eq!(fates.iter().filter(|f| **f == Fate::QueueFull).count(), 2);
        assert_eq!(fates[3], Fate::QueueFull);
        // Two packets' time later there is room again.
        assert!(matches!(s.arrive(2 * MS, 1500), Fate::Deliver { .. }));
    }

    #[test]
    fn jitter_varies_delay_without_reordering() {
        let profile =
            Profile { jitter: Duration::from_millis(3), ..Profile::shaped("t", 0, Duration::from_millis(20)) };
        let mut s = Shaper::new(profile, 0);
        // Sparse packets (further apart than the jitter's span) show its whole range.
        let delays: Vec<u64> = (0..500).map(|i| deliver_at(s.arrive(i * 10 * MS, 100)) - i * 10 * MS).collect();
        assert!(delays.iter().all(|d| (7 * MS..=13 * MS).contains(d)), "{delays:?}");
        assert!(delays.iter().min() < Some(&(7 * MS + MS / 2)) && delays.iter().max() > Some(&(13 * MS - MS / 2)));
        // Dense packets would overtake each other; they leave in order instead.
        let start = 10_000 * MS;
        let times: Vec<u64> = (0..1000).map(|i| deliver_at(s.arrive(start + i * 100_000, 100))).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times.iter().enumerate().all(|(i, t)| t - (start + i as u64 * 100_000) <= 13 * MS));
    }

    #[test]
    fn loss_reorder_and_duplicates_follow_the_seed() {
        let profile = Profile {
            loss: 0.05,
            reorder: 0.02,
            reorder_delay: Duration::from_millis(5),
            duplicate: 0.01,
            ..Profile::shaped("t", 0, Duration::from_millis(10))
        };
        let run = |seed: u64| {
            let mut s = Shaper::new(profile.clone().with_seed(seed), 0);
            (0..10_000u64).map(|i| s.arrive(i * 1000, 100)).collect::<Vec<Fate>>()
        };
        let fates = run(1);
        assert_eq!(fates, run(1));
        assert_ne!(fates, run(2));
        let lost = fates.iter().filter(|f| **f == Fate::Lost).count();
        let reordered = fates.iter().filter(|f| matches!(f, Fate::Deliver { reordered: true, .. })).count();
        let duplicated = fates.iter().filter(|f| matches!(f, Fate::Deliver { duplicate: true, .. })).count();
        assert!((400..600).contains(&lost), "{lost}");
        assert!((120..280).contains(&reordered), "{reordered}");
        assert!((50..150).contains(&duplicated), "{duplicated}");
        // A held-back packet arrives after ones sent later.
        let (i, at) = fates
            .iter()
            .enumerate()
            .find_map(|(i, f)| match f {
                Fate::Deliver { at, reordered: true, .. } => Some((i, *at)),
                _ => None,
            })
            .unwrap();
        assert!(fates[i + 1..].iter().any(|f| matches!(f, Fate::Deliver { at: later, .. } if *later < at)));
    }

    #[test]
    fn directions_draw_differently() {
        let profile = Profile { loss: 0.5, ..Profile::unlimited() };
        let mut a = Shaper::new(profile.clone(), 0);
        let mut b = Shaper::new(profile, 1);
        let fa: Vec<Fate> = (0..64).map(|i| a.arrive(i, 100)).collect();
        let fb: Vec<Fate> = (0..64).map(|i| b.arrive(i, 100)).collect();
        assert_ne!(fa, fb);
    }
}
