//! Load figures: the Hardening issue's workload, 200 clients at once against one `tandem serve` process (release
//! build, default limits), each on its own control connection doing 50 listings and 5 verified TCP downloads,
//! printed beside a baseline from the same run: the same sessions from one client alone, one after another. Each
//! percentile so reads "under 200 clients X ms vs 1 client Y ms".
//!
//! - connect: TCP connect and the hello exchange of a control connection (the 200 clients connect at once, then
//!   wait for each other before their first request, so all 200 sessions are open while the requests run);
//! - listing: one recursive `List` of a folder of the share (1 to 13 entries), until its last entry arrived;
//! - download: one verified TCP download as `tandem download` does it: the ticket request, the bulk connection,
//!   the bytes (0 B to 1 MB), the MD5 check, fsync and rename into a folder on disk;
//! - count, median, p90, p99 (nearest rank) and max of every request's latency, and throughput: requests and file
//!   bytes per second of wall time over the whole loaded run.
//!
//! The share and each client's session are the load test's (`tests/it/load_share.rs`), so the bench measures
//! exactly what `cargo test` checks. The server has its own process, runtime and threads, but clients and server
//! share the machine's cores. Every answer is checked (entry count of each listing, size and MD5 of each
//! download); errors are counted and printed, and a run with any error ends in a panic after its figures, since
//! its latencies would mean nothing. The hash cache is warmed first, as on any server that has sent its files
//! before.
//!
//! Run with `cargo bench --bench load`. `TANDEM_BENCH_CLIENTS=50` changes the number of clients,
//! `TANDEM_BENCH_ROUNDS=1` the number of loaded runs pooled into the figures (default 3).

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::client::{Connection, download_tcp};
use tandem::digest::{Md5Digest, md5_file};
use tandem::protocol::ListFilter;
use tokio::sync::Barrier;

#[path = "../tests/it/load_share.rs"]
mod load_share;

use load_share::{DOWNLOADS, FILES, LISTINGS, Step};

/// Sessions the lone client runs one after another, so its percentiles rest on enough samples.
const SESSIONS_ALONE: usize = 40;

fn main() {
    let clients: usize = std::env::var("TANDEM_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let rounds: usize = std::env::var("TANDEM_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let runs = if rounds == 1 { "1 run".to_string() } else { format!("{rounds} runs") };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // Other work on the machine shows in every figure, so the run says how busy it was.
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg = loadavg.split_whitespace().next().unwrap_or("unknown");
    println!(
        "tandem load benchmark ({cores} cores, load average {loadavg} at the start): {clients} clients at once, each \
         {LISTINGS} listings + {DOWNLOADS} downloads, {runs} pooled; baseline: 1 client alone, \
         {SESSIONS_ALONE} such sessions in a row\n"
    );
    let share = tempfile::tempdir().expect("share");
    let md5s = write_share(share.path());
    let server = ServeProcess::start(share.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let md5s = Arc::new(md5s);

    // Warm-up: every file is sent at least once, so the server knows its MD5 as it does for any file it has sent.
    runtime.block_on(run(&server.addr, 1, FILES.len(), &md5s)).check();
    let alone = runtime.block_on(run(&server.addr, 1, SESSIONS_ALONE, &md5s));
    let mut loaded = Samples::default();
    for _ in 0..rounds {
        loaded.add(runtime.block_on(run(&server.addr, clients, 1, &md5s)));
    }

    let label = format!("{clients} clients");
    println!("{:<24}{:>9}{:>10}{:>10}{:>10}{:>10}", "latency", "count", "median", "p90", "p99", "max");
    for (what, baseline, under) in [
        ("connect", &alone.connect, &loaded.connect),
        ("listing", &alone.listing, &loaded.listing),
        ("download", &alone.download, &loaded.download),
    ] {
        row(&format!("{what}, 1 client"), baseline);
        row(&format!("{what}, {label}"), under);
    }
    println!();
    for (what, under, baseline) in
        [("listing", &loaded.listing, &alone.listing), ("download", &loaded.download, &alone.download)]
    {
        let (under, baseline) = (percentile(under, 99.0), percentile(baseline, 99.0));
        println!("p99 {what:<9} under {label} {:>8.2} ms vs 1 client {:>6.2} ms", ms(under), ms(baseline));
    }
    println!();
    throughput(&label, &loaded);
    throughput("1 client", &alone);
    drop(server);
    loaded.check();
    alone.check();
}

/// Writes the share and returns each file's MD5.
fn write_share(root: &Path) -> Vec<Md5Digest> {
    load_share::write(root);
    FILES.iter().map(|(rel, _)| md5_file(&root.join(rel)).expect("md5")).collect()
}

/// Latencies of one or more runs, and what went wrong in them.
#[derive(Default)]
struct Samples {
    connect: Vec<Duration>,
    listing: Vec<Duration>,
    download: Vec<Duration>,
    bytes: u64,
    errors: Vec<String>,
    wall: Duration,
}

impl Samples {
    fn add(&mut self, other: Samples) {
        self.connect.extend(other.connect);
        self.listing.extend(other.listing);
        self.download.extend(other.download);
        self.bytes += other.bytes;
        self.errors.extend(other.errors);
        self.wall += other.wall;
    }

    fn requests(&self) -> usize {
        self.listing.len() + self.download.len()
    }

    fn check(self) {
        if let Some(first) = self.errors.first() {
            panic!("{} requests failed; the first: {first}", self.errors.len());
        }
    }
}

/// Runs `clients` at once, each running `sessions` sessions in a row; times the whole.
async fn run(addr: &str, clients: usize, sessions: usize, md5s: &Arc<Vec<Md5Digest>>) -> Samples {
    let all = Arc::new(Barrier::new(clients));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let (addr, md5s, all) = (addr.to_string(), md5s.clone(), all.clone());
            tokio::spawn(async move {
                let mut samples = Samples::default();
                for s in 0..sessions {
                    samples.add(session(n + s, &addr, &md5s, &all).await);
                }
                samples
            })
        })
        .collect();
    let mut samples = Samples::default();
    for task in futures::future::join_all(tasks).await {
        samples.add(task.expect("client task"));
    }
    samples.wall = started.elapsed();
    samples
}

