//! Starvation: attacks that once let one client take what every client needs, each run against a real
//! `tandem serve`, with another client's requests answered in under a second while it runs. Stalled transfers no
//! longer use up the threads listings and hashing need; sessions that queue large answers and never read cost
//! bounded memory, which goes back to the system when they leave; a flood of UDP `Start`s creates no thread per
//! `Start`. The raw-protocol helpers here serve `prehello.rs` too.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use tandem::auth::Nonce;
use tandem::client::Connection;
use tandem::protocol::{
    Channel, ClientFrame, ClientHello, PROTOCOL_VERSION, Request, ServerFrame, Ticket, codec, frame,
};
use tandem::transfer::udp::packet::{self, Packet};

use crate::common::*;

/// The server process's `VmRSS` or `Threads` line from /proc, as a number.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A TCP connection to `addr` from the loopback address `from`, so one test can be several clients.
pub fn connect_from(from: [u8; 4], addr: &str) -> std::io::Result<TcpStream> {
    let target: SocketAddr = addr.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::from(from), 0).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

pub fn send(stream: &mut TcpStream, message: &ClientFrame) -> std::io::Result<()> {
    let mut buf = bytes::BytesMut::new();
    codec::encode(message, &mut buf).unwrap();
    stream.write_all(&buf)
}

