//! One client connection: the hello exchange, then either a control session that runs requests concurrently, or
//! a bulk transfer.
//!
//! In a control session, one task reads frames and spawns a task per request; each request task encodes its own
//! responses and hands the bytes to a writer task, so a long listing never blocks a quick hash. The bytes waiting
//! for the writer are bounded per session: a request with more to say waits for the client to read, and a client
//! that reads nothing for the stall timeout loses its session. A frame that does not decode ends this connection
//! only, with a `Fatal` frame saying why. Before the client is in, the server says only its protocol version, its
//! challenge and whether it wants the token; repeated failures lock an address out ([`super::auth_limit`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::handshakes::HandshakeSlot;
use super::history::Record;
use super::limits::RequestPace;
use super::tickets::Owner;
use super::{HELLO_GRACE, Shared, batch, bulk, change, download, hash, list, sync_requests, upload};
use crate::auth::{Nonce, SessionKey, Token, verify_client_proof};
use crate::error::{Error, Result};
use crate::protocol::{
    Channel, ClientFrame, ClientIdentity, ErrorBody, ErrorCode, PROTOCOL_VERSION, Request, Response, ServerFrame,
    ServerHello, ServerWelcome, UploadItem, codec,
};
use crate::wire::{FrameReader, FrameWriter};

/// How long a client that failed to authenticate waits for its answer: guessing tokens stays slow.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Largest frame accepted before hello: a hello is small.
const MAX_HELLO_LEN: usize = 64 * 1024;
/// What a queued frame costs of its session's budget at least, so many tiny frames are counted too.
const MIN_FRAME_CHARGE: usize = 256;
/// Frames are written in pieces this large, each within the stall timeout.
const WRITE_PIECE: usize = 64 * 1024;

pub fn software() -> String {
    format!("tandem {}", env!("CARGO_PKG_VERSION"))
}

