//! Resumed downloads: a `tandem download` killed (SIGKILL) halfway keeps its bytes under the destination's
//! `.tandem/partial/`, and the same command run again fetches only the rest, over TCP and UDP, and ends
//! byte-identical. A remote file that changed in between, or kept bytes that are wrong, start over from zero with
//! a note on stderr; two downloads of one file into one folder refuse rather than interleave.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const SIZE: usize = 48 << 20;

fn partial_of(dest: &Path, name: &str) -> PathBuf {
    dest.join(".tandem/partial").join(name)
}

/// Starts `tandem download PROTOCOL name --to dest` and kills it (as SIGKILL) once its partial file holds at least
/// `percent` of `size` bytes; returns how many bytes it kept.
fn download_killed_at(addr: &str, protocol: &str, name: &str, dest: &Path, (size, percent): (u64, u64)) -> u64 {
    let mut client = Command::new(BIN)
        .args(["download", protocol, name, "--to", dest.to_str().unwrap()])
        .env("TANDEM_REMOTE", addr)
        .env_remove("TANDEM_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tandem");
    let partial = partial_of(dest, name);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) * 100 < size * percent {
        assert!(client.try_wait().unwrap().is_none(), "{protocol}: the download ended before it was {percent}% in");
        assert!(Instant::now() < deadline, "{protocol}: the download never got {percent}% in");
        std::thread::sleep(Duration::from_millis(1));
    }
    client.kill().unwrap();
    let status = client.wait().unwrap();
    assert_eq!(status.code(), None, "{protocol}: the kill came before the download ended");
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept < size, "{protocol}: the kill came mid-transfer ({kept} bytes kept)");
    kept
}

/// Runs `tandem download PROTOCOL name --to dest --json`; returns its report and what it said on stderr.
fn rerun(server: &ServeProcess, protocol: &str, name: &str, dest: &Path) -> (serde_json::Value, String) {
    let output = server.cli(&["download", protocol, name, "--to", dest.to_str().unwrap(), "--json"]);
    (json(&output), stderr(&output))
}

#[test]
fn downloads_killed_halfway_resume_over_tcp_and_udp_and_end_byte_identical() {
    let share = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(share);
    // First a version the server has never hashed (it hashes the whole file while it sends the rest), then one
    // its hash cache knows from the download before.
    for (round, protocol) in ["tcp", "udp", "tcp", "udp"].into_iter().enumerate() {
        if round < 2 {
            write_file(server.root.path(), "big file.bin", &pseudo_random(SIZE, 21), 1_600_000_000 + round as u64);
        }
        let expected = md5sum(&server.path("big file.bin"));
        let dest = tempfile::tempdir().unwrap();
        let kept = download_killed_at(&server.addr, protocol, "big file.bin", dest.path(), (SIZE as u64, 50));
        assert!(!dest.path().join("big file.bin").exists(), "{protocol}: no file rather than part of one");
        assert_eq!(
            names_in(&dest.path().join(".tandem/partial")),
            ["big file.bin", "big file.bin.partial.json"],
            "{protocol}: the bytes and what they are"
        );

        let (report, said) = rerun(&server, protocol, "big file.bin", dest.path());
        assert_eq!(report["resumed_from"], kept, "{protocol}");
        assert_eq!(report["bytes_received"], SIZE as u64 - kept, "{protocol}");
        assert_eq!(report["size"], SIZE as u64, "{protocol}: the whole file's size");
        assert!(report["bytes_received"].as_u64().unwrap() <= SIZE as u64 * 55 / 100, "{protocol}: {report}");
        assert_eq!(report["md5"], expected.as_str(), "{protocol}");
        assert_eq!(report["protocol"], protocol);
        assert_eq!(said, "", "{protocol}: a plain resume needs no note");
        let local = dest.path().join("big file.bin");
        assert_eq!(md5sum(&local), expected, "{protocol}");
        assert_eq!(std::fs::read(&local).unwrap(), std::fs::read(server.path("big file.bin")).unwrap());
        let mtime = std::fs::metadata(&local).unwrap().modified().unwrap();
        assert_eq!(mtime, std::fs::metadata(server.path("big file.bin")).unwrap().modified().unwrap(), "mtime kept");
        assert_eq!(names_in(dest.path()), ["big file.bin"], "{protocol}: nothing left behind");
    }
    let history = std::fs::read_to_string(server.path(".tandem/history.log")).unwrap();
    assert!(history.contains("resume_from="), "the log shows the resumed requests: {history}");
    assert!(history.contains(" offset="), "the log shows where the transfers started: {history}");
}

