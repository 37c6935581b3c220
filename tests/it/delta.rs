//! Delta transfers: a file the receiving side already holds an older version of moves as its changes, in sync
//! (both directions), `download` over an existing file and `upload` over an existing remote file. The result is
//! always byte-identical, and a hostile or useless signature costs a whole file, never a wrong one.

use std::io::{Read, Write};
use std::path::Path;

use tandem::client::Connection;
use tandem::protocol::{BulkBody, BulkTrailer, Request};
use tandem::transfer::tcp;

use super::common::{ServeProcess, cli, cli_as, json, md5sum, pseudo_random, write_file};

const MB: usize = 1_000_000;

/// Changes one byte in the middle of `path`, keeping its size, and moves its mtime on.
fn flip_middle_byte(path: &Path, mtime_secs: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime_secs);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
}

fn sync_once(addr: &str, home: &Path, folder: &Path) -> serde_json::Value {
    json(&cli_as(addr, home, &["sync", folder.to_str().unwrap(), "--once", "--json"]))
}

fn moved(summary: &serde_json::Value) -> u64 {
    summary["bytes_sent"].as_u64().unwrap() + summary["bytes_received"].as_u64().unwrap()
}

#[test]
fn a_50_mb_file_with_one_byte_changed_syncs_both_ways_with_under_1_percent_moved() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let (alice_home, alice) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (bob_home, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let size = 50 * MB;
    write_file(alice.path(), "video/cut.mov", &pseudo_random(size, 42), 1_600_000_000);

    let first = sync_once(&server.addr, alice_home.path(), alice.path());
    assert_eq!((first["uploaded"].as_u64(), first["bytes_sent"].as_u64()), (Some(1), Some(size as u64)));
    let first = sync_once(&server.addr, bob_home.path(), bob.path());
    assert_eq!((first["downloaded"].as_u64(), first["bytes_received"].as_u64()), (Some(1), Some(size as u64)));

    // Bob changes one byte: his upload sends the change and receives the server's signature.
    flip_middle_byte(&bob.path().join("video/cut.mov"), 1_700_000_000);
    let up = sync_once(&server.addr, bob_home.path(), bob.path());
    assert_eq!(up["uploaded"].as_u64(), Some(1), "{up}");
    assert!(moved(&up) < size as u64 / 100, "upload moved {} bytes: {up}", moved(&up));
    assert_eq!(md5sum(&server.path("video/cut.mov")), md5sum(&bob.path().join("video/cut.mov")));

    // Alice gets it: her download sends her signature and receives the change.
    let down = sync_once(&server.addr, alice_home.path(), alice.path());
    assert_eq!(down["downloaded"].as_u64(), Some(1), "{down}");
    assert!(moved(&down) < size as u64 / 100, "download moved {} bytes: {down}", moved(&down));
    let (ours, theirs) = (
        std::fs::read(alice.path().join("video/cut.mov")).unwrap(),
        std::fs::read(bob.path().join("video/cut.mov")).unwrap(),
    );
    assert!(ours == theirs, "alice's copy is byte-identical to bob's");
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    assert_eq!(mtime(&alice.path().join("video/cut.mov")), mtime(&bob.path().join("video/cut.mov")));

    // The versions replaced on each side are kept in the trash, whole.
    let original = md5sum_of(&pseudo_random(size, 42));
    assert!(trash_holds(server.root.path(), &original), "the server's trash keeps the old version");
    assert!(trash_holds(alice.path(), &original), "alice's trash keeps the old version");
}

#[test]
fn download_over_an_older_file_with_insertions_and_deletions_near_the_start_moves_under_5_percent() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let dest = tempfile::tempdir().unwrap();
    let old = pseudo_random(20 * MB, 7);
    let mut new = old.clone();
    new.splice(100..100, b"a new header line\n".iter().copied());
    new.drain(10_000..10_500);
    new.splice(300_000..300_000, pseudo_random(3000, 8));
    write_file(server.root.path(), "data/table.db", &new, 1_650_000_000);
    write_file(dest.path(), "table.db", &old, 1_600_000_000);

    let report = json(&cli(
        &server.addr,
        &["download", "tcp", "data/table.db", "--to", dest.path().to_str().unwrap(), "--json"],
    ));
    assert_eq!(report["delta"], true, "{report}");
    let moved = report["bytes_received"].as_u64().unwrap() + report["bytes_sent"].as_u64().unwrap();
    assert!(moved < new.len() as u64 / 20, "moved {moved} bytes: {report}");
    assert!(std::fs::read(dest.path().join("table.db")).unwrap() == new, "byte-identical");
    assert_eq!(report["md5"], md5sum_of(&new));
    assert_eq!(report["size"].as_u64(), Some(new.len() as u64));
}

#[test]
fn upload_over_an_older_remote_file_sends_only_the_change_and_a_new_file_goes_whole() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let local = tempfile::tempdir().unwrap();
    let mut bytes = pseudo_random(8 * MB, 3);
    write_file(server.root.path(), "disk.img", &bytes, 1_600_000_000);
    bytes[4 * MB..4 * MB + 10].copy_from_slice(b"0123456789");
    write_file(local.path(), "disk.img", &bytes, 1_700_000_000);
    let source = local.path().join("disk.img");

    let report = json(&server.cli(&["upload", source.to_str().unwrap(), "disk.img", "--json"]));
    assert_eq!(report["delta"], true, "{report}");
    assert!(report["bytes_sent"].as_u64().unwrap() < 64 * 1024, "{report}");
    assert!(report["bytes_received"].as_u64().unwrap() > 0, "the server's signature came back: {report}");
    assert_eq!(md5sum(&server.path("disk.img")), md5sum(&source));

    let fresh = json(&server.cli(&["upload", source.to_str().unwrap(), "copy/disk.img", "--json"]));
    assert_eq!((fresh["delta"].as_bool(), fresh["bytes_sent"].as_u64()), (Some(false), Some(bytes.len() as u64)));
    assert_eq!(md5sum(&server.path("copy/disk.img")), md5sum(&source));
}