/// One client's session, timed request by request: connect, wait for the others, then the workload's session
/// (50 listings, 5 downloads) with downloads into a folder of its own.
async fn session(n: usize, addr: &str, md5s: &[Md5Digest], all: &Barrier) -> Samples {
    let mut samples = Samples::default();
    let dest = tempfile::tempdir().expect("destination");
    let started = Instant::now();
    let connected = Connection::connect(addr).await;
    samples.connect.push(started.elapsed());
    all.wait().await;
    let conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            samples.errors.push(format!("connect: {e}"));
            return samples;
        }
    };
    for step in load_share::session(n) {
        let started = Instant::now();
        match step {
            Step::List { path, entries: count } => {
                let listed = conn.list(path, ListFilter::default()).await;
                samples.listing.push(started.elapsed());
                match listed {
                    Ok(entries) if entries.len() == count => {}
                    Ok(entries) => {
                        samples.errors.push(format!("listing {path:?}: {} entries, not {count}", entries.len()))
                    }
                    Err(e) => samples.errors.push(format!("listing {path:?}: {e}")),
                }
            }
            Step::Download(file) => {
                let (rel, size) = FILES[file];
                let report = download_tcp(&conn, rel, dest.path(), &Default::default()).await;
                samples.download.push(started.elapsed());
                match report {
                    Ok(report) if report.size == size && report.md5 == md5s[file] => samples.bytes += size,
                    Ok(report) => {
                        samples.errors.push(format!("download {rel:?}: {} bytes, MD5 {}", report.size, report.md5))
                    }
                    Err(e) => samples.errors.push(format!("download {rel:?}: {e}")),
                }
            }
        }
    }
    samples
}

fn row(label: &str, samples: &[Duration]) {
    let p = |q| format!("{:.2} ms", ms(percentile(samples, q)));
    println!("{label:<24}{:>9}{:>10}{:>10}{:>10}{:>10}", samples.len(), p(50.0), p(90.0), p(99.0), p(100.0));
}

fn throughput(label: &str, samples: &Samples) {
    let secs = samples.wall.as_secs_f64();
    println!(
        "{label:<12} {:>6} requests in {secs:>5.2} s = {:>6.0} requests/s, \
         {:>6.1} MB of files = {:>5.1} MB/s, {} errors",
        samples.requests(),
        samples.requests() as f64 / secs,
        samples.bytes as f64 / 1e6,
        samples.bytes as f64 / 1e6 / secs,
        samples.errors.len()
    );
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

/// A `tandem serve` process over the share, with default limits; killed on drop.
struct ServeProcess {
    child: Child,
    addr: String,
}

impl ServeProcess {
    fn start(root: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("serve")
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tandem serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("serving line");
        let addr = line.trim().rsplit(" on ").next().expect("address").to_string();
        ServeProcess { child, addr }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
