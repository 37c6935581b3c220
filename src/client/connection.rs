//! A control connection to a tandem server. Cloneable and usable from many tasks at once: each request gets an
//! id and a channel, a reader task routes each response to its request, and a writer task sends frames in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::CONNECT_TIMEOUT;
use crate::auth::{Nonce, SessionKey, TicketProof, Token, client_proof};
use crate::error::{Error, Result};
use crate::protocol::{
    BatchItem, Change, Channel, ClientFrame, ClientHello, ClientIdentity, ErrorBody, ErrorCode, Expect, ListFilter,
    PROTOCOL_VERSION, Request, Response, ResumeFrom, ServerFrame, ServerWelcome, Ticket,
};
use crate::share::Entry;
use crate::wire::{FrameReader, FrameWriter};

/// A handle on one control connection.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    /// Shared by every clone: when the last one goes, the connection's tasks stop and the socket closes.
    _last_clone: Arc<tokio_util::sync::DropGuard>,
}

/// What a client presents to a server: who it is (needed for locks) and the server's token, if it has one.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub client: Option<ClientIdentity>,
    pub token: Option<Token>,
}

/// A server as the command line names it: its address, and the token it wants if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub addr: String,
    pub token: Option<Token>,
}

impl Remote {
    /// A server that wants no token.
    pub fn new(addr: impl Into<String>) -> Remote {
        Remote { addr: addr.into(), token: None }
    }

    /// Connects as `client` (anonymously with `None`), proving the token if the server asks for it.
    pub async fn connect(&self, client: Option<ClientIdentity>) -> Result<Connection> {
        Connection::connect_with(&self.addr, &Credentials { client, token: self.token.clone() }).await
    }
}

struct Inner {
    addr: String,
    /// What the server said once this client was in: its software and the share's journal.
    server: ServerWelcome,
    /// The key this session's transfer tickets are bound to.
    key: SessionKey,
    next_id: AtomicU64,
    outgoing: mpsc::Sender<ClientFrame>,
    /// Requests waiting for answers. A std mutex: held for map operations only.
    pending: Mutex<Pending>,
    /// Cancelled when the connection ends, for whoever wants to notice without sending a request.
    closed: CancellationToken,
    /// The latest journal sequence number the server pushed (after [`Connection::subscribe`]).
    journal_seq: watch::Sender<u64>,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, mpsc::UnboundedSender<Result<Response>>>,
    /// Why the connection ended, once it has.
    closed: Option<ErrorBody>,
}

/// The answers to one request, in order.
pub struct Responses {
    receiver: mpsc::UnboundedReceiver<Result<Response>>,
}

impl Responses {
    /// The next answer; `None` once the request is complete.
    pub async fn next(&mut self) -> Result<Option<Response>> {
        self.receiver.recv().await.transpose()
    }
}

impl Connection {
    /// Connects to `addr` anonymously, without a token, and exchanges hellos.
    pub async fn connect(addr: &str) -> Result<Connection> {
        Self::connect_with(addr, &Credentials::default()).await
    }

    /// Connects to `addr` as `client`, which lets it take locks and write to paths it has locked.
    pub async fn connect_as(addr: &str, client: Option<ClientIdentity>) -> Result<Connection> {
        Self::connect_with(addr, &Credentials { client, token: None }).await
    }

    /// Connects to `addr` with `credentials`: exchanges hellos and, if the server asks, proves the token.
    pub async fn connect_with(addr: &str, credentials: &Credentials) -> Result<Connection> {
        let (stream, server, _, key) = handshake(addr, Channel::Control, credentials).await?;
        let (read, write) = stream.into_split();
        let (outgoing, outgoing_rx) = mpsc::channel(64);
        let inner = Arc::new(Inner {
            addr: addr.to_string(),
            server,
            key,
            next_id: AtomicU64::new(1),
            outgoing,
            pending: Mutex::default(),
            closed: CancellationToken::new(),
            journal_seq: watch::Sender::new(0),
        });
        let dropped = CancellationToken::new();
        tokio::spawn(write_frames(FrameWriter::new(write, addr), outgoing_rx, dropped.clone()));
        tokio::spawn(route_responses(FrameReader::new(read, addr), inner.clone(), dropped.clone()));
        Ok(Connection { inner, _last_clone: Arc::new(dropped.drop_guard()) })
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// What the server told this client once it was in: its software and the share's journal.
    pub fn server(&self) -> &ServerWelcome {
        &self.inner.server
    }

    /// Resolves once the connection has ended, for whatever reason.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<ErrorBody> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).closed.clone()
    }

