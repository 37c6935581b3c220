//! A bulk connection: redeems its ticket, then either streams files to the client ([`tcp::send_file`]) or
//! receives them from it, on a blocking thread: one file for a single ticket, several in a row for a batch. A
//! received file is written atomically: the MD5 the client sent must match the bytes, a replaced file goes to the
//! trash, and the client is told the verdict. Each file gets its own line in the history log.

use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::Shared;
use super::guard::{check_expect, may_write};
use super::history::Record;
use super::observe::refresh_knowing;
use super::tickets::{Grant, PendingDownload, PendingUpload};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, ErrorBody, ErrorCode, Ticket};
use crate::share::{AtomicFile, FileStamp, move_to_trash};
use crate::transfer::{Progress, tcp};

pub async fn serve(stream: TcpStream, ticket: Ticket, peer: String, shared: Arc<Shared>) {
    let grant = shared.tickets.redeem(ticket);
    let peer_for_log = peer.clone();
    let work = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut stream = into_blocking(stream, &peer, shared.config.idle_timeout)?;
        match grant {
            Some(Grant::Download(download)) => send_all(&shared, &mut stream, &peer, vec![download]),
            Some(Grant::DownloadBatch(downloads)) => send_all(&shared, &mut stream, &peer, downloads),
            Some(Grant::Upload(upload)) => receive_all(&shared, &mut stream, &peer, vec![upload]),
            Some(Grant::UploadBatch(uploads)) => receive_all(&shared, &mut stream, &peer, uploads),
            None => {
                let started = Instant::now();
                let body = ErrorBody {
                    code: ErrorCode::BadTicket,
                    message: "transfer ticket unknown, used or expired".into(),
                };
                let refused = tcp::refuse(&mut stream, &peer, body.clone());
                let arguments = format!("ticket={:016x}", ticket.0);
                record(&shared, &peer, ("transfer", &arguments), Err(body.message), 0, started);
                refused.map(|_| ())
            }
        }
    });
    match work.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(peer = %peer_for_log, "bulk connection ended: {e}"),
        Err(e) => tracing::warn!(peer = %peer_for_log, "bulk connection task failed: {e}"),
    }
}

/// Sends each file in turn. A file that cannot be sent ends with a failed trailer and the next one follows; a
/// broken connection ends them all.
fn send_all(shared: &Shared, stream: &mut StdTcpStream, peer: &str, downloads: Vec<PendingDownload>) -> Result<()> {
    let mut learned_md5 = false;
    let mut result = Ok(());
    for download in downloads {
        let started = Instant::now();
        let entry = &download.entry;
        let arguments = format!("path={:?} requested_by={}", entry.path, download.peer);
        let progress = Progress::default();
        match tcp::send_file(stream, &download.abs, &entry.path, peer, download.stamp, entry.md5, &progress) {
            Ok(sent) => {
                if let Some(md5) = sent.computed_md5 {
                    shared.hashes.insert(&entry.path, download.stamp, md5);
                    learned_md5 = true;
                }
                let outcome = match sent.trailer {
                    BulkTrailer::Done { .. } => Ok(()),
                    BulkTrailer::Failed(body) => Err(body.message),
                };
                record(shared, peer, ("transfer", &arguments), outcome, sent.bytes, started);
            }
            Err(e) => {
                record(shared, peer, ("transfer", &arguments), Err(e.to_string()), 0, started);
                result = Err(e);
                break;
            }
        }
    }
    if learned_md5 {
        shared.hashes.flush()?;
    }
    result
}

/// Why a file was not stored, and whether the stream is still in step for the next file.
enum NotStored {
    /// The file's bytes were read (or skipped) in full; the next file can follow.
    Refused(Error),
    /// The stream is out of step or gone; nothing more can be read from it.
    Broken(Error),
}

