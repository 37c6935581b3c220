//! A file that grows by appends (a log) syncs as what was appended, in both directions: `tandem sync --once
//! --json` run after each append reports, in its byte counts, about the appended bytes and not the whole file,
//! and after every round both sides hold byte-identical files (checked with coreutils' `md5sum`).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::common::{ServeProcess, cli_as, json, md5sum, pseudo_random, set_mtime, write_file};

const KB: usize = 1000;
const MB: usize = 1_000_000;

fn sync_once(addr: &str, home: &Path, folder: &Path) -> serde_json::Value {
    json(&cli_as(addr, home, &["sync", folder.to_str().unwrap(), "--once", "--json"]))
}

/// Payload bytes a sync moved, both ways: file or delta bytes one way, any signature the other.
fn moved(summary: &serde_json::Value) -> u64 {
    summary["bytes_sent"].as_u64().unwrap() + summary["bytes_received"].as_u64().unwrap()
}

/// Appends `bytes` to `path` as a program writing a log would, and dates the write `round` seconds after an
/// hour ago, so sync takes the file to be written (it leaves alone a large file modified a moment ago).
fn append(path: &Path, bytes: &[u8], round: u64) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
    set_mtime(path, SystemTime::now() - Duration::from_secs(3600) + Duration::from_secs(round));
}

/// Syncs `rel` from A to the server once whole, then appends 1 KB ten times, syncing after each: returns
/// the bytes A's ten syncs moved. With `watcher`, a second client that starts out with the same file syncs
/// after each round too, and the bytes its syncs moved are returned as well.
fn ten_appends(size: usize, watcher: bool) -> (u64, u64) {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let (a_home, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (b_home, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rel = "logs/app.log";
    let start = pseudo_random(size, 15);
    write_file(a.path(), rel, &start, 1_600_000_000);
    let first = sync_once(&server.addr, a_home.path(), a.path());
    assert_eq!((first["uploaded"].as_u64(), first["bytes_sent"].as_u64()), (Some(1), Some(size as u64)));
    if watcher {
        // B already holds the same bytes: its first sync records them and moves nothing.
        write_file(b.path(), rel, &start, 1_600_000_100);
        let joined = sync_once(&server.addr, b_home.path(), b.path());
        assert_eq!(moved(&joined), 0, "{joined}");
    }

    let (mut a_moved, mut b_moved) = (0, 0);
    for round in 0..10u64 {
        append(&a.path().join(rel), &pseudo_random(KB, 100 + round), round);
        let summary = sync_once(&server.addr, a_home.path(), a.path());
        assert_eq!(summary["uploaded"].as_u64(), Some(1), "round {round}: {summary}");
        a_moved += moved(&summary);
        assert_eq!(md5sum(&server.path(rel)), md5sum(&a.path().join(rel)), "round {round}");
        if watcher {
            let summary = sync_once(&server.addr, b_home.path(), b.path());
            assert_eq!(summary["downloaded"].as_u64(), Some(1), "round {round}: {summary}");
            b_moved += moved(&summary);
            assert_eq!(md5sum(&b.path().join(rel)), md5sum(&a.path().join(rel)), "round {round}");
        }
    }
    assert_eq!(std::fs::metadata(a.path().join(rel)).unwrap().len(), (size + 10 * KB) as u64);
    (a_moved, b_moved)
}

#[test]
fn appending_1_kb_to_a_10_mb_file_ten_times_moves_under_1_mb_each_way() {
    let (uploads, downloads) = ten_appends(10 * MB, true);
    eprintln!("ten 1 KB appends to a 10 MB file: {uploads} bytes up, {downloads} bytes down");
    assert!(uploads < MB as u64, "A's syncs moved {uploads} bytes");
    assert!(downloads < MB as u64, "B's syncs moved {downloads} bytes");
}
