//! One client connection: the hello exchange, then either a control session that runs requests concurrently, or
//! a bulk transfer.
//!
//! In a control session, one task reads frames and spawns a task per request; each request task encodes its own
//! responses and hands the bytes to a writer task, so a long listing never blocks a quick hash. A frame that does
//! not decode ends this connection only, with a `Fatal` frame saying why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::history::Record;
use super::limits::RequestPace;
use super::tickets::Owner;
use super::{Shared, batch, bulk, change, download, hash, list, sync_requests, upload};
use crate::auth::{Nonce, SessionKey, Token, verify_client_proof};
use crate::error::{Error, Result};
use crate::protocol::{
    Channel, ClientFrame, ClientIdentity, ErrorBody, ErrorCode, PROTOCOL_VERSION, Request, Response, ServerFrame,
    ServerHello, UploadItem, codec,
};
use crate::wire::{FrameReader, FrameWriter};

/// How long a client that failed to authenticate waits for its answer: guessing tokens stays slow.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// Largest frame accepted before hello: a hello is small.
const MAX_HELLO_LEN: usize = 64 * 1024;

pub fn software() -> String {
    format!("tandem {}", env!("CARGO_PKG_VERSION"))
}

/// Serves one accepted connection until it closes, fails, idles out or the server shuts down.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let peer_ip = peer.ip();
    let peer = peer.to_string();
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read, &peer);
    let mut writer = FrameWriter::new(write, &peer);
    reader.set_max_len(MAX_HELLO_LEN);

    let handshake = shared.config.handshake_timeout;
    let hello = match tokio::time::timeout(handshake, reader.next::<ClientFrame>("hello")).await {
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
    let max = shared.config.max_sessions_per_address;
    let _slot = match hello.channel {
        Channel::Control => match shared.sessions.take(peer_ip, max) {
            Some(slot) => Some(slot),
            None => {
                let message = format!("too many sessions from {peer_ip}: at most {max} at once");
                return fatal(&mut writer, ErrorCode::Busy, message).await;
            }
        },
        Channel::Bulk { .. } => None,
    };
    let journal = Some(shared.journal.id().to_string());
    let nonce = Nonce::random();
    let auth = shared.config.token.is_some();
    let ours =
        ServerHello { protocol_version: PROTOCOL_VERSION, software: software(), journal, nonce: Some(nonce), auth };
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
    let key = SessionKey::derive(shared.config.token.as_ref(), &client_nonce, &nonce);
    match hello.channel {
        Channel::Control => {
            if let Some(token) = &shared.config.token
                && !authenticate(&mut reader, &mut writer, token, (&client_nonce, &nonce), (&peer, &shared)).await
            {
                return;
            }
            reader.set_max_len(crate::protocol::MAX_FRAME_LEN);
            let transfers = Arc::new(Semaphore::new(shared.config.max_transfers_per_client.max(1)));
            let caller = Caller { peer, client: hello.client.map(Arc::new), owner: Owner { key, transfers } };
            control(reader, writer, caller, shared, shutdown).await
        }
        // A bulk connection proves itself with its ticket, which only the session it was issued to can present.
        Channel::Bulk { ticket, proof } => {
            let (read, leftover) = reader.into_parts();
            if !leftover.is_empty() {
                let message = "unexpected bytes after a bulk hello".to_string();
                return fatal(&mut writer, ErrorCode::BadRequest, message).await;
            }
            match read.reunite(writer.into_inner()) {
                Ok(stream) => bulk::serve(stream, (ticket, proof), peer, shared).await,
                Err(e) => tracing::error!(%peer, "cannot rejoin connection halves: {e}"),
            }
        }
    }
}

