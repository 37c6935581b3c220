//! Sync figures, each printed next to its target and a baseline in one run:
//!
//! - propagation: a small file saved in one client's folder, until it is in another client's folder with the
//!   right bytes (an in-process server and two `tandem::sync::run` tasks on loopback; median and p90 of 21 files;
//!   target < 1 s; for reference, Syncthing waits 10 s by default before it even looks at a change);
//! - initial sync of 10,000 files, 1 GiB in total (old mtimes, as real files have), into an empty share (upload)
//!   and from that share into a new empty folder (download), each against a single-threaded in-process MD5 of the
//!   same files with a warm page cache (target: ≤ 1.5 × MD5 both ways); both results are checked (file count and
//!   a sample of MD5s), so a sync that does nothing cannot pass; then the same 10,000 files with `tandem serve`
//!   and `tandem sync --once` as separate processes held to one core each, as a client and a server on two
//!   machines run them (each end hashes every byte once, on its own CPU, while on one core pair in-process both
//!   hashes share the same two cores); then the same 10,000 files with every folder in RAM (`/dev/shm`), which
//!   leaves out this machine's disk and filesystem; then the same bytes as 100 files of 10.7 MB, to show how much
//!   of the time is per file;
//! - a growing file: 300 MB written into a synced folder over six seconds, the CPU each end spends on it against
//!   one MD5 pass, and how soon after the last write it is on the server (see `sync/growing.rs`);
//! - idle CPU: a continuous `tandem sync` process on a folder of 100,000 unchanged files, measured from /proc. It
//!   runs with `--interval 6`, so a 65 s window holds ten polls of the server and one full rescan of the folder,
//!   the work the defaults (`--interval 60`, a rescan every tenth poll) do in ten minutes; that CPU time over
//!   600 s is the idle cost at the defaults (target: < 1 % of one core).
//!
//! Run with `cargo bench --bench sync`; `cargo bench --bench sync -- idle` (or `propagation`, `initial`) runs one
//! figure. For a quick look, `TANDEM_BENCH_GIB=0.25` syncs a quarter of the files (each the same size) and
//! `TANDEM_BENCH_IDLE_SECS=20` shortens the idle window (default 65 s; below about 62 s it no longer includes a
//! periodic rescan).

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tandem::client::Connection;
use tandem::digest::md5_file;
use tandem::protocol::ClientIdentity;
use tandem::server::{Server, ServerConfig};
use tandem::share::EntryKind;
use tandem::sync::{Engine, SyncConfig, SyncEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const PROPAGATION_FILES: usize = 21;
const SYNC_FILES: usize = 10_000;
/// The same gibibyte as 100 files of 10.7 MB, to separate per-file cost from per-byte cost.
const LARGE_FILES: usize = 100;
const FILES_PER_FOLDER: usize = 100;
const IDLE_FILES: usize = 100_000;
const MD5_RUNS: usize = 3;
/// A RAM-backed folder present on most Linux systems.
const RAM_DIR: &str = "/dev/shm";

#[path = "sync/growing.rs"]
mod growing;
#[path = "sync/idle.rs"]
mod idle;
#[path = "sync/processes.rs"]
mod processes;
#[path = "common/serve.rs"]
mod serve;

use processes::{Child, children_cpu, cpu_time, on_core, own_cpu, peak_rss_mb, tandem};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let gib: f64 = std::env::var("TANDEM_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let idle_secs: f64 = std::env::var("TANDEM_BENCH_IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(65.0);
    println!("tandem sync benchmark ({} cores)\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    // `cargo bench --bench sync -- idle` runs only the figures whose name contains "idle" (cargo adds `--bench`).
    let only = std::env::args().skip(1).find(|arg| !arg.starts_with('-')).unwrap_or_default();
    if "propagation".contains(&only) {
        runtime.block_on(propagation());
    }
    if "initial sync".contains(&only) {
        let files = ((SYNC_FILES as f64 * gib).round() as usize).max(FILES_PER_FOLDER);
        let file_size = (1u64 << 30) / SYNC_FILES as u64;
        // Each run's folders are kept until all have run. On ext4 without a journal, creating files is slow for
        // a minute or more after many were deleted (the inode allocator steps over recently freed inodes), so one
        // run's clean-up would slow the next one's file creation.
        let mut keep = vec![runtime.block_on(initial_sync(files, file_size, Place::Disk))];
        // The same in RAM: what tandem's own per-file work costs, apart from this VM's disk and filesystem.
        if Path::new(RAM_DIR).is_dir() {
            keep.push(runtime.block_on(initial_sync(files, file_size, Place::Ram(RAM_DIR))));
        }
        keep.extend(runtime.block_on(initial_sync_on_two_cores(files, file_size)));
        // The same bytes in few large files: what the per-file cost leaves when it is spread thin.
        let large = ((LARGE_FILES as f64 * gib).round() as usize).max(1);
        keep.push(runtime.block_on(initial_sync(large, (1u64 << 30) / LARGE_FILES as u64, Place::Disk)));
        drop(keep);
    }
    if "growing file".contains(&only) {
        growing::growing_file();
    }
    if "idle cpu".contains(&only) {
        idle::idle_cpu(IDLE_FILES, Duration::from_secs_f64(idle_secs));
    }
}

/// A time long ago: stamps this old are trusted, as on any real user's files (see `FileStamp::is_recent`).
fn long_ago() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

fn identity(host: &str) -> ClientIdentity {
    ClientIdentity { id: format!("{host}-0123456789"), host: host.into() }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Nearest-rank percentile.
fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

async fn start_server(root: &Path) -> (String, CancellationToken) {
    let mut config = ServerConfig::new(root);
    config.listen = "127.0.0.1:0".into();
    let (addr, shutdown, _) = Server::spawn(config).await.expect("server");
    (addr.to_string(), shutdown)
}

/// Starts `tandem::sync::run` on `root`; the receiver counts the passes that ended in `Idle`. Problems are printed.
fn start_sync_task(
    root: &Path,
    remote: &str,
    host: &str,
    stop: &CancellationToken,
) -> (watch::Receiver<u64>, tokio::task::JoinHandle<tandem::Result<tandem::sync::SyncSummary>>) {
    let config = SyncConfig {
        root: root.to_path_buf(),
        remote: tandem::client::Remote::new(remote),
        client: identity(host),
        interval: Duration::from_secs(60),
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (idle_tx, idle_rx) = watch::channel(0u64);
    let task = tokio::spawn(tandem::sync::run(config, events_tx, stop.clone()));
    let host = host.to_string();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                SyncEvent::Idle { .. } => idle_tx.send_modify(|n| *n += 1),
                SyncEvent::Problem(problem) => eprintln!("  [{host}] sync problem: {problem}"),
                SyncEvent::LeftOut { path, reason } => eprintln!("  [{host}] left out {path}: {reason}"),
                SyncEvent::Connected { .. } | SyncEvent::Syncing => {}
            }
        }
    });
    (idle_rx, task)
}

