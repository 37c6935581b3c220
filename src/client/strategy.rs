//! How one download will go, decided in one place from what is known before any byte moves: whether the
//! download cache may hold the file, whether an interrupted download of it left bytes to resume after, whether an
//! older version of it is already where it goes, and which protocol was asked for. A pure function, so every
//! combination is tested here; the drivers in `fetch`, `download` and `delta` carry the plan out.

use crate::transfer::Protocol;
use crate::transfer::delta::worth_a_delta;

/// What the download cache can do for this download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// Off (limit 0), or could not be opened.
    Off,
    /// On, but empty: it cannot hold the file, so asking costs a round trip for nothing.
    Empty,
    /// It may hold the file.
    MayHold,
}

/// What is known before a download starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub cache: CacheState,
    /// Bytes kept from an interrupted download of this file, which a whole download resumes after.
    pub partial: Option<u64>,
    /// The size of the file already at the destination, an older version the download replaces.
    pub older: Option<u64>,
    pub protocol: Protocol,
}

/// The plan: each step that runs, in order; a step that delivers the file ends the download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Copy the file out of the download cache if it holds the server's MD5 (verified again on the way out).
    pub from_cache: bool,
    /// Update the older version with a delta, or with the bytes appended to it, over TCP.
    pub delta: Option<Delta>,
    /// Receive the whole file.
    pub whole: Whole,
}

/// The delta step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// The server sends the whole file on the same TCP stream when no delta is worth it: one round trip.
    OrWhole,
    /// The server declines when no delta is worth it, and the whole file follows by the whole-file step: a whole
    /// file goes over UDP when UDP was asked for, while a delta, being small, always goes over TCP.
    Only,
}

/// The whole-file step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whole {
    pub protocol: Protocol,
    /// Resume after the kept bytes of an interrupted download (their MD5 is still checked with the rest).
    pub resume: bool,
}

/// Decides how a download of a file into a folder goes.
pub fn plan(known: Known) -> Plan {
    // Kept bytes of an interrupted download are the newer start of the file: resuming beats a delta against
    // the older copy, which would mean reading both.
    let delta = match known.older {
        Some(size) if worth_a_delta(size) && known.partial.is_none() => Some(match known.protocol {
            Protocol::Tcp => Delta::OrWhole,
            Protocol::Udp => Delta::Only,
        }),
        _ => None,
    };
    Plan {
        from_cache: known.cache == CacheState::MayHold,
        delta,
        whole: Whole { protocol: known.protocol, resume: known.partial.is_some() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: u64 = 10 << 20;

    fn known(cache: CacheState, partial: Option<u64>, older: Option<u64>, protocol: Protocol) -> Known {
        Known { cache, partial, older, protocol }
    }

    #[test]
    fn a_fresh_download_goes_whole_by_the_protocol_asked() {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let plan = plan(known(CacheState::Off, None, None, protocol));
            assert_eq!(plan, Plan { from_cache: false, delta: None, whole: Whole { protocol, resume: false } });
        }
    }

    #[test]
    fn the_cache_is_asked_only_when_it_may_hold_the_file() {
        assert!(plan(known(CacheState::MayHold, None, None, Protocol::Tcp)).from_cache);
        assert!(!plan(known(CacheState::Empty, None, None, Protocol::Tcp)).from_cache);
        assert!(!plan(known(CacheState::Off, None, None, Protocol::Udp)).from_cache);
    }

    #[test]
    fn an_older_version_gets_a_delta_over_tcp_whatever_the_protocol() {
        assert_eq!(plan(known(CacheState::Off, None, Some(BIG), Protocol::Tcp)).delta, Some(Delta::OrWhole));
        let udp = plan(known(CacheState::Off, None, Some(BIG), Protocol::Udp));
        assert_eq!(udp.delta, Some(Delta::Only));
        assert_eq!(udp.whole.protocol, Protocol::Udp, "declined, the whole file still goes over UDP");
    }

    #[test]
    fn kept_bytes_are_resumed_rather_than_a_delta_against_the_older_copy() {
        let plan = plan(known(CacheState::MayHold, Some(4096), Some(BIG), Protocol::Udp));
        assert_eq!(plan.delta, None);
        assert_eq!(plan.whole, Whole { protocol: Protocol::Udp, resume: true });
        assert!(plan.from_cache, "the cache is still asked first");
    }

    #[test]
    fn a_small_older_version_is_not_worth_a_delta() {
        assert_eq!(plan(known(CacheState::Off, None, Some(10), Protocol::Tcp)).delta, None);
    }
}
