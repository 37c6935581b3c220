//! Garbage at a live `tandem serve`: well over 100,000 random and mutated frames on the control port and as many
//! datagrams on the UDP port, from seeded generators so a failure reproduces. On TCP: random bytes, a valid
//! length header over a random body, oversize headers, truncated frames, a second hello, and sessions that say
//! hello and then pipeline mutated requests (the ones that still decode, so a connection carries hundreds) and
//! end with one that does not. On UDP: random bytes, mutated datagrams of every kind, and hostile acks aimed at
//! real transfer sessions. Afterwards the server must still run, have printed no panic, serve a normal client
//! the right bytes, and hold about the memory it held before.
//!
//! Nothing here waits on a clock: every garbage connection is read until the server closes it, every pipelined
//! batch ends with a request whose answer proves the server read the batch, and every batch of datagrams ends
//! with a `Start` for an unknown session, which the server answers in order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem::protocol::*;
use tandem::transfer::udp::packet::{self, Ack, Packet};

use crate::common::*;

/// Mutated requests pipelined per batch; the sentinel makes 32, the server's per-connection limit.
const BATCH: usize = 31;
const BATCHES_PER_SESSION: usize = 20;
const SESSIONS: usize = 160;
const GARBAGE_CONNECTIONS: usize = 2_000;
const DATAGRAMS: usize = 100_000;
const DATAGRAMS_PER_MARKER: usize = 64;
/// Generous: the point is that garbage does not pile up, not to measure an allocator.
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;
const SENTINEL: u64 = u64::MAX;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `tandem serve` over `root`, its stderr kept in a file so a panic message can be looked for afterwards.
fn serve_logging(root: tempfile::TempDir, stderr_path: &std::path::Path) -> ServeProcess {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg(root.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().rsplit(" on ").next().unwrap().to_string();
    ServeProcess { child, addr, root }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max);
    (0..len).map(|_| rng.random()).collect()
}

/// Overwrites, inserts or deletes one to three bytes.
fn mutate(rng: &mut StdRng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.random_range(1..=3) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..3) {
            0 if at < bytes.len() => bytes[at] = rng.random(),
            1 => bytes.insert(at, rng.random()),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.push(rng.random()),
        }
    }
    bytes
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    frame::encode(body, MAX_FRAME_LEN, &mut wire).unwrap();
    wire.to_vec()
}

fn encoded<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut wire = BytesMut::new();
    codec::encode(message, &mut wire).unwrap();
    wire.to_vec()
}

/// Requests that only read or hand out tickets, so no mutation of them can change the share.
fn seed_requests() -> Vec<Vec<u8>> {
    let filter = ListFilter { pattern: Some("^s.*\\.txt$".into()), ..Default::default() };
    let upload = Request::Upload { path: "incoming/new.bin".into(), size: 10, mtime_ns: 0, mode: 0o644, expect: None };
    [
        Request::List { path: String::new(), filter: ListFilter::default() },
        Request::List { path: "dir".into(), filter },
        Request::Hash { path: "small.txt".into() },
        Request::HashAll { path: String::new(), max_depth: Some(1) },
        Request::Download { path: "small.txt".into(), resume: None },
        // A resume point past the end, with an mtime no file has: the server starts from zero, never panics.
        Request::Download {
            path: "small.txt".into(),
            resume: Some(ResumeFrom { offset: u64::MAX, size: u64::MAX, mtime_ns: i64::MIN }),
        },
        Request::Changes { since: 0 },
        upload,
    ]
    .into_iter()
    .map(|body| encoded(&ClientFrame::Request { id: 7, body })[frame::HEADER_LEN..].to_vec())
    .collect()
}

/// Whether a decoded mutation leaves the share as it is (an upload only hands out a ticket), so the bytes the
/// test downloads afterwards are still the ones it wrote.
fn changes_nothing(request: &Request) -> bool {
    matches!(
        request,
        Request::List { .. }
            | Request::Hash { .. }
            | Request::HashAll { .. }
            | Request::Download { .. }
            | Request::Changes { .. }
            | Request::Upload { .. }
    )
}

