//! A file that grows by appends (a log) syncs as what was appended, in both directions: `tandem sync --once
//! --json` run after each append reports, in its byte counts, about the appended bytes and not the whole file,
//! and after every round both sides hold byte-identical files (checked with coreutils' `md5sum`). A file that
//! grew but was also edited still arrives byte-identical, another way. On the wire, an append is only ever
//! granted over the version the other side really holds, and its result is checked by MD5 before it replaces
//! anything: a lying client, or a server file that changed meanwhile, leaves the file as it was.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use tandem::client::{Connection, download_delta_to, upload_delta};
use tandem::digest::{Md5Digest, Md5Stream};
use tandem::error::Error;
use tandem::protocol::{BulkTrailer, ErrorCode, Expect, Held, Request, UploadItem};
use tandem::share::Destination;
use tandem::transfer::{Progress, tcp};

use super::common::{ServeProcess, cli, cli_as, json, md5sum, names_in, pseudo_random, set_mtime, write_file};

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
    // About what was appended: no signature, no copy of the old bytes.
    assert!(uploads < 20 * KB as u64 && downloads < 20 * KB as u64, "{uploads} up, {downloads} down");
}

#[test]
fn appending_1_kb_to_a_30_kb_log_ten_times_moves_about_what_was_appended() {
    let (uploads, downloads) = ten_appends(30 * KB, true);
    eprintln!("ten 1 KB appends to a 30 KB log: {uploads} bytes up, {downloads} bytes down");
    assert!(uploads < 20 * KB as u64, "A's syncs moved {uploads} bytes");
    assert!(downloads < 20 * KB as u64, "B's syncs moved {downloads} bytes");
}

