//! Faults: a server killed (SIGKILL) in the middle of TCP and UDP downloads, an upload and a sync, twenty rounds
//! and more; a receiving disk that fills up; a file that changes while it is being sent. Every destination ends
//! absent, as it was, or as the new verified version, never anything else; the client exits 1 with an error.
//! A cut-off download keeps what arrived under `.tandem/partial/`, and a rerun resumes from there.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tandem::client::Connection;
use tandem::protocol::{BulkTrailer, ErrorCode};
use tandem::share::is_temp_name;

use crate::common::*;

const BIG: usize = 48 << 20;

/// Bytes in the temporary files tandem is writing in `dir`.
fn temp_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| is_temp_name(&e.file_name().to_string_lossy()))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes of the partial download of `name` kept in `dir`.
fn partial_bytes(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join(".tandem/partial").join(name)).map(|m| m.len()).unwrap_or(0)
}

/// The files in `dir` a person would see (not tandem's hidden temporary files or state); none if it is missing.
fn visible_names(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    names_in(dir).into_iter().filter(|name| !name.starts_with('.')).collect()
}

/// Starts a client command against `addr` without waiting for it.
fn spawn_cli(addr: &str, config_home: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .env("TANDEM_REMOTE", addr)
        .env("XDG_CONFIG_HOME", config_home)
        .env(CACHE_OFF.0, CACHE_OFF.1)
        .env_remove("TANDEM_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem")
}