/// A client socket that reads whole server frames.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
}

impl Peer {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        Peer { stream, buf: BytesMut::new() }
    }

    /// The next frame, or `None` once the server has closed the connection.
    fn next(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some(body) = frame::decode(&mut self.buf, MAX_FRAME_LEN).unwrap() {
                return Some(codec::decode(&body, "server frame").unwrap());
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("server stopped answering: {e}"),
            }
        }
    }

    /// Sends the last bytes of a connection and reads until the server closes it; returns its `Fatal` message.
    fn finish(mut self, bytes: &[u8]) -> String {
        // A server that refused the first bytes may close before the rest arrive; that is its right.
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut fatal = None;
        while let Some(frame) = self.next() {
            if let ServerFrame::Fatal(body) = frame {
                fatal = Some(body.message);
            }
        }
        fatal.unwrap_or_else(|| panic!("connection closed without saying why, after {bytes:02x?}"))
    }
}

/// Garbage that arrives before any hello; each costs its connection. Returns frames sent.
fn garbage_connections(addr: &str, seed: u64, count: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..count {
        let peer = Peer::connect(addr);
        let (bytes, expected): (Vec<u8>, &[&str]) = match rng.random_range(0..4) {
            0 => (
                random_bytes(&mut rng, 512).into_iter().chain([rng.random()]).collect(),
                &["exceeds the limit", "malformed hello", "closed in the middle"],
            ),
            1 => (framed(&random_bytes(&mut rng, 512)), &["malformed hello"]),
            2 => (rng.random_range(64 * 1024 + 1..=u32::MAX).to_be_bytes().to_vec(), &["exceeds the limit of 65536"]),
            _ => {
                let whole = framed(&random_bytes(&mut rng, 512));
                (whole[..rng.random_range(1..whole.len())].to_vec(), &["closed in the middle", "malformed hello"])
            }
        };
        let message = peer.finish(&bytes);
        assert!(expected.iter().any(|e| message.contains(e)), "{message:?} for {bytes:02x?}");
    }
    count
}

/// Control sessions: hello, then batches of mutated requests that still decode, each batch closed by a sentinel
/// request; then one frame the server must refuse. Returns (frames sent, answers read).
fn mutated_sessions(addr: &str, seed: u64, sessions: usize) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let seeds = seed_requests();
    let hello = ClientHello {
        protocol_version: PROTOCOL_VERSION,
        software: "garbage".into(),
        channel: Channel::Control,
        client: None,
        nonce: Some(tandem::auth::Nonce([9; 32])),
    };
    let sentinel = encoded(&ClientFrame::Request { id: SENTINEL, body: Request::Hash { path: "small.txt".into() } });
    let (mut frames, mut answers) = (0, 0);
    for _ in 0..sessions {
        let mut peer = Peer::connect(addr);
        peer.stream.write_all(&encoded(&ClientFrame::Hello(hello.clone()))).unwrap();
        assert!(matches!(peer.next(), Some(ServerFrame::Hello(_))));
        assert!(matches!(peer.next(), Some(ServerFrame::Welcome(_))));
        let mut refused = None;
        for _ in 0..BATCHES_PER_SESSION {
            let mut batch = Vec::new();
            let mut in_batch = 0;
            while in_batch < BATCH {
                let seed = seeds[rng.random_range(0..seeds.len())].clone();
                let body = mutate(&mut rng, seed);
                match codec::decode::<ClientFrame>(&body, "request") {
                    Ok(ClientFrame::Request { body: request, .. }) if changes_nothing(&request) => {
                        batch.extend_from_slice(&framed(&body));
                        in_batch += 1;
                    }
                    Ok(_) => {}
                    Err(_) => refused = Some(body),
                }
            }
            batch.extend_from_slice(&sentinel);
            peer.stream.write_all(&batch).unwrap();
            frames += BATCH;
            loop {
                match peer.next() {
                    Some(ServerFrame::Response { id: SENTINEL, body: Response::Entries { .. } }) => break,
                    Some(ServerFrame::Response { .. }) => answers += 1,
                    other => panic!("expected answers to a batch of decodable requests, got {other:?}"),
                }
            }
        }
        // The end of the session: a frame that cannot be served, chosen among the ways a frame can be wrong.
        let (last, expected) = match rng.random_range(0..4) {
            0 => (framed(&refused.expect("some mutation did not decode")), "malformed request: "),
            1 => ((MAX_FRAME_LEN as u32 + 1).to_be_bytes().to_vec(), "exceeds the limit of 16777216 bytes"),
            2 => (sentinel[..rng.random_range(1..sentinel.len())].to_vec(), "closed in the middle of a frame"),
            _ => (encoded(&ClientFrame::Hello(hello.clone())), "hello or authentication sent twice"),
        };
        frames += 1;
        let message = peer.finish(&last);
        assert!(message.contains(expected), "{message:?}, expected {expected:?}");
    }
    (frames, answers)
}

