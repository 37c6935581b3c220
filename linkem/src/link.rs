//! A link: two network namespaces, each with a TUN device and an address, joined by the two directions of
//! the wire. Starting one sets all of it up; dropping it (also while unwinding from a panic) stops the wire
//! and deletes both namespaces.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::{self, Owned, PREFIX};
use crate::profile::Profile;
use crate::stats::LinkStats;
use crate::tun::Tun;
use crate::wire::{self, Control, Wire};

/// One end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Names and addresses of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub ns_a: String,
    pub ns_b: String,
    /// The TUN device's name inside each namespace.
    pub device: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
}

/// Tells the links of one process apart.
static NEXT_LINK: AtomicU32 = AtomicU32::new(0);
/// `ip netns add` mounts /var/run/netns on first use; concurrent setups in one process wait for each other.
static SETUP: Mutex<()> = Mutex::new(());

impl Config {
    /// Fresh namespace names, `tandem-wan-a-<pid>-<n>` and `tandem-wan-b-<pid>-<n>`, and 198.18.0.1/30 in A,
    /// 198.18.0.2/30 in B (the benchmarking range), MTU 1500.
    pub fn unique() -> Config {
        let n = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        Config {
            ns_a: format!("{PREFIX}a-{pid}-{n}"),
            ns_b: format!("{PREFIX}b-{pid}-{n}"),
            device: "wan0".into(),
            addr_a: Ipv4Addr::new(198, 18, 0, 1),
            addr_b: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 30,
            mtu: 1500,
        }
    }

    fn validate(&self) -> Result<()> {
        for ns in [&self.ns_a, &self.ns_b] {
            if ns.is_empty() || ns.contains('/') || ns.len() > 200 {
                return Err(Error::Failed(format!("namespace name {ns:?} is not usable")));
            }
        }
        if self.ns_a == self.ns_b {
            return Err(Error::Failed(format!("both ends are namespace {}", self.ns_a)));
        }
        if self.device.is_empty() || self.device.len() >= libc::IFNAMSIZ || self.device.contains('%') {
            return Err(Error::Failed(format!("device name {:?} is not usable", self.device)));
        }
        if !(576..=65535).contains(&self.mtu) {
            return Err(Error::Failed(format!("MTU {} is out of range", self.mtu)));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::unique()
    }
}

/// A running emulated link. See the crate documentation for an example.
pub struct Link {
    config: Config,
    control: Arc<Control>,
    /// A→B, then B→A.
    wires: Vec<Wire>,
    /// Declared after `wires`: the namespaces go once the wire threads have stopped.
    namespaces: Owned,
}

impl Link {
    /// Sets up a link with fresh names (`Config::unique`) and `profile` in both directions.
    pub fn start(profile: Profile) -> Result<Link> {
        Link::start_with(profile, Config::unique())
    }

