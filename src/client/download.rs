//! Downloading one file: ask for a ticket on the control connection, receive the bytes over a bulk TCP
//! connection or a UDP session while hashing them, and rename them into place only when their MD5 equals the
//! server's. Any failure leaves the destination as it was. The bytes go to a partial download
//! ([`super::partial`]) that a rerun resumes from; the whole file's MD5 is still checked, and kept bytes that
//! prove wrong are dropped and the file fetched again from zero, once. Sync's downloads ([`download_tcp_to`])
//! and empty files use a temporary file beside the destination instead, which no failure leaves behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::io::Write;

use super::connection::Connection;
use super::partial::Partial;
use super::strategy::{self, CacheState, Delta, Known, Plan};
use crate::digest::{Md5Digest, Md5Stream};
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, Ticket};
use crate::share::{AtomicFile, Destination, Entry, normalize, sync_renamed, sync_staged};
use crate::transfer::sink::Prefix;
use crate::transfer::udp::link::Link;
use crate::transfer::udp::{self, UdpStats, receiver};
use crate::transfer::{Progress, Protocol, tcp};

/// What a finished download did; the fields of `download --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadReport {
    /// The remote path, relative to the share.
    pub path: String,
    /// Where the file now is.
    pub dest: PathBuf,
    pub size: u64,
    pub md5: Md5Digest,
    pub mtime_ns: i64,
    pub protocol: &'static str,
    /// File bytes that crossed the network.
    pub bytes_received: u64,
    pub from_cache: bool,
    pub resumed_from: u64,
    /// Bytes of this side's signature of its older version, for a delta download.
    pub bytes_sent: u64,
    /// Whether the file came as a delta against the older version already here.
    pub delta: bool,
    pub seconds: f64,
    /// Datagram counts, for UDP.
    pub udp: Option<UdpStats>,
    /// What a person should know about how it went, such as a resumed download that had to start over.
    pub notes: Vec<String>,
}

/// How a UDP download runs.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// Where to send datagrams; by default the server's own address (UDP shares its port number).
    pub server: Option<SocketAddr>,
    pub payload: usize,
    pub idle_timeout: Duration,
    /// Fraction of datagrams this side drops each way, to test recovery (`TANDEM_UDP_LOSS`); 0 by default.
    pub loss: f64,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { server: None, payload: udp::DEFAULT_PAYLOAD, idle_timeout: udp::DEFAULT_IDLE_TIMEOUT, loss: 0.0 }
    }
}

/// Downloads `remote` into the folder `dest_dir` over a bulk TCP connection, resuming an interrupted download
/// of it: the bytes of an interrupted one are kept in `dest_dir/.tandem/partial/`.
pub async fn download_tcp(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    progress: &Progress,
) -> Result<DownloadReport> {
    let plan = strategy::plan(known_at(remote, dest_dir, Protocol::Tcp, CacheState::Off));
    download_planned(conn, remote, dest_dir, plan, UdpOptions::default(), progress).await
}

/// What is at `dest_dir` that a download of `remote` may use: the kept bytes of an interrupted download of it, an
/// older version of it.
pub(super) fn known_at(remote: &str, dest_dir: &Path, protocol: Protocol, cache: CacheState) -> Known {
    let name = file_name(remote).ok();
    let partial = name.as_deref().and_then(|name| super::partial::kept_bytes(dest_dir, name));
    let older = name.and_then(|name| std::fs::symlink_metadata(dest_dir.join(name)).ok());
    let older = older.filter(|m| m.is_file()).map(|m| m.len());
    Known { cache, partial, older, protocol }
}

