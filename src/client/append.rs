//! The client's half of appends ([`crate::transfer::append`]): the older version a delta download names to the
//! server, the rest of a file the server found begins with it, and the check that a local file begins with the
//! server's version before an upload sends only what follows it. Nothing is written in place: a download's
//! temporary file starts as a copy of the bytes held here, gets the rest, and is checked by MD5 before it is
//! committed like any other.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::connection::Connection;
use super::download::verify;
use crate::digest::{Md5Digest, Md5Stream};
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, Held, Ticket};
use crate::share::{AtomicFile, Destination, Entry, FileStamp};
use crate::transfer::sink::Prefix;
use crate::transfer::{Progress, append, delta, tcp};

/// The version of a file a delta download already has here.
pub(super) struct Base {
    /// Opened once, never through a link: the bytes an append copies are those that were hashed.
    pub file: Arc<File>,
    pub held: Held,
    /// All its bytes, when it is worth an rsync delta (for the signature and the rebuild).
    pub bytes: Option<Vec<u8>>,
}

/// The destination's current version, if it is a regular file worth a delta or an append, hashed (and read
/// whole, if worth a delta). Blocking.
pub(super) fn read_base(dest: &Destination) -> Result<Option<Base>> {
    let Some((mut file, meta)) = dest.open_current()? else { return Ok(None) };
    if meta.size < append::APPEND_MIN_SIZE && !delta::worth_a_delta(meta.size) {
        return Ok(None);
    }
    let (held, bytes) = if delta::worth_a_delta(meta.size) {
        let mut bytes = Vec::with_capacity(meta.size as usize);
        file.read_to_end(&mut bytes).map_err(|e| Error::io(dest.shown(), e))?;
        let mut md5 = Md5Stream::new();
        md5.update(&bytes);
        (Held { size: bytes.len() as u64, md5: md5.finish() }, Some(bytes))
    } else {
        let md5 = Md5Stream::of_file_prefix(&file, meta.size).map_err(|e| Error::io(dest.shown(), e))?;
        (Held { size: meta.size, md5: md5.finish() }, None)
    };
    Ok(Some(Base { file: Arc::new(file), held, bytes }))
}

/// Checks a ticket's offset for a request for `path` that named `held`: 0 (no append), or exactly `held.size`
/// within the file of `size` bytes. Anything else is a server misbehaving.
pub(super) fn checked_offset(
    conn: &Connection,
    path: &str,
    (offset, held): (u64, Option<Held>),
    size: u64,
) -> Result<u64> {
    match held {
        _ if offset == 0 => Ok(0),
        Some(held) if offset == held.size && offset <= size => Ok(offset),
        _ => {
            let reason = format!("{} answered with a ticket for {path:?} starting at byte {offset}", conn.addr());
            Err(Error::Malformed { what: "server answer", reason })
        }
    }
}

/// A download's announced file, its permission bits and where its stream starts.
pub(super) type Offer = (Ticket, Entry, Option<u32>, u64);

/// Receives the rest of the file `offer` announces, which the server found begins with `base`, into a verified
/// temporary file for `dest` that starts as a copy of `base`. Returns the file (not yet committed), the bytes
/// that crossed the network, and the whole file's MD5.
pub(super) async fn download_rest(
    conn: &Connection,
    (ticket, entry, mode, offset): Offer,
    (dest, base): (&Destination, &Base),
    progress: &Progress,
) -> Result<(AtomicFile, u64, Md5Digest)> {
    progress.set_total(entry.size - offset);
    let (stream, already_read) = conn.open_bulk(ticket).await?;
    let (peer, dest_owned, from, held) = (conn.addr().to_string(), dest.clone(), base.file.clone(), base.held);
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || -> Result<(AtomicFile, u64, Md5Digest)> {
        let mut file = dest_owned.create_file()?;
        let md5 = append::copy_prefix(&from, offset, &mut file).map_err(|e| Error::io(dest_owned.shown(), e))?;
        if md5.clone().finish() != held.md5 {
            let found = "it changed on this side during the transfer".to_string();
            return Err(Error::Stale { path: dest_owned.shown().display().to_string(), found });
        }
        let temp_path = file.temp_path().to_path_buf();
        let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
        let rest = entry.size - offset;
        let sink = (rest, Prefix::Hashed(md5));
        let received = tcp::receive_file_after(&mut stream, &mut file, &temp_path, &peer, sink, &progress)?;
        match received.trailer {
            BulkTrailer::Failed(body) => Err(Error::Remote(body)),
            BulkTrailer::Done { size, .. } if size != received.bytes || size != rest => {
                Err(Error::SizeMismatch { path: entry.path.clone(), expected: rest, actual: received.bytes })
            }
            BulkTrailer::Done { md5, .. } => {
                verify(&mut file, (&entry, mode), received.md5, md5)?;
                Ok((file, received.bytes, received.md5))
            }
        }
    })
    .await
    .map_err(|e| Error::task_failed(format!("the transfer to {}", dest.shown().display()), e))?
}

/// Whether the local file `local` (still the version `stamp`) begins with `held`, the server's version: then an
/// upload need send only what follows it. Blocking.
pub(super) fn local_begins_with(local: &Path, stamp: FileStamp, held: Held) -> Result<bool> {
    // A version as long as this file is this file, or another one: either way there is nothing to append.
    if held.size == 0 || held.size >= stamp.size {
        return Ok(false);
    }
    let file = File::open(local).map_err(|e| Error::io(local, e))?;
    append::begins_with(&file, stamp, held).map_err(|e| Error::io(local, e))
}
