//! Limits: an address gets its share of sessions and is told why when it asks for more; a session's transfers
//! beyond its limit wait their turn instead of failing; a session that asks too fast is slowed down, not refused;
//! and a client that stops reading a large download does not make the server buffer the file.

use std::time::{Duration, Instant};

use tandem::client::Connection;
use tandem::protocol::{BulkTrailer, ErrorCode};

use crate::common::*;

const SIZE: usize = 128 << 20;

/// The server process's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_beyond_its_sessions_is_told_why_and_a_closed_session_frees_its_slot() {
    let server = ServeProcess::start_with(tempfile::tempdir().unwrap(), &["--max-sessions-per-address", "2"]);
    let first = Connection::connect(&server.addr).await.unwrap();
    let _second = Connection::connect(&server.addr).await.unwrap();
    let refused = Connection::connect(&server.addr).await.err().unwrap();
    match &refused {
        tandem::Error::Remote(body) => {
            assert_eq!(body.code, ErrorCode::Busy);
            assert_eq!(body.message, "too many sessions from 127.0.0.1: at most 2 at once");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // Once a session closes, its slot is free again (the server notices the close promptly).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Connection::connect(&server.addr).await {
            Ok(conn) => {
                assert!(conn.list("", Default::default()).await.unwrap().is_empty());
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the slot was never freed: {e}"),
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_beyond_the_limit_wait_their_turn_and_fast_requests_are_paced() {
    let root = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_file(root.path(), &format!("f{i}.bin"), &pseudo_random(300_000, i), 1_600_000_000);
    }
    let server = ServeProcess::start_with(
        root,
        &["--max-transfers-per-client", "1", "--requests-per-second", "40", "--max-requests-in-flight", "4"],
    );
    let conn = Connection::connect(&server.addr).await.unwrap();

    // Three downloads at once with room for one: all three arrive whole, none is refused.
    let dest = tempfile::tempdir().unwrap();
    let downloads = (0..3).map(|i| {
        let (conn, dest) = (conn.clone(), dest.path().to_path_buf());
        async move { tandem::client::download_tcp(&conn, &format!("f{i}.bin"), &dest, &Default::default()).await }
    });
    for (i, report) in futures::future::join_all(downloads).await.into_iter().enumerate() {
        let report = report.unwrap();
        assert_eq!(report.md5.to_string(), md5sum(&server.path(&format!("f{i}.bin"))));
        assert_eq!(std::fs::read(dest.path().join(format!("f{i}.bin"))).unwrap().len(), 300_000);
    }

    // 120 requests at once against 40 a second (after a burst of 40): every one is answered, and the last ones
    // wait their turn. The lower bound cannot be met by a faster machine, only by a missing limit.
    let started = Instant::now();
    let hashes = (0..120).map(|_| {
        let conn = conn.clone();
        async move { conn.hash("f0.bin").await }
    });
    let answers = futures::future::join_all(hashes).await;
    let took = started.elapsed();
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|e| e.md5.is_some())), "every request is answered");
    assert!(took >= Duration::from_millis(1900), "80 requests beyond the burst at 40 a second took only {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_make_the_server_buffer_the_file() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", &pseudo_random(SIZE, 9), 1_600_000_000);
    let server = ServeProcess::start(root);
    let pid = server.child.id();
    let conn = Connection::connect(&server.addr).await.unwrap();
    // The server hashes the file once, so the measurement below sees only the transfer.
    conn.hash("big.bin").await.unwrap();
    let before = rss_kib(pid);

    let (ticket, _) = conn.download_ticket("big.bin").await.unwrap();
    let (stalled, already_read) = conn.open_bulk_channel(ticket).await.unwrap();
    // The control connection still answers while the download is stuck on a full socket.
    for _ in 0..20 {
        assert_eq!(conn.hash("big.bin").await.unwrap().size, SIZE as u64);
    }
    let during = rss_kib(pid);
    println!("server RSS: {} MiB before, {} MiB with a stalled 128 MiB download", before / 1024, during / 1024);
    assert!(during < before + 64 * 1024, "the server grew from {before} KiB to {during} KiB");

    // Reading again, the client gets the whole file.
    let stream = stalled.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    let received = tokio::task::spawn_blocking(move || {
        let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
        let mut sink = std::io::sink();
        let path = std::path::Path::new("big.bin");
        tandem::transfer::tcp::receive_file(&mut stream, &mut sink, path, "server", SIZE as u64, &Default::default())
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(received.bytes, SIZE as u64);
    assert!(matches!(received.trailer, BulkTrailer::Done { .. }));
}
