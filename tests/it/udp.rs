//! `download udp`: byte-identical files of every edge size, correct through a seeded lossy relay that also
//! duplicates and reorders, an error and no file when the sender vanishes, eight downloads at once, and garbage
//! datagrams that are dropped and counted without disturbing anyone.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem::client::{Connection, UdpOptions, download_udp};
use tandem::server::{Server, ServerConfig};
use tandem::transfer::Progress;

use crate::common::*;

#[test]
fn every_edge_size_downloads_byte_identical() {
    let root = tempfile::tempdir().unwrap();
    let sizes = [0usize, 1, 1399, 1400, 1401, 2799, 2800, 2801, 10_000_000];
    for (i, size) in sizes.iter().enumerate() {
        write_file(
            root.path(),
            &format!("edge/{size} bytes.bin"),
            &pseudo_random(*size, i as u64 + 40),
            1_650_000_000 + i as u64,
        );
    }
    write_file(root.path(), "ünïcode/naïve café.txt", b"accents and spaces", 1_650_000_100);
    let server = ServeProcess::start(root);
    let dest = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = sizes.iter().map(|s| format!("edge/{s} bytes.bin")).collect();
    names.push("ünïcode/naïve café.txt".into());
    for (i, rel) in names.iter().enumerate() {
        let protocol = if i % 2 == 0 { "udp" } else { "UDP" };
        let report = json(&server.cli(&["download", protocol, rel, "--to", dest.path().to_str().unwrap(), "--json"]));
        let local = dest.path().join(rel.rsplit('/').next().unwrap());
        assert_eq!(std::fs::read(&local).unwrap(), std::fs::read(server.path(rel)).unwrap(), "{rel}");
        assert_eq!(md5sum(&local), md5sum(&server.path(rel)));
        assert_eq!(
            std::fs::metadata(&local).unwrap().modified().unwrap(),
            std::fs::metadata(server.path(rel)).unwrap().modified().unwrap()
        );
        assert_eq!(report["protocol"], "udp");
        assert_eq!(report["md5"], md5sum(&local));
        assert_eq!(report["bytes_received"], report["size"]);
        let data_packets = report["size"].as_u64().unwrap().div_ceil(1400);
        assert!(report["datagrams_received"].as_u64().unwrap() > data_packets, "data packets plus Done: {report}");
        assert!(report["datagrams_sent"].as_u64().unwrap() >= 1, "{report}");
        assert!(report["retransmits"].is_u64());
    }
    assert_eq!(names_in(dest.path()).len(), names.len(), "no temporary files left");
}

/// A UDP relay between one client and the server that drops, duplicates and reorders, seeded.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// After this many datagrams from the server, everything is dropped (the sender "vanishes").
    forwarded_from_server: Arc<AtomicU64>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(server: SocketAddr, loss: f64, duplicate: f64, reorder: f64, seed: u64, vanish_after: u64) -> Relay {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let from_server = Arc::new(AtomicU64::new(0));
    let (stop_flag, counter) = (stop.clone(), from_server.clone());
    std::thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut client: Option<SocketAddr> = None;
        let mut held: Option<(Vec<u8>, SocketAddr)> = None;
        let mut buf = vec![0u8; 65_536];
        while !stop_flag.load(Ordering::Relaxed) {
            let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
            let to = if from == server {
                if counter.fetch_add(1, Ordering::Relaxed) >= vanish_after {
                    continue;
                }
                match client {
                    Some(client) => client,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            if rng.random_bool(loss) {
                continue;
            }
            let datagram = buf[..len].to_vec();
            if rng.random_bool(reorder) && held.is_none() {
                held = Some((datagram, to));
                continue;
            }
            let copies = if rng.random_bool(duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let _ = socket.send_to(&datagram, to);
            }
            // A held datagram goes out after the one that overtook it.
            if let Some((late, late_to)) = held.take() {
                let _ = socket.send_to(&late, late_to);
            }
        }
    });
    Relay { addr, stop, forwarded_from_server: from_server }
}