/// A file that grew, but whose old bytes were edited too, is no append: it goes as a delta (or whole, when small)
/// and still arrives byte-identical both ways.
#[test]
fn a_file_that_grew_and_was_edited_arrives_byte_identical_both_ways() {
    for size in [30 * KB, 10 * MB] {
        let server = ServeProcess::start(tempfile::tempdir().unwrap());
        let (a_home, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (b_home, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let start = pseudo_random(size, 31);
        write_file(a.path(), "data.bin", &start, 1_600_000_000);
        write_file(b.path(), "data.bin", &start, 1_600_000_100);
        sync_once(&server.addr, a_home.path(), a.path());
        assert_eq!(moved(&sync_once(&server.addr, b_home.path(), b.path())), 0);

        let mut edited = start.clone();
        edited[size / 2] ^= 0x77;
        edited.extend_from_slice(&pseudo_random(KB, 32));
        write_file(a.path(), "data.bin", &edited, 1_600_000_200);
        let up = sync_once(&server.addr, a_home.path(), a.path());
        let down = sync_once(&server.addr, b_home.path(), b.path());
        assert_eq!((up["uploaded"].as_u64(), down["downloaded"].as_u64()), (Some(1), Some(1)), "{up} {down}");
        assert_eq!(md5sum(&server.path("data.bin")), md5sum(&a.path().join("data.bin")), "{size} bytes, up");
        assert_eq!(md5sum(&b.path().join("data.bin")), md5sum(&a.path().join("data.bin")), "{size} bytes, down");
        // The edit costs at least a block of the delta (or the whole file), more than the appended bytes.
        assert!(moved(&up) > KB as u64 && moved(&down) > KB as u64, "{up} {down}");
    }
}

fn md5_of(bytes: &[u8]) -> Md5Digest {
    let mut md5 = Md5Stream::new();
    md5.update(bytes);
    md5.finish()
}

fn held(bytes: &[u8]) -> Held {
    Held { size: bytes.len() as u64, md5: md5_of(bytes) }
}

/// Asks for an upload of `size` bytes over `path` that appends to `append_to`: the ticket and its offset.
async fn append_ticket(conn: &Connection, size: u64, append_to: Held) -> (tandem::protocol::Ticket, u64) {
    let file =
        UploadItem { path: "app.log".into(), size, mtime_ns: 1_600_000_000_000_000_000, mode: 0o644, expect: None };
    let (ticket, _, _, offset) =
        conn.ticket_at(Request::UploadDelta { file, append_to: Some(append_to) }).await.unwrap();
    (ticket, offset)
}

/// Sends `rest` on the bulk channel of `ticket` as an append's plain stream, with `md5` in its trailer as the
/// whole file's, and returns the server's verdict.
async fn send_rest(conn: &Connection, ticket: tandem::protocol::Ticket, rest: Vec<u8>, md5: Md5Digest) -> BulkTrailer {
    let (mut stream, already) = conn.open_bulk(ticket).await.unwrap();
    assert!(already.is_empty(), "the server sends nothing before an append's bytes");
    let peer = conn.addr().to_string();
    tokio::task::spawn_blocking(move || {
        tcp::write_blob(&mut stream, &peer, &rest).unwrap();
        tcp::write_trailer(&mut stream, &peer, &BulkTrailer::Done { size: rest.len() as u64, md5 }).unwrap();
        tcp::read_trailer(&mut stream, &peer).unwrap()
    })
    .await
    .unwrap()
}

/// The server grants an append only over the version it holds, rebuilds nothing in place, and keeps its file
/// when the result's MD5 is not the client's, or when its own file changed after the ticket.
#[tokio::test]
async fn an_append_upload_is_granted_only_over_the_held_version_and_checked_by_md5() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let old = pseudo_random(64 * KB, 41);
    let rest = pseudo_random(3 * KB, 42);
    let new = [old.clone(), rest.clone()].concat();
    write_file(server.root.path(), "app.log", &old, 1_600_000_000);
    let conn = Connection::connect(&server.addr).await.unwrap();
    let size = new.len() as u64;

    // Versions it does not hold get no offset: another MD5, another length, an absurd length.
    let mut other = old.clone();
    other[10] ^= 1;
    for claim in [held(&other), held(&old[..1000]), Held { size: u64::MAX, md5: md5_of(&old) }] {
        assert_eq!(append_ticket(&conn, size, claim).await.1, 0, "{claim:?}");
    }

    // A client that lies about the result: its trailer's MD5 is not that of the old bytes and the new.
    let (ticket, offset) = append_ticket(&conn, size, held(&old)).await;
    assert_eq!(offset, old.len() as u64);
    let verdict = send_rest(&conn, ticket, rest.clone(), md5_of(&rest)).await;
    assert!(matches!(&verdict, BulkTrailer::Failed(body) if body.code == ErrorCode::Changed), "{verdict:?}");
    assert!(std::fs::read(server.path("app.log")).unwrap() == old, "the server's file is untouched");

    // The server's file changes after the ticket: the copy of its old bytes no longer matches.
    let (ticket, offset) = append_ticket(&conn, size, held(&old)).await;
    assert_eq!(offset, old.len() as u64);
    write_file(server.root.path(), "app.log", &other, 1_600_000_100);
    let verdict = send_rest(&conn, ticket, rest.clone(), md5_of(&new)).await;
    assert!(matches!(&verdict, BulkTrailer::Failed(body) if body.code == ErrorCode::Changed), "{verdict:?}");
    assert!(std::fs::read(server.path("app.log")).unwrap() == other, "the newer file is kept");

    // An honest append: only the rest travels, and the server's file is the whole new one.
    write_file(server.root.path(), "app.log", &old, 1_600_000_200);
    let (ticket, offset) = append_ticket(&conn, size, held(&old)).await;
    assert_eq!(offset, old.len() as u64);
    let verdict = send_rest(&conn, ticket, rest, md5_of(&new)).await;
    assert_eq!(verdict, BulkTrailer::Done { size, md5: md5_of(&new) });
    assert!(std::fs::read(server.path("app.log")).unwrap() == new);
    assert_eq!(names_in(&server.path(".tandem/tmp")), Vec::<String>::new(), "no temporary file left");
}

/// Through the client library: an upload that appends to a version the server no longer holds is refused as
/// stale when it says what it expects, and goes another way, whole and correct, when it does not.
#[tokio::test]
async fn an_append_over_a_version_the_server_no_longer_holds_is_refused_as_stale() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let local = tempfile::tempdir().unwrap();
    let old = pseudo_random(40 * KB, 51);
    let new = [old.clone(), pseudo_random(KB, 52)].concat();
    let mut theirs = old.clone();
    theirs[0] ^= 0xff;
    write_file(server.root.path(), "app.log", &theirs, 1_600_000_000);
    write_file(local.path(), "app.log", &new, 1_600_000_100);
    let conn = Connection::connect(&server.addr).await.unwrap();
    let source = local.path().join("app.log");
    let progress = Progress::default();

    let expect = Some(Expect::File { md5: md5_of(&old) });
    let refused = upload_delta(&conn, &source, "app.log", (expect, Some(held(&old))), &progress).await.unwrap_err();
    assert!(matches!(&refused, Error::Remote(body) if body.code == ErrorCode::Stale), "{refused}");
    assert!(refused.to_string().contains("app.log"), "{refused}");
    assert!(std::fs::read(server.path("app.log")).unwrap() == theirs, "their version is kept");

    let report = upload_delta(&conn, &source, "app.log", (None, Some(held(&old))), &progress).await.unwrap();
    assert_eq!(report.bytes_sent, new.len() as u64, "no append: the whole file");
    assert_eq!(md5sum(&server.path("app.log")), md5sum(&source));
}

