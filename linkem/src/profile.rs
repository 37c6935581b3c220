//! Link profiles: what the wire does to each packet in each direction (rate, delay, jitter, queue, loss,
//! reordering, duplication), and the named profiles tandem's WAN benchmarks use.

use std::fmt;
use std::time::Duration;

/// One direction's impairments; a link applies the same profile to both directions, each with its own
/// random streams. Rates and queues count whole IP packets (a TUN device carries no link-layer header).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// Bottleneck rate in bits per second; 0 means no limit (and then no queue).
    pub rate_bps: u64,
    /// Fixed delay added to every packet after it leaves the bottleneck.
    pub one_way_delay: Duration,
    /// Each packet's delay varies uniformly within ± this. Packets keep their order unless `reorder` says
    /// otherwise: a packet never leaves before the one ahead of it, so packets closer together than the
    /// jitter's span see a mean delay somewhat above `one_way_delay`.
    pub jitter: Duration,
    /// Drop-tail queue in front of the bottleneck, in bytes of IP packets.
    pub queue_bytes: u64,
    /// Probability that a packet is lost (decided on arrival, before the queue).
    pub loss: f64,
    /// Probability that a packet is held back by `reorder_delay`, letting later packets overtake it.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Seeds every random decision; the same seed gives the same fate to the n-th packet of a direction.
    pub seed: u64,
}

const MBIT: u64 = 1_000_000;
const DEFAULT_SEED: u64 = 0x7A4D_E3A1;

/// The bytes a queue holds for `time` at `rate_bps`.
fn queue_for(rate_bps: u64, time: Duration) -> u64 {
    (u128::from(rate_bps) * time.as_nanos() / 8 / 1_000_000_000) as u64
}

impl Profile {
    /// A plain link: no limit, no delay, no loss. Used to measure the emulator's own ceiling.
    pub fn unlimited() -> Profile {
        Profile {
            name: "none".into(),
            rate_bps: 0,
            one_way_delay: Duration::ZERO,
            jitter: Duration::ZERO,
            queue_bytes: 0,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            duplicate: 0.0,
            seed: DEFAULT_SEED,
        }
    }

    /// A rate-limited, delayed link with a queue of one bandwidth-delay product (at least 64 KiB), no loss.
    pub fn shaped(name: &str, rate_bps: u64, rtt: Duration) -> Profile {
        Profile {
            name: name.into(),
            rate_bps,
            one_way_delay: rtt / 2,
            queue_bytes: queue_for(rate_bps, rtt).max(64 * 1024),
            ..Profile::unlimited()
        }
    }

    /// Gigabit LAN, 0.5 ms RTT.
    pub fn lan() -> Profile {
        Profile::shaped("lan", 1000 * MBIT, Duration::from_micros(500))
    }

    /// 100 Mbit/s, 50 ms RTT, no loss.
    pub fn wan() -> Profile {
        Profile::shaped("wan", 100 * MBIT, Duration::from_millis(50))
    }

    /// 100 Mbit/s, 50 ms RTT, 1% loss each way.
    pub fn wan_lossy() -> Profile {
        Profile { name: "wan1".into(), loss: 0.01, ..Profile::wan() }
    }

    /// 100 Mbit/s, 200 ms RTT, 0.5% loss each way.
    pub fn intercontinental() -> Profile {
        Profile { loss: 0.005, ..Profile::shaped("intercontinental", 100 * MBIT, Duration::from_millis(200)) }
    }

    /// 20 Mbit/s, 20 ms RTT, ±3 ms jitter each way, 5% loss each way.
    pub fn wifi() -> Profile {
        Profile {
            jitter: Duration::from_millis(3),
            loss: 0.05,
            ..Profile::shaped("wifi", 20 * MBIT, Duration::from_millis(20))
        }
    }

    /// 20 Mbit/s, 20 ms RTT, with one second of queue in front of the bottleneck.
    pub fn bufferbloat() -> Profile {
        let rate = 20 * MBIT;
        Profile {
            queue_bytes: queue_for(rate, Duration::from_secs(1)),
            ..Profile::shaped("bufferbloat", rate, Duration::from_millis(20))
        }
    }

    /// Every named profile, in the order the benchmarks report them.
    pub fn all() -> Vec<Profile> {
        vec![
            Profile::unlimited(),
            Profile::lan(),
            Profile::wan(),
            Profile::wan_lossy(),
            Profile::intercontinental(),
            Profile::wifi(),
            Profile::bufferbloat(),
        ]
    }

    /// The named profile called `name` (as in `Profile::all`), if any.
    pub fn by_name(name: &str) -> Option<Profile> {
        Profile::all().into_iter().find(|p| p.name == name)
    }

    pub fn with_seed(self, seed: u64) -> Profile {
        Profile { seed, ..self }
    }

    /// The round-trip time the link adds when both directions use this profile (no queueing, no jitter).
    pub fn rtt(&self) -> Duration {
        self.one_way_delay * 2
    }

    /// The first thing wrong with this profile, if any.
    pub fn validate(&self) -> Result<(), String> {
        for (what, p) in [("loss", self.loss), ("reorder", self.reorder), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("profile {}: {what} probability {p} is not within 0..=1", self.name));
            }
        }
        if self.jitter > self.one_way_delay {
            return Err(format!(
                "profile {}: jitter {:?} exceeds the one-way delay {:?}",
                self.name, self.jitter, self.one_way_delay
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        if self.rate_bps == 0 {
            write!(f, "no rate limit")?;
        } else {
            write!(f, "{} Mbit/s, queue {} kB", self.rate_bps as f64 / 1e6, self.queue_bytes / 1000)?;
        }
        write!(f, ", {:.1} ms RTT", self.rtt().as_secs_f64() * 1e3)?;
        if !self.jitter.is_zero() {
            write!(f, ", ±{:.1} ms jitter", self.jitter.as_secs_f64() * 1e3)?;
        }
        for (what, p) in [("loss", self.loss), ("reordered", self.reorder), ("duplicated", self.duplicate)] {
            if p > 0.0 {
                write!(f, ", {}% {what}", p * 100.0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_profiles_are_valid_and_findable() {
        for p in Profile::all() {
            p.validate().unwrap();
            assert_eq!(Profile::by_name(&p.name), Some(p.clone()));
        }
        assert_eq!(Profile::by_name("nope"), None);
    }

    #[test]
    fn figures_match_their_names() {
        let wan = Profile::wan();
        assert_eq!(wan.rtt(), Duration::from_millis(50));
        assert_eq!(wan.queue_bytes, 625_000);
        assert_eq!(Profile::bufferbloat().queue_bytes, 2_500_000);
        assert_eq!(Profile::lan().rtt(), Duration::from_micros(500));
        assert_eq!(Profile::wan_lossy().to_string(), "wan1: 100 Mbit/s, queue 625 kB, 50.0 ms RTT, 1% loss");
    }

    #[test]
    fn bad_probabilities_are_refused() {
        let p = Profile { loss: 1.5, ..Profile::wan() };
        assert!(p.validate().unwrap_err().contains("loss"));
    }
}