#[test]
fn an_unrelated_older_file_is_replaced_by_a_whole_download() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let dest = tempfile::tempdir().unwrap();
    let new = pseudo_random(2 * MB, 11);
    write_file(server.root.path(), "photo.raw", &new, 1_650_000_000);
    write_file(dest.path(), "photo.raw", &pseudo_random(2 * MB, 12), 1_600_000_000);

    let report =
        json(&cli(&server.addr, &["download", "tcp", "photo.raw", "--to", dest.path().to_str().unwrap(), "--json"]));
    assert_eq!(report["delta"], false, "nothing matched, so the file came whole: {report}");
    assert_eq!(report["bytes_received"].as_u64(), Some(new.len() as u64));
    assert!(std::fs::read(dest.path().join("photo.raw")).unwrap() == new);
}

#[test]
fn download_udp_over_an_older_file_takes_the_changes_over_tcp_and_an_unrelated_one_whole_over_udp() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let dest = tempfile::tempdir().unwrap();
    let old = pseudo_random(3 * MB, 21);
    let mut new = old.clone();
    new[MB..MB + 4].copy_from_slice(b"edit");
    write_file(server.root.path(), "scan.tif", &new, 1_650_000_000);
    write_file(dest.path(), "scan.tif", &old, 1_600_000_000);
    let to = dest.path().to_str().unwrap();

    let output = cli(&server.addr, &["download", "udp", "scan.tif", "--to", to, "--json"]);
    let report = json(&output);
    assert_eq!((report["delta"].as_bool(), report["protocol"].as_str()), (Some(true), Some("tcp")), "{report}");
    assert!(report["bytes_received"].as_u64().unwrap() < 64 * 1024, "{report}");
    let said = super::common::stderr(&output);
    assert!(said.contains("only the changes to the older copy travelled") && said.contains("over TCP"), "{said}");
    assert!(std::fs::read(dest.path().join("scan.tif")).unwrap() == new, "byte-identical");

    write_file(dest.path(), "scan.tif", &pseudo_random(3 * MB, 22), 1_600_000_000);
    let report = json(&cli(&server.addr, &["download", "udp", "scan.tif", "--to", to, "--json"]));
    assert_eq!((report["delta"].as_bool(), report["protocol"].as_str()), (Some(false), Some("udp")), "{report}");
    assert_eq!(report["bytes_received"].as_u64(), Some(new.len() as u64));
    assert!(std::fs::read(dest.path().join("scan.tif")).unwrap() == new, "byte-identical");
    assert_eq!(super::common::names_in(dest.path()), ["scan.tif"], "nothing left behind");
}

/// A client that sends the server a signature with absurd parameters gets the whole, correct file back, and the
/// server carries on.
#[tokio::test]
async fn a_hostile_signature_gets_the_whole_file_and_the_server_carries_on() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let bytes = pseudo_random(MB, 5);
    write_file(server.root.path(), "big.bin", &bytes, 1_600_000_000);
    let conn = Connection::connect(&server.addr).await.unwrap();
    for signature in
        [hostile_signature(1, 16), hostile_signature(4096, 99), vec![0xff; 11], b"rs\x016garbage!!!".to_vec()]
    {
        let (ticket, entry, _) = conn
            .ticket_for(Request::DownloadDelta { path: "big.bin".into(), delta_only: false, append_to: None })
            .await
            .unwrap();
        assert_eq!(entry.size, bytes.len() as u64);
        let (stream, already) = conn.open_bulk(ticket).await.unwrap();
        let peer = server.addr.clone();
        let received = tokio::task::spawn_blocking(move || {
            let mut stream = stream;
            tcp::write_blob(&mut stream, &peer, &signature).unwrap();
            let mut reader = std::io::Cursor::new(already.to_vec()).chain(stream);
            let body: BulkBody = tcp::read_message(&mut reader, &peer, "bulk body").unwrap();
            let mut out = Vec::new();
            let received =
                tcp::receive_file(&mut reader, &mut out, Path::new("big.bin"), &peer, 1 << 30, &Default::default())
                    .unwrap();
            (body, out, received.trailer)
        })
        .await
        .unwrap();
        assert_eq!(received.0, BulkBody::Whole);
        assert!(received.1 == bytes, "the whole file, byte-identical");
        assert!(matches!(received.2, BulkTrailer::Done { size, .. } if size == bytes.len() as u64));
    }
    let listing = conn.list("", Default::default()).await.unwrap();
    assert_eq!(listing.len(), 1, "the server still answers");
}

/// A `fast_rsync` MD4 signature header with this block size and strong-hash length, and a few blocks of noise.
fn hostile_signature(block_size: u32, hash_len: u32) -> Vec<u8> {
    let mut signature = vec![0x72, 0x73, 0x01, 0x36];
    signature.extend_from_slice(&block_size.to_be_bytes());
    signature.extend_from_slice(&hash_len.to_be_bytes());
    signature.extend(pseudo_random(4096, 9));
    signature
}

fn md5sum_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bytes");
    std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
    md5sum(&path)
}

/// Whether any file under `root/.tandem/trash` has this MD5.
fn trash_holds(root: &Path, md5: &str) -> bool {
    let mut stack = vec![root.join(".tandem/trash")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if md5sum(&path) == md5 {
                return true;
            }
        }
    }
    false
}