#[test]
fn a_remote_file_changed_between_attempts_starts_over_from_zero_and_says_so() {
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "doc.bin", &pseudo_random(SIZE / 2, 22), 1_600_000_000);
    let server = ServeProcess::start(share);
    for protocol in ["tcp", "udp"] {
        let dest = tempfile::tempdir().unwrap();
        write_file(server.root.path(), "doc.bin", &pseudo_random(SIZE / 2, 22), 1_600_000_000);
        download_killed_at(&server.addr, protocol, "doc.bin", dest.path(), (SIZE as u64 / 2, 30));
        // Same size, new bytes and a new mtime, as an editor's save would leave it.
        write_file(server.root.path(), "doc.bin", &pseudo_random(SIZE / 2, 23), 1_700_000_000);

        let (report, said) = rerun(&server, protocol, "doc.bin", dest.path());
        assert_eq!(report["resumed_from"], 0, "{protocol}");
        assert_eq!(report["bytes_received"], SIZE as u64 / 2, "{protocol}");
        assert!(said.starts_with("note: doc.bin changed on the server"), "{protocol}: {said}");
        assert!(said.contains("starting over from zero"), "{protocol}: {said}");
        assert_eq!(md5sum(&dest.path().join("doc.bin")), md5sum(&server.path("doc.bin")), "{protocol}");
        assert_eq!(names_in(dest.path()), ["doc.bin"], "{protocol}: nothing left behind");
    }
}

#[test]
fn wrong_kept_bytes_are_caught_by_the_final_md5_and_the_file_is_fetched_again_once() {
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "data.bin", &pseudo_random(SIZE / 2, 24), 1_600_000_000);
    let server = ServeProcess::start(share);
    for protocol in ["tcp", "udp"] {
        let dest = tempfile::tempdir().unwrap();
        let kept = download_killed_at(&server.addr, protocol, "data.bin", dest.path(), (SIZE as u64 / 2, 30));
        // A bit flipped on disk while the download was away: the sidecar still vouches for the bytes.
        let partial = partial_of(dest.path(), "data.bin");
        let mut bytes = std::fs::read(&partial).unwrap();
        bytes[1000] ^= 0x40;
        std::fs::write(&partial, bytes).unwrap();

        let (report, said) = rerun(&server, protocol, "data.bin", dest.path());
        assert_eq!(report["resumed_from"], 0, "{protocol}: the second attempt starts from zero");
        assert_eq!(report["bytes_received"], SIZE as u64 / 2 - kept + SIZE as u64 / 2, "{protocol}: both counted");
        assert!(said.starts_with("note: data.bin: the data kept from the interrupted download was wrong"), "{said}");
        assert!(said.contains("MD5 mismatch") && said.contains("downloading the whole file again"), "{said}");
        assert_eq!(md5sum(&dest.path().join("data.bin")), md5sum(&server.path("data.bin")), "{protocol}");
        assert_eq!(names_in(dest.path()), ["data.bin"], "{protocol}: nothing left behind");
    }
}

#[test]
fn a_second_download_of_the_same_file_into_the_same_folder_refuses_while_the_first_runs() {
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "f.bin", &pseudo_random(100_000, 25), 1_600_000_000);
    let server = ServeProcess::start(share);
    let dest = tempfile::tempdir().unwrap();
    // The first download, as far as the lock is concerned: it holds its partial file.
    let partial = partial_of(dest.path(), "f.bin");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, b"bytes of nobody knows what").unwrap();
    let held = std::fs::File::options().write(true).open(&partial).unwrap();
    held.try_lock().unwrap();

    for protocol in ["tcp", "udp"] {
        let output = server.cli(&["download", protocol, "f.bin", "--to", dest.path().to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{protocol}");
        let said = stderr(&output);
        assert!(said.starts_with(&format!("error: {}", partial.display())), "{protocol}: {said}");
        assert!(said.contains("another download of this file into the same folder is running"), "{said}");
        assert_eq!(std::fs::read(&partial).unwrap(), b"bytes of nobody knows what", "{protocol}: untouched");
    }

    // Once it is gone, its bytes without a sidecar are no start to resume from: the whole file comes.
    drop(held);
    let (report, said) = rerun(&server, "tcp", "f.bin", dest.path());
    assert_eq!((report["resumed_from"].as_u64(), report["bytes_received"].as_u64()), (Some(0), Some(100_000)));
    assert_eq!(said, "");
    assert_eq!(md5sum(&dest.path().join("f.bin")), md5sum(&server.path("f.bin")));
    assert_eq!(names_in(dest.path()), ["f.bin"]);
}
