//! WAN figures: `tandem download tcp` and `tandem download udp` over emulated links, beside what a person would
//! otherwise use on the same link: rsync over its daemon, and a raw TCP copy with the kernel's CUBIC and BBR.
//!
//! Each link is two network namespaces joined by linkem's userspace wire (delay, a rate limit with a drop-tail
//! queue, loss, jitter; seeded), so the kernel's TCP on both ends sees real delay and real loss. The server and
//! the rsync daemon run in namespace B, every client in A; the file (100 MB unless `TANDEM_WAN_MB` says otherwise)
//! travels B to A; on the LAN profile it is 1,000 MB (`TANDEM_WAN_LAN_MB`), since 100 MB crosses a gigabit link in
//! under a second and the table would measure process start-up. The server's hash of the file is warm before
//! anything is timed. First the emulator's own
//! ceiling is measured with no impairment; no profile runs above two thirds of it (a faster profile is lowered to
//! fit, and the table says so).
//!
//! Figures: goodput (file bytes over the command's whole wall time, connection set-up included) in MB/s and as a
//! share of the link's rate; wall time; bytes the sender sent again (tandem UDP's own count; the kernel's TCP
//! retransmissions in B for the TCP transports; rsync rides TCP). Medians of `TANDEM_WAN_RUNS` runs (default 1).
//!
//! Then how a UDP download shares a link ([`sharing`]): the share one CUBIC flow keeps beside it on the WAN
//! profile, and the round trip an echo sees beside it on the bufferbloat profile (`TANDEM_WAN_SHARING=0` skips).
//!
//! `cargo bench --bench wan` (root, iproute2, /dev/net/tun, rsync); `TANDEM_WAN_PROFILES=wan,wan1` picks profiles.

#![allow(clippy::unwrap_used)] // A benchmark that cannot go on stops with the reason; that is its report.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use linkem::{Link, Profile, Side};

#[path = "wan/sharing.rs"]
mod sharing;

const BIN: &str = env!("CARGO_BIN_EXE_tandem");
const PORT: u16 = 7000;
const RSYNC_PORT: u16 = 8730;
const TOKEN: &str = "wan-bench-token-0123456789";

/// How long one transfer may run (`TANDEM_WAN_CAP_SECS`, default 60): a transport still going then is stopped,
/// and its goodput is what arrived so far, marked as a lower bound. Loss-based TCP over 200 ms and 0.5% loss would
/// otherwise take a quarter of an hour for 100 MB.
fn cap() -> Duration {
    Duration::from_secs(env_or("TANDEM_WAN_CAP_SECS", 60))
}

