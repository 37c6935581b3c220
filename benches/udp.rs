//! UDP transfer figures, each beside its target, in one run:
//!
//! - 1 GiB on loopback without loss: time against a verified TCP download of the same file (target ≤ 1.3 ×);
//! - with 5% loss injected in both directions (the client's socket layer drops 5% of the data it receives and
//!   of the acks it sends): time against its own no-loss time (target ≤ 2 ×), and retransmitted bytes as a share
//!   of the file (target < 10%).
//!
//! Run with `cargo bench --bench udp`. `TANDEM_BENCH_GIB=0.25` shrinks the file for a quick look.

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

use std::time::{Duration, Instant};

use tandem::client::{Connection, DownloadReport, UdpOptions, download_tcp, download_udp};
use tandem::server::{Server, ServerConfig};
use tandem::transfer::Progress;

const RUNS: usize = 5;

fn main() {
    let gib: f64 = std::env::var("TANDEM_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let size = (gib * (1u64 << 30) as f64) as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(size));
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn run(size: u64) {
    let share = tempfile::tempdir().expect("share");
    tandem::pseudo_random::write_pseudo_random(&share.path().join("big.bin"), size).expect("write test file");
    let mut config = ServerConfig::new(share.path());
    config.listen = "127.0.0.1:0".into();
    let (addr, shutdown, _) = Server::spawn(config).await.expect("server");
    let conn = Connection::connect(&addr.to_string()).await.expect("connect");
    // The server knows the MD5 from here on, as it does for any file it has hashed or sent before.
    conn.hash("big.bin").await.expect("hash");

    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let mut lossy = Vec::new();
    let mut lossy_reports = Vec::new();
    for _ in 0..RUNS {
        tcp.push(timed(&conn, None).await.0);
        udp.push(timed(&conn, Some(0.0)).await.0);
        let (time, report) = timed(&conn, Some(0.05)).await;
        lossy.push(time);
        lossy_reports.push(report);
    }
    shutdown.cancel();
    let (tcp, udp, lossy) = (median(tcp), median(udp), median(lossy));
    let packets = size.div_ceil(1400);
    let retransmits: Vec<u64> = lossy_reports.iter().map(|r| r.udp.map_or(0, |u| u.retransmits)).collect();
    let median_retransmits = {
        let mut sorted = retransmits.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    let mb_s = |t: Duration| size as f64 / 1e6 / t.as_secs_f64();
    println!(
        "UDP download of {:.2} GiB on loopback, verified by MD5 (median of {RUNS})",
        size as f64 / (1u64 << 30) as f64
    );
    println!("  TCP, no loss                {:>7.3} s  {:>6.0} MB/s   baseline", tcp.as_secs_f64(), mb_s(tcp));
    println!(
        "  UDP, no loss                {:>7.3} s  {:>6.0} MB/s   {:.2} x TCP  (target <= 1.3 x)",
        udp.as_secs_f64(),
        mb_s(udp),
        udp.as_secs_f64() / tcp.as_secs_f64()
    );
    println!(
        "  UDP, 5% loss both ways      {:>7.3} s  {:>6.0} MB/s   {:.2} x UDP without loss  (target <= 2 x)",
        lossy.as_secs_f64(),
        mb_s(lossy),
        lossy.as_secs_f64() / udp.as_secs_f64()
    );
    println!(
        "  retransmitted with 5% loss  {median_retransmits} of {packets} packets = {:.1}% of the file  (target < 10%)",
        median_retransmits as f64 * 100.0 / packets as f64
    );
}

/// One download into a fresh folder; `udp_loss` picks UDP with that loss, `None` picks TCP.
async fn timed(conn: &Connection, udp_loss: Option<f64>) -> (Duration, DownloadReport) {
    let dest = tempfile::tempdir().expect("dest");
    let started = Instant::now();
    let report = match udp_loss {
        None => download_tcp(conn, "big.bin", dest.path(), &Progress::default()).await,
        Some(loss) => {
            let options = UdpOptions { loss, ..Default::default() };
            download_udp(conn, "big.bin", dest.path(), &Progress::default(), options).await
        }
    }
    .expect("download");
    (started.elapsed(), report)
}