/// Carries out the delta and whole-file steps of `plan` (the cache step is [`super::fetch`]'s).
pub(super) async fn download_planned(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    plan: Plan,
    udp: UdpOptions,
    progress: &Progress,
) -> Result<DownloadReport> {
    if let (Some(delta), Ok(name)) = (plan.delta, file_name(remote)) {
        let older = Destination::Path(dest_dir.join(name));
        match delta {
            Delta::OrWhole => {
                return super::delta::download_delta_to(conn, remote, &older, Box::new(|| Ok(())), progress).await;
            }
            Delta::Only => {
                if let Some(mut report) = super::delta::download_delta_only(conn, remote, &older, progress).await? {
                    let moved = report.bytes_received + report.bytes_sent;
                    let note =
                        format!("{remote}: only the changes to the older copy travelled ({moved} bytes), over TCP");
                    report.notes.push(note);
                    return Ok(report);
                }
            }
        }
    }
    let via = match plan.whole.protocol {
        Protocol::Tcp => Via::Tcp,
        Protocol::Udp => {
            let server = match udp.server {
                Some(server) => server,
                None => resolve(conn.addr()).await?,
            };
            Via::Udp(server, udp)
        }
    };
    resumable(conn, remote, dest_dir, progress, via, plan.whole.resume).await
}

/// Runs after a download's bytes are verified and before they replace the destination. Sync uses it to check
/// that the local file is still the version it planned to replace, and to keep that version in the trash.
pub type BeforeCommit = Box<dyn FnOnce() -> Result<()> + Send>;

/// Downloads `remote` over TCP to exactly `dest` (a path whose folder must exist, or a place in sync's folder).
/// It does not resume: sync keeps its own state.
pub async fn download_tcp_to(
    conn: &Connection,
    remote: &str,
    dest: &Destination,
    before_commit: BeforeCommit,
    progress: &Progress,
) -> Result<DownloadReport> {
    let started = Instant::now();
    let (ticket, entry, mode) = conn.download_ticket_with_mode(remote).await?;
    progress.set_total(entry.size);
    let offer = Offer { ticket, entry, mode };
    let receive = receiver(conn, &offer, (0, Prefix::Hashed(Md5Stream::new())), progress, &Via::Tcp).await?;
    let ((bytes, _), md5) = write_verified(dest, (offer.entry.clone(), mode), before_commit, receive).await?;
    Ok(report(offer.entry, dest.shown(), bytes, md5, "tcp", started, None))
}

/// Downloads `remote` into the folder `dest_dir` over tandem's reliable UDP protocol, resuming an interrupted
/// download of it: the bytes of an interrupted one are kept in `dest_dir/.tandem/partial/`.
pub async fn download_udp(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    progress: &Progress,
    options: UdpOptions,
) -> Result<DownloadReport> {
    let plan = strategy::plan(known_at(remote, dest_dir, Protocol::Udp, CacheState::Off));
    download_planned(conn, remote, dest_dir, plan, options, progress).await
}

/// How the bytes travel.
enum Via {
    Tcp,
    /// To this server address, with these options.
    Udp(SocketAddr, UdpOptions),
}

impl Via {
    fn name(&self) -> &'static str {
        match self {
            Via::Tcp => "tcp",
            Via::Udp(..) => "udp",
        }
    }
}

/// One try at a download, resuming from kept bytes when it may.
enum Attempt {
    Done(DownloadReport),
    /// The whole file's MD5 did not match after resuming: the kept bytes were wrong (and are gone now). `bytes`
    /// crossed the network for nothing.
    WrongPrefix {
        bytes: u64,
        error: Error,
    },
}