/// Numbers each control session, for its own queue of tickets.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serves one accepted connection until it closes, fails, idles out or the server shuts down. `handshaking` is
/// the connection's place among those still saying hello: given back once it is in.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    handshaking: HandshakeSlot,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let accepted = tokio::time::Instant::now();
    let _ = stream.set_nodelay(true);
    let peer_ip = peer.ip();
    let peer = peer.to_string();
    // A client says hello at once; a socket silent past the grace takes one of its address's few idle places.
    let mut _silent = None;
    if tokio::time::timeout(HELLO_GRACE, stream.peek(&mut [0u8; 1])).await.is_err() {
        let (per_address, total) = (shared.config.max_handshakes_per_address, shared.config.max_handshakes);
        match shared.silent.take(peer_ip, per_address, total) {
            Ok(slot) => _silent = Some(slot),
            Err(_) => {
                let message = format!(
                    "too many connections from {peer_ip} still saying hello: at most {per_address} silent for {} s",
                    HELLO_GRACE.as_secs()
                );
                let mut writer = FrameWriter::new(stream, &peer);
                return fatal_on(&mut writer, ErrorCode::Busy, message).await;
            }
        }
    }
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, &peer);
    let mut writer = FrameWriter::new(write, &peer);
    reader.set_max_len(MAX_HELLO_LEN);

    let handshake = shared.config.handshake_timeout;
    let hello = match tokio::time::timeout_at(accepted + handshake, reader.next::<ClientFrame>("hello")).await {
        Ok(Ok(Some(ClientFrame::Hello(hello)))) => hello,
        Ok(Ok(None)) => return,
        Ok(Ok(Some(_))) => {
            return fatal(&mut writer, ErrorCode::BadRequest, "the first frame must be hello".into()).await;
        }
        Ok(Err(e)) => return fatal(&mut writer, ErrorCode::BadRequest, e.to_string()).await,
        Err(_) => {
            let message = format!("no hello within {} s", handshake.as_secs());
            return fatal(&mut writer, ErrorCode::Timeout, message).await;
        }
    };
    // Refused before the server's hello, so the client's connect itself fails with the reason.
    let config = &shared.config;
    let _slot = match hello.channel {
        Channel::Control => {
            if config.token.is_some()
                && let Some(message) = locked_out(&shared, &peer, peer_ip)
            {
                return fatal(&mut writer, ErrorCode::AuthFailed, message).await;
            }
            let max = config.max_sessions_per_address;
            match shared.sessions.take(peer_ip, max, usize::MAX) {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let message = format!("too many sessions from {peer_ip}: at most {max} at once");
                    return fatal(&mut writer, ErrorCode::Busy, message).await;
                }
            }
        }
        // Counted like sessions, waiting ones too: tickets alone would let one address fill every connection.
        Channel::Bulk { .. } => {
            let max = config.max_bulk_per_address;
            match shared.bulk.take(peer_ip, max, usize::MAX) {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let message = format!("too many bulk connections from {peer_ip}: at most {max} at once");
                    return fatal(&mut writer, ErrorCode::Busy, message).await;
                }
            }
        }
    };
    let nonce = Nonce::random();
    let auth = config.token.is_some();
    // Nothing about the share or the software before the client is in: that comes with `Welcome`.
    let ours = ServerHello { protocol_version: PROTOCOL_VERSION, software: String::new(), nonce: Some(nonce), auth };
    if writer.send(&ServerFrame::Hello(ours)).await.is_err() {
        return;
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version mismatch: this server speaks version {PROTOCOL_VERSION}, the client ({}) speaks version {}",
            hello.software, hello.protocol_version
        );
        tracing::info!(%peer, "{message}");
        return fatal(&mut writer, ErrorCode::VersionMismatch, message).await;
    }
    let Some(client_nonce) = hello.nonce else {
        let message = format!("the client ({}) sent no nonce in its hello", hello.software);
        return fatal(&mut writer, ErrorCode::BadRequest, message).await;
    };
    let key = SessionKey::derive(config.token.as_ref(), &client_nonce, &nonce);
    match hello.channel {
        Channel::Control => {
            if let Some(token) = &config.token
                && !authenticate(&mut reader, &mut writer, token, (&client_nonce, &nonce), (&peer, peer_ip, &shared))
                    .await
            {
                return;
            }
            // In before the client hears it: its next connection must not find this one still saying hello.
            drop((handshaking, _silent));
            let welcome = ServerWelcome { software: software(), journal: Some(shared.journal.id().to_string()) };
            if writer.send(&ServerFrame::Welcome(welcome)).await.is_err() {
                return;
            }
            reader.set_max_len(crate::protocol::MAX_FRAME_LEN);
            let transfers = Arc::new(Semaphore::new(config.max_transfers_per_client.max(1)));
            let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
            let owner = Owner { session, key, transfers };
            let caller = Caller { peer, ip: peer_ip, client: hello.client.map(Arc::new), owner };
            control(reader, writer, caller, shared.clone(), shutdown).await;
            shared.tickets.forget_session(session);
        }
        // A bulk connection proves itself with its ticket, which only the session it was issued to can present.
        Channel::Bulk { ticket, proof } => {
            drop((handshaking, _silent));
            let (read, leftover) = reader.into_parts();
            if !leftover.is_empty() {
                let message = "unexpected bytes after a bulk hello".to_string();
                return fatal(&mut writer, ErrorCode::BadRequest, message).await;
            }
            match read.reunite(writer.into_inner()) {
                Ok(stream) => bulk::serve(stream, (ticket, proof), (peer, peer_ip), shared).await,
                Err(e) => tracing::error!(%peer, "cannot rejoin connection halves: {e}"),
            }
        }
    }
}

/// Whether `ip` is locked out after failed authentications: then the refusal is logged, and its message returned.
fn locked_out(shared: &Shared, peer: &str, ip: IpAddr) -> Option<String> {
    let config = &shared.config;
    let left = shared.auth_failures.locked(ip, config.max_auth_failures, config.auth_lockout, Instant::now())?;
    log_refusal(shared, peer, "locked out after failed authentications");
    Some(format!("too many failed authentications from {ip}: refused for another {} s", left.as_secs().max(1)))
}

/// Logs a connection refused before hello.
fn log_refusal(shared: &Shared, peer: &str, reason: &str) {
    let arguments = format!("reason={reason:?}");
    let outcome = Err("authentication refused".to_string());
    shared.history.record_failure(Record {
        peer,
        command: "auth",
        arguments: &arguments,
        outcome,
        bytes: 0,
        elapsed: Duration::ZERO,
    });
}