/// The next frame's raw body, or `None` once the server has closed.
pub fn receive_raw(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream.read_exact(&mut header).ok()?;
    let len = frame::parse_header(header, 1 << 24).ok()?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

pub fn receive(stream: &mut TcpStream) -> Option<ServerFrame> {
    codec::decode(&receive_raw(stream)?, "server frame").ok()
}

pub fn hello(channel: Channel) -> ClientFrame {
    let nonce = Some(Nonce::random());
    ClientFrame::Hello(ClientHello {
        protocol_version: PROTOCOL_VERSION,
        software: "attack".into(),
        channel,
        client: None,
        nonce,
    })
}

/// A control session from `from` on a server without a token, let in and ready for requests.
pub fn control_session(from: [u8; 4], addr: &str) -> TcpStream {
    let mut stream = connect_from(from, addr).unwrap();
    send(&mut stream, &hello(Channel::Control)).unwrap();
    assert!(matches!(receive(&mut stream), Some(ServerFrame::Hello(_))));
    assert!(matches!(receive(&mut stream), Some(ServerFrame::Welcome(_))));
    stream
}

/// Lists the folder `dir` and hashes `file` from a fresh session, each within a second.
pub async fn answered_within_a_second(addr: &str, dir: &str, file: &str) {
    let started = Instant::now();
    let conn = tokio::time::timeout(Duration::from_secs(1), Connection::connect(addr)).await;
    let conn = conn.expect("connected within a second").unwrap();
    let listed = tokio::time::timeout(Duration::from_secs(1), conn.list(dir, Default::default())).await;
    assert!(listed.expect("listing answered within a second").is_ok());
    let hashed = tokio::time::timeout(Duration::from_secs(1), conn.hash(file)).await;
    assert!(hashed.expect("hash answered within a second").is_ok());
    println!("another client: connected, listed and hashed in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_transfers_leave_threads_for_other_clients_listings_and_hashes() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "small.txt", b"small", 1_600_000_000);
    // Room for 576 transfer connections from this one address (by default it may hold 256).
    let server = ServeProcess::start_with(root, &["--max-connections", "2400", "--max-bulk-per-address", "600"]);
    let pid = server.child.id();
    // 36 sessions × 16 transfers that never move a byte: uploads whose client sends nothing hold a server
    // thread exactly as downloads that are never read do, without filling kernel buffers on the test machine.
    let mut sessions = Vec::new();
    for _ in 0..36 {
        sessions.push(Connection::connect(&server.addr).await.unwrap());
    }
    let mut stalled = Vec::new();
    for (s, conn) in sessions.iter().enumerate() {
        for t in 0..16 {
            let (ticket, _) = conn.upload_ticket(&format!("stall/{s}-{t}"), (1 << 20, 0, 0o644), None).await.unwrap();
            stalled.push(conn.open_bulk_channel(ticket).await.unwrap());
        }
    }
    let threads = proc_status(pid, "Threads:");
    println!("server threads with {} stalled transfers: {threads}", stalled.len());
    assert!(threads < 200, "the stalled transfers hold {threads} threads");
    answered_within_a_second(&server.addr, "", "small.txt").await;
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_queue_large_listings_and_never_read_cost_bounded_memory_given_back() {
    let root = tempfile::tempdir().unwrap();
    // 6,000 entries with names of 200 bytes: each listing is over a megabyte on the wire.
    let padding = "n".repeat(180);
    for dir in 0..6 {
        for file in 0..1000 {
            let path = root.path().join(format!("folder {dir}/{padding} {file:04}.txt"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::File::create(path).unwrap();
        }
    }
    write_file(root.path(), "quiet/small.txt", b"small", 1_600_000_000);
    let server = ServeProcess::start(root);
    let (pid, addr) = (server.child.id(), server.addr.clone());
    let before = proc_status(pid, "VmRSS:");
    // 20 sessions from 127.0.0.2 each ask for 32 listings of 6,000 entries and read nothing.
    let attack = tokio::task::spawn_blocking(move || {
        let mut sessions = Vec::new();
        for _ in 0..20 {
            let mut stream = control_session([127, 0, 0, 2], &addr);
            for id in 0..32 {
                send(
                    &mut stream,
                    &ClientFrame::Request {
                        id,
                        body: Request::List { path: String::new(), filter: Default::default() },
                    },
                )
                .unwrap();
            }
            sessions.push(stream);
        }
        sessions
    });
    let sessions = attack.await.unwrap();
    // Let the server produce what it will (bounded: the listings wait for a reader that never comes).
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(proc_status(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answered_within_a_second(&server.addr, "quiet", "quiet/small.txt").await;
    drop(sessions);
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let rss = proc_status(pid, "VmRSS:");
        if rss < 200 * 1024 || Instant::now() > deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("server RSS: {} MiB before, {} MiB at the peak, {} MiB after", before / 1024, peak / 1024, after / 1024);
    assert!(peak < 1024 * 1024, "the server grew to {peak} KiB");
    assert!(after < 200 * 1024, "the server kept {after} KiB after the sessions left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_reads_nothing_for_the_stall_timeout_loses_it() {
    let root = tempfile::tempdir().unwrap();
    for file in 0..3000 {
        write_file(root.path(), &format!("d/{file:05} a name long enough to fill frames.txt"), b"", 1);
    }
    let server = ServeProcess::start_with(root, &["--stall-timeout", "1", "--max-sessions-per-address", "1"]);
    let addr = server.addr.clone();
    let stalled = tokio::task::spawn_blocking(move || {
        let mut stream = control_session([127, 0, 0, 3], &addr);
        stream.set_nonblocking(false).unwrap();
        // A small receive buffer, so the server's answers back up quickly.
        socket2::SockRef::from(&stream).set_recv_buffer_size(4096).unwrap();
        // More than the 32 requests a session may run at once: its reader waits for room, and still notices.
        for id in 0..64 {
            send(
                &mut stream,
                &ClientFrame::Request { id, body: Request::List { path: String::new(), filter: Default::default() } },
            )
            .unwrap();
        }
        stream
    })
    .await
    .unwrap();
    // The address's only session slot comes back once the server drops the stalled session.
    let addr = server.addr.clone();
    let readmitted = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut stream = connect_from([127, 0, 0, 3], &addr).unwrap();
            send(&mut stream, &hello(Channel::Control)).unwrap();
            if let (Some(ServerFrame::Hello(_)), Some(ServerFrame::Welcome(_))) =
                (receive(&mut stream), receive(&mut stream))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(readmitted.await.unwrap(), "the stalled session was never dropped");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_udp_starts_creates_no_thread_per_start() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", &pseudo_random(4 << 20, 3), 1_600_000_000);
    let server = ServeProcess::start(root);
    let pid = server.child.id();
    let conn = Connection::connect(&server.addr).await.unwrap();
    let base = proc_status(pid, "Threads:");
    let mut tickets = Vec::new();
    for _ in 0..250 {
        tickets.push(conn.download_ticket("big.bin").await.unwrap().0);
    }
    // Every Start is valid; none is ever acknowledged, so each admitted sender runs until its idle timeout.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = Vec::new();
    for Ticket(session) in &tickets {
        let proof = conn.ticket_proof(Ticket(*session)).0;
        packet::encode(&Packet::Start { session: *session, window: 1, payload: 1200, proof }, &mut buf);
        socket.send_to(&buf, &server.addr).unwrap();
    }
    let (mut busy, mut datagram) = (0, vec![0u8; 65_536]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && busy < tickets.len() - 16 {
        if let Ok(len) = socket.recv(&mut datagram)
            && let Ok(Packet::Fail { message, .. }) = packet::decode(&datagram[..len])
            && message.starts_with("server busy")
        {
            busy += 1;
        }
    }
    let threads = proc_status(pid, "Threads:");
    println!("server threads: {base} before, {threads} after {} UDP Starts; {busy} refused as busy", tickets.len());
    // 16 senders, and tokio's own threads as it warms up: nowhere near one per Start.
    assert!(threads <= base + 50, "{} Starts made the server go from {base} to {threads} threads", tickets.len());
    assert_eq!(busy, tickets.len() - 16, "every Start beyond the session's 16 transfers is told the server is busy");
    answered_within_a_second(&server.addr, "", "big.bin").await;
}
