//! File descriptors: `tandem serve` raises its soft `RLIMIT_NOFILE` to the hard limit at start, then fits its
//! connection, transfer and listing caps within what it got, so a flood of connections is refused as busy before
//! the process runs out of descriptors (when it did, accepts failed with `Too many open files`).

use super::ServerConfig;

/// Descriptors kept for everything that is not a connection: the databases, the history log, the file watcher,
/// the UDP socket, the listener, and the short-lived sockets of refused connections.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open files to the hard limit, and returns the limit in force (`None` if unknown).
pub fn raise() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!("cannot raise the open-file limit from {} to {}", limit.rlim_cur, limit.rlim_max);
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Some(limit.rlim_cur as u64)
}

/// Lowers the caps in `config` that do not fit within `fds` open files, with a warning naming each. A connection
/// holds one descriptor; a transfer up to two more (its file, and a clone of its socket); a listing a few folders.
pub fn fit(config: &mut ServerConfig, fds: u64) {
    let budget = fds.saturating_sub(RESERVED_FDS);
    let needed = config.max_connections as u64 + 2 * config.max_transfers as u64 + 2 * config.max_listings as u64;
    if needed <= budget {
        return;
    }
    // Half the budget for connections, a quarter each for the files transfers and listings open.
    let caps = [
        ("max_connections", &mut config.max_connections, budget / 2),
        ("max_transfers", &mut config.max_transfers, budget / 8),
        ("max_listings", &mut config.max_listings, budget / 8),
    ];
    for (name, value, most) in caps {
        let most = most.max(1) as usize;
        if *value > most {
            tracing::warn!("{name} lowered from {value} to {most}: the open-file limit is {fds}");
            *value = most;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_do_not_fit_the_limit_are_lowered_and_others_left() {
        let mut config = ServerConfig::new("/nowhere");
        fit(&mut config, 1 << 20);
        assert_eq!((config.max_connections, config.max_transfers, config.max_listings), (1024, 128, 256));
        fit(&mut config, 1024);
        assert_eq!((config.max_connections, config.max_transfers, config.max_listings), (480, 120, 120));
        let used = config.max_connections + 2 * config.max_transfers + 2 * config.max_listings;
        assert!(used as u64 + RESERVED_FDS <= 1024);
    }
}