/// Reads the client's answer to the challenge. A wrong or missing one is counted against the address, logged
/// and, after a delay, refused with `authentication failed`; the connection then closes.
async fn authenticate(
    reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut FrameWriter<OwnedWriteHalf>,
    token: &Token,
    (client_nonce, server_nonce): (&Nonce, &Nonce),
    (peer, ip, shared): (&str, IpAddr, &Shared),
) -> bool {
    let started = Instant::now();
    let config = &shared.config;
    let answer = tokio::time::timeout(config.handshake_timeout, reader.next::<ClientFrame>("authentication"));
    let failure = match answer.await {
        Ok(Ok(Some(ClientFrame::Auth { proof }))) => {
            // One proof per address is checked at a time, and each failure counts before the next is checked:
            // guesses sent on many connections at once are locked out as surely as guesses sent one by one.
            let _turn = shared.auth_turns.acquire(ip, 1, usize::MAX).await;
            if let Some(message) = locked_out(shared, peer, ip) {
                fatal(writer, ErrorCode::AuthFailed, message).await;
                return false;
            }
            if verify_client_proof(token, client_nonce, server_nonce, &proof) {
                shared.auth_failures.succeeded(ip);
                return true;
            }
            shared.auth_failures.failed(ip, config.max_auth_failures, config.auth_lockout, Instant::now());
            "wrong token"
        }
        Ok(Ok(Some(_))) => "no proof of the token",
        Ok(Ok(None)) => "closed before answering",
        Ok(Err(_)) => "an unreadable answer",
        Err(_) => "no answer in time",
    };
    tracing::warn!(%peer, "authentication failed: {failure}");
    let arguments = format!("reason={failure:?}");
    let outcome = Err("authentication failed".to_string());
    let elapsed = started.elapsed();
    shared.history.record_failure(Record { peer, command: "auth", arguments: &arguments, outcome, bytes: 0, elapsed });
    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
    fatal(writer, ErrorCode::AuthFailed, "authentication failed".into()).await;
    false
}

/// Who sent a request: the connection's address, the client's identity if it gave one, and the session that
/// owns the transfer tickets it is given (its key, and its gate on transfers at once).
pub struct Caller {
    pub peer: String,
    pub ip: IpAddr,
    pub client: Option<Arc<ClientIdentity>>,
    pub owner: Owner,
}

impl Caller {
    pub fn client(&self) -> Option<&ClientIdentity> {
        self.client.as_deref()
    }
}

async fn fatal(writer: &mut FrameWriter<OwnedWriteHalf>, code: ErrorCode, message: String) {
    fatal_on(writer, code, message).await
}

async fn fatal_on<W: tokio::io::AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, code: ErrorCode, message: String) {
    let _ = writer.send(&ServerFrame::Fatal(ErrorBody { code, message })).await;
}

