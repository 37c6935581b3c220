//! Authentication: the right token works from `--token`, `TANDEM_TOKEN` and `config.toml`; a wrong or missing
//! token gets `error: authentication failed` and a line in the server's history; a recorded handshake cannot be
//! replayed; a transfer ticket works once and only for the session it was issued to, over TCP and UDP; and a
//! server refuses to listen beyond loopback without a token unless told `--insecure-no-auth`.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use tandem::auth::{Nonce, Proof, Token, client_proof};
use tandem::client::{Connection, Credentials, Remote};
use tandem::protocol::{
    BulkTrailer, Channel, ClientFrame, ClientHello, ErrorCode, PROTOCOL_VERSION, ServerFrame, codec, frame,
};
use tandem::server::{Server, ServerConfig};
use tandem::transfer::udp::packet::{self, Packet};

use crate::common::*;

const SECRET: &str = "correct horse battery staple";

fn token() -> Token {
    Token::new(SECRET, "test").unwrap()
}

async fn server_with_token(root: &std::path::Path) -> (String, tokio_util::sync::CancellationToken) {
    let mut config = ServerConfig::new(root);
    config.listen = "127.0.0.1:0".into();
    config.token = Some(token());
    let (addr, shutdown, _) = Server::spawn(config).await.expect("start server");
    (addr.to_string(), shutdown)
}

#[test]
fn the_right_token_works_from_every_source_and_a_wrong_or_missing_one_is_refused() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "hello.txt", b"hello", 1_600_000_000);
    let server = ServeProcess::start_with(root, &["--token", SECRET]);

    let listed = server.cli(&["index", "longlist", "--json", "--token", SECRET]);
    assert_eq!(json(&listed)[0]["path"], "hello.txt");
    let from_env = Command::new(BIN)
        .args(["hash", "verify", "hello.txt"])
        .env("TANDEM_REMOTE", &server.addr)
        .env("TANDEM_TOKEN", SECRET)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    assert!(stdout(&from_env).contains(&md5sum(&server.path("hello.txt"))));
    let config_home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(config_home.path().join("tandem")).unwrap();
    std::fs::write(config_home.path().join("tandem/config.toml"), format!("token = \"{SECRET}\"\n")).unwrap();
    let from_config = cli_as(&server.addr, config_home.path(), &["index", "longlist"]);
    assert!(from_config.status.success(), "{}", stderr(&from_config));

    let wrong = server.cli(&["index", "longlist", "--token", "guess"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(stderr(&wrong), "error: authentication failed\n");
    assert!(stdout(&wrong).is_empty());
    let missing = server.cli(&["download", "tcp", "hello.txt"]);
    assert_eq!(missing.status.code(), Some(1));
    let said = stderr(&missing);
    assert!(said.starts_with("error: authentication failed: ") && said.contains("requires a token"), "{said}");

    // The server logged the refusal.
    let history = std::fs::read_to_string(server.path(".tandem/history.log")).unwrap();
    let refusals: Vec<_> = history.lines().filter(|line| line.contains("\tauth\t")).collect();
    assert!(refusals.iter().any(|line| line.contains("wrong token") && line.contains("authentication failed")));
}

/// Sends one frame on a raw socket.
fn send(stream: &mut TcpStream, message: &ClientFrame) {
    let mut buf = bytes::BytesMut::new();
    codec::encode(message, &mut buf).unwrap();
    stream.write_all(&buf).unwrap();
}

fn receive(stream: &mut TcpStream) -> Option<ServerFrame> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream.read_exact(&mut header).ok()?;
    let len = frame::parse_header(header, 1 << 20).unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    Some(codec::decode(&body, "server frame").unwrap())
}

