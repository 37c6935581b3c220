//! Delta downloads and uploads of one file: when the receiving side already holds an older version, only the
//! changed parts travel ([`crate::transfer::delta`]). The result is checked by MD5 exactly like a whole
//! transfer, and committed the same way. A delta that does not rebuild the right bytes (its strong hash is
//! MD4, so this is possible in principle) is retried once as a whole transfer. A file that grew by an append
//! travels as the appended bytes alone, with no signature ([`super::append`]).

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use super::append::{Base, Offer, checked_offset, download_rest, local_begins_with};
use super::connection::Connection;
use super::download::{BeforeCommit, DownloadReport, download_tcp_to, report, verify};
use super::upload::{UploadReport, local_file, read_verdict, upload_expecting};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, ErrorCode, Expect, Held, Request, UploadItem};
use crate::share::{AtomicFile, Destination, Entry, sync_renamed, sync_staged};
use crate::transfer::{Progress, delta, tcp, tcp_delta};

/// Downloads `remote` over TCP to exactly `dest` (a path whose folder must exist, or a place in sync's folder); if
/// `dest` already holds a file worth a delta, only the parts that differ travel, and if the server's file begins
/// with it (an append), only the bytes after it.
pub async fn download_delta_to(
    conn: &Connection,
    remote: &str,
    dest: &Destination,
    before_commit: BeforeCommit,
    progress: &Progress,
) -> Result<DownloadReport> {
    let started = Instant::now();
    let Some(base) = read_base(dest).await? else {
        return download_tcp_to(conn, remote, dest, before_commit, progress).await;
    };
    let offer = ask(conn, remote, &base, false).await?;
    let rebuilt = match offer.3 {
        0 => exchange(conn, offer, (dest, base), progress).await?,
        _ => Some(append_rest(conn, offer, (dest, &base), progress).await?),
    };
    let (entry, rebuilt) = rebuilt.ok_or_else(|| {
        let reason = format!("{} declined a delta nobody asked it to decline", conn.addr());
        Error::Malformed { what: "bulk stream", reason }
    })?;
    let file = match rebuilt.file {
        Ok(file) => file,
        Err(e) if rebuilt.was_delta && rebuilt_wrong(&e) => {
            tracing::warn!(path = remote, "delta rebuilt the wrong bytes; downloading the whole file: {e}");
            return download_tcp_to(conn, remote, dest, before_commit, progress).await;
        }
        Err(e) => return Err(e),
    };
    commit(file, before_commit, dest).await?;
    Ok(delta_report(entry, dest, (rebuilt.bytes, rebuilt.signature_bytes, rebuilt.was_delta), rebuilt.md5, started))
}

