//! How a `tandem download udp` shares a link with other traffic: beside one CUBIC TCP flow on the WAN profile,
//! the share of the link the TCP flow keeps over 20 s; and on the bufferbloat profile, the round-trip time a
//! ping-like echo sees beside a UDP download and beside a TCP download (the queue each fills).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use linkem::{Link, Profile, Side};

use super::{Server, client, set_congestion_control};

/// How long the TCP flow's share is measured, after a settling time.
const WINDOW: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(5);

/// A download that runs in the background until dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn background_download(link: &Link, home: &Path, protocol: &str, to: &Path) -> Background {
    let child = client(link, home)
        .args(["download", protocol, "long.bin", "--to", to.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Background(child)
}

/// The share of the WAN link one CUBIC flow keeps beside a UDP download, and beside a TCP one for comparison.
pub fn fair_share(share: &Path) {
    let profile = Profile::wan();
    let link = Link::start(profile.clone()).expect("start the emulated link");
    let _server = Server::start(&link, share);
    let home = tempfile::tempdir().unwrap();
    for protocol in ["udp", "tcp"] {
        let to = tempfile::tempdir().unwrap();
        let (tcp_bytes, elapsed) =
            cubic_flow_beside(&link, || background_download(&link, home.path(), protocol, to.path()));
        let share_of_link = tcp_bytes as f64 * 8.0 / elapsed.as_secs_f64() / profile.rate_bps as f64;
        println!(
            "fair share   {:<10} one CUBIC flow beside `download {protocol}` kept {:.0}% of the link over {:.0} s \
             (target for udp: 33% to 67%)",
            profile.name,
            share_of_link * 100.0,
            elapsed.as_secs_f64()
        );
    }
    link.close().unwrap();
}

/// Runs a CUBIC flow from B to A, starts `other` once it is going, and counts what the flow delivers over
/// [`WINDOW`] after [`SETTLE`].
fn cubic_flow_beside<T>(link: &Link, other: impl FnOnce() -> T) -> (u64, Duration) {
    let listen = format!("{}:0", link.addr_b());
    let listener = link.run_in(Side::B, || TcpListener::bind(&listen)).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Instant::now() + SETTLE + WINDOW + Duration::from_secs(2);
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        set_congestion_control(&stream, "cubic")?;
        let chunk = vec![0x5Au8; 1 << 20];
        while Instant::now() < stop {
            stream.write_all(&chunk)?;
        }
        Ok(())
    });
    let mut stream = link.run_in(Side::A, || TcpStream::connect(addr)).unwrap().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _other = other();
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut counted = 0u64;
    let mut window_start = None;
    while started.elapsed() < SETTLE + WINDOW {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        if started.elapsed() >= SETTLE {
            window_start.get_or_insert_with(Instant::now);
            counted += n as u64;
        }
    }
    let elapsed = window_start.map_or(Duration::ZERO, |s| s.elapsed());
    drop(stream);
    let _ = sender.join();
    (counted, elapsed)
}

/// Round trips of a small echo on the bufferbloat profile: alone, beside a UDP download, beside a TCP download.
pub fn queue_delay(share: &Path) {
    let profile = Profile::bufferbloat();
    let link = Link::start(profile.clone()).expect("start the emulated link");
    let _server = Server::start(&link, share);
    let home = tempfile::tempdir().unwrap();
    let idle = median_echo(&link);
    let mut beside = Vec::new();
    for protocol in ["udp", "tcp"] {
        let to = tempfile::tempdir().unwrap();
        let _download = background_download(&link, home.path(), protocol, to.path());
        std::thread::sleep(SETTLE); // the download's own start-up, which is not what is measured
        beside.push((protocol, median_echo(&link)));
    }
    let (udp, tcp) = (beside[0].1, beside[1].1);
    println!(
        "queue delay  {:<10} echo RTT median: idle {:.0} ms, beside download udp {:.0} ms, beside download tcp \
         {:.0} ms (udp/tcp {:.2}; target under 2)",
        profile.name,
        idle.as_secs_f64() * 1e3,
        udp.as_secs_f64() * 1e3,
        tcp.as_secs_f64() * 1e3,
        udp.as_secs_f64() / tcp.as_secs_f64()
    );
    link.close().unwrap();
}

/// The median of 40 echo round trips, 100 ms apart (bounded).
fn median_echo(link: &Link) -> Duration {
    let mut times = Vec::new();
    for _ in 0..40 {
        let rtt = linkem::tcp_round_trips(link, 1, Duration::from_secs(10)).unwrap();
        times.extend(rtt);
        std::thread::sleep(Duration::from_millis(100));
    }
    times.sort();
    times[times.len() / 2]
}
