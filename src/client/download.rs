//! Downloading one file: ask for a ticket on the control connection, receive the bytes over a bulk TCP
//! connection or a UDP session into a temporary file beside the destination while hashing them, and rename it
//! into place only when its MD5 equals the server's. Any failure leaves the destination as it was and no
//! temporary file behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::connection::Connection;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, Ticket};
use crate::share::{AtomicFile, Entry, normalize, sync_renamed, sync_staged};
use crate::transfer::delta::worth_a_delta;
use crate::transfer::udp::link::{Link, loss_from_env};
use crate::transfer::udp::{self, UdpStats, receiver};
use crate::transfer::{Progress, tcp};

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
}

/// How a UDP download runs.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// Where to send datagrams; by default the server's own address (UDP shares its port number).
    pub server: Option<SocketAddr>,
    pub payload: usize,
    pub idle_timeout: Duration,
    /// Fraction of datagrams this side drops each way; by default `TANDEM_UDP_LOSS`.
    pub loss: f64,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            server: None,
            payload: udp::DEFAULT_PAYLOAD,
            idle_timeout: udp::DEFAULT_IDLE_TIMEOUT,
            loss: loss_from_env(),
        }
    }
}

/// Downloads `remote` into the folder `dest_dir` over a bulk TCP connection.
pub async fn download_tcp(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    progress: &Progress,
) -> Result<DownloadReport> {
    let started = Instant::now();
    // Over an older version of the file, only the changes travel.
    let existing = file_name(remote).map(|name| dest_dir.join(name));
    if let Ok(existing) = existing
        && std::fs::symlink_metadata(&existing).is_ok_and(|m| m.is_file() && worth_a_delta(m.len()))
    {
        return super::delta::download_delta_to(conn, remote, &existing, Box::new(|| Ok(())), progress).await;
    }
    let (offer, dest) = prepare(conn, remote, dest_dir, progress).await?;
    receive_tcp(conn, offer, dest, Box::new(|| Ok(())), progress, started).await
}

/// Runs after a download's bytes are verified and before they replace the destination. Sync uses it to check
/// that the local file is still the version it planned to replace, and to keep that version in the trash.
pub type BeforeCommit = Box<dyn FnOnce() -> Result<()> + Send>;

/// Downloads `remote` over TCP to exactly the path `dest`, whose folder must exist.
pub async fn download_tcp_to(
    conn: &Connection,
    remote: &str,
    dest: &Path,
    before_commit: BeforeCommit,
    progress: &Progress,
) -> Result<DownloadReport> {
    let started = Instant::now();
    let (ticket, entry, mode) = conn.download_ticket_with_mode(remote).await?;
    progress.set_total(entry.size);
    receive_tcp(conn, Offer { ticket, entry, mode }, dest.to_path_buf(), before_commit, progress, started).await
}

async fn receive_tcp(
    conn: &Connection,
    Offer { ticket, entry, mode }: Offer,
    dest: PathBuf,
    before_commit: BeforeCommit,
    progress: &Progress,
    started: Instant,
) -> Result<DownloadReport> {
    let (stream, already_read) = conn.open_bulk(ticket).await?;
    let peer = conn.addr().to_string();
    // Bytes that arrived behind the server's hello are the start of the stream.
    let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
    let progress = progress.clone();
    let announced = entry.clone();
    let ((bytes, _), md5) = write_verified(&dest, (entry.clone(), mode), before_commit, move |file, temp_path| {
        let received = tcp::receive_file(&mut stream, file, temp_path, &peer, announced.size, &progress)?;
        match received.trailer {
            BulkTrailer::Failed(body) => Err(Error::Remote(body)),
            BulkTrailer::Done { size, .. } if size != received.bytes => {
                Err(Error::SizeMismatch { path: announced.path.clone(), expected: size, actual: received.bytes })
            }
            BulkTrailer::Done { md5, .. } => Ok((received.bytes, received.md5, md5, None)),
        }
    })
    .await?;
    Ok(report(entry, dest, bytes, md5, "tcp", started, None))
}

