//! Uploading one file: ask for a ticket, stream the bytes (hashed as they go) over a bulk TCP connection, and
//! wait for the server's verdict. The server writes the file atomically, keeps any version it replaces in its
//! trash, and gives the file the local mtime and permission bits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::connection::Connection;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, Expect};
use crate::share::{FileStamp, permission_bits};
use crate::transfer::{Progress, tcp};

/// What a finished upload did; the fields of `upload --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadReport {
    /// Where the file now is in the share.
    pub path: String,
    pub source: PathBuf,
    pub size: u64,
    pub md5: Md5Digest,
    pub mtime_ns: i64,
    pub mode: u32,
    /// File bytes (or delta bytes) that crossed the network.
    pub bytes_sent: u64,
    /// Bytes of the server's signature of its older version, for a delta upload.
    pub bytes_received: u64,
    /// Whether the file went as a delta against the server's older version.
    pub delta: bool,
    pub seconds: f64,
}

/// Uploads the local file `local` to `remote` in the share; as a delta when the server holds an older version
/// worth one ([`super::upload_delta`]).
pub async fn upload_tcp(conn: &Connection, local: &Path, remote: &str, progress: &Progress) -> Result<UploadReport> {
    super::delta::upload_delta(conn, local, remote, (None, None), progress).await
}

/// Uploads `local` to `remote`, refused by the server unless `remote` still holds what `expect` says.
pub async fn upload_expecting(
    conn: &Connection,
    local: &Path,
    remote: &str,
    expect: Option<Expect>,
    progress: &Progress,
) -> Result<UploadReport> {
    let started = Instant::now();
    let (stamp, mode) = local_file(local)?;
    progress.set_total(stamp.size);
    let progress = progress.clone();
    let (ticket, entry) = conn.upload_ticket(remote, (stamp.size, stamp.mtime_ns, mode), expect).await?;
    let (mut stream, _) = conn.open_bulk(ticket).await?;
    let peer = conn.addr().to_string();
    let source = local.to_path_buf();
    let shown = entry.path.clone();
    let (bytes, md5) = tokio::task::spawn_blocking(move || -> Result<(u64, Md5Digest)> {
        let sent = tcp::send_file(&mut stream, &source, &source.display().to_string(), &peer, stamp, None, &progress)?;
        let md5 = read_verdict(&mut stream, &peer, &sent, (&shown, stamp.size))?;
        Ok((sent.bytes, md5))
    })
    .await
    .map_err(|e| Error::task_failed(format!("the upload of {}", local.display()), e))??;
    Ok(UploadReport {
        path: entry.path,
        source: local.to_path_buf(),
        size: bytes,
        md5,
        mtime_ns: stamp.mtime_ns,
        mode,
        bytes_sent: bytes,
        bytes_received: 0,
        delta: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads the server's verdict on a file this side sent: it must have stored `size` bytes with the MD5 this side
/// computed.
pub(super) fn read_verdict(
    stream: &mut std::net::TcpStream,
    peer: &str,
    sent: &tcp::Sent,
    (shown, size): (&str, u64),
) -> Result<Md5Digest> {
    let ours = match &sent.trailer {
        BulkTrailer::Done { md5, .. } => *md5,
        BulkTrailer::Failed(body) => return Err(Error::Remote(body.clone())),
    };
    match tcp::read_trailer(stream, peer)? {
        BulkTrailer::Done { md5, size: stored } if md5 == ours && stored == size => Ok(md5),
        BulkTrailer::Done { md5, .. } => {
            Err(Error::Md5Mismatch { path: shown.to_string(), expected: ours.to_string(), actual: md5.to_string() })
        }
        BulkTrailer::Failed(body) => Err(Error::Remote(body)),
    }
}

/// The stamp and permission bits of the regular file `local`, which an upload sends with it.
pub(super) fn local_file(local: &Path) -> Result<(FileStamp, u32)> {
    let metadata = std::fs::metadata(local).map_err(|e| Error::io(local, e))?;
    if !metadata.is_file() {
        return Err(Error::NotAFile { path: local.display().to_string() });
    }
    Ok((FileStamp::of(&metadata), permission_bits(&metadata).unwrap_or(0o644)))
}
