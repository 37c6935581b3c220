//! One client connection: the hello exchange, then either a control session that runs requests concurrently, or
//! a bulk transfer.
//!
//! In a control session, one task reads frames and spawns a task per request; each request task encodes its own
//! responses and hands the bytes to a writer task, so a long listing never blocks a quick hash. A frame that does
//! not decode ends this connection only, with a `Fatal` frame saying why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::history::Record;
use super::{Shared, batch, bulk, change, download, hash, list, sync_requests, upload};
use crate::error::{Error, Result};
use crate::protocol::{
    Channel, ClientFrame, ClientIdentity, ErrorBody, ErrorCode, PROTOCOL_VERSION, Request, Response, ServerFrame,
    ServerHello, UploadItem, codec,
};
use crate::wire::{FrameReader, FrameWriter};

/// Requests one connection may have running at once; more wait, which slows that client only.
const MAX_REQUESTS_PER_CONNECTION: usize = 32;
/// Largest frame accepted before hello: a hello is small.
const MAX_HELLO_LEN: usize = 64 * 1024;

pub fn software() -> String {
    format!("tandem {}", env!("CARGO_PKG_VERSION"))
}

/// Serves one accepted connection until it closes, fails, idles out or the server shuts down.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
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
    let journal = Some(shared.journal.id().to_string());
    let ours = ServerHello { protocol_version: PROTOCOL_VERSION, software: software(), journal };
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
    reader.set_max_len(crate::protocol::MAX_FRAME_LEN);
    match hello.channel {
        Channel::Control => control(reader, writer, (peer, hello.client), shared, shutdown).await,
        Channel::Bulk { ticket } => {
            let (read, leftover) = reader.into_parts();
            if !leftover.is_empty() {
                let message = "unexpected bytes after a bulk hello".to_string();
                return fatal(&mut writer, ErrorCode::BadRequest, message).await;
            }
            match read.reunite(writer.into_inner()) {
                Ok(stream) => bulk::serve(stream, ticket, peer, shared).await,
                Err(e) => tracing::error!(%peer, "cannot rejoin connection halves: {e}"),
            }
        }
    }
}

async fn fatal(writer: &mut FrameWriter<OwnedWriteHalf>, code: ErrorCode, message: String) {
    let _ = writer.send(&ServerFrame::Fatal(ErrorBody { code, message })).await;
}

async fn control(
    mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    mut writer: FrameWriter<OwnedWriteHalf>,
    (peer, client): (String, Option<ClientIdentity>),
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let client = client.map(Arc::new);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Bytes>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(frames) = frames_rx.recv().await {
            if writer.send_encoded(&frames).await.is_err() {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(MAX_REQUESTS_PER_CONNECTION));
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
            Err(_) if in_flight.available_permits() == MAX_REQUESTS_PER_CONNECTION => {
                let message = format!("closing connection idle for {} s", idle.as_secs());
                break Some(ErrorBody { code: ErrorCode::Timeout, message });
            }
            Err(_) => continue,
            Ok(Ok(None)) => break None,
            Ok(Err(e)) => break Some(e.to_body()),
            Ok(Ok(Some(ClientFrame::Hello(_)))) => {
                break Some(ErrorBody { code: ErrorCode::BadRequest, message: "hello sent twice".into() });
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
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break None;
                };
                let responder = Responder { id, frames: frames_tx.clone(), bytes: 0 };
                let shared = shared.clone();
                let peer = peer.clone();
                let client = client.clone();
                requests.spawn(async move {
                    run_request(body, responder, (&peer, client.as_deref()), &shared).await;
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
async fn run_request(
    request: Request,
    mut out: Responder,
    (peer, client): (&str, Option<&ClientIdentity>),
    shared: &Arc<Shared>,
) {
    let started = Instant::now();
    let result = match &request {
        Request::List { path, filter } => list::handle(shared, path, filter, &mut out).await,
        Request::Hash { path } => hash::handle_one(shared, path, &mut out).await,
        Request::HashAll { path, max_depth } => hash::handle_all(shared, path, *max_depth, &mut out).await,
        Request::Download { path } => download::handle(shared, path, peer, &mut out).await,
        Request::Upload { path, size, mtime_ns, mode, expect } => {
            let item =
                UploadItem { path: path.clone(), size: *size, mtime_ns: *mtime_ns, mode: *mode, expect: *expect };
            upload::handle(shared, item, (peer, client), &mut out).await
        }
        Request::DownloadBatch { paths } => batch::download(shared, paths, peer, &mut out).await,
        Request::UploadBatch { files } => batch::upload(shared, files, (peer, client), &mut out).await,
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