/// Downloads `remote` into the folder `dest_dir` over tandem's reliable UDP protocol.
pub async fn download_udp(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    progress: &Progress,
    options: UdpOptions,
) -> Result<DownloadReport> {
    let started = Instant::now();
    let server = match options.server {
        Some(server) => server,
        None => resolve(conn.addr()).await?,
    };
    let (Offer { ticket, entry, mode }, dest) = prepare(conn, remote, dest_dir, progress).await?;
    let progress = progress.clone();
    let size = entry.size;
    let announced = (entry.clone(), mode);
    let proof = conn.ticket_proof(ticket).0;
    let ((bytes, stats), md5) = write_verified(&dest, announced, Box::new(|| Ok(())), move |file, temp_path| {
        let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
        let link = Link::bind(local, options.loss).map_err(|e| Error::net(local, e))?;
        let job = receiver::ReceiveJob {
            link: &link,
            server,
            session: ticket.0,
            proof,
            size,
            payload: options.payload,
            idle_timeout: options.idle_timeout,
            progress: &progress,
        };
        let received = receiver::receive(&job, file, temp_path)?;
        Ok((size, received.md5, received.server_md5, Some(received.stats)))
    })
    .await?;
    Ok(report(entry, dest, bytes, md5, "udp", started, stats))
}

/// Asks for the ticket and works out the destination; the folder must exist before anything else happens.
async fn prepare(conn: &Connection, remote: &str, dest_dir: &Path, progress: &Progress) -> Result<(Offer, PathBuf)> {
    let metadata = std::fs::metadata(dest_dir).map_err(|e| Error::io(dest_dir, e))?;
    if !metadata.is_dir() {
        return Err(Error::io(dest_dir, std::io::Error::other("not a folder")));
    }
    let (ticket, entry, mode) = conn.download_ticket_with_mode(remote).await?;
    let dest = dest_dir.join(file_name(&entry.path)?);
    progress.set_total(entry.size);
    Ok((Offer { ticket, entry, mode }, dest))
}

/// What the server offered: the ticket, the file, and its permission bits.
struct Offer {
    ticket: Ticket,
    entry: Entry,
    mode: Option<u32>,
}

/// What a receiver hands back: bytes written, their MD5, the server's MD5, and UDP counts.
type Receipt = (u64, Md5Digest, Md5Digest, Option<UdpStats>);

/// Runs `receive` into a temporary file beside `dest` on a blocking thread, checks the MD5s, then commits with
/// the server's mtime and permission bits.
async fn write_verified(
    dest: &Path,
    (announced, mode): (Entry, Option<u32>),
    before_commit: BeforeCommit,
    receive: impl FnOnce(&mut AtomicFile, &Path) -> Result<Receipt> + Send + 'static,
) -> Result<((u64, Option<UdpStats>), Md5Digest)> {
    let dest_for_write = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = AtomicFile::create(&dest_for_write)?;
        let temp_path = file.temp_path().to_path_buf();
        let (bytes, received_md5, server_md5, stats) = receive(&mut file, &temp_path)?;
        commit_verified(file, (&announced, mode), before_commit, received_md5, server_md5)?;
        Ok(((bytes, stats), received_md5))
    })
    .await
    .map_err(|e| Error::io(dest, std::io::Error::other(format!("download task failed: {e}"))))?
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
    for expected in [Some(server_md5), announced.md5].into_iter().flatten() {
        if expected != received_md5 {
            let (expected, actual) = (expected.to_string(), received_md5.to_string());
            return Err(Error::Md5Mismatch { path: announced.path.clone(), expected, actual });
        }
    }
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
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::net(addr, e))?
        .next()
        .ok_or_else(|| Error::net(addr, std::io::Error::other("no address found")))
}

/// The last component of a path the server sent, checked so it cannot name anything outside the folder.
fn file_name(remote: &str) -> Result<String> {
    let clean = normalize(remote)?;
    match clean.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::InvalidPath { path: remote.to_string(), reason: "names no file" }),
    }
}
