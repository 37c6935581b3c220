//! Delta transfers against rsync: for each case, an older version of a file sits on the receiving side and a
//! newer one on the sending side. tandem downloads it (`download tcp` over the old file), uploads it (`upload`
//! over the old remote file), and rsync copies it (`rsync --no-whole-file --stats`, which forces its delta
//! algorithm on local paths). Printed side by side: the bytes that crossed (file or delta bytes one way,
//! signature the other; rsync's "Total bytes sent" plus "received") and the median wall time, with a whole-file
//! download as the baseline.
//!
//! Run with `cargo bench --bench delta`; rsync must be installed (`apt-get install -y rsync`).

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem::pseudo_random::pseudo_random;

#[path = "common/serve.rs"]
mod serve;
use serve::start_serve;
const RUNS: usize = 5;
const MB: usize = 1_000_000;

fn main() {
    if Command::new("rsync").arg("--version").output().is_err() {
        eprintln!("rsync is not installed: apt-get install -y rsync");
        std::process::exit(1);
    }
    let share = tempfile::tempdir().expect("tempdir");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tandem"));
    serve.arg("serve").arg(share.path()).args(["--listen", "127.0.0.1:0"]);
    let (mut server, addr) = start_serve(serve);

    println!("delta transfers: bytes that crossed and median time of {RUNS} runs, tandem against rsync 3 on loopback");
    println!("{:<48} {:<22} {:>12} {:>9} {:>10}", "case", "how", "bytes", "of file", "time");
    for (name, old, new) in cases() {
        let mut rows = Vec::new();
        rows.push(("tandem download, whole", measure(|| whole_download(&addr, share.path(), &new))));
        rows.push(("tandem download, delta", measure(|| tandem_download(&addr, share.path(), &old, &new))));
        rows.push(("tandem upload, delta", measure(|| tandem_upload(&addr, share.path(), &old, &new))));
        rows.push(("rsync --no-whole-file", measure(|| rsync(&old, &new))));
        for (i, (how, (bytes, time))) in rows.into_iter().enumerate() {
            let case = if i == 0 { name } else { "" };
            let share_of_file = bytes as f64 * 100.0 / new.len() as f64;
            println!("{case:<48} {how:<22} {:>12} {:>8.2}% {:>8.0} ms", bytes, share_of_file, time.as_secs_f64() * 1e3);
        }
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// The cases, and a version-to-version edit of a 24 MB file.
fn cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let old = pseudo_random(50 * MB, 1);
    let mut one_byte = old.clone();
    one_byte[25 * MB] ^= 0x5a;
    let mut near_start = old.clone();
    near_start.splice(100..100, b"a new header line\n".iter().copied());
    near_start.drain(10_000..10_500);
    near_start.splice(300_000..300_000, pseudo_random(3000, 3));
    let doc = pseudo_random(24 * MB, 5);
    let mut edited = doc.clone();
    for (i, at) in (0..24).map(|i| (i, i * MB + 123_457)) {
        let fresh = pseudo_random(40_000, 11 + 2 * i as u64);
        edited.splice(at..at + 30_000, fresh);
    }
    vec![
        ("50 MB, 1 byte changed in the middle", old.clone(), one_byte),
        ("50 MB, insertions and deletions near the start", old, near_start),
        ("24 MB, 24 regions of 30 KB rewritten as 40 KB", doc, edited),
    ]
}

/// Median time and the bytes of the last run.
fn measure(mut run: impl FnMut() -> (u64, Duration)) -> (u64, Duration) {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let (moved, time) = run();
        bytes = moved;
        times.push(time);
    }
    times.sort();
    (bytes, times[times.len() / 2])
}

fn whole_download(addr: &str, share: &Path, new: &[u8]) -> (u64, Duration) {
    std::fs::write(share.join("file.bin"), new).expect("write the new version");
    let dest = tempfile::tempdir().expect("tempdir");
    let report = tandem(addr, &["download", "tcp", "file.bin", "--to", dest.path().to_str().expect("utf-8")]);
    check(&dest.path().join("file.bin"), new);
    report
}

fn tandem_download(addr: &str, share: &Path, old: &[u8], new: &[u8]) -> (u64, Duration) {
    std::fs::write(share.join("file.bin"), new).expect("write the new version");
    let dest = tempfile::tempdir().expect("tempdir");
    std::fs::write(dest.path().join("file.bin"), old).expect("write the old version");
    let report = tandem(addr, &["download", "tcp", "file.bin", "--to", dest.path().to_str().expect("utf-8")]);
    check(&dest.path().join("file.bin"), new);
    report
}

fn tandem_upload(addr: &str, share: &Path, old: &[u8], new: &[u8]) -> (u64, Duration) {
    std::fs::write(share.join("file.bin"), old).expect("write the old version");
    let local = tempfile::tempdir().expect("tempdir");
    let source = local.path().join("file.bin");
    std::fs::write(&source, new).expect("write the new version");
    let report = tandem(addr, &["upload", source.to_str().expect("utf-8"), "file.bin"]);
    check(&share.join("file.bin"), new);
    report
}

/// Runs a tandem command with `--json`; the bytes it moved each way and its wall time.
fn tandem(addr: &str, args: &[&str]) -> (u64, Duration) {
    let cache = tempfile::tempdir().expect("tempdir");
    settle();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .arg("--json")
        .env("TANDEM_REMOTE", addr)
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("run tandem");
    let time = started.elapsed();
    assert!(output.status.success(), "tandem {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let field = |name: &str| report[name].as_u64().unwrap_or(0);
    (field("bytes_sent") + field("bytes_received"), time)
}

fn rsync(old: &[u8], new: &[u8]) -> (u64, Duration) {
    let (src, dest) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    std::fs::write(src.path().join("file.bin"), new).expect("write the new version");
    std::fs::write(dest.path().join("file.bin"), old).expect("write the old version");
    settle();
    let started = Instant::now();
    let output = Command::new("rsync")
        .args(["--stats", "--no-whole-file", "--times", "--ignore-times"])
        .arg(src.path().join("file.bin"))
        .arg(dest.path().join("file.bin"))
        .output()
        .expect("run rsync");
    let time = started.elapsed();
    assert!(output.status.success(), "rsync: {}", String::from_utf8_lossy(&output.stderr));
    check(&dest.path().join("file.bin"), new);
    let stats = String::from_utf8_lossy(&output.stdout);
    let total = |label: &str| -> u64 {
        let line = stats.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {stats}"));
        line[label.len()..].split_whitespace().next().expect("a number").replace(',', "").parse().expect("a number")
    };
    (total("Total bytes sent:") + total("Total bytes received:"), time)
}

/// Writes the files just set up to disk first, so no run pays for the setup's writeback.
fn settle() {
    let _ = Command::new("sync").status();
}

fn check(path: &Path, expected: &[u8]) {
    assert!(std::fs::read(path).expect("read the result") == expected, "{} is not byte-identical", path.display());
}