async fn propagation() {
    let share = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (addr, shutdown) = start_server(share.path()).await;
    let stop = CancellationToken::new();
    let (mut idle_a, task_a) = start_sync_task(a.path(), &addr, "bench-a", &stop);
    let (mut idle_b, task_b) = start_sync_task(b.path(), &addr, "bench-b", &stop);
    let first_passes = async {
        idle_a.wait_for(|n| *n >= 1).await.expect("sync task a");
        idle_b.wait_for(|n| *n >= 1).await.expect("sync task b");
    };
    tokio::time::timeout(Duration::from_secs(30), first_passes).await.expect("both clients finish a first pass");

    let mut samples = Vec::new();
    for i in 0..PROPAGATION_FILES {
        let name = format!("note {i:02}.txt");
        let content = format!("saved note number {i}\n").repeat(1 + i);
        let started = Instant::now();
        std::fs::write(a.path().join(&name), &content).expect("write");
        let target = b.path().join(&name);
        loop {
            if std::fs::read(&target).is_ok_and(|bytes| bytes == content.as_bytes()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{name} did not reach the other client in 60 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
        // Let both clients settle (the writer's own pass is pushed back to it), as between two saves by a person.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.cancel();
    for task in [task_a, task_b] {
        task.await.expect("sync task").expect("sync");
    }
    shutdown.cancel();

    let (best, worst) = (*samples.iter().min().expect("samples"), *samples.iter().max().expect("samples"));
    println!("propagation of a saved file to another client ({PROPAGATION_FILES} files, loopback)");
    println!("  median                        {:>8.0} ms   (target < 1000 ms)", ms(median(samples.clone())));
    println!("  p90                           {:>8.0} ms", ms(percentile(samples, 90.0)));
    println!("  fastest / slowest             {:>8.0} ms / {:.0} ms", ms(best), ms(worst));
    println!("  for reference: Syncthing's default watcher delay   10000 ms before it starts\n");
}

/// Writes `files` files of `size` distinct pseudo-random bytes, `FILES_PER_FOLDER` to a folder, with old mtimes.
fn write_tree(root: &Path, files: usize, size: u64) -> Vec<String> {
    let mut paths = Vec::with_capacity(files);
    let mut block = vec![0u8; size as usize];
    for i in 0..files {
        let rel = format!("folder {:03}/file {i:05}.bin", i / FILES_PER_FOLDER);
        let path = root.join(&rel);
        if i % FILES_PER_FOLDER == 0 {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64 ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let mut file = std::fs::File::create(&path).expect("create");
        file.write_all(&block).expect("write");
        file.set_modified(long_ago()).expect("set mtime");
        paths.push(rel);
    }
    paths
}

/// Every regular file below `root`, outside tandem's own `.tandem` folder.
fn count_files(root: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() && entry.file_name() != ".tandem" {
                dirs.push(entry.path());
            } else if kind.is_file() {
                count += 1;
            }
        }
    }
    count
}

/// Checks that `copy` holds as many files as were written and that every 100th file has the source's MD5.
fn verify_copy(source: &Path, copy: &Path, paths: &[String]) {
    assert_eq!(count_files(copy), paths.len(), "file count in {}", copy.display());
    for rel in paths.iter().step_by(100) {
        let (want, got) = (md5_file(&source.join(rel)).expect("md5"), md5_file(&copy.join(rel)).expect("md5"));
        assert_eq!(want, got, "{rel}");
    }
}

fn flush_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Where an initial sync runs: in the system's temporary folder (on this machine, the disk), or in a folder on a
/// RAM-backed tmpfs, where file creation, writes and fsyncs cost what the kernel's memory work costs and nothing
/// of a particular disk or filesystem.
#[derive(Clone, Copy)]
enum Place {
    Disk,
    Ram(&'static str),
}

/// Returns the run's folders, for the caller to delete when it is done measuring.
async fn initial_sync(files: usize, file_size: u64, place: Place) -> tempfile::TempDir {
    let work = match place {
        Place::Disk => tempfile::tempdir(),
        Place::Ram(dir) => tempfile::tempdir_in(dir),
    }
    .expect("tempdir");
    let (a, share, b) = (work.path().join("a"), work.path().join("share"), work.path().join("b"));
    for dir in [&a, &share, &b] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let paths = write_tree(&a, files, file_size);
    let total = files as u64 * file_size;
    // Write the test files back to disk now, so their writeback does not land inside a measurement.
    flush_disk();

    let md5_time = md5_baseline(&a, &paths);
    let disk_time = disk_baseline(&a, &work.path().join("disk"), &paths);
    flush_disk();

    let (addr, shutdown) = start_server(&share).await;
    let conn = Connection::connect_as(&addr, Some(identity("bench-a"))).await.expect("connect");
    let mut engine = Engine::open(&a, conn, "bench-a").expect("engine");
    let (started, cpu) = (Instant::now(), own_cpu());
    let up = engine.sync_until_quiet().await.expect("upload sync");
    let (upload_time, upload_cpu) = (started.elapsed(), own_cpu() - cpu);
    assert_eq!(up.uploaded, files as u64, "{up:?}");
    verify_copy(&a, &share, &paths);
    flush_disk();

    let conn = wait_until_journaled(&addr, files).await;
    let mut engine = Engine::open(&b, conn, "bench-b").expect("engine");
    let (started, cpu) = (Instant::now(), own_cpu());
    let down = engine.sync_until_quiet().await.expect("download sync");
    let (download_time, download_cpu) = (started.elapsed(), own_cpu() - cpu);
    assert_eq!(down.downloaded, files as u64, "{down:?}");
    verify_copy(&a, &b, &paths);
    shutdown.cancel();

    let gib = total as f64 / (1u64 << 30) as f64;
    let ratio = |t: Duration| t.as_secs_f64() / md5_time.as_secs_f64();
    let row = |label: &str, t: Duration, note: String| {
        println!("  {label:<38}{:>7.2} s {:>6.0} MB/s   {note}", t.as_secs_f64(), mb_per_s(total, t));
    };
    let place = match place {
        Place::Disk => String::new(),
        Place::Ram(dir) => format!(", all folders in RAM ({dir}, tmpfs)"),
    };
    println!(
        "initial sync of {files} files, {gib:.2} GiB ({} KB each, {} folders), loopback{place}",
        file_size / 1000,
        files.div_ceil(FILES_PER_FOLDER)
    );
    row(&format!("MD5 of the files, 1 thread (median of {MD5_RUNS})"), md5_time, "baseline".into());
    let disk_note = format!("{:.2} x MD5  the disk alone: copy, sync per 64, rename", ratio(disk_time));
    row("write the files, 1 thread, no hashing", disk_time, disk_note);
    // CPU time (client and server together) shows whether a phase waits or works.
    let note = |t: Duration, cpu: Duration| {
        format!("{:.2} x MD5  (target <= 1.5 x)   cpu {:.2} s", ratio(t), cpu.as_secs_f64())
    };
    row("upload: full folder, empty share", upload_time, note(upload_time, upload_cpu));
    row("download: full share, empty folder", download_time, note(download_time, download_cpu));
    println!();
    work
}

/// Single-threaded MD5 of the files under `root` with a warm page cache: the median of [`MD5_RUNS`].
fn md5_baseline(root: &Path, paths: &[String]) -> Duration {
    let md5_all = || {
        for rel in paths {
            md5_file(&root.join(rel)).expect("md5");
        }
    };
    md5_all(); // warms the page cache
    median(
        (0..MD5_RUNS)
            .map(|_| {
                let started = Instant::now();
                md5_all();
                started.elapsed()
            })
            .collect(),
    )
}

/// What the disk alone takes to store the files as sync does (each copied to a temporary file, a filesystem sync
/// per 64 files, then renamed, then one fsync per folder), single-threaded and without hashing: a floor for any
/// tool that keeps written files safe across a crash.
fn disk_baseline(source: &Path, dest: &Path, paths: &[String]) -> Duration {
    type Pending = Vec<(std::path::PathBuf, std::path::PathBuf)>;
    let commit = |pending: &mut Pending| {
        if let Some((temp, _)) = pending.first() {
            let file = std::fs::File::open(temp).expect("open");
            // SAFETY: the descriptor is open for the call.
            unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&file)) };
        }
        let mut folders: Vec<std::path::PathBuf> = Vec::new();
        for (temp, final_path) in pending.drain(..) {
            std::fs::rename(&temp, &final_path).expect("rename");
            let folder = final_path.parent().expect("folder").to_path_buf();
            if !folders.contains(&folder) {
                folders.push(folder);
            }
        }
        for folder in folders {
            std::fs::File::open(&folder).and_then(|dir| dir.sync_all()).expect("fsync folder");
        }
    };
    let started = Instant::now();
    let mut pending = Pending::new();
    for rel in paths {
        let final_path = dest.join(rel);
        let folder = final_path.parent().expect("folder");
        std::fs::create_dir_all(folder).expect("mkdir");
        let temp = folder.join(format!(".{}.tmp", final_path.file_name().expect("name").to_string_lossy()));
        std::fs::copy(source.join(rel), &temp).expect("copy");
        pending.push((temp, final_path));
        if pending.len() == 64 {
            commit(&mut pending);
        }
    }
    commit(&mut pending);
    started.elapsed()
}