    /// Sets up a link named and addressed by `config`. Namespaces of ours left by a dead process are deleted
    /// first; an existing namespace of the same name is an error.
    pub fn start_with(profile: Profile, config: Config) -> Result<Link> {
        crate::available().map_err(Error::Unavailable)?;
        profile.validate().map_err(Error::Failed)?;
        config.validate()?;
        let _setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner);
        netns::remove_stale()?;
        for ns in [&config.ns_a, &config.ns_b] {
            if netns::exists(ns) {
                return Err(Error::Failed(format!("namespace {ns} already exists")));
            }
        }
        let mut namespaces = Owned::new();
        let tun_a = Arc::new(Tun::create("lkem%d")?);
        let tun_b = Arc::new(Tun::create("lkem%d")?);
        let prefix = config.prefix_len;
        for (ns, tun, addr) in [(&config.ns_a, &tun_a, config.addr_a), (&config.ns_b, &tun_b, config.addr_b)] {
            namespaces.add(ns)?;
            set_up_side(ns, tun.name(), &config.device, &format!("{addr}/{prefix}"), config.mtu)?;
        }
        let control = Arc::new(Control::new(profile));
        let mtu = config.mtu as usize;
        let mut link = Link { config, control: control.clone(), wires: Vec::new(), namespaces };
        let a_to_b = Wire::spawn("A→B", 0, tun_a.clone(), tun_b.clone(), mtu, control.clone())?;
        link.wires.push(a_to_b);
        link.wires.push(Wire::spawn("B→A", 1, tun_b, tun_a, mtu, control)?);
        Ok(link)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::A => &self.config.ns_a,
            Side::B => &self.config.ns_b,
        }
    }

    pub fn ns_a(&self) -> &str {
        self.ns(Side::A)
    }

    pub fn ns_b(&self) -> &str {
        self.ns(Side::B)
    }

    pub fn addr(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::A => self.config.addr_a,
            Side::B => self.config.addr_b,
        }
    }

    pub fn addr_a(&self) -> Ipv4Addr {
        self.config.addr_a
    }

    pub fn addr_b(&self) -> Ipv4Addr {
        self.config.addr_b
    }

    /// `ip netns exec NS program`: add arguments and run it like any `Command`. Children still running when
    /// the link drops keep their namespace alive, without its name.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.ns(side), program]);
        command
    }

    pub fn command_a(&self, program: &str) -> Command {
        self.command(Side::A, program)
    }

    pub fn command_b(&self, program: &str) -> Command {
        self.command(Side::B, program)
    }

    /// Runs `f` on a thread inside `side`'s namespace: sockets it makes belong there and can then be used
    /// from any thread.
    pub fn run_in<T: Send>(&self, side: Side, f: impl FnOnce() -> T + Send) -> Result<T> {
        netns::run_in(self.ns(side), f)
    }

    pub fn profile(&self) -> Profile {
        self.control.profile()
    }

    /// Applies `profile` to packets arriving from now on; packets already on the wire keep their times.
    pub fn set_profile(&self, profile: Profile) -> Result<()> {
        profile.validate().map_err(Error::Failed)?;
        self.control.set_profile(profile);
        Ok(())
    }

    /// Drops every packet, both ways, for `duration` from now (including those already on the wire that
    /// would be delivered meanwhile).
    pub fn cut(&self, duration: Duration) {
        self.control.cut(Some(duration));
    }

    /// Drops every packet until `restore`.
    pub fn cut_until_restored(&self) {
        self.control.cut(None);
    }

    /// Ends a cut now.
    pub fn restore(&self) {
        self.control.restore();
    }

    pub fn is_cut(&self) -> bool {
        self.control.is_cut()
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats { a_to_b: self.wires[0].counters.snapshot(), b_to_a: self.wires[1].counters.snapshot() }
    }

    /// Polls the counters every millisecond until `done` holds, for at most `timeout`; the error names `what`
    /// was awaited and the counters at the end.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&LinkStats) -> bool) -> Result<LinkStats> {
        let start = Instant::now();
        loop {
            let stats = self.stats();
            if done(&stats) {
                return Ok(stats);
            }
            if start.elapsed() >= timeout {
                return Err(Error::Failed(format!("no {what} within {timeout:?}; counters:\n{stats}")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sets a per-namespace sysctl on `side`, e.g. `("net.ipv4.tcp_congestion_control", "cubic")`.
    pub fn sysctl(&self, side: Side, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let ns = self.ns(side);
        self.run_in(side, || std::fs::write(&path, value))?
            .map_err(|e| Error::failed(format!("writing {value:?} to {path} in {ns}"), e))
    }

    /// Tears the link down now and returns the final counters (every packet still on the wire is lost), or
    /// what went wrong; dropping does the same and prints any failure.
    pub fn close(mut self) -> Result<LinkStats> {
        self.teardown()?;
        Ok(self.stats())
    }

    fn teardown(&mut self) -> Result<()> {
        let stopped = wire::stop_all(&self.control, &mut self.wires);
        let _setup = SETUP.lock().unwrap_or_else(PoisonError::into_inner);
        let deleted = self.namespaces.delete_all();
        stopped.and(deleted)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("linkem: tearing down {} / {}: {e}", self.config.ns_a, self.config.ns_b);
        }
    }
}

/// Moves device `tun` into namespace `ns`, disables IPv6 there (so only the traffic under test crosses the
/// wire), and names, addresses and raises it.
fn set_up_side(ns: &str, tun: &str, device: &str, cidr: &str, mtu: u32) -> Result<()> {
    netns::run_in(ns, disable_ipv6)??;
    netns::ip(&["link", "set", tun, "netns", ns])?;
    netns::ip(&["-n", ns, "link", "set", tun, "name", device])?;
    netns::ip(&["-n", ns, "link", "set", device, "mtu", &mtu.to_string()])?;
    netns::ip(&["-n", ns, "addr", "add", cidr, "dev", device])?;
    netns::ip(&["-n", ns, "link", "set", device, "up"])?;
    netns::ip(&["-n", ns, "link", "set", "lo", "up"])
}

/// Run inside the new namespace before the device arrives, so the device starts with IPv6 off.
fn disable_ipv6() -> Result<()> {
    for conf in ["all", "default"] {
        let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
        match std::fs::write(&path, "1") {
            Ok(()) => {}
            // A kernel without IPv6 sends no IPv6 traffic either.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::failed(format!("writing {path}"), e)),
        }
    }
    Ok(())
}
