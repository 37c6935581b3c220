//! Foundation figures, each printed next to its baseline in one run:
//!
//! - a verified 1 GiB TCP download on loopback against an in-process MD5 of the same file (target: ≤ 1.15 ×),
//!   both with the server's hash cache warm (the usual case: the server already knows the MD5) and cold (the
//!   server hashes while it sends);
//! - a second `hash checkall` over 10,000 unchanged files (target: < 100 ms);
//! - `index longlist` of 100,000 entries (target: < 0.5 s) and the server's peak memory (target: < 100 MB).
//!
//! Run with `cargo bench --bench foundation`. `TANDEM_BENCH_GIB=0.25` shrinks the big file for a quick look.

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tandem::client::{Connection, download_tcp};
use tandem::digest::md5_file;
use tandem::protocol::ListFilter;
use tandem::server::{Server, ServerConfig};
use tandem::transfer::Progress;

#[path = "common/serve.rs"]
mod serve;
use serve::start_serve;
const RUNS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let gib: f64 = std::env::var("TANDEM_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    println!(
        "tandem foundation benchmark ({} cores)\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    runtime.block_on(download_vs_md5((gib * (1u64 << 30) as f64) as u64));
    runtime.block_on(second_checkall(10_000));
    longlist(100_000);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

async fn start_server(root: &Path) -> (String, tokio_util::sync::CancellationToken) {
    let mut config = ServerConfig::new(root);
    config.listen = "127.0.0.1:0".into();
    let (addr, shutdown, _) = Server::spawn(config).await.expect("server");
    (addr.to_string(), shutdown)
}

async fn download_vs_md5(size: u64) {
    let share = tempfile::tempdir().expect("tempdir");
    let path = share.path().join("big.bin");
    tandem::pseudo_random::write_pseudo_random(&path, size).expect("write test file");
    let md5_runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            md5_file(&path).expect("md5");
            started.elapsed()
        })
        .collect();
    let md5_time = median(md5_runs);

    // The disk's own limit: writing the same number of bytes durably, as every download must.
    let disk_runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let dir = tempfile::tempdir().expect("dir");
            let started = Instant::now();
            let target = dir.path().join("copy.bin");
            tandem::pseudo_random::write_pseudo_random(&target, size).expect("write test file");
            std::fs::File::open(&target).and_then(|f| f.sync_all()).expect("fsync");
            started.elapsed()
        })
        .collect();
    let disk_time = median(disk_runs);

    let (addr, shutdown) = start_server(share.path()).await;
    let conn = Connection::connect(&addr).await.expect("connect");
    let ram = Path::new("/dev/shm");
    let timed = |touch: bool, to_ram: bool| {
        let conn = conn.clone();
        let path = path.clone();
        async move {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                if touch {
                    // A new mtime makes the server's cached MD5 stale, so it hashes while sending.
                    let file = std::fs::File::options().write(true).open(&path).expect("open");
                    file.set_modified(SystemTime::now()).expect("touch");
                }
                let dest = if to_ram { tempfile::tempdir_in(ram) } else { tempfile::tempdir() }.expect("dest");
                let started = Instant::now();
                let report = download_tcp(&conn, "big.bin", dest.path(), &Progress::default()).await.expect("download");
                runs.push(started.elapsed());
                assert_eq!(report.size, size);
            }
            median(runs)
        }
    };
    let warm = timed(false, false).await;
    let cold = timed(true, false).await;
    let in_ram = if ram.is_dir() { Some(timed(false, true).await) } else { None };
    shutdown.cancel();

    let gib = size as f64 / (1u64 << 30) as f64;
    let ratio = |t: Duration| t.as_secs_f64() / md5_time.as_secs_f64();
    let row = |label: &str, t: Duration, note: String| {
        println!("  {label:<38}{:>7.3} s {:>6.0} MB/s   {note}", t.as_secs_f64(), mb_per_s(size, t));
    };
    println!("verified TCP download of {gib:.2} GiB on loopback (median of {RUNS})");
    row("MD5 of the file, in-process", md5_time, "baseline".into());
    row(
        "write + fsync to this disk, in-process",
        disk_time,
        format!("{:.2} x MD5: the disk's own limit", ratio(disk_time)),
    );
    row("download to disk, server MD5 cached", warm, format!("{:.2} x MD5  (target <= 1.15 x)", ratio(warm)));
    row("download to disk, server hashes too", cold, format!("{:.2} x MD5", ratio(cold)));
    if let Some(in_ram) = in_ram {
        row("download to RAM (/dev/shm), cached", in_ram, format!("{:.2} x MD5", ratio(in_ram)));
    }
    if let Some(md5sum) = time_command("md5sum", &path) {
        row("for reference: md5sum (one run)", md5sum, String::new());
    }
    println!();
}

async fn second_checkall(files: usize) {
    let share = tempfile::tempdir().expect("tempdir");
    for i in 0..files {
        let dir = share.path().join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join(format!("f{i}.txt"));
        std::fs::write(&path, format!("file number {i}\n").repeat(20)).expect("write");
        // Stamps of files written within the last two seconds are never trusted (`FileStamp::is_recent`), so
        // these get an old mtime, as a real user's files have; otherwise every run would re-hash them.
        let long_ago = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(long_ago)).expect("set mtime");
    }
    let (addr, shutdown) = start_server(share.path()).await;
    let conn = Connection::connect(&addr).await.expect("connect");
    let started = Instant::now();
    assert_eq!(conn.hash_all("", None).await.expect("checkall").len(), files);
    let first = started.elapsed();
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        assert_eq!(conn.hash_all("", None).await.expect("checkall").len(), files);
        runs.push(started.elapsed());
    }
    let second = median(runs);
    shutdown.cancel();
    println!("hash checkall over {files} files");
    println!("  first run (reads every file)  {:>8.1} ms", first.as_secs_f64() * 1e3);
    println!(
        "  unchanged tree (from cache)   {:>8.1} ms   {:.1} x faster  (target < 100 ms)\n",
        second.as_secs_f64() * 1e3,
        first.as_secs_f64() / second.as_secs_f64()
    );
}

fn longlist(entries: usize) {
    let share = tempfile::tempdir().expect("tempdir");
    let per_dir = 1000;
    for i in 0..entries - entries / per_dir {
        let dir = share.path().join(format!("folder {:03}", i / (per_dir - 1)));
        if i % (per_dir - 1) == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::File::create(dir.join(format!("entry {i}.dat"))).expect("create");
    }
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tandem"));
    serve.arg("serve").arg(share.path()).args(["--listen", "127.0.0.1:0"]);
    let (mut server, addr) = start_serve(serve);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                let conn = Connection::connect(&addr).await.expect("connect");
                let listed = conn.list("", ListFilter::default()).await.expect("list");
                assert!(listed.len() >= entries - 1, "{} entries", listed.len());
                started.elapsed()
            })
        })
        .collect();
    let peak_kib = peak_rss_kib(server.id());
    let _ = server.kill();
    let _ = server.wait();
    println!("index longlist of {entries} entries (separate server process)");
    println!("  connect + list, median        {:>8.1} ms   (target < 500 ms)", median(runs).as_secs_f64() * 1e3);
    match peak_kib {
        Some(kib) => println!("  server peak memory (VmHWM)    {:>8.1} MB   (target < 100 MB)", kib as f64 / 1024.0),
        None => println!("  server peak memory: /proc not available"),
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn time_command(program: &str, path: &Path) -> Option<Duration> {
    let started = Instant::now();
    let status = Command::new(program).arg(path).stdout(Stdio::null()).status().ok()?;
    status.success().then(|| started.elapsed())
}