fn udp_options(server: SocketAddr, idle_secs: u64) -> UdpOptions {
    UdpOptions { server: Some(server), idle_timeout: Duration::from_secs(idle_secs), loss: 0.0, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_duplicating_reordering_relay_still_delivers_exact_bytes() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "payload.bin", &pseudo_random(3_000_000, 77), 1_700_000_000);
    let (addr, shutdown) = in_process(root.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    let expected = md5sum(&root.path().join("payload.bin"));
    for (loss, seed) in [(0.01, 1), (0.10, 2), (0.30, 3)] {
        let relay = relay(addr.parse().unwrap(), loss, 0.05, 0.05, seed, u64::MAX);
        let dest = tempfile::tempdir().unwrap();
        let report = download_udp(&conn, "payload.bin", dest.path(), &Progress::default(), udp_options(relay.addr, 10))
            .await
            .unwrap_or_else(|e| panic!("loss {loss}: {e}"));
        assert_eq!(md5sum(&dest.path().join("payload.bin")), expected, "loss {loss}");
        assert_eq!(
            std::fs::read(dest.path().join("payload.bin")).unwrap(),
            std::fs::read(root.path().join("payload.bin")).unwrap()
        );
        let stats = report.udp.unwrap();
        if loss >= 0.10 {
            assert!(stats.retransmits > 0, "loss {loss} needs retransmissions: {stats:?}");
        }
        assert_eq!(names_in(dest.path()), ["payload.bin"]);
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_vanishes_halfway_gives_an_error_keeps_what_arrived_and_a_rerun_resumes() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", &pseudo_random(4_000_000, 5), 1);
    let (addr, shutdown) = in_process(root.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    // About half of the 2,858 data packets get through, then nothing more.
    let relay = relay(addr.parse().unwrap(), 0.0, 0.0, 0.0, 9, 1_400);
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join("big.bin"), b"the old version").unwrap();
    let err = download_udp(&conn, "big.bin", dest.path(), &Progress::default(), udp_options(relay.addr, 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no answer for 1 s during the UDP transfer"), "{err}");
    assert!(relay.forwarded_from_server.load(Ordering::Relaxed) >= 1_400);
    assert_eq!(names_in(dest.path()), [".tandem", "big.bin"], "only the partial download is kept");
    assert_eq!(std::fs::read(dest.path().join("big.bin")).unwrap(), b"the old version");
    // The in-order bytes are kept: at most the 1,400 datagrams that got through (fewer if the relay's socket
    // overflowed and left a gap, as it may on a busy machine).
    let partial = dest.path().join(".tandem/partial/big.bin");
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!((1..=1_960_000).contains(&kept) && kept.is_multiple_of(1_400), "kept {kept} bytes");
    let original = std::fs::read(root.path().join("big.bin")).unwrap();
    assert_eq!(std::fs::read(&partial).unwrap(), original[..kept as usize]);

    // The rerun, straight to the server, fetches only the rest.
    let options = UdpOptions { loss: 0.0, ..Default::default() };
    let report = download_udp(&conn, "big.bin", dest.path(), &Progress::default(), options).await.unwrap();
    assert_eq!((report.resumed_from, report.bytes_received), (kept, 4_000_000 - kept));
    assert_eq!(std::fs::read(dest.path().join("big.bin")).unwrap(), original);
    assert_eq!(names_in(dest.path()), ["big.bin"], "nothing left behind");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_downloads_with_garbage_flying_at_the_port() {
    let root = tempfile::tempdir().unwrap();
    for i in 0..8 {
        write_file(root.path(), &format!("file {i}.bin"), &pseudo_random(1_000_000 + i * 1_111, i as u64 + 100), 1);
    }
    let mut config = ServerConfig::new(root.path());
    config.listen = "127.0.0.1:0".into();
    let server = Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let refused = server.refused();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));

    // Garbage and forged datagrams: random bytes, a wrong magic, and acks for sessions that do not exist.
    let garbage = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut forged = Vec::new();
        let ack = tandem::transfer::udp::packet::Ack { session: 42, cumulative: 5, ..Default::default() };
        tandem::transfer::udp::packet::encode(&tandem::transfer::udp::packet::Packet::Ack(ack), &mut forged);
        for i in 0..500u64 {
            let _ = socket.send_to(&pseudo_random(1 + (i as usize * 7) % 1500, i), addr);
            let _ = socket.send_to(&forged, addr);
        }
    });
    let mut downloads = tokio::task::JoinSet::new();
    for i in 0..8 {
        let addr = addr.to_string();
        let root = root.path().to_path_buf();
        downloads.spawn(async move {
            let conn = Connection::connect(&addr).await.unwrap();
            let dest = tempfile::tempdir().unwrap();
            let name = format!("file {i}.bin");
            let report = download_udp(
                &conn,
                &name,
                dest.path(),
                &Progress::default(),
                UdpOptions { loss: 0.0, ..Default::default() },
            )
            .await
            .unwrap();
            assert_eq!(md5sum(&report.dest), md5sum(&root.join(&name)));
            report.size
        });
    }
    let mut sizes = Vec::new();
    while let Some(size) = downloads.join_next().await {
        sizes.push(size.unwrap());
    }
    garbage.join().unwrap();
    sizes.sort();
    assert_eq!(sizes, (0..8).map(|i| 1_000_000 + i * 1_111).collect::<Vec<u64>>());
    assert!(refused.malformed.load(Ordering::Relaxed) > 0, "garbage is counted");
    assert!(refused.foreign.load(Ordering::Relaxed) > 0, "acks of no session are counted");

    // An unknown ticket is refused in words.
    let conn = Connection::connect(&addr.to_string()).await.unwrap();
    let (ticket, _) = conn.download_ticket("file 0.bin").await.unwrap();
    let forged = tandem::protocol::Ticket(ticket.0 ^ 1);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut start = Vec::new();
    tandem::transfer::udp::packet::encode(
        &tandem::transfer::udp::packet::Packet::Start {
            session: forged.0,
            window: 64,
            payload: 1400,
            proof: conn.ticket_proof(forged).0,
        },
        &mut start,
    );
    socket.send_to(&start, addr).unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    match tandem::transfer::udp::packet::decode(&buf[..len]).unwrap() {
        tandem::transfer::udp::packet::Packet::Fail { message, .. } => {
            assert_eq!(message, "download ticket unknown, used, expired or issued to another session")
        }
        other => panic!("expected Fail, got {other:?}"),
    }
    shutdown.cancel();
}