async fn control(
    mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: FrameWriter<OwnedWriteHalf>,
    caller: Caller,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let caller = Arc::new(caller);
    let peer = caller.peer.clone();
    let (frames_tx, frames_rx) = mpsc::channel::<Outgoing>(64);
    let bytes = shared.config.max_queued_bytes.clamp(MIN_FRAME_CHARGE, u32::MAX as usize);
    let budget = Budget { free: Arc::new(Semaphore::new(bytes)), bytes };
    // Cancelled by the writer when the client has read nothing for `stall_timeout`.
    let stalled = CancellationToken::new();
    let writing = (frames_rx, budget.free.clone());
    let writer_task = tokio::spawn(write_frames(writer, writing, shared.config.stall_timeout, stalled.clone()));
    let max_in_flight = shared.config.max_requests_in_flight.max(1);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let mut pace = RequestPace::new(shared.config.requests_per_second, Instant::now());
    let mut requests = JoinSet::new();
    let mut subscription = None;
    let idle = shared.config.idle_timeout;
    let closing: Option<ErrorBody> = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => {
                break Some(ErrorBody { code: ErrorCode::Busy, message: "server shutting down".into() });
            }
            _ = stalled.cancelled() => {
                let seconds = shared.config.stall_timeout.as_secs();
                tracing::info!(%peer, "dropping a session that read nothing of its answers for {seconds} s");
                break None;
            }
            next = tokio::time::timeout(idle, reader.next::<ClientFrame>("request")) => next,
        };
        while requests.try_join_next().is_some() {}
        match next {
            Err(_) if in_flight.available_permits() == max_in_flight => {
                let message = format!("closing connection idle for {} s", idle.as_secs());
                break Some(ErrorBody { code: ErrorCode::Timeout, message });
            }
            Err(_) => continue,
            Ok(Ok(None)) => break None,
            Ok(Err(e)) => break Some(e.to_body()),
            Ok(Ok(Some(ClientFrame::Hello(_) | ClientFrame::Auth { .. }))) => {
                let message = "hello or authentication sent twice".into();
                break Some(ErrorBody { code: ErrorCode::BadRequest, message });
            }
            Ok(Ok(Some(ClientFrame::Request { id, body: Request::Subscribe }))) => {
                if subscription.is_none() {
                    let push = sync_requests::push_changes(shared.clone(), frames_tx.downgrade());
                    subscription = Some(tokio::spawn(push));
                }
                let mut responder = Responder { id, frames: frames_tx.clone(), budget: budget.clone(), bytes: 0 };
                let _ = responder.send(Response::Done { entry: None }).await;
            }
            Ok(Ok(Some(ClientFrame::Request { id, body }))) => {
                // A client that asks too fast waits here: this session reads nothing more until it may.
                pace.acquire().await;
                // Requests stuck on a client that stopped reading end once the writer gives up on it.
                let permit = tokio::select! {
                    permit = in_flight.clone().acquire_owned() => permit,
                    _ = stalled.cancelled() => break None,
                };
                let Ok(permit) = permit else { break None };
                let responder = Responder { id, frames: frames_tx.clone(), budget: budget.clone(), bytes: 0 };
                let (shared, caller) = (shared.clone(), caller.clone());
                requests.spawn(async move {
                    run_request(body, responder, &caller, &shared).await;
                    drop(permit);
                });
            }
        }
    };
    requests.abort_all();
    if let Some(subscription) = subscription {
        subscription.abort();
    }
    if let Some(body) = closing {
        tracing::debug!(%peer, "closing control connection: {}", body.message);
        let mut buf = BytesMut::new();
        if codec::encode(&ServerFrame::Fatal(body), &mut buf).is_ok() {
            let _ = frames_tx.send(Outgoing::unbudgeted(buf.freeze())).await;
        }
    }
    drop(frames_tx);
    // The writer ends once its queue is sent, or once the client has read nothing for the stall timeout.
    let _ = writer_task.await;
    super::memory::give_back_freed();
}

/// Writes queued frames in order, in pieces, so a client that stops reading is noticed within `stall` even in
/// the middle of a large frame; then cancels `stalled` and ends.
async fn write_frames(
    mut writer: FrameWriter<OwnedWriteHalf>,
    (mut frames, budget): (mpsc::Receiver<Outgoing>, Arc<Semaphore>),
    stall: Duration,
    stalled: CancellationToken,
) {
    // However the writer ends, requests waiting for room in the queue stop waiting.
    let _close_budget = CloseOnDrop(budget);
    while let Some(frame) = frames.recv().await {
        for piece in frame.bytes.chunks(WRITE_PIECE) {
            match tokio::time::timeout(stall, writer.send_encoded(piece)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return stalled.cancel(),
                Err(_) => return stalled.cancel(),
            }
        }
        // Only now that the client's socket took the frame does its share of the budget come back.
        drop(frame);
    }
}