/// A delta download that names the client's version gets, when the server's file begins with it, a ticket at
/// its length and a plain stream of the rest whose trailer gives the whole file's MD5; any other claim gets 0.
#[tokio::test]
async fn an_append_download_streams_the_rest_after_exactly_the_held_version() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let old = pseudo_random(100 * KB, 61);
    let new = [old.clone(), pseudo_random(5 * KB, 62)].concat();
    write_file(server.root.path(), "app.log", &new, 1_600_000_000);
    let conn = Connection::connect(&server.addr).await.unwrap();
    let ask = |append_to: Held| Request::DownloadDelta {
        path: "app.log".into(),
        delta_only: false,
        append_to: Some(append_to),
    };

    let mut other = old.clone();
    other[99] ^= 1;
    let longer = [new.clone(), vec![0]].concat();
    for claim in [held(&other), held(&longer), Held { size: u64::MAX, md5: md5_of(&old) }] {
        assert_eq!(conn.ticket_at(ask(claim)).await.unwrap().3, 0, "{claim:?}");
    }
    let (ticket, entry, _, offset) = conn.ticket_at(ask(held(&old))).await.unwrap();
    assert_eq!((offset, entry.size), (old.len() as u64, new.len() as u64));
    let (stream, already) = conn.open_bulk(ticket).await.unwrap();
    let peer = conn.addr().to_string();
    let (rest, trailer) = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::Cursor::new(already.to_vec()).chain(stream);
        let rest = tcp::read_blob(&mut reader, &peer, "rest", 1 << 20).unwrap();
        (rest, tcp::read_trailer(&mut reader, &peer).unwrap())
    })
    .await
    .unwrap();
    assert!(rest == new[old.len()..], "only the bytes after the client's version");
    assert_eq!(trailer, BulkTrailer::Done { size: rest.len() as u64, md5: md5_of(&new) });
}

/// `tandem download` over an older copy (worth a delta) of a log that grew on the server receives only the
/// appended bytes, with no signature, by TCP and by UDP (whose small changes go over TCP), and leaves nothing
/// else behind. (A smaller older copy is replaced by a whole download, which can resume.)
#[test]
fn download_over_an_older_copy_of_a_grown_log_receives_only_the_appended_bytes() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let dest = tempfile::tempdir().unwrap();
    let to = dest.path().to_str().unwrap();
    let old = pseudo_random(300 * KB, 71);
    let mut new = old.clone();
    for (via, round) in [("tcp", 0), ("udp", 1)] {
        write_file(dest.path(), "app.log", &new, 1_600_000_000);
        new.extend_from_slice(&pseudo_random(2 * KB, 72 + round));
        write_file(server.root.path(), "app.log", &new, 1_600_000_100 + round);
        let report = json(&cli(&server.addr, &["download", via, "app.log", "--to", to, "--json"]));
        assert_eq!(report["bytes_received"].as_u64(), Some(2 * KB as u64), "{via}: {report}");
        assert_eq!(report["bytes_sent"].as_u64(), Some(0), "{via}: no signature: {report}");
        assert_eq!(md5sum(&dest.path().join("app.log")), md5sum(&server.path("app.log")), "{via}");
        assert_eq!(names_in(dest.path()), ["app.log"], "{via}: nothing left behind");
    }
}

/// An append download still runs the caller's last check before it replaces anything (sync's: the local file is
/// still the version it scanned): refused there, the older copy stays as it was and no temporary file is left.
#[tokio::test]
async fn an_append_download_refused_at_the_last_check_leaves_the_older_copy() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let dest = tempfile::tempdir().unwrap();
    let old = pseudo_random(40 * KB, 81);
    let new = [old.clone(), pseudo_random(KB, 82)].concat();
    write_file(server.root.path(), "app.log", &new, 1_600_000_000);
    write_file(dest.path(), "app.log", &old, 1_600_000_000);
    let conn = Connection::connect(&server.addr).await.unwrap();
    let to = Destination::Path(dest.path().join("app.log"));
    let stale = Error::Stale { path: "app.log".into(), found: "it changed on this side during the sync".into() };
    let refused = download_delta_to(&conn, "app.log", &to, Box::new(move || Err(stale)), &Progress::default()).await;
    assert!(matches!(refused, Err(Error::Stale { .. })), "{refused:?}");
    assert!(std::fs::read(dest.path().join("app.log")).unwrap() == old);
    assert_eq!(names_in(dest.path()), ["app.log"]);

    let report = download_delta_to(&conn, "app.log", &to, Box::new(|| Ok(())), &Progress::default()).await.unwrap();
    assert_eq!((report.bytes_received, report.bytes_sent, report.delta), (KB as u64, 0, true));
    assert!(std::fs::read(dest.path().join("app.log")).unwrap() == new);
}
