//! The delta form of the bulk stream (see [`crate::protocol`]). The receiving side has already sent a signature
//! of its older version; the sending side answers with a [`BulkBody`] and then either an rsync delta
//! ([`super::delta`]) or the whole file, whichever is smaller. The receiver rebuilds the file from its own bytes
//! and the delta, and checks the result's MD5 against the trailer exactly as for a whole file.

use std::fs::File;
use std::io::{Read, Write};

use bytes::Bytes;
use std::os::fd::AsRawFd;
use std::path::Path;

use fast_rsync::Signature;

use super::Progress;
use super::delta;
use super::sink::with_verified_sink;
use super::tcp::{self, Received, Sent};
use crate::digest::{Md5Digest, md5_open};
use crate::error::{Error, Result};
use crate::protocol::{BulkBody, BulkTrailer, ErrorBody, ErrorCode};
use crate::share::FileStamp;

/// Opens the file to send, each time it is read: by path for a client's own file, beneath the share's root
/// handle on a server.
pub type Open<'a> = &'a (dyn Fn() -> Result<File> + Sync);

/// Sends the file that `open` opens (shown as `path`), which must still be the version `expected` describes: as
/// a delta against `signature` when there is one and the delta is worth it, whole otherwise, or (with
/// `delta_only`) not at all. Returns what was sent and whether it was a delta.
pub fn send(
    stream: &mut (impl Write + AsRawFd),
    (open, path, rel): (Open<'_>, &Path, &str),
    peer: &str,
    (expected, known_md5): (FileStamp, Option<Md5Digest>),
    (signature, delta_only): (Option<&Signature>, bool),
    progress: &Progress,
) -> Result<(Sent, bool)> {
    if let Some(signature) = signature
        && delta::worth_a_delta(expected.size)
        // A file that cannot be read, or changed, goes the whole way, where the error is reported as usual.
        && let Some((md5, diffed)) = diff_unchanged((open, path), expected, known_md5, signature)
    {
        match diffed {
            Ok(Some(bytes)) => {
                tcp::write_message(stream, peer, &BulkBody::Delta)?;
                tcp::write_blob(stream, peer, &bytes)?;
                progress.set(expected.size);
                let trailer = BulkTrailer::Done { size: expected.size, md5 };
                tcp::write_trailer(stream, peer, &trailer)?;
                let computed_md5 = known_md5.is_none().then_some(md5);
                return Ok((Sent { bytes: bytes.len() as u64, computed_md5, trailer }, true));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(path = rel, "sending whole: {e}"),
        }
    }
    if delta_only {
        tcp::write_message(stream, peer, &BulkBody::Declined)?;
        let declined = ErrorBody { code: ErrorCode::BadRequest, message: format!("{rel}: no delta worth sending") };
        return Ok((Sent { bytes: 0, computed_md5: None, trailer: BulkTrailer::Failed(declined) }, false));
    }
    tcp::write_message(stream, peer, &BulkBody::Whole)?;
    let sent = tcp::send_file_from(stream, (open(), path), rel, peer, (expected, 0), known_md5, progress)?;
    Ok((sent, false))
}

/// A delta, `None` when it would not be worth sending, or why the signature could not be used.
type Diffed = std::result::Result<Option<Vec<u8>>, delta::DeltaError>;

/// Reads the file (which must still be `expected`) and diffs it against `signature`, while a second thread hashes
/// it from disk if its MD5 is not known: both read every byte, so side by side they take the time of one. `None`
/// if the file cannot be read or changed meanwhile.
fn diff_unchanged(
    (open, path): (Open<'_>, &Path),
    expected: FileStamp,
    known_md5: Option<Md5Digest>,
    signature: &Signature,
) -> Option<(Md5Digest, Diffed)> {
    let stamp = |file: &File| file.metadata().ok().map(|m| FileStamp::of(&m));
    std::thread::scope(|scope| {
        // The hasher reads the expected version only if its own handle shows that version before and after.
        let hasher = known_md5.is_none().then(|| {
            scope.spawn(|| {
                let mut file = open().ok().filter(|file| stamp(file) == Some(expected))?;
                let md5 = md5_open(&mut file, path).ok()?;
                (stamp(&file) == Some(expected)).then_some(md5)
            })
        });
        let cap = delta::delta_cap(expected.size);
        let diffed = open().ok().and_then(|file| read_unchanged(file, expected).ok().flatten());
        let diffed = diffed.map(|data| delta::diff(signature, &data, cap));
        let md5 = match hasher {
            Some(hasher) => hasher.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => known_md5,
        };
        Some((md5?, diffed?))
    })
}

/// Reads the whole open file if it is still `expected`; `None` if it changed.
fn read_unchanged(mut file: File, expected: FileStamp) -> std::io::Result<Option<Vec<u8>>> {
    let stamp = |file: &File| file.metadata().map(|m| FileStamp::of(&m));
    if stamp(&file)? != expected {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(expected.size as usize);
    file.read_to_end(&mut data)?;
    Ok((stamp(&file)? == expected && data.len() as u64 == expected.size).then_some(data))
}

/// Receives one file sent by [`send`] into `out`, rebuilding a delta from `base`, and refusing a file of more
/// than `size` bytes. The [`Received`] counts and hashes what was written; when a delta came, its length (the
/// bytes that crossed the network) comes too. `None`: the sender declined, as a `delta_only` request allows.
pub fn receive(
    stream: &mut impl Read,
    (out, out_path): (&mut (impl Write + Send), &Path),
    peer: &str,
    (size, base): (u64, &[u8]),
    progress: &Progress,
) -> Result<Option<(Received, Option<u64>)>> {
    match tcp::read_message::<BulkBody>(stream, peer, "bulk body")? {
        BulkBody::Declined => Ok(None),
        BulkBody::Whole => Ok(Some((tcp::receive_file(stream, out, out_path, peer, size, progress)?, None))),
        BulkBody::Delta => {
            let (bytes, trailer) = read_delta(stream, peer, size)?;
            let written = rebuild(base, &bytes, (out, out_path), size)?;
            progress.set(size);
            Ok(Some((Received { bytes: written.0, md5: written.1, trailer }, Some(bytes.len() as u64))))
        }
    }
}

/// Reads a delta for a file of `size` bytes, and the trailer after it.
pub fn read_delta(stream: &mut impl Read, peer: &str, size: u64) -> Result<(Vec<u8>, BulkTrailer)> {
    // An honest delta is never much longer than the file it rebuilds.
    let max_len = size + size / 8 + 1024 * 1024;
    let bytes = tcp::read_blob(stream, peer, "delta", max_len)?;
    Ok((bytes, tcp::read_trailer(stream, peer)?))
}

/// Rebuilds a file of `size` bytes from `base` and `delta` into `out`; returns its size and MD5.
pub fn rebuild(
    base: &[u8],
    delta: &[u8],
    (out, out_path): (&mut (impl Write + Send), &Path),
    size: u64,
) -> Result<(u64, Md5Digest)> {
    // The rebuilt bytes go to disk and to the hasher on threads of their own, as received bytes do.
    with_verified_sink(out, out_path, size, |deliver| {
        let mut chunks = Chunks { deliver, pending: Vec::with_capacity(CHUNK_LEN) };
        let applied = delta::apply(base, delta, &mut chunks, size);
        let flushed = chunks.flush();
        let written =
            applied.map_err(|e| Error::BadDelta { path: out_path.display().to_string(), reason: e.to_string() })?;
        flushed.map_err(|e| Error::io(out_path, e))?;
        Ok(written)
    })
}

/// Rebuilt bytes are handed on in chunks of this size.
const CHUNK_LEN: usize = 1 << 20;

/// Gathers rebuilt bytes into chunks for a [`with_verified_sink`] delivery; fails once the disk has.
struct Chunks<'a> {
    deliver: &'a mut dyn FnMut(Bytes) -> bool,
    pending: Vec<u8>,
}

impl Write for Chunks<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A long copy from the base is handed on a chunk at a time, so hashing starts before it ends.
        let mut rest = buf;
        while !rest.is_empty() {
            let take = rest.len().min(CHUNK_LEN - self.pending.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == CHUNK_LEN {
                self.flush()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK_LEN)));
        match (self.deliver)(chunk) {
            true => Ok(()),
            // The sink reports the disk's own error.
            false => Err(std::io::Error::other("the disk refused the rebuilt bytes")),
        }
    }
}