fn main() {
    if let Err(reason) = linkem::available() {
        eprintln!("wan: cannot run here: {reason}");
        std::process::exit(if std::env::var("CI").is_ok() { 1 } else { 0 });
    }
    let mb: u64 = env_or("TANDEM_WAN_MB", 100);
    let lan_mb: u64 = env_or("TANDEM_WAN_LAN_MB", 1000);
    let runs: usize = env_or("TANDEM_WAN_RUNS", 1).max(1);
    let size = mb << 20;
    let share = tempfile::tempdir().unwrap();
    tandem::pseudo_random::write_pseudo_random(&share.path().join("big.bin"), size).unwrap();
    let lan_share = tempfile::tempdir().unwrap();

    let ceiling = linkem::ceiling(256 << 20).expect("the emulator's ceiling");
    let ceiling_bps = ceiling.bits_per_second();
    println!("wan: emulator ceiling with no impairment: {:.0} Mbit/s (TCP, 256 MiB)", ceiling_bps / 1e6);
    println!(
        "wan: {mb} MiB file ({lan_mb} MiB on lan), {runs} run(s) each, medians; goodput counts the whole command's \
         wall time\n"
    );
    println!(
        "{:<17} {:>9} {:<18} {:>9} {:>7} {:>8} {:>12}",
        "profile", "link", "transport", "MB/s", "% link", "wall s", "resent"
    );
    let wanted: Option<Vec<String>> =
        std::env::var("TANDEM_WAN_PROFILES").ok().map(|v| v.split(',').map(str::to_string).collect());
    for mut profile in Profile::all().into_iter().filter(|p| p.rate_bps > 0) {
        if wanted.as_ref().is_some_and(|w| !w.contains(&profile.name)) {
            continue;
        }
        let mut note = String::new();
        let fit = (ceiling_bps * 2.0 / 3.0) as u64;
        if profile.rate_bps > fit {
            note = format!(" (lowered from {} Mbit/s to fit the emulator)", profile.rate_bps / 1_000_000);
            profile.rate_bps = fit;
        }
        if profile.name == "lan" {
            let lan_size = lan_mb << 20;
            tandem::pseudo_random::write_pseudo_random(&lan_share.path().join("big.bin"), lan_size).unwrap();
            bench_profile(&profile, lan_share.path(), lan_size, runs, &note);
            std::fs::remove_file(lan_share.path().join("big.bin")).unwrap();
        } else {
            bench_profile(&profile, share.path(), size, runs, &note);
        }
    }
    if std::env::var("TANDEM_WAN_SHARING").is_ok_and(|v| v == "0") {
        return;
    }
    // Long enough to outlast the measurements at half the WAN link's rate.
    tandem::pseudo_random::write_pseudo_random(&share.path().join("long.bin"), 400 << 20).unwrap();
    sharing::fair_share(share.path());
    sharing::queue_delay(share.path());
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One profile: every transport, `runs` times each, over one link.
fn bench_profile(profile: &Profile, share: &Path, size: u64, runs: usize, note: &str) {
    let link = Link::start(profile.clone()).expect("start the emulated link");
    let server = Server::start(&link, share);
    let rsyncd = Rsyncd::start(&link, share);
    let home = tempfile::tempdir().unwrap();
    // Warm the server's hash cache, so no transport pays for hashing.
    let warm = client(&link, home.path()).args(["hash", "verify", "big.bin"]).output().unwrap();
    assert!(warm.status.success(), "hash verify: {}", String::from_utf8_lossy(&warm.stderr));

    {
        let transports: Vec<(&str, Transport<'_>)> = vec![
            ("tandem tcp", Box::new(|| tandem_download(&link, home.path(), "tcp", size))),
            ("tandem udp", Box::new(|| tandem_download(&link, home.path(), "udp", size))),
            ("rsync (daemon)", Box::new(|| rsync_download(&link, rsyncd.as_ref(), size))),
            ("raw TCP, CUBIC", Box::new(|| raw_tcp(&link, "cubic", size))),
            ("raw TCP, BBR", Box::new(|| raw_tcp(&link, "bbr", size))),
        ];
        let rate = format!("{}M", profile.rate_bps / 1_000_000);
        for (name, run) in transports {
            let mut results: Vec<Run> = (0..runs).map(|_| run()).collect();
            results.sort_by_key(|run| run.wall);
            let median = &results[results.len() / 2];
            let label = format!("{}{}", profile.name, if name == "tandem tcp" { note } else { "" });
            if let Some(bytes) = median.capped {
                let bytes_per_s = bytes as f64 / median.wall.as_secs_f64();
                let share_of_link = bytes_per_s * 8.0 / profile.rate_bps as f64 * 100.0;
                println!(
                    "{label:<17} {rate:>9} {name:<18} {:>8.2}+ {:>5.0}%+ {:>7.0}s cap ({} of {} MB arrived)",
                    bytes_per_s / 1e6,
                    share_of_link,
                    median.wall.as_secs_f64(),
                    bytes / 1_000_000,
                    size / 1_000_000
                );
                continue;
            }
            match &median.failed {
                Some(why) => println!("{label:<17} {rate:>9} {name:<18} failed: {why}"),
                None => {
                    let bytes_per_s = size as f64 / median.wall.as_secs_f64();
                    let share_of_link = bytes_per_s * 8.0 / profile.rate_bps as f64 * 100.0;
                    println!(
                        "{label:<17} {rate:>9} {name:<18} {:>9.2} {:>6.0}% {:>8.1} {:>12}",
                        bytes_per_s / 1e6,
                        share_of_link,
                        median.wall.as_secs_f64(),
                        median.resent.map_or("-".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6)),
                    );
                }
            }
        }
    }
    drop(server);
    drop(rsyncd);
    let stats = link.close().unwrap();
    println!("{:<17} wire B to A: {}\n", "", stats.b_to_a);
}

