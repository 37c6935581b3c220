//! linkem: a link emulator for measuring tandem over real-looking links. It makes two network namespaces,
//! each with a TUN device and an address in 198.18.0.0/15, and carries every IP packet between them through a
//! userspace wire that applies a `Profile` (rate with a drop-tail queue, delay, jitter, loss, reordering,
//! duplication; seeded and deterministic) in each direction. Programs in the namespaces use the kernel's own
//! TCP and UDP, so tandem runs unchanged: `tandem serve` in one namespace, the client in the other.
//!
//! ```no_run
//! use linkem::{Link, Profile, Side};
//! # fn main() -> linkem::Result<()> {
//! let link = Link::start(Profile::wan_lossy())?;
//! let server = link.command_b("tandem").args(["serve", "--listen", &format!("{}:7000", link.addr_b())]).spawn();
//! let rtts = linkem::tcp_round_trips(&link, 5, std::time::Duration::from_secs(5))?;
//! link.cut(std::time::Duration::from_secs(10));
//! println!("{}", link.stats());
//! # drop(server); Ok(()) }
//! ```
//!
//! It needs root, /dev/net/tun and iproute2's `ip`; `available` says which is missing, and
//! `available_or_skip` turns that into a skip for tests, or a failure under `CI=true`.

mod error;
mod link;
mod measure;
pub mod netns;
mod profile;
mod rng;
mod shaper;
mod stats;
mod tun;
mod wire;

pub use error::{Error, Result};
pub use link::{Config, Link, Side};
pub use measure::{Transfer, ceiling, tcp_bulk, tcp_pair, tcp_round_trips};
pub use profile::Profile;
pub use stats::{DirectionStats, LinkStats};

/// Whether links can be made here: Ok, or which requirement is missing (root, /dev/net/tun, `ip`).
pub fn available() -> std::result::Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!("it needs root for network namespaces and TUN devices (running as uid {euid})"));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(tun::TUN_PATH) {
        return Err(format!("cannot open {}: {e}", tun::TUN_PATH));
    }
    match std::process::Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`ip -V` failed ({}); iproute2 is needed", out.status)),
        Err(e) => Err(format!("cannot run `ip` (iproute2 is needed): {e}")),
    }
}

/// For tests: true if links can be made here. If not, prints why and returns false so the test can skip,
/// except under `CI=true` (or any CI value but "", "false", "0"), where it panics: CI must not skip.
pub fn available_or_skip(test: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(why) => {
            let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(!under_ci, "{test}: the link emulator must run under CI, but {why}");
            eprintln!("skipping {test}: the link emulator cannot run here: {why}");
            false
        }
    }
}