/// A download into `dest_dir` that resumes from a partial download of the same file; if the result proves
/// wrong, it starts over from zero once, and says so in the report's notes.
async fn resumable(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    progress: &Progress,
    via: Via,
    may_resume: bool,
) -> Result<DownloadReport> {
    let started = Instant::now();
    let metadata = std::fs::metadata(dest_dir).map_err(|e| Error::io(dest_dir, e))?;
    if !metadata.is_dir() {
        return Err(Error::UnusableFolder { path: dest_dir.into(), problem: "not a folder; a download goes into one" });
    }
    // A path that names no file finds no partial; the server says what is wrong with it.
    let name = file_name(remote).ok();
    let mut notes = Vec::new();
    let mut wasted = 0;
    let mut may_resume = may_resume;
    loop {
        match attempt(conn, remote, (dest_dir, name.as_deref()), may_resume, &mut notes, progress, &via).await? {
            Attempt::Done(mut report) => {
                report.bytes_received += wasted;
                report.seconds = started.elapsed().as_secs_f64();
                report.notes = notes;
                return Ok(report);
            }
            Attempt::WrongPrefix { bytes, error } => {
                notes.push(format!(
                    "{remote}: the data kept from the interrupted download was wrong ({error}); downloading the \
                     whole file again"
                ));
                wasted += bytes;
                may_resume = false;
            }
        }
    }
}

/// One download: finds kept bytes, asks to resume after them, and receives the rest (or all) while hashing the
/// kept bytes and the new ones in order.
async fn attempt(
    conn: &Connection,
    remote: &str,
    (dest_dir, name): (&Path, Option<&str>),
    may_resume: bool,
    notes: &mut Vec<String>,
    progress: &Progress,
    via: &Via,
) -> Result<Attempt> {
    let started = Instant::now();
    let found = match name {
        Some(name) => {
            let (dir, name) = (dest_dir.to_path_buf(), name.to_string());
            blocking(dest_dir, move || Partial::find(&dir, &name)).await?
        }
        None => None,
    };
    let resume = found.as_ref().filter(|_| may_resume).and_then(|partial| partial.resume_point(remote));
    let (ticket, entry, mode, offset) = conn.download_ticket_resuming(remote, resume).await?;
    if let (Some(partial), Some(_), 0) = (&found, resume, offset) {
        notes.push(format!(
            "{} changed on the server since the interrupted download; starting over from zero (discarding {})",
            entry.path,
            partial.path().display()
        ));
    }
    let dest_name = file_name(&entry.path)?;
    // The server's name for the file is the one that counts (it is the same, unless the server misbehaves).
    if name != Some(dest_name.as_str()) && offset > 0 {
        let reason = format!("{} resumed {remote:?} as another file, {:?}", conn.addr(), entry.path);
        return Err(Error::Malformed { what: "server answer", reason });
    }
    let found = found.filter(|_| name == Some(dest_name.as_str()));
    // The kept bytes are hashed from disk while the rest arrives.
    let prefix = match &found {
        Some(partial) if offset > 0 => Prefix::OnDisk { file: partial.reader()?, len: offset },
        _ => Prefix::Hashed(Md5Stream::new()),
    };
    let dest = dest_dir.join(&dest_name);
    progress.set_total(entry.size - offset);
    let offer = Offer { ticket, entry, mode };
    let receive = receiver(conn, &offer, (offset, prefix), progress, via).await?;
    let Offer { entry, mode, .. } = offer;
    if entry.size == 0 {
        // Nothing to resume: an empty file needs no partial.
        if let Some(stale) = found {
            stale.discard();
        }
        let to = Destination::Path(dest.clone());
        let ((bytes, stats), md5) = write_verified(&to, (entry.clone(), mode), Box::new(|| Ok(())), receive).await?;
        return Ok(Attempt::Done(report(entry, dest, bytes, md5, via.name(), started, stats)));
    }
    let partial = match found {
        Some(partial) => partial,
        None => {
            let dir = dest_dir.to_path_buf();
            blocking(dest_dir, move || Partial::create(&dir, &dest_name)).await?
        }
    };
    match write_partial(partial, &dest, (entry.clone(), mode), offset, receive).await {
        Ok(((bytes, stats), md5)) => {
            let size = entry.size;
            let mut report = report(entry, dest, bytes, md5, via.name(), started, stats);
            (report.size, report.resumed_from) = (size, offset);
            Ok(Attempt::Done(report))
        }
        Err(error @ Error::Md5Mismatch { .. }) if offset > 0 => {
            Ok(Attempt::WrongPrefix { bytes: entry.size - offset, error })
        }
        Err(e) => Err(e),
    }
}