/// Runs one request to completion, answers errors, and logs it.
async fn run_request(request: Request, mut out: Responder, caller: &Caller, shared: &Arc<Shared>) {
    let started = Instant::now();
    let (peer, client) = (caller.peer.as_str(), caller.client());
    // A listing holds a thread while its client reads it, and a whole-tree hash, a journal read or a batch holds
    // answers of many entries: their number is capped per address and in total, so other clients always find a
    // thread and the server's memory stays bounded.
    let _listing = match &request {
        Request::List { .. }
        | Request::HashAll { .. }
        | Request::Changes { .. }
        | Request::DownloadBatch { .. }
        | Request::UploadBatch { .. } => {
            let config = &shared.config;
            Some(
                shared
                    .listings
                    .acquire(caller.ip, config.max_listings_per_address.max(1), config.max_listings.max(1))
                    .await,
            )
        }
        _ => None,
    };
    let result = match &request {
        Request::List { path, filter } => list::handle(shared, path, filter, &mut out).await,
        Request::Hash { path } => hash::handle_one(shared, path, &mut out).await,
        Request::HashAll { path, max_depth } => hash::handle_all(shared, path, *max_depth, &mut out).await,
        Request::Download { path, resume } => download::handle(shared, path, *resume, caller, &mut out).await,
        Request::Upload { path, size, mtime_ns, mode, expect } => {
            let item =
                UploadItem { path: path.clone(), size: *size, mtime_ns: *mtime_ns, mode: *mode, expect: *expect };
            upload::handle(shared, (item, false), caller, &mut out).await
        }
        Request::DownloadDelta { path, delta_only, append_to } => {
            download::handle_delta(shared, (path, *delta_only, *append_to), caller, &mut out).await
        }
        Request::UploadDelta { file, append_to } => {
            upload::handle_delta(shared, (file.clone(), *append_to), caller, &mut out).await
        }
        Request::DownloadBatch { paths } => batch::download(shared, paths, caller, &mut out).await,
        Request::UploadBatch { files } => batch::upload(shared, files, caller, &mut out).await,
        Request::Mkdir { path } => change::mkdir(shared, path, client, &mut out).await,
        Request::Delete { path, expect } => change::delete(shared, path, *expect, client, &mut out).await,
        Request::Symlink { path, target, expect } => {
            change::symlink(shared, (path, *expect), target, client, &mut out).await
        }
        Request::Rename { from, to, expect } => change::rename(shared, (from, *expect), to, client, &mut out).await,
        Request::Changes { since } => sync_requests::changes(shared, *since, &mut out).await,
        // Answered by the connection itself; see `control`.
        Request::Subscribe => Ok(()),
        Request::Lock { path } => sync_requests::lock(shared, path, client, &mut out).await,
        Request::Unlock { path, force } => sync_requests::unlock(shared, path, *force, client, &mut out).await,
    };
    if let Err(e) = &result {
        let _ = out.send(Response::Error(e.to_body())).await;
    }
    shared.history.record(Record {
        peer,
        command: request.command(),
        arguments: &request.arguments(),
        outcome: result.map_err(|e| e.to_string()),
        bytes: out.bytes,
        elapsed: started.elapsed(),
    });
}

/// Closes a semaphore when dropped, so whoever waits on it gets an error instead of waiting forever.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One frame waiting for the session's writer, holding its share of the session's byte budget until written.
pub struct Outgoing {
    bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    /// A small frame outside the budget (a push, the closing `Fatal`): the channel's length bounds these.
    pub fn unbudgeted(bytes: Bytes) -> Outgoing {
        Outgoing { bytes, _budget: None }
    }
}

/// Sends the responses of one request, encoded on the request's own task.
pub struct Responder {
    id: u64,
    frames: mpsc::Sender<Outgoing>,
    budget: Budget,
    /// Bytes sent so far, for the history log.
    bytes: u64,
}

impl Responder {
    pub async fn send(&mut self, body: Response) -> Result<()> {
        let mut buf = BytesMut::new();
        codec::encode(&ServerFrame::Response { id: self.id, body }, &mut buf)?;
        self.bytes += buf.len() as u64;
        let closed = || Error::Closed { addr: "client".into(), during: "while answering" };
        // A frame larger than the whole budget takes all of it, and goes out alone.
        let charge = buf.len().max(MIN_FRAME_CHARGE).min(self.budget.bytes);
        let permit = self.budget.free.clone().acquire_many_owned(charge as u32).await.map_err(|_| closed())?;
        self.frames.send(Outgoing { bytes: buf.freeze(), _budget: Some(permit) }).await.map_err(|_| closed())
    }
}

/// The bytes of answers one session may have waiting to be written: a request whose answers would exceed it
/// waits for the client to read, and produces nothing more meanwhile.
#[derive(Clone)]
struct Budget {
    free: Arc<Semaphore>,
    bytes: usize,
}
