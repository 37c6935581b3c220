//! The emulator end to end, with the kernel's TCP and UDP in both namespaces: the RTT, rate and loss a profile
//! promises are what traffic sees, cuts drop everything for their time, and no namespace outlives its link.
//! Needs root; skips without it, except under CI=true. Timed tests run one at a time (`serial`).

#![allow(clippy::unwrap_used)] // A test that cannot go on stops with the reason; that is its report.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use linkem::{Link, Profile, Side};

const T: Duration = Duration::from_secs(10);

/// Timing-sensitive tests share two cores: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ours() -> Vec<String> {
    linkem::netns::list().unwrap().into_iter().filter(|n| n.starts_with(linkem::netns::PREFIX)).collect()
}

#[test]
fn round_trips_show_the_configured_rtt() {
    if !linkem::available_or_skip("round_trips_show_the_configured_rtt") {
        return;
    }
    let _serial = serial();
    for profile in [Profile::wan(), Profile::bufferbloat()] {
        let want = profile.rtt();
        let link = Link::start(profile.clone()).unwrap();
        let rtt = median(linkem::tcp_round_trips(&link, 15, T).unwrap());
        eprintln!("{profile}: median TCP round trip {rtt:?}");
        assert!(rtt >= want.mul_f64(0.8) && rtt <= want.mul_f64(1.2), "{}: RTT {rtt:?}, want {want:?}", profile.name);
    }
}

#[test]
fn set_profile_takes_effect_on_a_running_link() {
    if !linkem::available_or_skip("set_profile_takes_effect_on_a_running_link") {
        return;
    }
    let _serial = serial();
    let link = Link::start(Profile::shaped("10ms", 100_000_000, Duration::from_millis(10))).unwrap();
    let before = median(linkem::tcp_round_trips(&link, 5, T).unwrap());
    link.set_profile(Profile::shaped("40ms", 100_000_000, Duration::from_millis(40))).unwrap();
    let after = median(linkem::tcp_round_trips(&link, 5, T).unwrap());
    eprintln!("RTT {before:?}, then {after:?}");
    assert!((8..13).contains(&before.as_millis()), "{before:?}");
    assert!((32..48).contains(&after.as_millis()), "{after:?}");
    assert_eq!(link.profile().name, "40ms");
}

#[test]
fn bulk_tcp_gets_most_of_20_mbit_and_no_more() {
    if !linkem::available_or_skip("bulk_tcp_gets_most_of_20_mbit_and_no_more") {
        return;
    }
    let _serial = serial();
    let rate = 20_000_000.0;
    let link = Link::start(Profile::shaped("20mbit", rate as u64, Duration::from_millis(20))).unwrap();
    let start = Instant::now();
    let transfer = linkem::tcp_bulk(&link, Side::A, 5 << 20, T).unwrap();
    let wall = start.elapsed();
    let stats = link.stats();
    let goodput = transfer.bits_per_second();
    eprintln!(
        "20 Mbit/s link: {:.2} Mbit/s of payload in {:.2} s\n{stats}",
        goodput / 1e6,
        transfer.elapsed.as_secs_f64()
    );
    assert!(goodput >= 0.7 * rate && goodput <= rate, "goodput {goodput}");
    // Whole packets, headers included, never beat the rate either (from the connect on; a little slack for
    // the first packet that finds the bottleneck idle).
    let wire_rate = stats.a_to_b.forwarded_bytes as f64 * 8.0 / wall.as_secs_f64();
    assert!(wire_rate <= rate * 1.01, "wire rate {wire_rate}");
}