/// Receives an offer's bytes from an offset on into whatever it is given, on a blocking thread, hashing them
/// after the bytes before the offset.
type Receive = Box<dyn FnOnce(&mut (dyn Write + Send), &Path) -> Result<Receipt> + Send>;

/// Opens the transfer an offer allows and returns the function that receives it.
async fn receiver(
    conn: &Connection,
    offer: &Offer,
    (offset, prefix): (u64, Prefix),
    progress: &Progress,
    via: &Via,
) -> Result<Receive> {
    let progress = progress.clone();
    let announced = offer.entry.clone();
    let remaining = announced.size - offset;
    match via {
        Via::Tcp => {
            let (stream, already_read) = conn.open_bulk(offer.ticket).await?;
            let peer = conn.addr().to_string();
            Ok(Box::new(move |mut out, out_path| {
                // Bytes that arrived behind the server's hello are the start of the stream.
                let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
                let received =
                    tcp::receive_file_after(&mut stream, &mut out, out_path, &peer, (remaining, prefix), &progress)?;
                match received.trailer {
                    BulkTrailer::Failed(body) => Err(Error::Remote(body)),
                    BulkTrailer::Done { size, .. } if size != received.bytes || size != remaining => {
                        Err(Error::SizeMismatch {
                            path: announced.path.clone(),
                            expected: size,
                            actual: received.bytes,
                        })
                    }
                    BulkTrailer::Done { md5, .. } => Ok((received.bytes, received.md5, md5, None)),
                }
            }))
        }
        Via::Udp(server, options) => {
            let (server, options) = (*server, options.clone());
            let (session, proof) = (offer.ticket.0, conn.ticket_proof(offer.ticket).0);
            Ok(Box::new(move |mut out, out_path| {
                let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
                let link = Link::bind(local, options.loss).map_err(|e| Error::net(local, e))?;
                let job = receiver::ReceiveJob {
                    link: &link,
                    server,
                    session,
                    proof,
                    size: announced.size,
                    offset,
                    prefix,
                    payload: options.payload,
                    idle_timeout: options.idle_timeout,
                    progress: &progress,
                };
                let received = receiver::receive(&job, &mut out, out_path)?;
                Ok((remaining, received.md5, received.server_md5, Some(received.stats)))
            }))
        }
    }
}

/// What the server offered: the ticket, the file, and its permission bits.
struct Offer {
    ticket: Ticket,
    entry: Entry,
    mode: Option<u32>,
}

/// What a receiver hands back: bytes written, their MD5, the server's MD5, and UDP counts.
type Receipt = (u64, Md5Digest, Md5Digest, Option<UdpStats>);

/// Runs `receive` into a temporary file for `dest` on a blocking thread, checks the MD5s, then commits with the
/// server's mtime and permission bits.
async fn write_verified(
    dest: &Destination,
    (announced, mode): (Entry, Option<u32>),
    before_commit: BeforeCommit,
    receive: Receive,
) -> Result<((u64, Option<UdpStats>), Md5Digest)> {
    let dest_for_write = dest.clone();
    tokio::task::spawn_blocking(move || {
        let mut file = dest_for_write.create_file()?;
        let temp_path = file.temp_path().to_path_buf();
        let (bytes, received_md5, server_md5, stats) = receive(&mut file, &temp_path)?;
        commit_verified(file, (&announced, mode), before_commit, received_md5, server_md5)?;
        Ok(((bytes, stats), received_md5))
    })
    .await
    .map_err(|e| Error::task_failed(format!("the download to {}", dest.shown().display()), e))?
}

