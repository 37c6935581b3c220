//! The delta form of the bulk stream (see [`crate::protocol`]). The receiving side has already sent a signature
//! of its older version; the sending side answers with a [`BulkBody`] and then either an rsync delta
//! ([`super::delta`]) or the whole file, whichever is smaller. The receiver rebuilds the file from its own bytes
//! and the delta, and checks the result's MD5 against the trailer exactly as for a whole file.

use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use fast_rsync::Signature;

use super::Progress;
use super::delta;
use super::tcp::{self, Received, Sent};
use crate::digest::{Md5Digest, Md5Stream};
use crate::error::{Error, Result};
use crate::protocol::{BulkBody, BulkTrailer};
use crate::share::FileStamp;

/// Sends the file at `path`, which must still be the version `expected` describes: as a delta against
/// `signature` when there is one and the delta is worth it, whole otherwise. Returns what was sent and whether
/// it was a delta.
pub fn send(
    stream: &mut (impl Write + AsRawFd),
    (path, rel): (&Path, &str),
    peer: &str,
    (expected, known_md5): (FileStamp, Option<Md5Digest>),
    signature: Option<&Signature>,
    progress: &Progress,
) -> Result<(Sent, bool)> {
    if let Some(signature) = signature
        && delta::worth_a_delta(expected.size)
        // A file that cannot be read, or changed, goes the whole way, where the error is reported as usual.
        && let Ok(Some(data)) = read_unchanged(path, expected)
    {
        let md5 = known_md5.unwrap_or_else(|| Md5Digest::of(&data));
        match delta::diff(signature, &data, delta::delta_cap(expected.size)) {
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
    tcp::write_message(stream, peer, &BulkBody::Whole)?;
    let sent = tcp::send_file(stream, path, rel, peer, expected, known_md5, progress)?;
    Ok((sent, false))
}

/// Reads the whole file if it is still `expected`; `None` if it changed.
fn read_unchanged(path: &Path, expected: FileStamp) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = std::fs::File::open(path)?;
    let stamp = |file: &std::fs::File| file.metadata().map(|m| FileStamp::of(&m));
    if stamp(&file)? != expected {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(expected.size as usize);
    file.read_to_end(&mut data)?;
    let on_disk = std::fs::metadata(path).map(|m| FileStamp::of(&m))?;
    Ok((stamp(&file)? == expected && on_disk == expected && data.len() as u64 == expected.size).then_some(data))
}

/// Receives one file sent by [`send`] into `out`, rebuilding a delta from `base`, and refusing a file of more
/// than `size` bytes. The [`Received`] counts and hashes what was written; when a delta came, its length (the
/// bytes that crossed the network) comes too.
pub fn receive(
    stream: &mut impl Read,
    (out, out_path): (&mut (impl Write + Send), &Path),
    peer: &str,
    (size, base): (u64, &[u8]),
    progress: &Progress,
) -> Result<(Received, Option<u64>)> {
    match tcp::read_message::<BulkBody>(stream, peer, "bulk body")? {
        BulkBody::Whole => Ok((tcp::receive_file(stream, out, out_path, peer, size, progress)?, None)),
        BulkBody::Delta => {
            // An honest delta is never much longer than the file it rebuilds.
            let max_len = size + size / 8 + 1024 * 1024;
            let bytes = tcp::read_blob(stream, peer, "delta", max_len)?;
            let trailer = tcp::read_trailer(stream, peer)?;
            let mut sink =
                HashingSink { out: BufWriter::with_capacity(1 << 20, out), md5: Md5Stream::new(), failed: None };
            let applied = delta::apply(base, &bytes, &mut sink, size);
            let flushed = sink.out.flush();
            if let Some(e) = sink.failed.take().or(flushed.err()) {
                return Err(Error::io(out_path, e));
            }
            let written =
                applied.map_err(|e| Error::BadDelta { path: out_path.display().to_string(), reason: e.to_string() })?;
            progress.set(size);
            Ok((Received { bytes: written, md5: sink.md5.finish(), trailer }, Some(bytes.len() as u64)))
        }
    }
}

/// Writes rebuilt bytes and hashes them as they go; remembers a disk error so it is reported as such.
struct HashingSink<W: Write> {
    out: W,
    md5: Md5Stream,
    failed: Option<std::io::Error>,
}

impl<W: Write> Write for HashingSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.out.write_all(buf) {
            Ok(()) => {
                self.md5.update(buf);
                Ok(buf.len())
            }
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                Err(kind.into())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