    /// Journal sequence numbers as the server pushes them; starts at 0 until the first push.
    pub fn journal_seq(&self) -> watch::Receiver<u64> {
        self.inner.journal_seq.subscribe()
    }

    /// Sends a request; its answers arrive on the returned stream.
    pub async fn request(&self, body: Request) -> Result<Responses> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reason) = &pending.closed {
                return Err(Error::Remote(reason.clone()));
            }
            pending.waiting.insert(id, sender);
        }
        if self.inner.outgoing.send(ClientFrame::Request { id, body }).await.is_err() {
            self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).waiting.remove(&id);
            return Err(Error::Closed { addr: self.inner.addr.clone(), during: "before the request was sent" });
        }
        Ok(Responses { receiver })
    }

    /// Every entry below `path` that passes `filter`.
    pub async fn list(&self, path: &str, filter: ListFilter) -> Result<Vec<Entry>> {
        let responses = self.request(Request::List { path: path.to_string(), filter }).await?;
        collect_entries(responses).await
    }

    /// The MD5 of one file.
    pub async fn hash(&self, path: &str) -> Result<Entry> {
        let responses = self.request(Request::Hash { path: path.to_string() }).await?;
        let mut entries = collect_entries(responses).await?;
        entries.pop().ok_or_else(|| self.unexpected("an empty answer to a hash request"))
    }

    /// The MD5 of every file below `path`, at most `max_depth` levels down.
    pub async fn hash_all(&self, path: &str, max_depth: Option<u32>) -> Result<Vec<Entry>> {
        let responses = self.request(Request::HashAll { path: path.to_string(), max_depth }).await?;
        collect_entries(responses).await
    }

    /// A ticket for downloading `path`, and what the server says about the file.
    pub async fn download_ticket(&self, path: &str) -> Result<(Ticket, Entry)> {
        self.download_ticket_with_mode(path).await.map(|(ticket, entry, _)| (ticket, entry))
    }

    /// [`Connection::download_ticket`], with the file's permission bits when the server sends them.
    pub async fn download_ticket_with_mode(&self, path: &str) -> Result<(Ticket, Entry, Option<u32>)> {
        let (ticket, entry, mode, _) = self.download_ticket_resuming(path, None).await?;
        Ok((ticket, entry, mode))
    }

    /// [`Connection::download_ticket_with_mode`] for a download that may already hold the file's first bytes;
    /// also returns where the server will start: `resume`'s offset, or 0 if the file is no longer that version.
    pub async fn download_ticket_resuming(
        &self,
        path: &str,
        resume: Option<ResumeFrom>,
    ) -> Result<(Ticket, Entry, Option<u32>, u64)> {
        let mut responses = self.request(Request::Download { path: path.to_string(), resume }).await?;
        match responses.next().await? {
            // The server starts where the client asked, or from the beginning; nowhere else.
            Some(Response::Ticket { offset, entry, .. })
                if offset > entry.size || (offset > 0 && resume.map(|r| r.offset) != Some(offset)) =>
            {
                Err(self.unexpected(&format!("a download ticket for {path:?} starting at byte {offset}")))
            }
            Some(Response::Ticket { ticket, entry, mode, offset }) => Ok((ticket, entry, mode, offset)),
            Some(Response::Error(body)) => Err(Error::Remote(body)),
            _ => Err(self.unexpected("a download answer without a ticket")),
        }
    }

    /// A ticket for sending a file of `size` bytes to `path`, to get this mtime and mode.
    /// With `expect`, the server refuses unless the path still holds that.
    pub async fn upload_ticket(
        &self,
        path: &str,
        (size, mtime_ns, mode): (u64, i64, u32),
        expect: Option<Expect>,
    ) -> Result<(Ticket, Entry)> {
        let request = Request::Upload { path: path.to_string(), size, mtime_ns, mode, expect };
        let mut responses = self.request(request).await?;
        match responses.next().await? {
            Some(Response::Ticket { ticket, entry, .. }) => Ok((ticket, entry)),
            Some(Response::Error(body)) => Err(Error::Remote(body)),
            _ => Err(self.unexpected("an upload answer without a ticket")),
        }
    }

    /// A ticket for one file, from a request answered by [`Response::Ticket`] (such as
    /// [`Request::DownloadDelta`] or [`Request::UploadDelta`]): the ticket, the file, and its permission bits.
    pub async fn ticket_for(&self, request: Request) -> Result<(Ticket, Entry, Option<u32>)> {
        self.ticket_at(request).await.map(|(ticket, entry, mode, _)| (ticket, entry, mode))
    }

    /// [`Connection::ticket_for`], with the ticket's `offset`: where in the file its bulk stream starts.
    pub async fn ticket_at(&self, request: Request) -> Result<(Ticket, Entry, Option<u32>, u64)> {
        let what = request.command();
        let mut responses = self.request(request).await?;
        match responses.next().await? {
            Some(Response::Ticket { ticket, entry, mode, offset }) => Ok((ticket, entry, mode, offset)),
            Some(Response::Error(body)) => Err(Error::Remote(body)),
            _ => Err(self.unexpected(&format!("a {what} answer without a ticket"))),
        }
    }

    /// One ticket for many files ([`Request::DownloadBatch`] or [`Request::UploadBatch`]), with the server's
    /// answer for each file in the order the request named them.
    pub async fn batch_ticket(&self, request: Request) -> Result<(Ticket, Vec<BatchItem>)> {
        let asked = match &request {
            Request::DownloadBatch { paths } => paths.len(),
            Request::UploadBatch { files } => files.len(),
            _ => return Err(Error::NotSupported(format!("not a batch request: {}", request.command()))),
        };
        let mut responses = self.request(request).await?;
        match responses.next().await? {
            Some(Response::Batch { ticket, items }) if items.len() == asked => Ok((ticket, items)),
            Some(Response::Batch { items, .. }) => {
                Err(self.unexpected(&format!("a batch answer for {} files instead of {asked}", items.len())))
            }
            Some(Response::Error(body)) => Err(Error::Remote(body)),
            _ => Err(self.unexpected("a batch answer without a ticket")),
        }
    }

    /// Creates a folder (and its parents) in the share.
    pub async fn mkdir(&self, path: &str) -> Result<Option<Entry>> {
        self.write(Request::Mkdir { path: path.to_string() }).await
    }

    /// Moves a file or folder of the share to its trash.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.delete_expecting(path, None).await
    }

    /// Deletes only if the path still holds what `expect` says.
    pub async fn delete_expecting(&self, path: &str, expect: Option<Expect>) -> Result<()> {
        self.write(Request::Delete { path: path.to_string(), expect }).await.map(|_| ())
    }

    /// Locks `path` for this connection's client.
    pub async fn lock(&self, path: &str) -> Result<Option<Entry>> {
        self.write(Request::Lock { path: path.to_string() }).await
    }

    /// Releases this client's lock on `path`, or anyone's with `force`.
    pub async fn unlock(&self, path: &str, force: bool) -> Result<Option<Entry>> {
        self.write(Request::Unlock { path: path.to_string(), force }).await
    }

    /// Asks the server to push each new journal sequence number (see [`Connection::journal_seq`]).
    pub async fn subscribe(&self) -> Result<()> {
        self.write(Request::Subscribe).await.map(|_| ())
    }

    /// Every journal change after `since`, and the journal's latest sequence number.
    pub async fn changes_since(&self, since: u64) -> Result<(Vec<Change>, u64)> {
        let mut responses = self.request(Request::Changes { since }).await?;
        let mut all = Vec::new();
        // The server's own cursor, even one behind `since`: a journal restored from a backup must show as such.
        let mut latest = 0;
        while let Some(response) = responses.next().await? {
            match response {
                Response::Changes { changes, seq, more } => {
                    all.extend(changes);
                    latest = latest.max(seq);
                    if !more {
                        break;
                    }
                }
                Response::Error(body) => return Err(Error::Remote(body)),
                _ => return Err(self.unexpected("an answer to a changes request that is not changes")),
            }
        }
        Ok((all, latest))
    }

    /// Renames within the share; refused if `to` exists.
    pub async fn rename(&self, from: &str, to: &str) -> Result<Option<Entry>> {
        self.rename_expecting(from, to, None).await
    }

    /// Makes `path` on the server a symbolic link to `target`, only if `path` still holds what `expect` says.
    pub async fn symlink(&self, path: &str, target: &str, expect: Option<Expect>) -> Result<Option<Entry>> {
        self.write(Request::Symlink { path: path.to_string(), target: target.to_string(), expect }).await
    }

    /// Renames only if `from` still holds what `expect` says.
    pub async fn rename_expecting(&self, from: &str, to: &str, expect: Option<Expect>) -> Result<Option<Entry>> {
        self.write(Request::Rename { from: from.to_string(), to: to.to_string(), expect }).await
    }

    async fn write(&self, request: Request) -> Result<Option<Entry>> {
        let mut responses = self.request(request).await?;
        match responses.next().await? {
            Some(Response::Done { entry }) => Ok(entry),
            Some(Response::Error(body)) => Err(Error::Remote(body)),
            _ => Err(self.unexpected("an answer to a write that is not `Done`")),
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        Error::Malformed { what: "server answer", reason: format!("{} sent {what}", self.inner.addr) }
    }

    /// The proof that goes with a ticket this session was given, for a bulk channel or a UDP `Start`.
    pub fn ticket_proof(&self, ticket: Ticket) -> TicketProof {
        self.inner.key.ticket_proof(ticket)
    }

    /// Opens the bulk channel for a ticket this session was given. Returns the stream, and any bytes that
    /// arrived right behind the server's hello (a download's data follows at once).
    pub async fn open_bulk_channel(&self, ticket: Ticket) -> Result<(TcpStream, BytesMut)> {
        let channel = Channel::Bulk { ticket, proof: self.ticket_proof(ticket) };
        let (stream, already_read) = open(&self.inner.addr, channel).await?;
        Ok((stream, already_read))
    }

    /// [`Connection::open_bulk_channel`] as a blocking socket with the transfer timeout, for a transfer thread.
    pub async fn open_bulk(&self, ticket: Ticket) -> Result<(std::net::TcpStream, BytesMut)> {
        let addr = self.addr();
        let (stream, already_read) = self.open_bulk_channel(ticket).await?;
        let stream = stream.into_std().map_err(|e| Error::net(addr, e))?;
        stream.set_nonblocking(false).map_err(|e| Error::net(addr, e))?;
        stream.set_read_timeout(Some(super::TRANSFER_TIMEOUT)).map_err(|e| Error::net(addr, e))?;
        Ok((stream, already_read))
    }
}

