//! The sandbox and the protocol's defences: hostile paths are refused by name, tandem's own folder stays private,
//! and garbage on the port closes only that connection while other clients carry on.

use std::io::{Read, Write};
use std::net::TcpStream;

use tandem::client::Connection;
use tandem::protocol::{Channel, ClientFrame, ClientHello, ErrorCode, ListFilter, ServerFrame, codec, frame};

use crate::common::*;

fn share_with_traps() -> ServeProcess {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "inside.txt", b"fine", 1);
    let outside = root.path().parent().unwrap().join(format!("outside-{}", std::process::id()));
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, root.path().join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.path().join("secret-link")).unwrap();
    std::os::unix::fs::symlink("escape", root.path().join("chain")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.path().join("dangling")).unwrap();
    ServeProcess::start(root)
}

#[test]
fn hostile_paths_are_refused_by_hash_and_download() {
    let server = share_with_traps();
    let dest = tempfile::tempdir().unwrap();
    let link = |path: &str, link: &str| format!("{path}: {link:?} is a symbolic link, and tandem never follows one");
    for (path, expected) in [
        ("../outside.txt", "invalid path \"../outside.txt\": `..` leads outside the share".to_string()),
        ("a/../../b", "invalid path \"a/../../b\": `..` leads outside the share".to_string()),
        ("/etc/passwd", "invalid path \"/etc/passwd\": absolute paths are not allowed".to_string()),
        ("escape/secret.txt", link("escape/secret.txt", "escape")),
        ("secret-link", link("secret-link", "secret-link")),
        ("chain/secret.txt", link("chain/secret.txt", "chain")),
        ("dangling", link("dangling", "dangling")),
        (".tandem/history.log", "invalid path \".tandem/history.log\": tandem's state folder is private".to_string()),
    ] {
        for command in
            [vec!["hash", "verify", path], vec!["download", "tcp", path, "--to", dest.path().to_str().unwrap()]]
        {
            let output = server.cli(&command);
            assert_eq!(output.status.code(), Some(1), "{command:?}");
            let expected = format!("error: {expected}");
            assert!(stderr(&output).starts_with(&expected), "{command:?}: {}", stderr(&output));
        }
    }
    assert!(names_in(dest.path()).is_empty());
}

#[test]
fn state_folder_is_never_listed_or_hashed() {
    let server = share_with_traps();
    server.cli(&["hash", "checkall"]);
    assert!(server.path(".tandem/hashes.sqlite").exists());
    for args in [["index", "longlist", "--json"], ["hash", "checkall", "--json"]] {
        let listed = json(&server.cli(&args));
        assert!(listed.as_array().unwrap().iter().all(|e| !e["path"].as_str().unwrap().contains(".tandem")));
    }
    let symlinks = json(&server.cli(&["index", "regex", "^(escape|chain|dangling|secret-link)$", "--json"]));
    assert!(symlinks.as_array().unwrap().iter().all(|e| e["kind"] == "symlink"), "{symlinks}");
    assert_eq!(symlinks.as_array().unwrap().len(), 4);
}

/// Reads every frame the server sends until it closes the connection.
fn frames_until_close(stream: &mut TcpStream) -> Vec<ServerFrame> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let mut frames = Vec::new();
    while let Ok(Some(body)) = frame::decode(&mut buf, 1 << 20) {
        frames.push(codec::decode::<ServerFrame>(&body, "server frame").unwrap());
    }
    frames
}

fn fatal_message(frames: &[ServerFrame]) -> (ErrorCode, String) {
    match frames.last() {
        Some(ServerFrame::Fatal(body)) => (body.code, body.message.clone()),
        other => panic!("expected a fatal frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_own_connection() {
    let server = share_with_traps();
    let addr = server.addr.clone();
    let good = Connection::connect(&addr).await.unwrap();
    assert_eq!(good.list("", ListFilter::default()).await.unwrap().len(), 5);

    let raw_tests = tokio::task::spawn_blocking(move || {
        // A length prefix of 4 GiB: refused at once, nothing allocated.
        let mut oversized = TcpStream::connect(&addr).unwrap();
        oversized.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
        let (code, message) = fatal_message(&frames_until_close(&mut oversized));
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(message.starts_with("frame of 4294967295 bytes exceeds the limit"), "{message}");

        // Random bytes in a well-formed frame.
        let mut random = TcpStream::connect(&addr).unwrap();
        let mut framed = bytes::BytesMut::new();
        frame::encode(&pseudo_random(200, 7), 1 << 20, &mut framed).unwrap();
        random.write_all(&framed).unwrap();
        let (code, message) = fatal_message(&frames_until_close(&mut random));
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(message.starts_with("malformed hello: "), "{message}");

        // A hello from a future version: the server says its own version, then why it closes.
        let mut future = TcpStream::connect(&addr).unwrap();
        let hello = ClientFrame::Hello(ClientHello {
            protocol_version: 999,
            software: "tandem 9".into(),
            channel: Channel::Control,
            client: None,
            nonce: Some(tandem::auth::Nonce::random()),
        });
        let mut framed = bytes::BytesMut::new();
        codec::encode(&hello, &mut framed).unwrap();
        future.write_all(&framed).unwrap();
        let frames = frames_until_close(&mut future);
        assert!(
            matches!(&frames[0], ServerFrame::Hello(h) if h.protocol_version == tandem::protocol::PROTOCOL_VERSION)
        );
        let (code, message) = fatal_message(&frames);
        assert_eq!(code, ErrorCode::VersionMismatch);
        let ours = format!("speaks version {}", tandem::protocol::PROTOCOL_VERSION);
        assert!(message.contains(&ours) && message.contains("speaks version 999"), "{message}");
    });
    raw_tests.await.unwrap();

    // The first client never noticed.
    assert_eq!(good.hash("inside.txt").await.unwrap().md5.unwrap().to_string(), md5sum(&server.path("inside.txt")));
}

#[test]
fn a_used_ticket_is_refused() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "f", b"data", 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (addr, _shutdown) = in_process(root.path()).await;
        let conn = Connection::connect(&addr).await.unwrap();
        let (ticket, _) = conn.download_ticket("f").await.unwrap();
        for attempt in 0..2 {
            let (stream, leftover) = conn.open_bulk_channel(ticket).await.unwrap();
            let stream = stream.into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            let mut stream = std::io::Read::chain(std::io::Cursor::new(leftover), stream);
            let got = tokio::task::spawn_blocking(move || {
                let mut out = tempfile::tempfile().unwrap();
                tandem::transfer::tcp::receive_file(
                    &mut stream,
                    &mut out,
                    std::path::Path::new("t"),
                    "srv",
                    100,
                    &Default::default(),
                )
                .map(|r| r.trailer)
            })
            .await
            .unwrap()
            .unwrap();
            match (attempt, got) {
                (0, tandem::protocol::BulkTrailer::Done { size, .. }) => assert_eq!(size, 4),
                (1, tandem::protocol::BulkTrailer::Failed(body)) => {
                    assert_eq!(body.code, ErrorCode::BadTicket);
                    assert_eq!(body.message, "transfer ticket unknown, used, expired or issued to another session");
                }
                (attempt, other) => panic!("attempt {attempt}: {other:?}"),
            }
        }
    });
}