/// A transport's one timed run.
type Transport<'a> = Box<dyn Fn() -> Run + 'a>;

/// One timed transfer.
struct Run {
    wall: Duration,
    /// Bytes sent again, where the transport counts them.
    resent: Option<u64>,
    failed: Option<String>,
    /// Stopped at the cap with this many bytes arrived.
    capped: Option<u64>,
}

impl Run {
    fn done(wall: Duration, resent: Option<u64>) -> Run {
        Run { wall, resent, failed: None, capped: None }
    }

    fn failed(wall: Duration, why: String) -> Run {
        Run { wall, resent: None, failed: Some(why), capped: None }
    }

    fn capped(wall: Duration, bytes: u64) -> Run {
        Run { wall, resent: None, failed: None, capped: Some(bytes) }
    }
}

/// Runs `command` until it ends or the cap passes (then kills it); `None` when capped.
fn run_capped(mut command: Command) -> (Duration, Option<std::process::Output>) {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = started + cap();
    loop {
        if child.try_wait().unwrap().is_some() {
            let output = child.wait_with_output().unwrap();
            return (started.elapsed(), Some(output));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (started.elapsed(), None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes of every file under `dir`, hidden and partial ones included: what a stopped transfer had received.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `tandem serve` in B, with a token (it listens beyond loopback).
struct Server(Child);

impl Server {
    fn start(link: &Link, share: &Path) -> Server {
        let listen = format!("{}:{PORT}", link.addr_b());
        let mut child = link
            .command_b(BIN)
            .args(["serve", share.to_str().unwrap(), "--listen", &listen])
            .env("TANDEM_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert!(line.starts_with("serving"), "tandem serve said {line:?}");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `tandem` client command in A, as the user `home` (its own cache, config and client id).
fn client(link: &Link, home: &Path) -> Command {
    let mut command = link.command_a(BIN);
    command
        .args(["--remote", &format!("{}:{PORT}", link.addr_b())])
        .env("TANDEM_TOKEN", TOKEN)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_CACHE_HOME", home)
        .env("TANDEM_CACHE_LIMIT", "0");
    command
}

/// `tandem download tcp|udp big.bin` into a fresh folder, so no older copy turns it into a delta.
fn tandem_download(link: &Link, home: &Path, protocol: &str, size: u64) -> Run {
    let to = tempfile::tempdir().unwrap();
    let mut command = client(link, home);
    command.args(["--json", "download", protocol, "big.bin", "--to", to.path().to_str().unwrap()]);
    let (wall, output) = run_capped(command);
    let Some(output) = output else { return Run::capped(wall, bytes_under(to.path())) };
    if !output.status.success() {
        return Run::failed(wall, String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["size"].as_u64(), Some(size), "{json}");
    let resent = match protocol {
        "udp" => json["retransmits"].as_u64().map(|packets| packets * 1400),
        _ => None,
    };
    Run::done(wall, resent)
}

/// rsync's daemon in B, serving the share as module `share`; `None` where rsync is not installed.
struct Rsyncd {
    child: Child,
    _config: tempfile::TempDir,
}

impl Rsyncd {
    fn start(link: &Link, share: &Path) -> Option<Rsyncd> {
        Command::new("rsync").arg("--version").output().ok()?;
        let config = tempfile::tempdir().unwrap();
        let conf = config.path().join("rsyncd.conf");
        std::fs::write(
            &conf,
            format!("use chroot = no\n[share]\npath = {}\nread only = yes\nuid = root\ngid = root\n", share.display()),
        )
        .unwrap();
        let child = link
            .command_b("rsync")
            .args(["--daemon", "--no-detach", &format!("--port={RSYNC_PORT}"), &format!("--address={}", link.addr_b())])
            .arg(format!("--config={}", conf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready once it accepts a connection; bounded.
        let addr = format!("{}:{RSYNC_PORT}", link.addr_b());
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.run_in(Side::A, || TcpStream::connect(&addr)).unwrap().is_err() {
            assert!(Instant::now() < deadline, "rsync --daemon did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Rsyncd { child, _config: config })
    }
}

impl Drop for Rsyncd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rsync rsync://B/share/big.bin` into a fresh folder (whole file: nothing there to delta against).
fn rsync_download(link: &Link, daemon: Option<&Rsyncd>, size: u64) -> Run {
    if daemon.is_none() {
        return Run::failed(Duration::ZERO, "rsync is not installed".into());
    }
    let to = tempfile::tempdir().unwrap();
    let retrans_before = tcp_retransmits(link);
    let source = format!("rsync://{}:{RSYNC_PORT}/share/big.bin", link.addr_b());
    let mut command = link.command_a("rsync");
    command.args(["-t", &source]).arg(to.path());
    let (wall, output) = run_capped(command);
    let Some(output) = output else { return Run::capped(wall, bytes_under(to.path())) };
    if !output.status.success() {
        return Run::failed(wall, String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    assert_eq!(std::fs::metadata(to.path().join("big.bin")).unwrap().len(), size);
    Run::done(wall, Some(tcp_retransmits(link) - retrans_before))
}

/// A plain TCP copy of `size` bytes from B to A with the congestion control `cc` on the sending socket, timed
/// from the connection's start to the last byte.
fn raw_tcp(link: &Link, cc: &str, size: u64) -> Run {
    let listen = format!("{}:0", link.addr_b());
    let listener = link.run_in(Side::B, || TcpListener::bind(&listen)).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let cc = cc.to_string();
    let retrans_before = tcp_retransmits(link);
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        set_congestion_control(&stream, &cc)?;
        let chunk = vec![0x5Au8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        stream.shutdown(std::net::Shutdown::Write)
    });
    let started = Instant::now();
    let mut stream = link.run_in(Side::A, || TcpStream::connect(addr)).unwrap().unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Run::failed(started.elapsed(), e.to_string()),
        }
        if started.elapsed() > cap() {
            // Closing the socket ends the sender's writes with an error, which is expected here.
            drop(stream);
            let _ = sender.join();
            return Run::capped(started.elapsed(), got);
        }
    }
    let wall = started.elapsed();
    if let Ok(Err(e)) = sender.join() {
        return Run::failed(wall, e.to_string());
    }
    if got != size {
        return Run::failed(wall, format!("{got} of {size} bytes"));
    }
    Run::done(wall, Some(tcp_retransmits(link) - retrans_before))
}

fn set_congestion_control(stream: &TcpStream, cc: &str) -> std::io::Result<()> {
    // SAFETY: the name is valid for its length and the socket is open for the call.
    let ok = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr().cast(),
            cc.len() as libc::socklen_t,
        )
    };
    if ok == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Bytes the kernel's TCP in B (the sender) has sent again so far: segments from this thread's `net/snmp`, which is per
/// namespace, times the MSS of a 1500-byte MTU.
fn tcp_retransmits(link: &Link) -> u64 {
    let snmp = link.run_in(Side::B, || std::fs::read_to_string("/proc/thread-self/net/snmp")).unwrap().unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap_or(""), tcp.next().unwrap_or(""));
    let index = names.split_whitespace().position(|n| n == "RetransSegs");
    let segments: u64 = index.and_then(|i| values.split_whitespace().nth(i)?.parse().ok()).unwrap_or(0);
    segments * 1448
}
