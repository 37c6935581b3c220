//! Downloading one file: ask for a ticket on the control connection, stream the bytes over a bulk connection
//! into a temporary file beside the destination while hashing them, and rename it into place only when its MD5
//! equals the server's. Any failure leaves the destination as it was and no temporary file behind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::TRANSFER_TIMEOUT;
use super::connection::{Connection, open};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, Channel};
use crate::share::{AtomicFile, normalize};
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
    pub seconds: f64,
}

/// Downloads `remote` into the folder `dest_dir` over a bulk TCP connection.
pub async fn download_tcp(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    progress: &Progress,
) -> Result<DownloadReport> {
    let started = Instant::now();
    check_folder(dest_dir)?;
    let (ticket, entry) = conn.download_ticket(remote).await?;
    let dest = dest_dir.join(file_name(&entry.path)?);
    progress.set_total(entry.size);
    let (stream, _, already_read) = open(conn.addr(), Channel::Bulk { ticket }).await?;
    let peer = conn.addr().to_string();
    let stream = stream.into_std().map_err(|e| Error::net(&peer, e))?;
    stream.set_nonblocking(false).map_err(|e| Error::net(&peer, e))?;
    stream.set_read_timeout(Some(TRANSFER_TIMEOUT)).map_err(|e| Error::net(&peer, e))?;
    // Bytes that arrived behind the server's hello are the start of the stream.
    let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);

    let progress = progress.clone();
    let announced = entry.clone();
    let dest_for_write = dest.clone();
    let (bytes, md5) = tokio::task::spawn_blocking(move || -> Result<(u64, Md5Digest)> {
        let mut file = AtomicFile::create(&dest_for_write)?;
        let temp_path = file.temp_path().to_path_buf();
        let received = tcp::receive_file(&mut stream, &mut file, &temp_path, &peer, announced.size, &progress)?;
        let shown = announced.path.clone();
        let (size, md5) = match received.trailer {
            BulkTrailer::Failed(body) => return Err(Error::Remote(body)),
            BulkTrailer::Done { size, md5 } => (size, md5),
        };
        if size != received.bytes {
            return Err(Error::SizeMismatch { path: shown, expected: size, actual: received.bytes });
        }
        // The trailer's MD5, and the ticket's when the server knew it up front, must both match the bytes.
        for expected in [Some(md5), announced.md5].into_iter().flatten() {
            if expected != received.md5 {
                let (expected, actual) = (expected.to_string(), received.md5.to_string());
                return Err(Error::Md5Mismatch { path: shown, expected, actual });
            }
        }
        file.commit(Some(announced.mtime_ns))?;
        Ok((received.bytes, md5))
    })
    .await
    .map_err(|e| Error::io(&dest, std::io::Error::other(format!("download task failed: {e}"))))??;

    Ok(DownloadReport {
        path: entry.path,
        dest,
        size: bytes,
        md5,
        mtime_ns: entry.mtime_ns,
        protocol: "tcp",
        bytes_received: bytes,
        from_cache: false,
        resumed_from: 0,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The destination folder must exist before anything is asked of the server.
fn check_folder(dir: &Path) -> Result<()> {
    let metadata = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !metadata.is_dir() {
        return Err(Error::io(dir, std::io::Error::other("not a folder")));
    }
    Ok(())
}

/// The last component of a path the server sent, checked so it cannot name anything outside the folder.
fn file_name(remote: &str) -> Result<String> {
    let clean = normalize(remote)?;
    match clean.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::InvalidPath { path: remote.to_string(), reason: "names no file" }),
    }
}