/// Opens a TCP connection for `channel` and exchanges hellos, without a token. Returns the stream and any bytes
/// that arrived right behind the hello (on a bulk channel the data follows at once).
async fn open(addr: &str, channel: Channel) -> Result<(TcpStream, BytesMut)> {
    let (stream, _, leftover, _) = handshake(addr, channel, &Credentials::default()).await?;
    Ok((stream, leftover))
}

/// Connects, exchanges hellos and, on a control channel, proves the token if the server asks and waits to be let
/// in. Returns the stream, the server's welcome (empty on a bulk channel, which gets none), any bytes that came
/// behind the hello, and the session's key.
async fn handshake(
    addr: &str,
    channel: Channel,
    credentials: &Credentials,
) -> Result<(TcpStream, ServerWelcome, BytesMut, SessionKey)> {
    let timed_out = |during| Error::Timeout { addr: addr.to_string(), seconds: CONNECT_TIMEOUT.as_secs(), during };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out("while connecting"))?
        .map_err(|e| Error::net(addr, e))?;
    let _ = stream.set_nodelay(true);
    let mut framed = FrameWriter::new(stream, addr);
    let software = format!("tandem {}", env!("CARGO_PKG_VERSION"));
    let nonce = Nonce::random();
    let client = credentials.client.clone();
    let hello = ClientHello { protocol_version: PROTOCOL_VERSION, software, channel, client, nonce: Some(nonce) };
    framed.send(&ClientFrame::Hello(hello)).await?;
    let mut reader = FrameReader::new(framed.into_inner(), addr);
    let hello = tokio::time::timeout(CONNECT_TIMEOUT, reader.next::<ServerFrame>("server hello"))
        .await
        .map_err(|_| timed_out("waiting for the server's hello"))??;
    let server = match hello {
        Some(ServerFrame::Hello(hello)) => hello,
        Some(ServerFrame::Fatal(body)) => return Err(Error::Remote(body)),
        Some(_) => {
            return Err(Error::Malformed { what: "server hello", reason: format!("{addr} did not start with hello") });
        }
        None => {
            return Err(Error::Closed { addr: addr.to_string(), during: "before saying hello" });
        }
    };
    if server.protocol_version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            addr: addr.to_string(),
            ours: PROTOCOL_VERSION,
            theirs: server.protocol_version,
        });
    }
    let Some(server_nonce) = server.nonce else {
        return Err(Error::Malformed { what: "server hello", reason: format!("{addr} sent no nonce") });
    };
    let token = credentials.token.as_ref().filter(|_| server.auth);
    let key = SessionKey::derive(token, &nonce, &server_nonce);
    let mut welcome = None;
    if matches!(channel, Channel::Control) {
        if server.auth {
            let Some(token) = token else {
                let message = format!(
                    "authentication failed: {addr} requires a token; give it with --token, TANDEM_TOKEN or `token = \"…\"` \
                     in config.toml"
                );
                return Err(Error::Remote(ErrorBody { code: ErrorCode::AuthFailed, message }));
            };
            let proof = client_proof(token, &nonce, &server_nonce);
            FrameWriter::new(reader.get_mut(), addr).send(&ClientFrame::Auth { proof }).await?;
        }
        let during = if server.auth { "waiting for the server to accept the token" } else { "waiting to be let in" };
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, reader.next::<ServerFrame>("server welcome"))
            .await
            .map_err(|_| timed_out(during))??;
        match answer {
            Some(ServerFrame::Welcome(hello)) => welcome = Some(hello),
            Some(ServerFrame::Fatal(body)) => return Err(Error::Remote(body)),
            Some(_) => {
                let reason = format!("{addr} sent something else than its welcome after the hello");
                return Err(Error::Malformed { what: "server answer", reason });
            }
            None => {
                let during = if server.auth { "during authentication" } else { "before letting this client in" };
                return Err(Error::Closed { addr: addr.to_string(), during });
            }
        }
    }
    let (stream, leftover) = reader.into_parts();
    if !leftover.is_empty() && matches!(channel, Channel::Control) {
        return Err(Error::Malformed { what: "server hello", reason: format!("{addr} sent data before it was asked") });
    }
    let welcome = welcome.unwrap_or_else(|| ServerWelcome { software: String::new(), journal: None });
    Ok((stream, welcome, leftover, key))
}