/// Datagrams of every kind and none, to the server's UDP port, with hostile acks for `tickets` (real download
/// sessions this socket starts). Returns (datagrams sent, markers answered).
fn datagram_storm(addr: &str, seed: u64, tickets: &[(Ticket, [u8; 16])]) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let mut send = |packet: &Packet<'_>| {
        packet::encode(packet, &mut buf);
        socket.send(&buf).unwrap();
    };
    for (ticket, proof) in tickets {
        send(&Packet::Start { session: ticket.0, window: 64, payload: 1400, proof: *proof });
    }
    let valid = |rng: &mut StdRng| -> Vec<u8> {
        let session = match rng.random_range(0..3) {
            0 if !tickets.is_empty() => tickets[rng.random_range(0..tickets.len())].0.0,
            _ => rng.random(),
        };
        let packet = match rng.random_range(0..5) {
            0 => Packet::Start { session, window: rng.random(), payload: rng.random(), proof: rng.random() },
            1 => Packet::Data { session, seq: rng.random(), sent_us: rng.random(), payload: b"not yours" },
            2 => {
                let first: u32 = rng.random();
                let end = first.saturating_add(rng.random_range(1..1000));
                let ranges = vec![(first, end); rng.random_range(0..=3)];
                let (cumulative, window, echo_us) = (rng.random_range(0..=first), rng.random(), rng.random());
                Packet::Ack(Ack { session, cumulative, window, echo_us, flags: rng.random(), ranges })
            }
            3 => Packet::Done { session, size: rng.random(), packets: rng.random(), retransmits: 0, md5: [0; 16] },
            _ => Packet::Fail { session, code: rng.random(), message: "garbage" },
        };
        let mut out = Vec::new();
        packet::encode(&packet, &mut out);
        out
    };
    let (mut sent, mut markers) = (0, 0);
    let mut reply = vec![0u8; 65_536];
    while sent < DATAGRAMS {
        for _ in 0..DATAGRAMS_PER_MARKER {
            let datagram = match rng.random_range(0..3) {
                0 => random_bytes(&mut rng, 1500),
                1 => valid(&mut rng),
                _ => {
                    let datagram = valid(&mut rng);
                    mutate(&mut rng, datagram)
                }
            };
            socket.send(&datagram).unwrap();
            sent += 1;
        }
        // A Start for an unknown session is answered with Fail: once it is, every datagram before it was read.
        let marker = u64::MAX - markers as u64;
        let mut tries = 0;
        'answered: loop {
            tries += 1;
            assert!(tries <= 3, "no answer to marker {marker:#x} after {sent} datagrams");
            send(&Packet::Start { session: marker, window: 1, payload: 1400, proof: [0; 16] });
            while let Ok(len) = socket.recv(&mut reply) {
                if matches!(packet::decode(&reply[..len]), Ok(Packet::Fail { session, .. }) if session == marker) {
                    break 'answered;
                }
            }
        }
        markers += 1;
    }
    (sent, markers)
}

