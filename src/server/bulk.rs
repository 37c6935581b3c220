//! A bulk connection: redeems its ticket, then either streams files to the client ([`tcp::send_file`]) or
//! receives them from it, on a blocking thread: one file for a single ticket, several in a row for a batch. A
//! received file is written atomically: the MD5 the client sent must match the bytes, a replaced file goes to the
//! trash, and the client is told the verdict. Each file gets its own line in the history log.

use std::net::{IpAddr, TcpStream as StdTcpStream};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::bulk_delta;
use super::guard::{CaseTwins, check_expect, may_write};
use super::history::Record;
use super::observe::refresh_knowing;
use super::tickets::{Grant, PendingDownload, PendingUpload};
use super::{DELTA_WAIT, Shared, TRANSFER_WAIT};
use crate::auth::TicketProof;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, ErrorBody, ErrorCode, Ticket};
use crate::share::{AtomicFile, GROUP_BYTES, GROUP_FILES, Renamed, sync_renamed, sync_staged};
use crate::transfer::Progress;
use crate::transfer::tcp::{self, FileFailed, Received, Sent};

pub async fn serve(
    stream: TcpStream,
    (ticket, proof): (Ticket, TicketProof),
    (peer, ip): (String, IpAddr),
    shared: Arc<Shared>,
) {
    let redeemed = shared.tickets.redeem(ticket, &proof);
    // Over its session's, its address's or the server's limit, a transfer waits here (on no thread) for one to
    // finish: every transfer holds a thread, and listings and hashing need some too. Not for ever: a waiting
    // connection holds a socket, so after `TRANSFER_WAIT` it is told the server is busy.
    let (admitted, _running, _slot) = match redeemed {
        Some((grant, gate)) => {
            let config = &shared.config;
            let (per_address, total) = (config.max_transfers_per_address.max(1), config.max_transfers.max(1));
            let waited = tokio::time::timeout(TRANSFER_WAIT, async {
                let running = gate.acquire_owned().await.ok();
                (running, shared.transfers.acquire(ip, per_address, total).await)
            });
            match waited.await {
                Ok((running, slot)) => (Ok(grant), running, Some(slot)),
                Err(_) => {
                    let message = format!(
                        "server busy: no transfer slot came free within {} s (at most {per_address} transfers per \
                         address, {total} in all)",
                        TRANSFER_WAIT.as_secs()
                    );
                    (Err(ErrorBody { code: ErrorCode::Busy, message }), None, None)
                }
            }
        }
        None => {
            let message = "transfer ticket unknown, used, expired or issued to another session".into();
            (Err(ErrorBody { code: ErrorCode::BadTicket, message }), None, None)
        }
    };
    // A delta holds both versions of a file in memory: only a few run at once, server-wide. One that finds no
    // slot free soon goes whole, so stalled deltas hold up nobody else's. An append streams, and needs none.
    let delta_slot = match &admitted {
        Ok(Grant::DownloadDelta { download: PendingDownload { offset: 0, .. }, .. })
        | Ok(Grant::UploadDelta(PendingUpload { append_to: None, .. })) => {
            tokio::time::timeout(DELTA_WAIT, shared.delta_slots.clone().acquire_owned()).await.ok().and_then(Result::ok)
        }
        _ => None,
    };
    let peer_for_log = peer.clone();
    let work = tokio::task::spawn_blocking(move || -> Result<()> {
        // A transfer whose client moves no byte for the stall timeout ends, and gives its slot back.
        let mut stream = into_blocking(stream, &peer, shared.config.stall_timeout)?;
        let as_delta = delta_slot.is_some();
        let _delta_slot = delta_slot;
        match admitted {
            Ok(Grant::Download(download)) => send_all(&shared, &mut stream, &peer, vec![download], &mut send_whole),
            Ok(Grant::DownloadBatch(downloads)) => send_all(&shared, &mut stream, &peer, downloads, &mut send_whole),
            Ok(Grant::Upload(upload)) => receive_all(&shared, &mut stream, &peer, vec![upload], &mut receive_whole),
            Ok(Grant::UploadBatch(uploads)) => receive_all(&shared, &mut stream, &peer, uploads, &mut receive_whole),
            // An append: the plain stream of the bytes after the client's version.
            Ok(Grant::DownloadDelta { download, .. }) if download.offset > 0 => {
                send_all(&shared, &mut stream, &peer, vec![download], &mut send_whole)
            }
            Ok(Grant::DownloadDelta { download, delta_only }) => {
                let mut send = |shared: &Shared, stream: &mut StdTcpStream, peer: &str, download: &PendingDownload| {
                    bulk_delta::send(shared, stream, peer, download, (delta_only, as_delta))
                };
                send_all(&shared, &mut stream, &peer, vec![download], &mut send)
            }
            Ok(Grant::UploadDelta(upload)) => {
                let mut receive = |shared: &Shared, stream: &mut StdTcpStream, peer: &str, upload: &PendingUpload| {
                    bulk_delta::receive(shared, stream, peer, upload, as_delta)
                };
                receive_all(&shared, &mut stream, &peer, vec![upload], &mut receive)
            }
            Err(body) => {
                let started = Instant::now();
                let refused = tcp::refuse(&mut stream, &peer, body.clone());
                let arguments = format!("ticket={:016x}", ticket.0);
                // Anyone can send a bad ticket: rate-limited, so a flood cannot fill the disk.
                let outcome = Err(body.message);
                let elapsed = started.elapsed();
                let record =
                    Record { peer: &peer, command: "transfer", arguments: &arguments, outcome, bytes: 0, elapsed };
                shared.history.record_failure(record);
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

/// How one download's bytes are sent: whole ([`send_whole`]) or in the delta form ([`bulk_delta::send`]).
type SendOne<'a> = &'a mut dyn FnMut(&Shared, &mut StdTcpStream, &str, &PendingDownload) -> Result<Sent>;

/// How one upload's bytes are read into a temporary file: whole ([`receive_whole`]) or in the delta form
/// ([`bulk_delta::receive`]).
type ReceiveOne<'a> = &'a mut dyn FnMut(
    &Shared,
    &mut StdTcpStream,
    &str,
    &PendingUpload,
) -> std::result::Result<(AtomicFile, Received), FileFailed>;

/// Sends one whole file, opened beneath the share's root without following a link.
fn send_whole(shared: &Shared, stream: &mut StdTcpStream, peer: &str, download: &PendingDownload) -> Result<Sent> {
    let (entry, from) = (&download.entry, (download.stamp, download.offset));
    let opened = (shared.share.open_file(&entry.path).map(|(file, _)| file), shared.share.shown(&entry.path));
    let source = (opened.0, opened.1.as_path());
    tcp::send_file_from(stream, source, &entry.path, peer, from, entry.md5, &Progress::default())
}

/// Sends each file in turn. A file that cannot be sent ends with a failed trailer and the next one follows; a
/// broken connection ends them all.
fn send_all(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    downloads: Vec<PendingDownload>,
    send: SendOne,
) -> Result<()> {
    let mut learned_md5 = false;
    let mut result = Ok(());
    for download in downloads {
        let started = Instant::now();
        let entry = &download.entry;
        let mut arguments = format!("path={:?} requested_by={}", entry.path, download.peer);
        if download.offset > 0 {
            arguments += &format!(" offset={}", download.offset);
        }
        match send(shared, stream, peer, &download) {
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

/// A received, verified file waiting for its group's commit.
struct Staged {
    file: AtomicFile,
    md5: Md5Digest,
    bytes: u64,
}

/// Receives each file in turn and answers each with its verdict once its group is committed; a failure leaves
/// that path as it was.
fn receive_all(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    uploads: Vec<PendingUpload>,
    receive: ReceiveOne,
) -> Result<()> {
    let mut reader = stream.try_clone().map_err(|e| Error::net(peer, e))?;
    let mut uploads = uploads.into_iter().peekable();
    while uploads.peek().is_some() {
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let mut broken = None;
        while let Some(upload) = uploads.next_if(|_| group.len() < GROUP_FILES && group_bytes < GROUP_BYTES) {
            group_bytes += upload.size;
            let started = Instant::now();
            let staged = match stage(shared, &mut reader, peer, &upload, receive) {
                Ok(staged) => Ok(staged),
                Err(FileFailed::Alone(e)) => Err(e),
                Err(FileFailed::StreamBroken(e)) => {
                    group.push((upload, started, Err(Error::Remote(e.to_body()))));
                    broken = Some(e);
                    break;
                }
            };
            group.push((upload, started, staged));
        }
        for (upload, started, verdict) in commit_group(shared, group) {
            let arguments = format!("path={:?} requested_by={}", upload.rel, upload.peer);
            let (trailer, bytes, outcome) = match verdict {
                Ok((md5, bytes)) => (BulkTrailer::Done { size: bytes, md5 }, bytes, Ok(())),
                Err(e) => (BulkTrailer::Failed(e.to_body()), 0, Err(e.to_string())),
            };
            record(shared, peer, ("receive", &arguments), outcome, bytes, started);
            // After a broken stream the verdicts are a courtesy: the client may already be gone.
            let answered = tcp::write_trailer(stream, peer, &trailer);
            if broken.is_none() {
                answered?;
            }
        }
        if let Some(e) = broken {
            return Err(e);
        }
    }
    Ok(())
}

/// Receives one whole file into a temporary file in the share's `.tandem/tmp`.
pub(super) fn receive_whole(
    shared: &Shared,
    reader: &mut StdTcpStream,
    peer: &str,
    upload: &PendingUpload,
) -> std::result::Result<(AtomicFile, Received), FileFailed> {
    tcp::receive_to_temp(reader, peer, AtomicFile::create_in(&shared.share, &upload.rel), upload.size)
}

/// Receives one file into a temporary file and checks it against what the client said.
fn stage(
    shared: &Shared,
    reader: &mut StdTcpStream,
    peer: &str,
    upload: &PendingUpload,
    receive: ReceiveOne,
) -> std::result::Result<Staged, FileFailed> {
    let (mut file, received) = receive(shared, reader, peer, upload)?;
    let checked = match received.trailer {
        BulkTrailer::Failed(body) => Err(Error::Remote(body)),
        BulkTrailer::Done { size, .. } if size != upload.size || received.bytes != upload.size => {
            Err(Error::SizeMismatch { path: upload.rel.clone(), expected: upload.size, actual: received.bytes })
        }
        BulkTrailer::Done { md5, .. } if md5 != received.md5 => Err(Error::Md5Mismatch {
            path: upload.rel.clone(),
            expected: md5.to_string(),
            actual: received.md5.to_string(),
        }),
        BulkTrailer::Done { .. } => file.set_mode(upload.mode).and_then(|()| file.stage(Some(upload.mtime_ns))),
    };
    checked.map_err(FileFailed::Alone)?;
    Ok(Staged { file, md5: received.md5, bytes: received.bytes })
}

type Verdict = Result<(Md5Digest, u64)>;

/// Commits a group of staged files: their bytes are made durable together, then each is checked against what
/// its path must still hold and renamed into place (the version it replaces goes to the trash), then the renames
/// are made durable and the journal records them. Only then does any client hear that a file is stored.
fn commit_group(
    shared: &Shared,
    group: Vec<(PendingUpload, Instant, Result<Staged>)>,
) -> Vec<(PendingUpload, Instant, Verdict)> {
    let staged: Vec<&AtomicFile> = group.iter().filter_map(|(_, _, s)| s.as_ref().ok().map(|s| &s.file)).collect();
    let synced = sync_staged(&staged).map_err(|e| e.to_body());
    // From the last checks to the journal entries, no other write of these paths can come in between.
    let rels: Vec<&str> = group.iter().filter(|(_, _, s)| s.is_ok()).map(|(u, _, _)| u.rel.as_str()).collect();
    let held = shared.path_locks.hold(&rels);
    // Checked again as each file lands: two uploads in flight may be twins of each other.
    let mut twins = CaseTwins::default();
    let placed: Vec<_> = group
        .into_iter()
        .map(|(upload, started, staged)| {
            let placed = staged.and_then(|staged| {
                synced.clone().map_err(Error::Remote)?;
                place(shared, &upload, staged, &mut twins)
            });
            (upload, started, placed)
        })
        .collect();
    let (placed, renamed): (Vec<_>, Vec<_>) = placed
        .into_iter()
        .map(|(upload, started, placed)| match placed {
            Ok((md5, bytes, renamed)) => ((upload, started, Ok((md5, bytes))), Some(renamed)),
            Err(e) => ((upload, started, Err(e)), None),
        })
        .unzip();
    let renamed: Vec<Renamed> = renamed.into_iter().flatten().collect();
    let durable = sync_renamed(&renamed).map_err(|e| e.to_body());
    let verdicts = placed
        .into_iter()
        .map(|(upload, started, placed)| {
            let verdict = placed.and_then(|(md5, bytes)| {
                let written = shared.share.meta(&upload.rel).ok().flatten().map(|meta| (meta.stamp(), md5));
                if let Some((stamp, md5)) = written {
                    shared.hashes.insert(&upload.rel, stamp, md5);
                }
                refresh_knowing(shared, &upload.rel, upload.client.as_ref().map(|c| c.host.as_str()), written)?;
                durable.clone().map_err(Error::Remote)?;
                Ok((md5, bytes))
            });
            (upload, started, verdict)
        })
        .collect();
    drop(held);
    verdicts
}

/// Checks one staged file against what its path must still hold and renames it into place, beneath the share's
/// root without following a link; the version it replaces goes to the trash ([`crate::share::Share::place`]).
fn place(
    shared: &Shared,
    upload: &PendingUpload,
    staged: Staged,
    twins: &mut CaseTwins,
) -> Result<(Md5Digest, u64, Renamed)> {
    may_write(shared, &upload.rel, upload.client.as_ref())?;
    twins.check(shared, &upload.rel, None)?;
    check_expect(shared, &upload.rel, upload.expect)?;
    let renamed = staged.file.rename_into_place()?;
    Ok((staged.md5, staged.bytes, renamed))
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