/// Updates `dest`, an older version of `remote`, with a delta (or the bytes appended to it) over TCP, if one is
/// worth it: `None` when `dest` is not worth a delta or the versions share too little, and nothing else has been
/// fetched. `download udp` uses it, since a delta is small and UDP carries whole files.
pub async fn download_delta_only(
    conn: &Connection,
    remote: &str,
    dest: &Destination,
    progress: &Progress,
) -> Result<Option<DownloadReport>> {
    let started = Instant::now();
    let Some(base) = read_base(dest).await? else { return Ok(None) };
    let offer = ask(conn, remote, &base, true).await?;
    let rebuilt = match offer.3 {
        0 => exchange(conn, offer, (dest, base), progress).await?,
        _ => Some(append_rest(conn, offer, (dest, &base), progress).await?),
    };
    let Some((entry, Rebuilt { file, bytes, signature_bytes, was_delta, md5 })) = rebuilt else { return Ok(None) };
    match file {
        Ok(file) => commit(file, Box::new(|| Ok(())), dest).await?,
        // A whole download follows, which the caller makes.
        Err(e) if rebuilt_wrong(&e) => {
            tracing::warn!(path = remote, "delta rebuilt the wrong bytes; downloading the whole file: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    Ok(Some(delta_report(entry, dest, (bytes, signature_bytes, was_delta), md5, started)))
}

/// Asks for `remote` in the delta form, naming the version held here: the ticket's offset is that version's
/// length if the server's file begins with it (an append), else 0.
async fn ask(conn: &Connection, remote: &str, base: &Base, delta_only: bool) -> Result<Offer> {
    let append_to = Some(base.held);
    let request = Request::DownloadDelta { path: remote.to_string(), delta_only, append_to };
    let (ticket, entry, mode, offset) = conn.ticket_at(request).await?;
    let offset = checked_offset(conn, remote, (offset, append_to), entry.size)?;
    Ok((ticket, entry, mode, offset))
}

/// Receives the bytes after `base` (an append) into a verified temporary file beside `dest`.
async fn append_rest(
    conn: &Connection,
    offer: Offer,
    (dest, base): (&Destination, &Base),
    progress: &Progress,
) -> Result<(Entry, Rebuilt)> {
    let entry = offer.1.clone();
    let rest = download_rest(conn, offer, (dest, base), progress).await;
    // Bytes that do not rebuild the server's file are reported as a delta's would be, and fetched whole.
    let (file, bytes, md5) = match rest {
        Ok((file, bytes, md5)) => (Ok(file), bytes, md5),
        Err(e) if rebuilt_wrong(&e) => (Err(e), 0, base.held.md5),
        Err(e) => return Err(e),
    };
    Ok((entry, Rebuilt { file, bytes, signature_bytes: 0, was_delta: true, md5 }))
}

/// Sends the signature of `base` (the bytes of `dest`, when worth a delta) on the bulk channel `offer` opens,
/// and receives the delta (or, unless the request said `delta_only`, the whole file) into a verified temporary
/// file beside `dest`. `None`: the server declined, as `delta_only` allows.
async fn exchange(
    conn: &Connection,
    (ticket, entry, mode, _): Offer,
    (dest, base): (&Destination, Base),
    progress: &Progress,
) -> Result<Option<(Entry, Rebuilt)>> {
    progress.set_total(entry.size);
    let (mut stream, already_read) = conn.open_bulk(ticket).await?;
    let peer = conn.addr().to_string();
    let (dest_owned, announced, progress_for_task) = (dest.clone(), entry.clone(), progress.clone());
    let rebuilt = tokio::task::spawn_blocking(move || -> Result<Option<Rebuilt>> {
        let base = base.bytes.unwrap_or_default();
        let worth = delta::worth_a_delta(announced.size) && !base.is_empty();
        let signature = if worth { delta::signature(&base) } else { Vec::new() };
        tcp::write_blob(&mut stream, &peer, &signature)?;
        let mut stream = Read::chain(std::io::Cursor::new(already_read), stream);
        let mut file = dest_owned.create_file()?;
        let temp_path = file.temp_path().to_path_buf();
        let sink = (&mut file, temp_path.as_path());
        let received = tcp_delta::receive(&mut stream, sink, &peer, (announced.size, &base), &progress_for_task)?;
        let Some((received, delta_len)) = received else { return Ok(None) };
        let checked = match received.trailer {
            BulkTrailer::Failed(body) => Err(Error::Remote(body)),
            BulkTrailer::Done { size, .. } if size != announced.size => {
                Err(Error::SizeMismatch { path: announced.path.clone(), expected: announced.size, actual: size })
            }
            BulkTrailer::Done { md5, .. } => verify(&mut file, (&announced, mode), received.md5, md5),
        };
        Ok(Some(Rebuilt {
            file: checked.map(|()| file),
            bytes: delta_len.unwrap_or(received.bytes),
            signature_bytes: signature.len() as u64,
            was_delta: delta_len.is_some(),
            md5: received.md5,
        }))
    })
    .await
    .map_err(|e| task_failed(&dest.shown(), e))??;
    Ok(rebuilt.map(|rebuilt| (entry, rebuilt)))
}

/// The report of a download that went in the delta form: `bytes` of delta (or whole file) one way, the
/// signature the other.
fn delta_report(
    entry: Entry,
    dest: &Destination,
    (bytes, signature_bytes, was_delta): (u64, u64, bool),
    md5: Md5Digest,
    started: Instant,
) -> DownloadReport {
    let size = entry.size;
    let mut done = report(entry, dest.shown(), bytes, md5, "tcp", started, None);
    (done.size, done.bytes_sent, done.delta) = (size, signature_bytes, was_delta);
    done
}

/// A file received in the delta form, verified (or not) and not yet committed.
struct Rebuilt {
    file: Result<AtomicFile>,
    /// Payload bytes that crossed the network: the delta, or the whole file.
    bytes: u64,
    signature_bytes: u64,
    was_delta: bool,
    md5: Md5Digest,
}

/// Whether an error means a delta's result did not come out as the sender announced it (a mismatch, a delta that
/// did not apply, here or on the server: `Changed` either way), so a whole transfer may succeed.
fn rebuilt_wrong(error: &Error) -> bool {
    error.code() == ErrorCode::Changed
}

/// The destination's current version, if it is a regular file worth a delta or an append (never read through
/// a link).
async fn read_base(dest: &Destination) -> Result<Option<Base>> {
    let dest_owned = dest.clone();
    tokio::task::spawn_blocking(move || super::append::read_base(&dest_owned))
        .await
        .map_err(|e| task_failed(&dest.shown(), e))?
}

/// Makes a verified file durable, runs the caller's last check, and renames it into place.
async fn commit(file: AtomicFile, before_commit: BeforeCommit, dest: &Destination) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        sync_staged(&[&file])?;
        before_commit()?;
        let dest = file.rename_into_place()?;
        sync_renamed(&[dest])
    })
    .await
    .map_err(|e| task_failed(&dest.shown(), e))?
}