#[test]
fn a_server_survives_garbage_and_still_serves() {
    let root = tempfile::tempdir().unwrap();
    let big = pseudo_random(1 << 20, 11);
    write_file(root.path(), "file.bin", &big, 1);
    write_file(root.path(), "small.txt", b"small", 1);
    write_file(root.path(), "dir/small2.txt", b"small too", 1);
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("serve.stderr");
    let mut server = serve_logging(root, &stderr_path);
    let addr = server.addr.clone();
    let dest = tempfile::tempdir().unwrap();
    let to = dest.path().to_str().unwrap();

    // Warm up the normal paths so the memory baseline includes them.
    assert!(server.cli(&["download", "tcp", "file.bin", "--to", to]).status.success());
    assert_eq!(json(&server.cli(&["index", "longlist", "--json"])).as_array().unwrap().len(), 4);
    let pid = server.child.id();
    let rss_before = rss_kib(pid);
    let started = Instant::now();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tickets: Vec<(Ticket, [u8; 16])> = runtime.block_on(async {
        let conn = tandem::client::Connection::connect(&addr).await.unwrap();
        let mut tickets = Vec::new();
        for _ in 0..4 {
            let ticket = conn.download_ticket("file.bin").await.unwrap().0;
            tickets.push((ticket, conn.ticket_proof(ticket).0));
        }
        tickets
    });
    let (tcp, udp) = std::thread::scope(|scope| {
        let tcp: Vec<_> = (0..2u64)
            .map(|half| {
                let addr = &addr;
                scope.spawn(move || {
                    let garbage = garbage_connections(addr, 100 + half, GARBAGE_CONNECTIONS / 2);
                    let (frames, answers) = mutated_sessions(addr, 200 + half, SESSIONS / 2);
                    (garbage + frames, answers)
                })
            })
            .collect();
        let udp = scope.spawn(|| datagram_storm(&addr, 300, &tickets));
        let tcp = tcp.into_iter().map(|t| t.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (tcp, udp.join().unwrap())
    });
    let garbage_seconds = started.elapsed().as_secs_f64();

    assert!(server.child.try_wait().unwrap().is_none(), "the server exited");
    // A normal client still gets listings and the right bytes, over both transfer protocols.
    assert_eq!(json(&server.cli(&["index", "longlist", "--json"])).as_array().unwrap().len(), 4);
    for protocol in ["tcp", "udp"] {
        std::fs::remove_file(dest.path().join("file.bin")).unwrap();
        let got = json(&server.cli(&["download", protocol, "file.bin", "--to", to, "--json"]));
        assert_eq!(got["md5"].as_str().unwrap(), md5sum(&server.path("file.bin")));
        assert_eq!(md5sum(&dest.path().join("file.bin")), md5sum(&server.path("file.bin")));
    }
    let rss_after = rss_kib(pid);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!stderr.contains("panicked"), "the server panicked:\n{stderr}");
    println!(
        "garbage: {} TCP frames ({} connections, {} answers to mutated requests), {} UDP datagrams ({} markers) \
         in {garbage_seconds:.1} s; server VmRSS {rss_before} KiB before, {rss_after} KiB after",
        tcp.0,
        GARBAGE_CONNECTIONS + SESSIONS,
        tcp.1,
        udp.0,
        udp.1
    );
    assert!(tcp.0 >= 100_000 && udp.0 >= 100_000);
    assert!(rss_after < rss_before + MAX_RSS_GROWTH_KIB, "VmRSS grew from {rss_before} KiB to {rss_after} KiB");
    server.child.kill().unwrap();
}