/// Receives each file in turn and answers each with its verdict; a failure leaves that path as it was.
fn receive_all(shared: &Shared, stream: &mut StdTcpStream, peer: &str, uploads: Vec<PendingUpload>) -> Result<()> {
    let mut reader = stream.try_clone().map_err(|e| Error::net(peer, e))?;
    for upload in uploads {
        let started = Instant::now();
        let arguments = format!("path={:?} requested_by={}", upload.rel, upload.peer);
        let (verdict, bytes, outcome, broken) = match store(shared, &mut reader, peer, &upload) {
            Ok((md5, bytes)) => (BulkTrailer::Done { size: bytes, md5 }, bytes, Ok(()), None),
            Err(NotStored::Refused(e)) => (BulkTrailer::Failed(e.to_body()), 0, Err(e.to_string()), None),
            Err(NotStored::Broken(e)) => (BulkTrailer::Failed(e.to_body()), 0, Err(e.to_string()), Some(e)),
        };
        record(shared, peer, ("receive", &arguments), outcome, bytes, started);
        // After a broken stream the verdict is a courtesy: the client may already be gone.
        let answered = tcp::write_trailer(stream, peer, &verdict);
        if let Some(e) = broken {
            return Err(e);
        }
        answered?;
    }
    Ok(())
}

fn store(
    shared: &Shared,
    reader: &mut StdTcpStream,
    peer: &str,
    upload: &PendingUpload,
) -> std::result::Result<(Md5Digest, u64), NotStored> {
    let created = upload
        .abs
        .parent()
        .map_or(Ok(()), |parent| std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e)))
        .and_then(|()| AtomicFile::create(&upload.abs));
    let mut file = match created {
        Ok(file) => file,
        Err(e) => {
            tcp::skip_file(reader, peer, upload.size).map_err(NotStored::Broken)?;
            return Err(NotStored::Refused(e));
        }
    };
    let temp_path = file.temp_path().to_path_buf();
    let received = tcp::receive_file(reader, &mut file, &temp_path, peer, upload.size, &Progress::default())
        .map_err(NotStored::Broken)?;
    commit(shared, upload, file, received).map_err(NotStored::Refused)
}

/// Checks a received file against what the client announced and what the path must still hold, then renames
/// it into place and records it in the journal.
fn commit(
    shared: &Shared,
    upload: &PendingUpload,
    file: AtomicFile,
    received: tcp::Received,
) -> Result<(Md5Digest, u64)> {
    match received.trailer {
        BulkTrailer::Failed(body) => return Err(Error::Remote(body)),
        BulkTrailer::Done { size, md5 } => {
            if size != upload.size || received.bytes != upload.size {
                return Err(Error::SizeMismatch {
                    path: upload.rel.clone(),
                    expected: upload.size,
                    actual: received.bytes,
                });
            }
            if md5 != received.md5 {
                let (expected, actual) = (md5.to_string(), received.md5.to_string());
                return Err(Error::Md5Mismatch { path: upload.rel.clone(), expected, actual });
            }
        }
    }
    // From the last checks to the journal entry, no other write of this path can come in between.
    let _held = shared.path_locks.hold(&[&upload.rel]);
    may_write(shared, &upload.rel, upload.client.as_ref())?;
    check_expect(shared, &upload.rel, &upload.abs, upload.expect)?;
    // Nothing is destroyed: the version being replaced moves to the trash first.
    if std::fs::symlink_metadata(&upload.abs).is_ok() {
        move_to_trash(shared.share.root(), &upload.rel, &upload.abs)?;
    }
    file.set_mode(upload.mode)?;
    file.commit(Some(upload.mtime_ns))?;
    let written = std::fs::metadata(&upload.abs).map(|metadata| (FileStamp::of(&metadata), received.md5)).ok();
    if let Some((stamp, md5)) = written {
        shared.hashes.insert(&upload.rel, stamp, md5);
    }
    refresh_knowing(shared, &upload.rel, upload.client.as_ref().map(|c| c.host.as_str()), written)?;
    Ok((received.md5, received.bytes))
}

fn record(
    shared: &Shared,
    peer: &str,
    (command, arguments): (&'static str, &str),
    outcome: std::result::Result<(), String>,
    bytes: u64,
    started: Instant,
) {
    shared.history.record(Record { peer, command, arguments, outcome, bytes, elapsed: started.elapsed() });
}

fn into_blocking(stream: TcpStream, peer: &str, timeout: std::time::Duration) -> Result<StdTcpStream> {
    let stream = stream.into_std().map_err(|e| Error::net(peer, e))?;
    stream.set_nonblocking(false).map_err(|e| Error::net(peer, e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| Error::net(peer, e))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| Error::net(peer, e))?;
    Ok(stream)
}