/// Says hello with `nonce` and returns the server's challenge.
fn hello(addr: &str, nonce: Nonce) -> (TcpStream, Nonce) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = ClientHello {
        protocol_version: PROTOCOL_VERSION,
        software: "test".into(),
        channel: Channel::Control,
        client: None,
        nonce: Some(nonce),
    };
    send(&mut stream, &ClientFrame::Hello(hello));
    match receive(&mut stream) {
        Some(ServerFrame::Hello(hello)) => {
            assert!(hello.auth, "the server asks for the token");
            (stream, hello.nonce.unwrap())
        }
        other => panic!("expected hello, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_handshake_cannot_be_replayed() {
    let root = tempfile::tempdir().unwrap();
    let (addr, shutdown) = server_with_token(root.path()).await;
    let replay = tokio::task::spawn_blocking(move || {
        let ours = Nonce::random();
        let (mut first, challenge) = hello(&addr, ours);
        let proof = client_proof(&token(), &ours, &challenge);
        send(&mut first, &ClientFrame::Auth { proof });
        assert!(matches!(receive(&mut first), Some(ServerFrame::Welcome(_))));

        // Everything the client sent, sent again: the server's new challenge makes the old proof worthless.
        let (mut second, new_challenge) = hello(&addr, ours);
        assert_ne!(new_challenge, challenge);
        send(&mut second, &ClientFrame::Auth { proof });
        match receive(&mut second) {
            Some(ServerFrame::Fatal(body)) => {
                assert_eq!(body.code, ErrorCode::AuthFailed);
                assert_eq!(body.message, "authentication failed");
            }
            other => panic!("a replayed proof must be refused, got {other:?}"),
        }
        assert!(receive(&mut second).is_none(), "the connection closes");

        // A made-up proof is refused the same way.
        let (mut third, _) = hello(&addr, Nonce::random());
        send(&mut third, &ClientFrame::Auth { proof: Proof([0; 32]) });
        assert!(matches!(receive(&mut third), Some(ServerFrame::Fatal(body)) if body.code == ErrorCode::AuthFailed));
    });
    replay.await.unwrap();
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_works_once_and_only_for_the_session_it_was_issued_to() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "f.bin", &pseudo_random(50_000, 4), 1_600_000_000);
    let (addr, shutdown) = server_with_token(root.path()).await;
    let remote = Remote { addr: addr.clone(), token: Some(token()) };
    let (alice, mallory) = (remote.connect(None).await.unwrap(), remote.connect(None).await.unwrap());

    // Over TCP: another session's bulk channel is refused and does not spoil the ticket for its owner.
    let (ticket, entry) = alice.download_ticket("f.bin").await.unwrap();
    let outcome = |conn: Connection| async move {
        let (stream, already_read) = conn.open_bulk(ticket).await.unwrap();
        tokio::task::spawn_blocking(move || {
            let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
            let mut sink = Vec::new();
            let path = std::path::Path::new("f.bin");
            let received = tandem::transfer::tcp::receive_file(
                &mut stream,
                &mut sink,
                path,
                "server",
                50_000,
                &Default::default(),
            );
            (received.unwrap().trailer, sink)
        })
        .await
        .unwrap()
    };
    let refusal = |trailer: BulkTrailer| match trailer {
        BulkTrailer::Failed(body) => {
            assert_eq!(body.code, ErrorCode::BadTicket);
            assert_eq!(body.message, "transfer ticket unknown, used, expired or issued to another session");
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (stolen, nothing) = outcome(mallory.clone()).await;
    refusal(stolen);
    assert!(nothing.is_empty());
    let (first, bytes) = outcome(alice.clone()).await;
    assert!(matches!(first, BulkTrailer::Done { size: 50_000, .. }), "{first:?}");
    assert_eq!(bytes, std::fs::read(root.path().join("f.bin")).unwrap());
    assert_eq!(entry.size, 50_000);
    let (again, _) = outcome(alice.clone()).await;
    refusal(again);

    // Over UDP: a Start with another session's proof is refused in words.
    let (ticket, _) = alice.download_ticket("f.bin").await.unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut start = Vec::new();
    let proof = mallory.ticket_proof(ticket).0;
    packet::encode(&Packet::Start { session: ticket.0, window: 64, payload: 1400, proof }, &mut start);
    socket.send_to(&start, &addr).unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    match packet::decode(&buf[..len]).unwrap() {
        Packet::Fail { message, .. } => {
            assert_eq!(message, "download ticket unknown, used, expired or issued to another session")
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    // The owner's download over UDP still works with the same kind of ticket.
    let dest = tempfile::tempdir().unwrap();
    let report = tandem::client::download_udp(&alice, "f.bin", dest.path(), &Default::default(), Default::default())
        .await
        .unwrap();
    assert_eq!(report.md5.to_string(), md5sum(&root.path().join("f.bin")));

    // A client without the token gets no session at all.
    let refused = Connection::connect_with(&addr, &Credentials::default()).await.err().unwrap().to_string();
    assert!(refused.starts_with("authentication failed: ") && refused.contains("requires a token"), "{refused}");
    shutdown.cancel();
}

#[test]
fn serving_beyond_loopback_needs_a_token_or_an_explicit_insecure_flag() {
    let root = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .args(["serve", root.path().to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .env_remove("TANDEM_TOKEN")
        .env("XDG_CONFIG_HOME", root.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let said = stderr(&refused);
    assert!(said.starts_with("error: refusing to serve ") && said.contains("without a token"), "{said}");
    assert!(said.contains("--insecure-no-auth"), "{said}");

    let mut insecure = Command::new(BIN)
        .args(["serve", root.path().to_str().unwrap(), "--listen", "0.0.0.0:0", "--insecure-no-auth"])
        .env_remove("TANDEM_TOKEN")
        .env("XDG_CONFIG_HOME", root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(insecure.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("serving "), "{line}");
    let _ = insecure.kill();
    let output = insecure.wait_with_output().unwrap();
    let warned = stderr(&output);
    assert!(warned.contains("warning: serving") && warned.contains("without authentication"), "{warned}");

    // With a token, no flag is needed.
    let mut with_token = Command::new(BIN)
        .args(["serve", root.path().to_str().unwrap(), "--listen", "0.0.0.0:0", "--token", SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(with_token.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("serving ") && line.contains(" on 0.0.0.0:"), "{line}");
    let _ = with_token.kill();
    let output = with_token.wait_with_output().unwrap();
    assert!(!stderr(&output).contains("warning"), "{}", stderr(&output));
}
