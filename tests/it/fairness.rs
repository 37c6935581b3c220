//! Fairness: attacks by which one client (or a few addresses) once stopped or starved the server, each run
//! against a real `tandem serve`. A flood of bulk connections under a low open-file limit leaves the server
//! accepting; one address's bulk connections leave most connection slots to others; a few addresses holding
//! half-sent hellos cannot keep a third from saying hello; stalled delta transfers hold up nobody's deltas.

use std::time::{Duration, Instant};

use tandem::client::{BeforeCommit, Connection, download_delta_to, upload_delta};
use tandem::protocol::{ErrorCode, Request};
use tandem::share::Destination;
use tandem::transfer::Progress;

use crate::common::*;
use crate::starvation::{answered_within_a_second, connect_from, receive};

const MB: usize = 1 << 20;

/// Opens up to `count` bulk channels for uploads on `conn` and sends nothing on them, until the server refuses one
/// (its reason is returned) or one gets no answer within 2 s. (A download nobody reads could still end, once the
/// kernel's buffers hold the whole file; an upload that never comes holds its connection.)
async fn hold_bulk_uploads(conn: &Connection, count: usize) -> (Vec<tokio::net::TcpStream>, String) {
    let mut held = Vec::new();
    for n in 0..count {
        let ticket = match conn.upload_ticket(&format!("stall/{n}"), (1 << 20, 0, 0o644), None).await {
            Ok((ticket, _)) => ticket,
            Err(e) => return (held, format!("ticket refused: {e}")),
        };
        match tokio::time::timeout(Duration::from_secs(2), conn.open_bulk_channel(ticket)).await {
            Ok(Ok((stream, _))) => held.push(stream),
            Ok(Err(e)) => return (held, e.to_string()),
            Err(_) => return (held, "no answer within 2 s".into()),
        }
    }
    (held, String::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_flood_under_a_low_open_file_limit_leaves_the_server_accepting() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "small.txt", b"small", 1_600_000_000);
    let mut server = ServeProcess::start_under(root, &["prlimit", "--nofile=256:256", "--"], &[]);
    let mut sessions = Vec::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let conn = Connection::connect(&server.addr).await.unwrap();
        let (streams, why) = hold_bulk_uploads(&conn, 100).await;
        println!("a session holds {} bulk connections, then: {why}", streams.len());
        held.extend(streams);
        sessions.push(conn);
    }
    // Connections waiting in the accept queue while the flood lasts: each accept the server tries meanwhile
    // fails if it has no descriptor left.
    let addr = server.addr.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        (0..8).filter_map(|_| connect_from([127, 0, 0, 3], &addr).ok()).collect::<Vec<_>>()
    });
    let waiting = waiting.await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("the flood held {} bulk connections for 5 s", held.len());
    drop((held, waiting, sessions));
    let released = Instant::now();
    let deadline = released + Duration::from_secs(10);
    loop {
        assert!(server.child.try_wait().unwrap().is_none(), "the server exited");
        match tokio::time::timeout(Duration::from_secs(1), Connection::connect(&server.addr)).await {
            Ok(Ok(conn)) => {
                assert_eq!(conn.list("", Default::default()).await.unwrap().len(), 1);
                println!("a client got in and listed {:?} after the flood ended", released.elapsed());
                break;
            }
            Ok(Err(e)) => assert!(Instant::now() < deadline, "no client got in after the flood: {e}"),
            Err(_) => assert!(Instant::now() < deadline, "no client got in after the flood: no answer in 1 s"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_addresss_bulk_connections_leave_connections_for_everyone_else() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "small.txt", b"small", 1_600_000_000);
    let server = ServeProcess::start_with(root, &["--max-connections", "200"]);
    // 4 sessions × 60 uploads never sent: 240 bulk connections asked for, 50 (a quarter of 200) let in.
    let mut sessions = Vec::new();
    let (mut held, mut refusals) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let conn = Connection::connect(&server.addr).await.unwrap();
        let (streams, why) = hold_bulk_uploads(&conn, 60).await;
        held.extend(streams);
        refusals.push(why);
        sessions.push(conn);
    }
    println!("one address holds {} bulk connections; refused with {:?}", held.len(), refusals[0]);
    assert_eq!(held.len(), 50);
    let refused = "too many bulk connections from 127.0.0.1: at most 50 at once";
    assert!(refusals.iter().all(|r| r.ends_with(refused)), "{refusals:?}");
    answered_within_a_second(&server.addr, "", "small.txt").await;
    let mut other = connect_from([127, 0, 0, 2], &server.addr).unwrap();
    crate::starvation::send(&mut other, &crate::starvation::hello(tandem::protocol::Channel::Control)).unwrap();
    assert!(matches!(receive(&mut other), Some(tandem::protocol::ServerFrame::Hello(_))));
    drop((held, sessions));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_addresses_of_half_sent_hellos_cannot_keep_a_third_out() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "small.txt", b"small", 1_600_000_000);
    let server = ServeProcess::start_with(root, &["--max-handshakes", "64", "--max-sessions-per-address", "32"]);
    let addr = server.addr.clone();
    // 32 sockets from each of two addresses send the first byte of a frame, then nothing: the pool of 64
    // handshakes is full. A 33rd from each is refused for its address, which shows the 32 were counted.
    let attack = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        for from in [[127, 0, 0, 2], [127, 0, 0, 3]] {
            for _ in 0..32 {
                let mut stream = connect_from(from, &addr).unwrap();
                std::io::Write::write_all(&mut stream, &[0]).unwrap();
                held.push(stream);
            }
            let mut one_more = connect_from(from, &addr).unwrap();
            std::io::Write::write_all(&mut one_more, &[0]).unwrap();
            let refusal = match receive(&mut one_more) {
                Some(tandem::protocol::ServerFrame::Fatal(body)) => body,
                other => panic!("expected a refusal, got {other:?}"),
            };
            assert_eq!(refusal.code, ErrorCode::Busy);
            assert!(refusal.message.ends_with("still saying hello: at most 32 at once"), "{}", refusal.message);
        }
        held
    });
    let held = attack.await.unwrap();
    for _ in 0..3 {
        answered_within_a_second(&server.addr, "", "small.txt").await;
    }
    // The first newcomer took the place of the attackers' oldest handshake, which was closed; the others found
    // the place the first left free once it was in.
    let closed = tokio::task::spawn_blocking(move || {
        held.into_iter()
            .filter_map(|mut s| {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let read = std::io::Read::read(&mut s, &mut [0u8; 64]);
                let reset = read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset);
                (matches!(read, Ok(0)) || reset).then_some(())
            })
            .count()
    });
    let closed = closed.await.unwrap();
    println!("attackers' handshakes closed by the time the three clients were in: {closed}");
    assert_eq!(closed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stalled_deltas_hold_up_no_other_clients_delta() {
    let root = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let old = pseudo_random(2 * MB, 5);
    let mut new = old.clone();
    new[MB..MB + 10].copy_from_slice(b"0123456789");
    for name in ["stall.bin", "up.bin", "down.bin"] {
        write_file(root.path(), name, &old, 1_600_000_000);
    }
    write_file(root.path(), "down.bin", &new, 1_700_000_000);
    write_file(local.path(), "up.bin", &new, 1_700_000_000);
    write_file(local.path(), "down.bin", &old, 1_600_000_000);
    let server = ServeProcess::start(root);
    // Two delta downloads whose client never sends its signature: the server's two delta slots.
    let attacker = Connection::connect(&server.addr).await.unwrap();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let request = Request::DownloadDelta { path: "stall.bin".into(), delta_only: false, append_to: None };
        let (ticket, _, _) = attacker.ticket_for(request).await.unwrap();
        stalled.push(attacker.open_bulk_channel(ticket).await.unwrap());
    }
    let victim = Connection::connect(&server.addr).await.unwrap();
    let (source, progress) = (local.path().join("up.bin"), Progress::default());
    let started = Instant::now();
    let uploading = upload_delta(&victim, &source, "up.bin", (None, None), &progress);
    let uploaded = tokio::time::timeout(Duration::from_secs(3), uploading).await;
    let uploaded = uploaded.expect("the delta upload finished within 3 s").unwrap();
    println!("delta upload beside two stalled deltas: {:?}, {} bytes sent", started.elapsed(), uploaded.bytes_sent);
    assert_eq!(md5sum(&server.path("up.bin")), md5sum(&local.path().join("up.bin")));

    let started = Instant::now();
    let dest = Destination::Path(local.path().join("down.bin"));
    let before_commit: BeforeCommit = Box::new(|| Ok(()));
    let downloading = download_delta_to(&victim, "down.bin", &dest, before_commit, &progress);
    let downloaded = tokio::time::timeout(Duration::from_secs(3), downloading).await;
    let downloaded = downloaded.expect("the delta download finished within 3 s").unwrap();
    println!("delta download beside two stalled deltas: {:?}, {} bytes", started.elapsed(), downloaded.bytes_received);
    assert_eq!(md5sum(&local.path().join("down.bin")), md5sum(&server.path("down.bin")));
    drop(stalled);
}