/// Waits until the share's journal lists `files` files, so a new client sees them all; returns its connection.
async fn wait_until_journaled(addr: &str, files: usize) -> Connection {
    let conn = Connection::connect_as(addr, Some(identity("bench-b"))).await.expect("connect");
    let journaled = Instant::now();
    loop {
        let (changes, _) = conn.changes_since(0).await.expect("changes");
        let live = changes.iter().filter(|c| c.entry.as_ref().is_some_and(|e| e.kind == EntryKind::File)).count();
        if live >= files {
            return conn;
        }
        assert!(journaled.elapsed() < Duration::from_secs(300), "the journal lists {live} of {files} files");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same initial sync with the client and the server as separate `tandem` processes, each held to a core of
/// its own, as two single-core machines would run them: each end hashes every byte once, on its own CPU.
/// Returns the run's folders, for the caller to delete when it is done measuring.
async fn initial_sync_on_two_cores(files: usize, file_size: u64) -> Option<tempfile::TempDir> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores < 2 {
        println!("(the two-process figure needs 2 cores; this machine has {cores})\n");
        return None;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let dirs: Vec<_> = ["a", "share", "b", "config"].iter().map(|d| work.path().join(d)).collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let (a, share, b, config) = (&dirs[0], &dirs[1], &dirs[2], &dirs[3]);
    let paths = write_tree(a, files, file_size);
    flush_disk();
    let md5_time = md5_baseline(a, &paths);

    let mut serve = tandem(config);
    serve.arg("serve").arg(share).args(["--listen", "127.0.0.1:0"]).stdout(Stdio::piped());
    let mut server = Child(on_core(serve, 0).spawn().expect("start tandem serve"));
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout")).read_line(&mut line).expect("serving line");
    let addr = line.trim().rsplit(" on ").next().expect("address").to_string();
    let server_pid = server.0.id();
    // Wall time, and the CPU time of the server and of the client, for one `sync --once`.
    let sync_once = |dir: &Path, field: &str| {
        let mut command = tandem(config);
        command.args(["-r", &addr, "sync"]).arg(dir).args(["--once", "--json"]);
        let (started, server_cpu, client_cpu) = (Instant::now(), cpu_time(server_pid), children_cpu());
        let output = on_core(command, 1).output().expect("tandem sync --once");
        let took = started.elapsed();
        let server_cpu = cpu_time(server_pid).zip(server_cpu).map(|(after, before)| after - before);
        let cpu = (server_cpu.unwrap_or_default(), children_cpu() - client_cpu);
        assert!(output.status.success(), "sync failed: {}", String::from_utf8_lossy(&output.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("sync --json output");
        assert_eq!(summary[field].as_u64(), Some(files as u64), "{summary}");
        (took, cpu)
    };
    let (upload_time, upload_cpu) = sync_once(a, "uploaded");
    verify_copy(a, share, &paths);
    flush_disk();
    drop(wait_until_journaled(&addr, files).await);
    let (download_time, download_cpu) = sync_once(b, "downloaded");
    verify_copy(a, b, &paths);

    let total = files as u64 * file_size;
    let ratio = |t: Duration| t.as_secs_f64() / md5_time.as_secs_f64();
    let row = |label: &str, t: Duration, note: String| {
        println!("  {label:<38}{:>7.2} s {:>6.0} MB/s   {note}", t.as_secs_f64(), mb_per_s(total, t));
    };
    println!(
        "the same, as `tandem serve` on core 0 and `tandem sync --once` on core 1 ({files} files of {} KB)",
        file_size / 1000
    );
    row(&format!("MD5 of the files, 1 thread (median of {MD5_RUNS})"), md5_time, "baseline".into());
    let note = |t: Duration, (server, client): (Duration, Duration)| {
        let (server, client) = (server.as_secs_f64(), client.as_secs_f64());
        format!("{:.2} x MD5  (target <= 1.5 x)   cpu: server {server:.2} s, client {client:.2} s", ratio(t))
    };
    row("upload: full folder, empty share", upload_time, note(upload_time, upload_cpu));
    row("download: full share, empty folder", download_time, note(download_time, download_cpu));
    println!();
    drop(server);
    Some(work)
}