async fn write_frames(
    mut writer: FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
    mut frames: mpsc::Receiver<ClientFrame>,
    dropped: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = dropped.cancelled() => break,
            frame = frames.recv() => frame,
        };
        match frame {
            Some(frame) if writer.send(&frame).await.is_ok() => {}
            _ => break,
        }
    }
}

async fn route_responses(
    mut reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    inner: Arc<Inner>,
    dropped: CancellationToken,
) {
    let reason = loop {
        let next = tokio::select! {
            _ = dropped.cancelled() => {
                break Error::Closed { addr: inner.addr.clone(), during: "by this client" }.to_body();
            }
            next = reader.next::<ServerFrame>("server frame") => next,
        };
        match next {
            Ok(Some(ServerFrame::Response { id, body })) => {
                let last = !matches!(body, Response::Entries { more: true, .. } | Response::Changes { more: true, .. });
                let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(sender) = pending.waiting.get(&id) {
                    let _ = sender.send(Ok(body));
                }
                if last {
                    pending.waiting.remove(&id);
                }
            }
            Ok(Some(ServerFrame::Changed { seq })) => {
                inner.journal_seq.send_if_modified(|latest| {
                    let newer = seq > *latest;
                    *latest = (*latest).max(seq);
                    newer
                });
            }
            Ok(Some(ServerFrame::Fatal(body))) => break body,
            Ok(Some(ServerFrame::Hello(_) | ServerFrame::Welcome(_))) => {
                break Error::Malformed { what: "server frame", reason: "hello sent twice".into() }.to_body();
            }
            Ok(None) => {
                break Error::Closed { addr: inner.addr.clone(), during: "by the server" }.to_body();
            }
            Err(e) => break e.to_body(),
        }
    };
    let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
    for (_, sender) in pending.waiting.drain() {
        let _ = sender.send(Err(Error::Remote(reason.clone())));
    }
    pending.closed = Some(reason);
    drop(pending);
    inner.closed.cancel();
}

async fn collect_entries(mut responses: Responses) -> Result<Vec<Entry>> {
    let mut all = Vec::new();
    while let Some(response) = responses.next().await? {
        match response {
            Response::Entries { entries, more } => {
                all.extend(entries);
                if !more {
                    break;
                }
            }
            Response::Error(body) => return Err(Error::Remote(body)),
            Response::Ticket { .. } | Response::Batch { .. } | Response::Done { .. } | Response::Changes { .. } => {
                return Err(Error::Malformed {
                    what: "server answer",
                    reason: "not the entries that were asked for".into(),
                });
            }
        }
    }
    Ok(all)
}
