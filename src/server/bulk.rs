//! A bulk connection: redeems its ticket, then either streams a file to the client ([`tcp::send_file`]) or
//! receives one from it, on a blocking thread. A received file is written atomically: the MD5 the client sent
//! must match the bytes, a replaced file goes to the trash, and the client is told the verdict.

use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::Shared;
use super::guard::{check_expect, may_write};
use super::history::Record;
use super::observe::refresh_knowing;
use super::tickets::{Grant, PendingDownload, PendingUpload};
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, ErrorBody, ErrorCode, Ticket};
use crate::share::{AtomicFile, FileStamp, move_to_trash};
use crate::transfer::{Progress, tcp};

pub async fn serve(stream: TcpStream, ticket: Ticket, peer: String, shared: Arc<Shared>) {
    let started = Instant::now();
    let grant = shared.tickets.redeem(ticket);
    let (command, arguments) = match &grant {
        Some(Grant::Download(d)) => ("transfer", format!("path={:?} requested_by={}", d.entry.path, d.peer)),
        Some(Grant::Upload(u)) => ("receive", format!("path={:?} requested_by={}", u.rel, u.peer)),
        None => ("transfer", format!("ticket={:016x}", ticket.0)),
    };
    let shared_for_work = shared.clone();
    let peer_for_work = peer.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<(u64, Option<ErrorBody>)> {
        let mut stream = into_blocking(stream, &peer_for_work, shared_for_work.config.idle_timeout)?;
        match grant {
            Some(Grant::Download(download)) => send(&shared_for_work, &mut stream, &peer_for_work, download),
            Some(Grant::Upload(upload)) => receive(&shared_for_work, &mut stream, &peer_for_work, upload),
            None => {
                let body = ErrorBody {
                    code: ErrorCode::BadTicket,
                    message: "transfer ticket unknown, used or expired".into(),
                };
                tcp::refuse(&mut stream, &peer_for_work, body.clone())?;
                Ok((0, Some(body)))
            }
        }
    })
    .await
    .unwrap_or_else(|e| Err(Error::net(&peer, std::io::Error::other(format!("transfer task failed: {e}")))));

    let (bytes, outcome) = match outcome {
        Ok((bytes, None)) => (bytes, Ok(())),
        Ok((bytes, Some(failure))) => (bytes, Err(failure.message)),
        Err(e) => (0, Err(e.to_string())),
    };
    shared.history.record(Record {
        peer: &peer,
        command,
        arguments: &arguments,
        outcome,
        bytes,
        elapsed: started.elapsed(),
    });
}

fn send(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    download: PendingDownload,
) -> Result<(u64, Option<ErrorBody>)> {
    let entry = &download.entry;
    let sent =
        tcp::send_file(stream, &download.abs, &entry.path, peer, download.stamp, entry.md5, &Progress::default())?;
    if let Some(md5) = sent.computed_md5 {
        shared.hashes.insert(&entry.path, download.stamp, md5);
        shared.hashes.flush()?;
    }
    let failure = match sent.trailer {
        BulkTrailer::Done { .. } => None,
        BulkTrailer::Failed(body) => Some(body),
    };
    Ok((sent.bytes, failure))
}

/// Receives an upload and answers with the verdict; a failure leaves the share as it was.
fn receive(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    upload: PendingUpload,
) -> Result<(u64, Option<ErrorBody>)> {
    let verdict = store(shared, stream, peer, &upload);
    let (bytes, trailer) = match &verdict {
        Ok((md5, bytes)) => (*bytes, BulkTrailer::Done { size: *bytes, md5: *md5 }),
        Err(e) => (0, BulkTrailer::Failed(e.to_body())),
    };
    tcp::write_trailer(stream, peer, &trailer)?;
    Ok((bytes, verdict.err().map(|e| e.to_body())))
}

fn store(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    upload: &PendingUpload,
) -> Result<(crate::digest::Md5Digest, u64)> {
    if let Some(parent) = upload.abs.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut file = AtomicFile::create(&upload.abs)?;
    let temp_path = file.temp_path().to_path_buf();
    let mut reader = stream.try_clone().map_err(|e| Error::net(peer, e))?;
    let received = tcp::receive_file(&mut reader, &mut file, &temp_path, peer, upload.size, &Progress::default())?;
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

fn into_blocking(stream: TcpStream, peer: &str, timeout: std::time::Duration) -> Result<StdTcpStream> {
    let stream = stream.into_std().map_err(|e| Error::net(peer, e))?;
    stream.set_nonblocking(false).map_err(|e| Error::net(peer, e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| Error::net(peer, e))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| Error::net(peer, e))?;
    Ok(stream)
}