/// Uploads `local` to `remote`, refused unless `remote` still holds what `expect` says; if the server holds an
/// older version worth a delta, only the parts that differ travel, and if it holds `append_to` (its version, as
/// the caller last saw it) and this file begins with it, only the bytes after it.
pub async fn upload_delta(
    conn: &Connection,
    local: &Path,
    remote: &str,
    (expect, append_to): (Option<Expect>, Option<Held>),
    progress: &Progress,
) -> Result<UploadReport> {
    let started = Instant::now();
    let (stamp, mode) = local_file(local)?;
    // The server's version, if this file begins with it: then only the bytes after it need travel.
    let append_to = match append_to {
        Some(held) => {
            let source = local.to_path_buf();
            let begins = tokio::task::spawn_blocking(move || local_begins_with(&source, stamp, held))
                .await
                .map_err(|e| task_failed(local, e))??;
            begins.then_some(held)
        }
        None => None,
    };
    if append_to.is_none() && !delta::worth_a_delta(stamp.size) {
        return upload_expecting(conn, local, remote, expect, progress).await;
    }
    progress.set_total(stamp.size);
    let item = UploadItem { path: remote.to_string(), size: stamp.size, mtime_ns: stamp.mtime_ns, mode, expect };
    let (ticket, entry, _, offset) = conn.ticket_at(Request::UploadDelta { file: item, append_to }).await?;
    let offset = checked_offset(conn, remote, (offset, append_to), stamp.size)?;
    let (stream, already_read) = conn.open_bulk(ticket).await?;
    let (peer, source, shown, progress_for_task) =
        (conn.addr().to_string(), local.to_path_buf(), entry.path.clone(), progress.clone());
    let outcome = tokio::task::spawn_blocking(move || -> Result<Sent> {
        // The signature may have arrived right behind the server's hello.
        let mut reader = std::io::Cursor::new(already_read).chain(stream);
        // An append: the server sends nothing before the bytes after its version.
        let signature = match offset {
            0 => tcp::read_blob(&mut reader, &peer, "signature", delta::MAX_SIGNATURE_LEN as u64)?,
            _ => Vec::new(),
        };
        let (unread, mut stream) = reader.into_inner();
        if unread.position() != unread.get_ref().len() as u64 {
            let reason = "the server sent more than its signature before the file".to_string();
            return Err(Error::Malformed { what: "bulk stream", reason });
        }
        if offset > 0 {
            let opened = std::fs::File::open(&source).map_err(|e| Error::io(&source, e));
            let from = (stamp, offset);
            let sent =
                tcp::send_file_from(&mut stream, (opened, &source), &shown, &peer, from, None, &progress_for_task)?;
            let verdict = read_verdict(&mut stream, &peer, &sent, (&shown, stamp.size));
            return Ok(Sent { verdict, bytes: sent.bytes, signature_bytes: 0, was_delta: true });
        }
        let signature_bytes = signature.len() as u64;
        // A signature this side cannot use costs a whole file, not an error.
        let signature = (!signature.is_empty()).then(|| delta::parse_signature(signature).ok()).flatten();
        let open = || std::fs::File::open(&source).map_err(|e| Error::io(&source, e));
        let file = (&open as tcp_delta::Open<'_>, source.as_path(), shown.as_str());
        let (sent, was_delta) =
            tcp_delta::send(&mut stream, file, &peer, (stamp, None), (signature.as_ref(), false), &progress_for_task)?;
        let verdict = read_verdict(&mut stream, &peer, &sent, (&shown, stamp.size));
        Ok(Sent { verdict, bytes: sent.bytes, signature_bytes, was_delta })
    })
    .await
    .map_err(|e| task_failed(local, e))??;
    let md5 = match outcome.verdict {
        Ok(md5) => md5,
        Err(e) if outcome.was_delta && rebuilt_wrong(&e) => {
            tracing::warn!(path = remote, "delta rebuilt the wrong bytes; uploading the whole file: {e}");
            return upload_expecting(conn, local, remote, expect, progress).await;
        }
        Err(e) => return Err(e),
    };
    Ok(UploadReport {
        path: entry.path,
        source: local.to_path_buf(),
        size: stamp.size,
        md5,
        mtime_ns: stamp.mtime_ns,
        mode,
        bytes_sent: outcome.bytes,
        bytes_received: outcome.signature_bytes,
        delta: outcome.was_delta,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What a delta upload's transfer thread did.
struct Sent {
    verdict: Result<Md5Digest>,
    bytes: u64,
    signature_bytes: u64,
    was_delta: bool,
}

fn task_failed(path: &Path, e: tokio::task::JoinError) -> Error {
    Error::task_failed(format!("the transfer of {}", path.display()), e)
}