/// Sends `count` UDP datagrams A→B in chunks, each chunk once the wire has read the last (so the sending
/// device's own queue never overflows), waits until every one has been forwarded or dropped, and returns
/// the datagrams B received, in order of arrival.
fn udp_through(link: &Link, count: u32) -> Vec<u32> {
    let addr_b = SocketAddrV4::new(link.addr_b(), 0);
    let receiver = link.run_in(Side::B, || UdpSocket::bind(addr_b)).unwrap().unwrap();
    // Room for every datagram, so the receiving socket drops none (FORCE: root may exceed rmem_max).
    let room: libc::c_int = 16 << 20;
    // SAFETY: a live socket and a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            receiver.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const room).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    let to = receiver.local_addr().unwrap();
    let sender = link.run_in(Side::A, || UdpSocket::bind(SocketAddrV4::new(link.addr_a(), 0))).unwrap().unwrap();
    let base = link.stats().a_to_b.received_packets;
    for chunk in (0..count).collect::<Vec<u32>>().chunks(100) {
        for i in chunk {
            sender.send_to(&i.to_be_bytes(), to).unwrap();
        }
        let sent = u64::from(chunk[chunk.len() - 1]) + 1;
        link.wait_for("datagrams read by the wire", T, |s| s.a_to_b.received_packets - base >= sent).unwrap();
    }
    link.wait_for("settled wire", T, |s| s.a_to_b.settled()).unwrap();
    receiver.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..2 * count {
        match receiver.recv(&mut buf) {
            Ok(4) => got.push(u32::from_be_bytes(buf[..4].try_into().unwrap())),
            Ok(n) => panic!("stray datagram of {n} bytes"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("receiving: {e}"),
        }
    }
    got
}

#[test]
fn loss_is_about_the_profiles_share_and_follows_the_seed() {
    if !linkem::available_or_skip("loss_is_about_the_profiles_share_and_follows_the_seed") {
        return;
    }
    let _serial = serial();
    let count = 4000u32;
    // Wi-Fi's 5% loss and jitter, with a queue that holds every datagram of a burst.
    let profile = Profile { queue_bytes: 1 << 20, ..Profile::wifi() }.with_seed(2024);
    let mut losses = Vec::new();
    for _ in 0..2 {
        let link = Link::start(profile.clone()).unwrap();
        let got = udp_through(&link, count);
        let stats = link.stats().a_to_b;
        eprintln!("5% loss, {count} datagrams: {stats}");
        assert_eq!(stats.received_packets, u64::from(count), "only the datagrams crossed");
        assert_eq!(stats.queue_dropped + stats.cut_dropped + stats.duplicated, 0);
        assert_eq!(got.len() as u64, stats.forwarded_packets);
        assert_eq!(got.len() as u64 + stats.lost, u64::from(count));
        // Jitter without reordering keeps their order.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        losses.push(stats.lost);
    }
    // Binomial(4000, 0.05): mean 200, sd 13.8; ±4 sd.
    assert!((145..=255).contains(&losses[0]), "lost {}", losses[0]);
    assert_eq!(losses[0], losses[1], "the same seed loses the same packets");
}

#[test]
fn reordering_and_duplication_show_at_the_receiver() {
    if !linkem::available_or_skip("reordering_and_duplication_show_at_the_receiver") {
        return;
    }
    let _serial = serial();
    let profile = Profile {
        reorder: 0.05,
        reorder_delay: Duration::from_millis(5),
        duplicate: 0.02,
        ..Profile::shaped("reorder", 0, Duration::from_millis(2))
    };
    let link = Link::start(profile).unwrap();
    let got = udp_through(&link, 2000);
    let stats = link.stats().a_to_b;
    eprintln!("5% reordered, 2% duplicated: {stats}");
    assert_eq!(got.len() as u64, 2000 + stats.duplicated);
    assert!((60..=140).contains(&stats.reordered), "{stats}");
    assert!((15..=70).contains(&stats.duplicated), "{stats}");
    let overtaken = got.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(overtaken > 0, "no datagram arrived out of order");
}

#[test]
fn a_cut_drops_everything_for_its_time_then_tcp_recovers() {
    if !linkem::available_or_skip("a_cut_drops_everything_for_its_time_then_tcp_recovers") {
        return;
    }
    let _serial = serial();
    let link = Link::start(Profile::shaped("10ms", 100_000_000, Duration::from_millis(10))).unwrap();
    let (mut client, mut server) = linkem::tcp_pair(&link, Side::A, T).unwrap();
    let cut = Duration::from_millis(600);
    let start = Instant::now();
    link.cut(cut);
    assert!(link.is_cut());
    client.write_all(b"x").unwrap();
    link.wait_for("dropped packet", T, |s| s.a_to_b.cut_dropped > 0).unwrap();
    let mut byte = [0u8; 1];
    server.read_exact(&mut byte).unwrap();
    let waited = start.elapsed();
    eprintln!("a byte sent into a {cut:?} cut arrived after {waited:?}: {}", link.stats());
    assert!(waited >= cut, "arrived after {waited:?}, inside the cut");
    assert!(!link.is_cut());

    link.cut_until_restored();
    client.write_all(b"y").unwrap();
    link.wait_for("dropped packet", T, |s| s.a_to_b.cut_dropped > 1).unwrap();
    link.restore();
    server.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"y");
}

#[test]
fn teardown_leaves_no_namespace_even_after_a_panic() {
    if !linkem::available_or_skip("teardown_leaves_no_namespace_even_after_a_panic") {
        return;
    }
    let link = Link::start(Profile::lan()).unwrap();
    let names = [link.ns_a().to_owned(), link.ns_b().to_owned()];
    assert!(names.iter().all(|n| linkem::netns::exists(n)));
    link.close().unwrap();
    assert!(names.iter().all(|n| !linkem::netns::exists(n)), "{:?}", ours());

    let names = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    let thread = std::thread::spawn(move || {
        let link = Link::start(Profile::lan()).unwrap();
        seen.lock().unwrap().extend([link.ns_a().to_owned(), link.ns_b().to_owned()]);
        panic!("a deliberate panic while a Link is alive: its namespaces must go while unwinding");
    });
    assert!(thread.join().is_err());
    let names = names.lock().unwrap();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| !linkem::netns::exists(n)), "{:?}", ours());
}

#[test]
fn namespaces_of_a_dead_process_are_removed_at_start() {
    if !linkem::available_or_skip("namespaces_of_a_dead_process_are_removed_at_start") {
        return;
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("{}a-{dead}-0", linkem::netns::PREFIX);
    let added = std::process::Command::new("ip").args(["netns", "add", &stale]).status().unwrap();
    assert!(added.success());
    let link = Link::start(Profile::lan()).unwrap();
    assert!(!linkem::netns::exists(&stale), "{:?}", ours());
    drop(link);
}

#[test]
fn sysctl_reaches_only_its_namespace() {
    if !linkem::available_or_skip("sysctl_reaches_only_its_namespace") {
        return;
    }
    let link = Link::start(Profile::lan()).unwrap();
    link.sysctl(Side::A, "net.ipv4.tcp_congestion_control", "reno").unwrap();
    let read = |side| {
        link.run_in(side, || std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap()).unwrap()
    };
    assert_eq!(read(Side::A).trim(), "reno");
    assert_ne!(read(Side::B).trim(), "reno");
}

#[test]
fn commands_run_inside_their_namespace() {
    if !linkem::available_or_skip("commands_run_inside_their_namespace") {
        return;
    }
    let link = Link::start(Profile::lan()).unwrap();
    for (side, cidr) in [(Side::A, "198.18.0.1/30"), (Side::B, "198.18.0.2/30")] {
        let out = link.command(side, "ip").args(["-4", "addr", "show", "dev", "wan0"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(cidr) && text.contains("UP"), "{side:?}: {text}");
    }
}
