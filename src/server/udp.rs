//! The server's UDP side: one socket on the same port number as TCP, and a dispatcher thread that routes each
//! datagram to its session by session id. A `Start` redeems the download ticket that is its session id and
//! starts a sender thread for it, if the transfer limits admit it (else it is refused as busy, with no thread);
//! acks go to their session's thread, but only from the address that started it.
//! Anything that does not parse or belongs to no session is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::history::Record;
use super::limits::{AddressSlot, Full};
use crate::auth::TicketProof;
use crate::protocol::Ticket;
use crate::transfer::udp::link::Link;
use crate::transfer::udp::packet::{self, Packet};
use crate::transfer::udp::sender::{self, FAIL_BUSY, FAIL_TICKET, SendJob};
use crate::transfer::udp::{DEFAULT_IDLE_TIMEOUT, DEFAULT_PAYLOAD, PAYLOAD_RANGE};

/// Acks waiting for one session's thread; more are dropped (a later ack says the same and more).
const ACK_QUEUE: usize = 1024;
/// How often the dispatcher looks up from its socket to check for shutdown.
const POLL: Duration = Duration::from_millis(200);

/// Datagrams the dispatcher refused.
#[derive(Debug, Default)]
pub struct Refused {
    pub malformed: AtomicU64,
    pub foreign: AtomicU64,
}

struct Session {
    peer: SocketAddr,
    acks: SyncSender<Vec<u8>>,
}

/// Receives on `link` until `shutdown`, routing datagrams to sessions. Runs on its own thread.
pub fn dispatch(link: Arc<Link>, shared: Arc<Shared>, refused: Arc<Refused>, shutdown: CancellationToken) {
    let sessions: Arc<Mutex<HashMap<u64, Session>>> = Arc::default();
    let _ = link.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 65_536];
    while !shutdown.is_cancelled() {
        let (len, from) = match link.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::warn!("UDP receive failed: {e}");
                continue;
            }
        };
        let packet = match packet::decode(&buf[..len]) {
            Ok(packet) => packet,
            Err(e) => {
                refused.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, "dropping datagram: {e}");
                continue;
            }
        };
        let session = packet.session();
        let mut table = sessions.lock().unwrap_or_else(|p| p.into_inner());
        match (table.get(&session), &packet) {
            (Some(known), _) if known.peer != from => {
                refused.foreign.fetch_add(1, Ordering::Relaxed);
            }
            (Some(known), Packet::Ack(_)) => match known.acks.try_send(buf[..len].to_vec()) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    table.remove(&session);
                }
            },
            (Some(_), _) => {} // a repeated Start, or a kind receivers do not send
            (None, Packet::Start { window, payload, proof, .. }) => {
                let (acks, inbox) = sync_channel(ACK_QUEUE);
                let Some((job, gate)) =
                    start(&shared, &link, (session, TicketProof(*proof)), from, (*window, *payload))
                else {
                    refused.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                // No thread before the session's, the address's and the server's limits admit the transfer.
                let Some(running) = admit(&shared, &link, session, from, gate) else { continue };
                table.insert(session, Session { peer: from, acks });
                let (link, shared, sessions) = (link.clone(), shared.clone(), sessions.clone());
                std::thread::spawn(move || {
                    let _running = running;
                    let started = Instant::now();
                    // Opened beneath the share's root, never through a link.
                    let file = shared.share.open_file(&job.rel).map(|(file, _)| file);
                    let outcome = sender::send(&link, &job, file, &inbox);
                    sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.session);
                    if let Ok(sent) = &outcome
                        && let Some(md5) = sent.computed_md5
                    {
                        shared.hashes.insert(&job.rel, job.stamp, md5);
                        let _ = shared.hashes.flush();
                    }
                    let retransmits = outcome.as_ref().map(|s| s.retransmits).unwrap_or(0);
                    shared.history.record(Record {
                        peer: &from.to_string(),
                        command: "transfer-udp",
                        arguments: &match job.offset {
                            0 => format!("path={:?} retransmits={retransmits}", job.rel),
                            offset => format!("path={:?} offset={offset} retransmits={retransmits}", job.rel),
                        },
                        bytes: outcome.as_ref().map(|s| s.bytes).unwrap_or(0),
                        outcome: outcome.map(|_| ()).map_err(|e| e.to_string()),
                        elapsed: started.elapsed(),
                    });
                });
            }
            (None, _) => {
                refused.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Takes a place for a UDP transfer among its session's, its address's and the server's transfers; with none
/// free, answers `Fail` saying the server is busy. Refusing costs nothing, where waiting would hold a thread.
fn admit(
    shared: &Shared,
    link: &Link,
    session: u64,
    from: SocketAddr,
    gate: Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, AddressSlot)> {
    let config = &shared.config;
    let running = gate.try_acquire_owned().ok();
    let slot = shared.transfers.take(from.ip(), config.max_transfers_per_address.max(1), config.max_transfers.max(1));
    let message = match (running, slot) {
        (Some(running), Ok(slot)) => return Some((running, slot)),
        (None, _) => "server busy: this session already runs as many transfers as it may; try again later",
        (_, Err(Full::Address)) => {
            "server busy: this address already runs as many transfers as it may; try again later"
        }
        (_, Err(Full::Total)) => "server busy: the server runs as many transfers as it may; try again later",
    };
    let mut buf = Vec::new();
    packet::encode(&Packet::Fail { session, code: FAIL_BUSY, message }, &mut buf);
    let _ = link.send_to(&buf, from);
    None
}

/// Redeems the ticket a `Start` names, with its proof; an unknown one is answered with `Fail`.
fn start(
    shared: &Shared,
    link: &Link,
    (session, proof): (u64, TicketProof),
    from: SocketAddr,
    (window, payload): (u32, u16),
) -> Option<(SendJob, Arc<Semaphore>)> {
    let Some((pending, gate)) = shared.tickets.redeem_download(Ticket(session), &proof) else {
        let mut buf = Vec::new();
        let message = "download ticket unknown, used, expired or issued to another session";
        packet::encode(&Packet::Fail { session, code: FAIL_TICKET, message }, &mut buf);
        let _ = link.send_to(&buf, from);
        return None;
    };
    let payload = Some(payload as usize).filter(|p| PAYLOAD_RANGE.contains(p)).unwrap_or(DEFAULT_PAYLOAD);
    let job = SendJob {
        session,
        peer: from,
        path: shared.share.shown(&pending.entry.path),
        rel: pending.entry.path,
        stamp: pending.stamp,
        offset: pending.offset,
        known_md5: pending.entry.md5,
        payload,
        peer_window: window,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
    };
    Some((job, gate))
}