/// Polls until `ready` holds or `client` has exited; either way the moment has come to kill the server.
fn wait_until(client: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() && client.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The outcome of a client cut off by the server's death: exit 0 if it finished first, or 1 with an error.
fn cut_off(output: &Output) -> bool {
    match output.status.code() {
        Some(0) => false,
        Some(1) => {
            let said = stderr(output);
            let last = said.lines().last().unwrap_or_default();
            assert!(last.starts_with("error: "), "the last line is the error: {said}");
            true
        }
        other => panic!("exit status {other:?}: {}", stderr(output)),
    }
}

#[test]
fn twenty_server_kills_mid_download_leave_no_file_the_old_one_or_the_new_verified_one() {
    let share = tempfile::tempdir().unwrap();
    let name = "big file ü.bin";
    write_file(share.path(), name, &pseudo_random(BIG, 1), 1_600_000_000);
    let new_md5 = md5sum(&share.path().join(name));
    // Small enough to go whole: an older file worth a delta would be updated from its changes, not resumed.
    let old = pseudo_random(100_000, 2);
    let mut server = ServeProcess::start(share);
    let home = tempfile::tempdir().unwrap();
    let mut interrupted = 0;
    for round in 0..20 {
        let dest = tempfile::tempdir().unwrap();
        let had_old = round % 2 == 0;
        if had_old {
            std::fs::write(dest.path().join(name), &old).unwrap();
        }
        let protocol = if round % 5 == 4 { "udp" } else { "tcp" };
        let to = dest.path().to_str().unwrap();
        let args = ["download", protocol, name, "--to", to, "--udp-idle-timeout", "2"];
        let mut client = spawn_cli(&server.addr, home.path(), &args);
        wait_until(&mut client, || partial_bytes(dest.path(), name) > 0);
        server.kill();
        let output = client.wait_with_output().unwrap();
        let file = dest.path().join(name);
        let cut = cut_off(&output);
        if cut {
            interrupted += 1;
            if had_old {
                assert_eq!(std::fs::read(&file).unwrap(), old, "round {round} ({protocol}): the old file is intact");
            } else {
                assert!(!file.exists(), "round {round} ({protocol}): no file, rather than part of one");
            }
            // What arrived is kept for a rerun, with the sidecar that says what it is.
            let kept = dest.path().join(".tandem/partial");
            assert_eq!(names_in(&kept), [name.to_string(), format!("{name}.partial.json")], "round {round}");
        } else {
            assert_eq!(md5sum(&file), new_md5, "round {round} ({protocol}) finished before the kill");
        }
        assert_eq!(visible_names(dest.path()).len(), usize::from(file.exists()), "round {round}: no other file");
        assert_eq!(temp_bytes(dest.path()), 0, "round {round}: no temporary file");
        server.restart();
        if cut && round >= 17 {
            // The server is back: the same command finishes from where the cut left off.
            let kept = partial_bytes(dest.path(), name);
            let rerun = cli_as(&server.addr, home.path(), &[&args[..], &["--json"][..]].concat());
            let report = json(&rerun);
            assert_eq!(report["resumed_from"], kept, "round {round} ({protocol})");
            assert_eq!(report["bytes_received"], BIG as u64 - kept, "round {round} ({protocol})");
            assert_eq!(md5sum(&file), new_md5, "round {round} ({protocol})");
            assert_eq!(names_in(dest.path()), [name], "round {round}: nothing left behind");
        }
    }
    println!("{interrupted} of 20 downloads were cut off mid-transfer");
    assert!(interrupted >= 15, "only {interrupted} of 20 rounds caught a transfer in flight");
}

#[test]
fn server_kills_mid_upload_and_mid_sync_leave_no_partial_file_and_a_rerun_completes() {
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "target.bin", b"the version on the server", 1_600_000_000);
    let mut server = ServeProcess::start(share);
    let home = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "upload me.bin", &pseudo_random(BIG, 3), 1_650_000_000);
    let source = local.path().join("upload me.bin");

    for round in 0..3 {
        let args = ["upload", source.to_str().unwrap(), "target.bin"];
        let mut client = spawn_cli(&server.addr, home.path(), &args);
        let share_root = server.root.path().to_path_buf();
        wait_until(&mut client, || temp_bytes(&share_root) > 0);
        server.kill();
        let output = client.wait_with_output().unwrap();
        let stored = std::fs::read(server.path("target.bin")).unwrap();
        if cut_off(&output) {
            assert_eq!(stored, b"the version on the server", "round {round}: the server's file is intact");
        } else {
            assert_eq!(md5sum(&server.path("target.bin")), md5sum(&source), "round {round} finished first");
        }
        assert_eq!(visible_names(server.root.path()), ["target.bin"]);
        server.restart();
    }
    let rerun = server.cli(&["upload", source.to_str().unwrap(), "target.bin"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert_eq!(md5sum(&server.path("target.bin")), md5sum(&source));

    // A first sync of 300 files, cut off; every file that reached the share is whole; a rerun finishes the job.
    let folder = tempfile::tempdir().unwrap();
    for i in 0..300 {
        write_file(
            folder.path(),
            &format!("docs/file {i:03}.txt"),
            &pseudo_random(20_000 + i, i as u64),
            1_650_000_000,
        );
    }
    write_file(folder.path(), "docs/large.bin", &pseudo_random(16 << 20, 7), 1_650_000_000);
    let dir = folder.path().to_str().unwrap();
    let mut client = spawn_cli(&server.addr, home.path(), &["sync", dir, "--once"]);
    let docs = server.path("docs");
    wait_until(&mut client, || visible_names(&docs).len() >= 20);
    server.kill();
    let output = client.wait_with_output().unwrap();
    assert!(cut_off(&output), "the sync was still running when the server died");
    let arrived = visible_names(&docs);
    assert!(arrived.len() < 301, "the kill came before the end");
    for name in &arrived {
        let (theirs, ours) = (docs.join(name), folder.path().join("docs").join(name));
        assert_eq!(std::fs::read(&theirs).unwrap(), std::fs::read(&ours).unwrap(), "{name} arrived whole");
    }
    server.restart();
    let again = cli_as(&server.addr, home.path(), &["sync", dir, "--once", "--json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(visible_names(&docs).len(), 301);
    for name in visible_names(&docs) {
        assert_eq!(md5sum(&docs.join(&name)), md5sum(&folder.path().join("docs").join(&name)), "{name}");
    }
}

/// A tiny filesystem of its own, unmounted on drop: the only honest way to fill a disk in a test.
struct TinyDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(kib: u32) -> TinyDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let size = format!("size={kib}k");
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(&path).output().unwrap();
        assert!(mounted.status.success(), "mounting a small tmpfs needs root: {}", stderr(&mounted));
        TinyDisk { path, _dir: dir }
    }
}

/// `tandem serve` over a folder this test does not own as a temporary folder; killed on drop.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(root: &Path) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", root.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let addr = line.trim().rsplit(" on ").next().unwrap().to_string();
        Served { child, addr }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_the_existing_file_survives() {
    // Downloading onto a full disk.
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "report.bin", &pseudo_random(4 << 20, 5), 1_600_000_000);
    let server = ServeProcess::start(share);
    let disk = TinyDisk::mount(1024);
    let old = pseudo_random(100_000, 6);
    std::fs::write(disk.path.join("report.bin"), &old).unwrap();
    let output = server.cli(&["download", "tcp", "report.bin", "--to", disk.path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(said.starts_with("error: ") && said.contains("No space left on device"), "{said}");
    assert!(said.contains(&disk.path.display().to_string()), "the error names where: {said}");
    assert_eq!(std::fs::read(disk.path.join("report.bin")).unwrap(), old);
    // What fitted is kept for a rerun once there is room, as rsync --partial would.
    assert_eq!(visible_names(&disk.path), ["report.bin"], "no temporary file is left");
    assert!(partial_bytes(&disk.path, "report.bin") > 0);

    // Uploading to a server whose disk is full.
    let small = TinyDisk::mount(1024);
    std::fs::write(small.path.join("target.bin"), &old).unwrap();
    let full = Served::start(&small.path);
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "big.bin", &pseudo_random(4 << 20, 8), 1_650_000_000);
    let output = cli(&full.addr, &["upload", local.path().join("big.bin").to_str().unwrap(), "target.bin"]);
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(said.starts_with("error: ") && said.contains("No space left on device"), "{said}");
    assert_eq!(std::fs::read(small.path.join("target.bin")).unwrap(), old);
    assert_eq!(visible_names(&small.path), ["target.bin"]);
    assert_eq!(temp_bytes(&small.path), 0, "no temporary file is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_while_it_is_sent_is_refused_not_delivered_mixed() {
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "moving.bin", &pseudo_random(32 << 20, 10), 1_600_000_000);
    let (addr, shutdown) = in_process(share.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    let (ticket, _) = conn.download_ticket("moving.bin").await.unwrap();
    let (stream, already_read) = conn.open_bulk_channel(ticket).await.unwrap();
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    let path = share.path().join("moving.bin");
    let trailer = tokio::task::spawn_blocking(move || {
        let mut stream = std::io::Cursor::new(already_read).chain(stream);
        // Read the first mebibyte, then rewrite the file under the server's feet, then read the rest.
        let mut start = vec![0u8; 1 << 20];
        stream.read_exact(&mut start).unwrap();
        std::fs::write(&path, pseudo_random(32 << 20, 11)).unwrap();
        let mut rest = std::io::Cursor::new(start).chain(stream);
        let mut sink = Vec::new();
        let at = Path::new("moving.bin");
        tandem::transfer::tcp::receive_file(&mut rest, &mut sink, at, "server", 32 << 20, &Default::default())
            .unwrap()
            .trailer
    })
    .await
    .unwrap();
    match trailer {
        BulkTrailer::Failed(body) => {
            assert_eq!(body.code, ErrorCode::Changed);
            assert!(body.message.contains("moving.bin") && body.message.contains("changed"), "{}", body.message);
        }
        other => panic!("a file rewritten mid-send must not be vouched for: {other:?}"),
    }
    shutdown.cancel();
}