/// Runs `receive` into a partial download from `offset` on, on a blocking thread, checks the whole file's MD5,
/// then renames it over `dest` with the server's mtime and permission bits. A failure keeps the partial for a
/// rerun, except one whose bytes proved wrong.
async fn write_partial(
    mut partial: Partial,
    dest: &Path,
    (announced, mode): (Entry, Option<u32>),
    offset: u64,
    receive: Receive,
) -> Result<((u64, Option<UdpStats>), Md5Digest)> {
    let dest = dest.to_path_buf();
    blocking(&dest.clone(), move || {
        partial.begin(&announced, offset)?;
        let path = partial.path().to_path_buf();
        let (bytes, received_md5, server_md5, stats) = receive(&mut partial, &path)?;
        if let Err(e) = check_md5(&announced, received_md5, server_md5) {
            partial.discard();
            return Err(e);
        }
        partial.commit(&dest, mode, announced.mtime_ns)?;
        Ok(((bytes, stats), received_md5))
    })
    .await
}

/// Runs blocking work (disk, or a whole transfer) off the async threads; `what` names it if the task fails.
async fn blocking<T: Send + 'static>(what: &Path, work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::task_failed(format!("the download to {}", what.display()), e))?
}

/// Checks a received file's MD5 against the server's final word and the ticket's (when the server knew it up
/// front).
fn check_md5(announced: &Entry, received_md5: Md5Digest, server_md5: Md5Digest) -> Result<()> {
    for expected in [Some(server_md5), announced.md5].into_iter().flatten() {
        if expected != received_md5 {
            let (expected, actual) = (expected.to_string(), received_md5.to_string());
            return Err(Error::Md5Mismatch { path: announced.path.clone(), expected, actual });
        }
    }
    Ok(())
}

/// Commits a received file if its MD5 matches the server's final word and the ticket's (when the server knew it
/// up front), with the server's mtime and permission bits.
fn commit_verified(
    mut file: AtomicFile,
    (announced, mode): (&Entry, Option<u32>),
    before_commit: BeforeCommit,
    received_md5: Md5Digest,
    server_md5: Md5Digest,
) -> Result<()> {
    verify(&mut file, (announced, mode), received_md5, server_md5)?;
    sync_staged(&[&file])?;
    before_commit()?;
    let dest = file.rename_into_place()?;
    sync_renamed(&[dest])
}

/// Checks a received file's MD5 against the server's final word and the ticket's (when the server knew it up
/// front), and gives it the server's mtime and permission bits, ready to be renamed into place.
pub(super) fn verify(
    file: &mut AtomicFile,
    (announced, mode): (&Entry, Option<u32>),
    received_md5: Md5Digest,
    server_md5: Md5Digest,
) -> Result<()> {
    check_md5(announced, received_md5, server_md5)?;
    if let Some(mode) = mode {
        file.set_mode(mode)?;
    }
    file.stage(Some(announced.mtime_ns))
}

pub(super) fn report(
    entry: Entry,
    dest: PathBuf,
    bytes: u64,
    md5: Md5Digest,
    protocol: &'static str,
    started: Instant,
    udp: Option<UdpStats>,
) -> DownloadReport {
    DownloadReport {
        path: entry.path,
        dest,
        size: bytes,
        md5,
        mtime_ns: entry.mtime_ns,
        protocol,
        bytes_received: bytes,
        from_cache: false,
        resumed_from: 0,
        bytes_sent: 0,
        delta: false,
        seconds: started.elapsed().as_secs_f64(),
        udp,
        notes: Vec::new(),
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::net(addr, e))?
        .next()
        .ok_or_else(|| Error::NoAddress { addr: addr.to_string() })
}

/// The last component of a path the server sent, checked so it cannot name anything outside the folder.
fn file_name(remote: &str) -> Result<String> {
    let clean = normalize(remote)?;
    match clean.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::InvalidPath { path: remote.to_string(), reason: "names no file" }),
    }
}
