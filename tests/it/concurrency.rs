//! Many clients at once, requests answered while a transfer runs, connection limits, idle timeout and shutdown.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tandem::client::{Connection, download_tcp};
use tandem::protocol::{Channel, ErrorCode, ListFilter};
use tandem::transfer::Progress;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_list_and_download_at_once() {
    let root = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write_file(
            root.path(),
            &format!("dir {i}/file {i}.bin"),
            &pseudo_random(200_000 + i * 1000, i as u64),
            1_000 + i as u64,
        );
    }
    let (addr, shutdown) = in_process(root.path()).await;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..50usize {
        let addr = addr.clone();
        clients.spawn(async move {
            let conn = Connection::connect(&addr).await?;
            let listed = conn.list("", ListFilter::default()).await?;
            let dest = tempfile::tempdir().unwrap();
            let rel = format!("dir {0}/file {0}.bin", client % 5);
            let report = download_tcp(&conn, &rel, dest.path(), &Progress::default()).await?;
            Ok::<_, tandem::Error>((listed.len(), rel, report.md5, md5sum(&report.dest)))
        });
    }
    let mut done = 0;
    while let Some(result) = clients.join_next().await {
        let (listed, rel, md5, independent) = result.unwrap().unwrap();
        assert_eq!(listed, 10);
        assert_eq!(md5.to_string(), independent);
        assert_eq!(independent, md5sum(&root.path().join(&rel)));
        done += 1;
    }
    assert_eq!(done, 50);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_while_a_download_is_stalled() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", &pseudo_random(32 << 20, 1), 1);
    write_file(root.path(), "small.txt", b"small", 2);
    let (addr, shutdown) = in_process(root.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    let (ticket, _) = conn.download_ticket("big.bin").await.unwrap();
    // Open the bulk stream and read nothing: the server's send blocks on a full socket.
    let (_stalled, _) = conn.open_bulk_channel(ticket).await.unwrap();
    // A guard against a hang (the stalled transfer blocking the control connection), not a speed check.
    let answers = async {
        let listed = conn.list("", ListFilter::default()).await.unwrap();
        (listed, conn.hash("small.txt").await.unwrap())
    };
    let (listed, hashed) = tokio::time::timeout(Duration::from_secs(30), answers)
        .await
        .expect("listing and hashing were blocked by the stalled download");
    assert_eq!(listed.len(), 2);
    assert_eq!(hashed.md5.unwrap().to_string(), md5sum(&root.path().join("small.txt")));
    shutdown.cancel();
}

/// Reads the one fatal frame a server sends before closing.
fn read_fatal(stream: &mut TcpStream) -> tandem::protocol::ErrorBody {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let mut last = None;
    while let Ok(Some(body)) = tandem::protocol::frame::decode(&mut buf, 1 << 20) {
        last = Some(tandem::protocol::codec::decode::<tandem::protocol::ServerFrame>(&body, "frame").unwrap());
    }
    match last {
        Some(tandem::protocol::ServerFrame::Fatal(body)) => body,
        other => panic!("expected a fatal frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_told_the_server_is_busy() {
    let root = tempfile::tempdir().unwrap();
    let server = ServeProcess::start_with(root, &["--max-connections", "2"]);
    let first = Connection::connect(&server.addr).await.unwrap();
    let _second = Connection::connect(&server.addr).await.unwrap();
    let addr = server.addr.clone();
    let refused =
        tokio::task::spawn_blocking(move || read_fatal(&mut TcpStream::connect(&addr).unwrap())).await.unwrap();
    assert_eq!(refused.code, ErrorCode::Busy);
    assert_eq!(refused.message, "server busy: all 2 connections are in use");
    let err = Connection::connect(&server.addr).await.err().expect("third connection refused");
    assert_eq!(err.to_string(), "server busy: all 2 connections are in use");
    assert!(first.list("", ListFilter::default()).await.unwrap().is_empty());
}

#[test]
fn idle_connections_are_closed_with_a_reason() {
    let root = tempfile::tempdir().unwrap();
    let server = ServeProcess::start_with(root, &["--idle-timeout", "1"]);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let hello = tandem::protocol::ClientFrame::Hello(tandem::protocol::ClientHello {
        protocol_version: tandem::protocol::PROTOCOL_VERSION,
        software: "test".into(),
        channel: Channel::Control,
        client: None,
        nonce: Some(tandem::auth::Nonce::random()),
    });
    let mut framed = bytes::BytesMut::new();
    tandem::protocol::codec::encode(&hello, &mut framed).unwrap();
    std::io::Write::write_all(&mut stream, &framed).unwrap();
    let body = read_fatal(&mut stream);
    assert_eq!(body.code, ErrorCode::Timeout);
    assert_eq!(body.message, "closing connection idle for 1 s");
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "a", b"a", 1);
    let mut server = ServeProcess::start(root);
    assert!(server.cli(&["hash", "checkall"]).status.success());
    let killed = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let history = std::fs::read_to_string(server.path(".tandem/history.log")).unwrap();
    let line = history.lines().find(|l| l.contains("\thashall\t")).expect("hashall logged");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 7, "{line}");
    assert!(fields[1].starts_with("127.0.0.1:"));
    assert_eq!((fields[2], fields[3], fields[4]), ("hashall", "path=\"\"", "ok"));
    assert!(fields[5].parse::<u64>().unwrap() > 0);
    assert!(fields[6].parse::<u64>().is_ok());
}
