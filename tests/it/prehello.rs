//! Before authentication: what a client that has proved nothing can cost the server or learn from it. Idle sockets
//! from one address cannot fill the connection slots; guessing the token is slowed to a few guesses a minute per
//! address, however many addresses guess; failure lines in the history log are rate-limited; the server's hello
//! names neither its software nor its journal; one session's ticket flood never voids another's tickets; and a
//! read-only server refuses locks.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tandem::auth::{Proof, Token};
use tandem::client::{Connection, Remote};
use tandem::protocol::{BulkTrailer, Channel, ClientFrame, ClientIdentity, ErrorCode, ServerFrame, Ticket};
use tandem::wire::FrameReader;

use crate::common::*;
use crate::starvation::{connect_from, hello, receive, receive_raw, send};

const SECRET: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_leave_slots_for_clients_that_say_hello() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let addr = server.addr.clone();
    // 1,030 sockets from 127.0.0.2 that never say hello: 256 (the address's share of sessions) may be saying
    // hello at once, the rest are refused at once; of those 256, 16 may stay silent past a second.
    let idle = tokio::task::spawn_blocking(move || {
        (0..1030).filter_map(|_| connect_from([127, 0, 0, 2], &addr).ok()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(idle.len(), 1030, "the kernel accepted every connection");
    let started = Instant::now();
    let conn = tokio::time::timeout(Duration::from_secs(1), Connection::connect(&server.addr)).await;
    let listed = conn.expect("connected within a second").unwrap().list("", Default::default()).await;
    assert!(listed.unwrap().is_empty());
    println!("a client that says hello got in and listed in {:?}", started.elapsed());

    let refusals = idle.into_iter().map(|stream| async move {
        stream.set_nonblocking(true).unwrap();
        let mut reader = FrameReader::new(tokio::net::TcpStream::from_std(stream).unwrap(), "server");
        match tokio::time::timeout(Duration::from_secs(3), reader.next::<ServerFrame>("refusal")).await {
            Ok(Ok(Some(ServerFrame::Fatal(body)))) if body.code == ErrorCode::Busy => Some(body.message),
            Err(_) => None,
            other => panic!("expected a refusal or nothing, got {other:?}"),
        }
    });
    let refusals = futures::future::join_all(refusals).await;
    let at_once = "too many connections from 127.0.0.2 still saying hello: at most 256 at once";
    let silent = "too many connections from 127.0.0.2 still saying hello: at most 16 silent for 1 s";
    assert!(refusals[256..].iter().all(|r| r.as_deref() == Some(at_once)), "{:?}", &refusals[256..260]);
    let first: std::collections::BTreeMap<_, usize> = refusals[..256].iter().fold(Default::default(), |mut m, r| {
        *m.entry(r.clone()).or_default() += 1;
        m
    });
    assert_eq!(refusals[..256].iter().filter(|r| r.as_deref() == Some(silent)).count(), 240, "{first:?}");
    assert_eq!(refusals.iter().filter(|r| r.is_none()).count(), 16, "16 still wait for their hello");
}

/// One wrong guess at the token from `from`: true if the server checked it (and said `authentication failed`),
/// false if it refused the address before hello.
fn guess(from: [u8; 4], addr: &str) -> Option<bool> {
    let mut stream = connect_from(from, addr).ok()?;
    send(&mut stream, &hello(Channel::Control)).ok()?;
    match receive(&mut stream)? {
        ServerFrame::Hello(_) => {}
        ServerFrame::Fatal(body) if body.message.starts_with("too many failed authentications") => return Some(false),
        _ => return None,
    }
    send(&mut stream, &ClientFrame::Auth { proof: Proof([7; 32]) }).ok()?;
    match receive(&mut stream)? {
        ServerFrame::Fatal(body) if body.message == "authentication failed" => Some(true),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_from_several_addresses_is_slowed_to_a_few_guesses() {
    let server = ServeProcess::start_with(tempfile::tempdir().unwrap(), &["--token", SECRET]);
    let checked = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // 4 addresses × 8 connections at a time, guessing for 3 s.
    let guessers: Vec<_> = (0..32)
        .map(|n| {
            let (addr, checked, refused) = (server.addr.clone(), checked.clone(), refused.clone());
            std::thread::spawn(move || {
                while started.elapsed() < Duration::from_secs(3) {
                    match guess([127, 0, 0, 2 + (n % 4) as u8], &addr) {
                        Some(true) => checked.fetch_add(1, Ordering::Relaxed),
                        Some(false) => refused.fetch_add(1, Ordering::Relaxed),
                        None => 0,
                    };
                }
            })
        })
        .collect();
    for guesser in guessers {
        guesser.join().unwrap();
    }
    let (checked, refused) = (checked.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    let seconds = started.elapsed().as_secs_f64();
    println!("{checked} guesses checked ({:.1}/s), {refused} refused before hello", checked as f64 / seconds);
    assert!(checked <= 4 * 5 + 4, "{checked} guesses in {seconds:.1} s");
    assert!(refused > 0, "the guessing addresses were refused");
    // Someone with the token, from an address that never guessed, still gets in.
    let remote = Remote { addr: server.addr.clone(), token: Some(Token::new(SECRET, "test").unwrap()) };
    let conn = tokio::time::timeout(Duration::from_secs(1), remote.connect(None)).await;
    assert!(conn.expect("let in within a second").unwrap().list("", Default::default()).await.is_ok());
}

#[test]
fn a_short_token_beyond_loopback_is_refused_and_a_generated_one_works() {
    let root = tempfile::tempdir().unwrap();
    let short = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--token", "a"])
        .arg(root.path())
        .env_remove("TANDEM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(1));
    let said = stderr(&short);
    assert!(
        said.starts_with("error: refusing to serve on 0.0.0.0:") && said.contains("a token of 1 characters"),
        "{said}"
    );

    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--generate-token"])
        .arg(root.path())
        .env_remove("TANDEM_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serving = lines.next().unwrap().unwrap();
    let addr = serving.rsplit(" on ").next().unwrap().to_string();
    let token_line = lines.next().unwrap().unwrap();
    let token = token_line.strip_prefix("token: ").unwrap().split(' ').next().unwrap().to_string();
    assert!(token.len() >= 32 && token.chars().all(|c| c.is_ascii_alphanumeric()), "{token_line}");
    let with = cli(&addr, &["index", "longlist", "--token", &token]);
    assert!(with.status.success(), "{}", stderr(&with));
    let without = cli(&addr, &["index", "longlist"]);
    assert!(stderr(&without).contains("requires a token"), "{}", stderr(&without));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tickets_writes_a_bounded_number_of_log_lines() {
    let server = ServeProcess::start_with(tempfile::tempdir().unwrap(), &["--read-only"]);
    let attempts = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let flooders: Vec<_> = (0..4)
        .map(|n| {
            let (addr, attempts) = (server.addr.clone(), attempts.clone());
            std::thread::spawn(move || {
                while started.elapsed() < Duration::from_secs(2) && attempts.load(Ordering::Relaxed) < 20_000 {
                    let Ok(mut stream) = connect_from([127, 0, 0, 2 + n], &addr) else { continue };
                    let channel =
                        Channel::Bulk { ticket: Ticket(rand::random()), proof: tandem::auth::TicketProof([0; 16]) };
                    if send(&mut stream, &hello(channel)).is_ok() {
                        while receive_raw(&mut stream).is_some() {}
                        attempts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for flooder in flooders {
        flooder.join().unwrap();
    }
    let attempts = attempts.load(Ordering::Relaxed);
    let log = std::fs::read_to_string(server.path(".tandem/history.log")).unwrap();
    let lines = log.lines().count();
    println!("{attempts} bad tickets in {:?}: {lines} lines, {} bytes of history", started.elapsed(), log.len());
    assert!(attempts > 200, "the flood ran: {attempts} bad tickets");
    // At most 20 failure lines a second server-wide, plus one summary line a second.
    assert!(lines <= 3 * 21, "{lines} lines for {attempts} bad tickets:\n{log}");
    assert!(log.contains("similar lines suppressed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_before_authentication_names_neither_software_nor_journal() {
    let server = ServeProcess::start_with(tempfile::tempdir().unwrap(), &["--token", SECRET]);
    let addr = server.addr.clone();
    let before_auth = tokio::task::spawn_blocking(move || {
        let mut stream = connect_from([127, 0, 0, 1], &addr).unwrap();
        send(&mut stream, &hello(Channel::Control)).unwrap();
        receive_raw(&mut stream).unwrap()
    })
    .await
    .unwrap();
    let remote = Remote { addr: server.addr.clone(), token: Some(Token::new(SECRET, "test").unwrap()) };
    let conn = remote.connect(None).await.unwrap();
    let journal = conn.server().journal.clone().expect("the journal id comes once the client is in");
    assert!(conn.server().software.starts_with("tandem "));
    let text = String::from_utf8_lossy(&before_auth);
    assert!(!text.contains("tandem") && !text.contains(&journal), "the hello says {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tickets_from_one_session_never_voids_another_sessions_ticket() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "f.bin", &pseudo_random(100_000, 1), 1_600_000_000);
    let server = ServeProcess::start(root);
    let victim = Connection::connect(&server.addr).await.unwrap();
    let (ticket, _) = victim.download_ticket("f.bin").await.unwrap();
    let flooder = Connection::connect(&server.addr).await.unwrap();
    let mut issued = Vec::new();
    for _ in 0..5000 {
        issued.push(flooder.download_ticket("f.bin").await.expect("the flood's own requests are answered").0);
    }
    // The victim's ticket still works, and brings the whole file.
    let (stream, already_read) = victim.open_bulk_channel(ticket).await.unwrap();
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    let received = tokio::task::spawn_blocking(move || {
        let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
        let path = std::path::Path::new("f.bin");
        tandem::transfer::tcp::receive_file(
            &mut stream,
            &mut std::io::sink(),
            path,
            "server",
            100_000,
            &Default::default(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(received.bytes, 100_000);
    assert!(matches!(received.trailer, BulkTrailer::Done { .. }));
    // The flood evicted the flooder's own oldest tickets instead.
    let (mut stream, already_read) = flooder.open_bulk_channel(issued[0]).await.unwrap();
    let mut refusal = already_read.to_vec();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut refusal).await;
    assert!(
        String::from_utf8_lossy(&refusal).contains("transfer ticket unknown"),
        "the flooder's oldest ticket is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_refuses_locks() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "f.txt", b"x", 1);
    let server = ServeProcess::start_with(root, &["--read-only"]);
    let me = ClientIdentity { id: "id-1".into(), host: "laptop".into() };
    let conn = Connection::connect_as(&server.addr, Some(me)).await.unwrap();
    for refused in [conn.lock("f.txt").await.map(|_| ()), conn.unlock("f.txt", true).await.map(|_| ())] {
        match refused {
            Err(tandem::Error::Remote(body)) => {
                assert_eq!(body.code, ErrorCode::ReadOnly);
                assert!(body.message.contains("f.txt"), "{}", body.message);
            }
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
    }
}