/// Reads the client's answer to the challenge. A wrong or missing one is logged and, after a delay, refused
/// with `authentication failed`; the connection then closes.
async fn authenticate(
    reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut FrameWriter<OwnedWriteHalf>,
    token: &Token,
    (client_nonce, server_nonce): (&Nonce, &Nonce),
    (peer, shared): (&str, &Shared),
) -> bool {
    let started = Instant::now();
    let answer = tokio::time::timeout(shared.config.handshake_timeout, reader.next::<ClientFrame>("authentication"));
    let failure = match answer.await {
        Ok(Ok(Some(ClientFrame::Auth { proof }))) => {
            if verify_client_proof(token, client_nonce, server_nonce, &proof) {
                return writer.send(&ServerFrame::Welcome).await.is_ok();
            }
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
    shared.history.record(Record { peer, command: "auth", arguments: &arguments, outcome, bytes: 0, elapsed });
    tokio::time::sleep(AUTH_FAILURE_DELAY).await;
    fatal(writer, ErrorCode::AuthFailed, "authentication failed".into()).await;
    false
}

/// Who sent a request: the connection's address, the client's identity if it gave one, and the session that
/// owns the transfer tickets it is given (its key, and its gate on transfers at once).
pub struct Caller {
    pub peer: String,
    pub client: Option<Arc<ClientIdentity>>,
    pub owner: Owner,
}

impl Caller {
    pub fn client(&self) -> Option<&ClientIdentity> {
        self.client.as_deref()
    }
}

async fn fatal(writer: &mut FrameWriter<OwnedWriteHalf>, code: ErrorCode, message: String) {
    let _ = writer.send(&ServerFrame::Fatal(ErrorBody { code, message })).await;
}

async fn control(
    mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    mut writer: FrameWriter<OwnedWriteHalf>,
    caller: Caller,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let caller = Arc::new(caller);
    let peer = caller.peer.clone();
    let (frames_tx, mut frames_rx) = mpsc::channel::<Bytes>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(frames) = frames_rx.recv().await {
            if writer.send_encoded(&frames).await.is_err() {
                break;
            }
        }
    });
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
                let mut responder = Responder { id, frames: frames_tx.clone(), bytes: 0 };
                let _ = responder.send(Response::Done { entry: None }).await;
            }
            Ok(Ok(Some(ClientFrame::Request { id, body }))) => {
                // A client that asks too fast waits here: this session reads nothing more until it may.
                pace.acquire().await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break None;
                };
                let responder = Responder { id, frames: frames_tx.clone(), bytes: 0 };
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
            let _ = frames_tx.send(buf.freeze()).await;
        }
    }
    drop(frames_tx);
    let _ = writer_task.await;
}

/// Runs one request to completion, answers errors, and logs it.
async fn run_request(request: Request, mut out: Responder, caller: &Caller, shared: &Arc<Shared>) {
    let started = Instant::now();
    let (peer, client) = (caller.peer.as_str(), caller.client());
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
        Request::DownloadDelta { path, delta_only } => {
            download::handle_delta(shared, (path, *delta_only), caller, &mut out).await
        }
        Request::UploadDelta { file } => upload::handle(shared, (file.clone(), true), caller, &mut out).await,
        Request::DownloadBatch { paths } => batch::download(shared, paths, caller, &mut out).await,
        Request::UploadBatch { files } => batch::upload(shared, files, caller, &mut out).await,
        Request::Mkdir { path } => change::mkdir(shared, path, client, &mut out).await,
        Request::Delete { path, expect } => change::delete(shared, path, *expect, client, &mut out).await,
        Request::Rename { from, to } => change::rename(shared, from, to, client, &mut out).await,
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

/// Sends the responses of one request, encoded on the request's own task.
pub struct Responder {
    id: u64,
    frames: mpsc::Sender<Bytes>,
    /// Bytes sent so far, for the history log.
    bytes: u64,
}

impl Responder {
    pub async fn send(&mut self, body: Response) -> Result<()> {
        let mut buf = BytesMut::new();
        codec::encode(&ServerFrame::Response { id: self.id, body }, &mut buf)?;
        self.bytes += buf.len() as u64;
        self.frames
            .send(buf.freeze())
            .await
            .map_err(|_| Error::Closed { addr: "client".into(), during: "while answering" })
    }
}
