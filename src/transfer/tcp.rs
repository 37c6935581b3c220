//! The bulk stream over TCP, on plain blocking sockets (each transfer runs on a blocking thread).
//!
//! Wire form (see [`crate::protocol`]): chunks of `u32 length + bytes`, a zero length, then one trailer frame.
//! Both ends hash a large file on a second thread ([`ChunkHasher`]) so MD5 overlaps with socket and disk I/O: on
//! the sender only when the hash cache does not already know the file's MD5. A batch channel carries several such
//! streams back to back; see [`crate::protocol`].

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use bytes::Bytes;

use super::Progress;
use super::sink::{Prefix, with_verified_sink, with_verified_sink_from};
use crate::digest::{ChunkHasher, FileHasherThread, Md5Digest, Md5Stream};
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, ErrorBody, MAX_CHUNK_LEN, codec, frame};
use crate::share::{AtomicFile, FileStamp};

/// Chunks waiting for the hasher; bounds memory at this many MiB per transfer.
const HASH_QUEUE: usize = 8;
/// The trailer is a few dozen bytes; refuse anything large.
const MAX_TRAILER_LEN: usize = 64 * 1024;

/// What the sender did.
pub struct Sent {
    pub bytes: u64,
    /// The MD5 the sender computed, if it had to (to put in its hash cache).
    pub computed_md5: Option<Md5Digest>,
    /// The trailer that ended the stream.
    pub trailer: BulkTrailer,
}

/// Sends the file at `path`, which must still be the version `expected` describes. `known_md5` spares the hashing,
/// and then the bytes go from the page cache to the socket with `sendfile`, never through user space.
pub fn send_file(
    stream: &mut (impl Write + AsRawFd),
    path: &Path,
    rel: &str,
    peer: &str,
    expected: FileStamp,
    known_md5: Option<Md5Digest>,
    progress: &Progress,
) -> Result<Sent> {
    let opened = File::open(path).map_err(|e| Error::io(path, e));
    send_file_from(stream, (opened, path), rel, peer, (expected, 0), known_md5, progress)
}

/// [`send_file`] of a file already opened (or why it could not be: the trailer says so), from byte `offset` on,
/// for a resumed download; `path` only names it in messages. The trailer's MD5 is still the whole file's: if the
/// hash cache does not know it, a second thread hashes the file from disk while the rest goes out with
/// `sendfile`, so the prefix costs no delay before the first byte.
pub fn send_file_from(
    stream: &mut (impl Write + AsRawFd),
    (opened, path): (Result<File>, &Path),
    rel: &str,
    peer: &str,
    (expected, offset): (FileStamp, u64),
    known_md5: Option<Md5Digest>,
    progress: &Progress,
) -> Result<Sent> {
    let net = |e| Error::net(peer, e);
    let mut file = match opened {
        Ok(file) => file,
        Err(e) => return finish(stream, peer, 0, None, Err(e.to_body())),
    };
    // Checked on the open file itself: an in-place write changes its stamp, a rename over its path cannot
    // change the bytes this handle reads.
    let unchanged = |file: &File| file.metadata().map(|m| FileStamp::of(&m)).ok() == Some(expected);
    if !unchanged(&file) {
        return finish(stream, peer, 0, None, Err(Error::Changed { path: rel.to_string() }.to_body()));
    }
    if offset > expected.size {
        let past = Error::BadOffset { path: rel.to_string(), offset, size: expected.size };
        return finish(stream, peer, 0, None, Err(past.to_body()));
    }
    let whole_file_hasher = match (known_md5, offset) {
        (None, 1..) => {
            let copy = file.try_clone().map_err(|e| Error::io(path, e))?;
            Some(FileHasherThread::spawn(copy, expected.size, path))
        }
        _ => None,
    };
    let mut hasher = (known_md5.is_none() && offset == 0).then(|| ChunkHasher::for_size(expected.size, HASH_QUEUE));
    let mut pos = offset;
    while pos < expected.size {
        let want = (expected.size - pos).min(MAX_CHUNK_LEN as u64) as usize;
        if hasher.is_none() {
            let copied = send_chunk_zero_copy(stream, &file, pos, want).map_err(net)?;
            pos += copied as u64;
            progress.set(pos - offset);
            if copied < want {
                break; // shrank while being read: reported below
            }
            continue;
        }
        let chunk = match read_chunk(&mut file, want) {
            Ok(chunk) => chunk,
            Err(e) => return finish(stream, peer, pos, None, Err(Error::io(path, e).to_body())),
        };
        if chunk.is_empty() {
            break; // shrank while being read: reported below
        }
        stream.write_all(&(chunk.len() as u32).to_be_bytes()).map_err(net)?;
        stream.write_all(&chunk).map_err(net)?;
        pos += chunk.len() as u64;
        progress.set(pos - offset);
        if let Some(hasher) = &mut hasher {
            hasher.feed(chunk);
        }
    }
    let sent = pos - offset;
    let computed = match (hasher, whole_file_hasher) {
        (Some(hasher), _) => Some(hasher.finish()),
        (None, Some(thread)) => match thread.finish() {
            Ok(md5) => Some(md5),
            Err(e) => return finish(stream, peer, sent, None, Err(e.to_body())),
        },
        (None, None) => None,
    };
    if pos != expected.size || !unchanged(&file) {
        return finish(stream, peer, sent, None, Err(Error::Changed { path: rel.to_string() }.to_body()));
    }
    let md5 = computed.or(known_md5).expect("either known or computed");
    finish(stream, peer, sent, computed, Ok(md5))
}

/// Sends one chunk of `len` bytes from `file` at `offset` without copying them through user space. If the file
/// ends early (it shrank), the rest of the promised chunk is zeros so the stream stays in step; returns how many
/// real bytes went out, and the caller reports the change in the trailer.
fn send_chunk_zero_copy(
    stream: &mut (impl Write + AsRawFd),
    file: &File,
    offset: u64,
    len: usize,
) -> std::io::Result<usize> {
    stream.write_all(&(len as u32).to_be_bytes())?;
    let mut done = 0;
    while done < len {
        let n = sendfile(stream, file, offset + done as u64, len - done)?;
        if n == 0 {
            stream.write_all(&vec![0u8; len - done])?;
            break;
        }
        done += n;
    }
    Ok(done)
}

#[cfg(target_os = "linux")]
fn sendfile(stream: &impl AsRawFd, file: &File, offset: u64, len: usize) -> std::io::Result<usize> {
    let mut offset = offset as libc::off_t;
    loop {
        // SAFETY: both descriptors are open for the call, and `offset` is a valid, exclusively borrowed off_t.
        let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, len) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Elsewhere, a plain positioned read and write.
#[cfg(not(target_os = "linux"))]
fn sendfile(stream: &mut impl Write, file: &File, offset: u64, len: usize) -> std::io::Result<usize> {
    let mut buf = vec![0u8; len];
    let n = std::os::unix::fs::FileExt::read_at(file, &mut buf, offset)?;
    stream.write_all(&buf[..n])?;
    Ok(n)
}

/// Sends no data, only a trailer saying why.
pub fn refuse(stream: &mut impl Write, peer: &str, why: ErrorBody) -> Result<Sent> {
    finish(stream, peer, 0, None, Err(why))
}

/// Ends the data and writes the trailer.
fn finish(
    stream: &mut impl Write,
    peer: &str,
    bytes: u64,
    computed_md5: Option<Md5Digest>,
    outcome: std::result::Result<Md5Digest, ErrorBody>,
) -> Result<Sent> {
    let trailer = match outcome {
        Ok(md5) => BulkTrailer::Done { size: bytes, md5 },
        Err(body) => BulkTrailer::Failed(body),
    };
    let mut buf = bytes::BytesMut::with_capacity(64);
    buf.extend_from_slice(&0u32.to_be_bytes());
    codec::encode(&trailer, &mut buf)?;
    stream.write_all(&buf).and_then(|()| stream.flush()).map_err(|e| Error::net(peer, e))?;
    Ok(Sent { bytes, computed_md5, trailer })
}

/// Reads up to `len` bytes (fewer only at end of file) into a fresh buffer, without zero-filling it first.
fn read_chunk(reader: &mut impl Read, len: usize) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// What the receiver got: the bytes' own MD5 and the sender's word on them.
pub struct Received {
    pub bytes: u64,
    pub md5: Md5Digest,
    pub trailer: BulkTrailer,
}

/// Receives a bulk stream into `out`, refusing more than `max_size` bytes; bytes are written and hashed on
/// their own threads ([`with_verified_sink`]) while this one reads the socket.
pub fn receive_file(
    stream: &mut impl Read,
    out: &mut (impl Write + Send),
    out_path: &Path,
    peer: &str,
    max_size: u64,
    progress: &Progress,
) -> Result<Received> {
    receive_file_after(stream, out, out_path, peer, (max_size, Prefix::Hashed(Md5Stream::new())), progress)
}

/// [`receive_file`] for the rest of a file whose first bytes are already on disk ([`Prefix`]): `md5` is then the
/// whole file's.
pub fn receive_file_after(
    stream: &mut impl Read,
    out: &mut (impl Write + Send),
    out_path: &Path,
    peer: &str,
    (max_size, prefix): (u64, Prefix),
    progress: &Progress,
) -> Result<Received> {
    let (received, md5) = with_verified_sink_from(out, out_path, (max_size, prefix), |deliver| {
        receive_chunks(stream, (peer, out_path, max_size), progress, deliver, AfterSinkFailure::Stop)
    })?;
    let trailer = read_trailer(stream, peer)?;
    Ok(Received { bytes: received, md5, trailer })
}

/// Why one file of a batch stream did not arrive, and whether the stream can go on to the next file.
pub enum FileFailed {
    /// The file's bytes were read (or skipped) in full; the next file can follow.
    Alone(Error),
    /// The stream is out of step or gone; nothing more can be read from it.
    StreamBroken(Error),
}

/// Receives one file of a stream into `file`, a temporary file that will replace its destination, refusing more
/// than `size` bytes. If the temporary file could not be made, the file's bytes are skipped so the next can
/// follow.
pub fn receive_to_temp(
    stream: &mut impl Read,
    peer: &str,
    file: Result<AtomicFile>,
    size: u64,
) -> std::result::Result<(AtomicFile, Received), FileFailed> {
    let mut file = match file {
        Ok(file) => file,
        Err(e) => {
            skip_file(stream, peer, size).map_err(FileFailed::StreamBroken)?;
            return Err(FileFailed::Alone(e));
        }
    };
    let temp_path = file.temp_path().to_path_buf();
    // A disk that fails (full, say) fails this file alone: the rest of its bytes are read and dropped, so the
    // sender hears why and the next file can follow.
    let mut in_step = false;
    let sunk = with_verified_sink(&mut file, &temp_path, size, |deliver| {
        let read =
            receive_chunks(stream, (peer, &temp_path, size), &Progress::default(), deliver, AfterSinkFailure::Drain);
        in_step = read.is_ok();
        read
    });
    match sunk {
        Err(e) if !in_step => Err(FileFailed::StreamBroken(e)),
        sunk => {
            let trailer = read_trailer(stream, peer).map_err(FileFailed::StreamBroken)?;
            let (bytes, md5) = sunk.map_err(FileFailed::Alone)?;
            Ok((file, Received { bytes, md5, trailer }))
        }
    }
}

/// Reads one file's stream and throws the bytes away, so that the next file of a batch can follow when this one
/// cannot be stored.
pub fn skip_file(stream: &mut impl Read, peer: &str, max_size: u64) -> Result<()> {
    let skipped = (peer, Path::new("(skipped file)"), max_size);
    receive_chunks(stream, skipped, &Progress::default(), &mut |_| true, AfterSinkFailure::Stop)?;
    read_trailer(stream, peer).map(|_| ())
}

/// Reads one trailer frame: the end of a stream, or an upload's verdict.
pub fn read_trailer(stream: &mut impl Read, peer: &str) -> Result<BulkTrailer> {
    read_message(stream, peer, "transfer trailer")
}

/// Writes one trailer frame on its own (an upload's verdict).
pub fn write_trailer(stream: &mut impl Write, peer: &str, trailer: &BulkTrailer) -> Result<()> {
    write_message(stream, peer, trailer)
}

/// Reads one small message frame (a trailer or a [`crate::protocol::BulkBody`]); `what` names it in errors.
pub fn read_message<T: serde::de::DeserializeOwned>(
    stream: &mut impl Read,
    peer: &str,
    what: &'static str,
) -> Result<T> {
    let len = frame::parse_header(read_header(stream, peer)?, MAX_TRAILER_LEN)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(|e| read_error(peer, e))?;
    codec::decode(&body, what)
}

/// Writes one small message frame and flushes it.
pub fn write_message(stream: &mut impl Write, peer: &str, message: &impl serde::Serialize) -> Result<()> {
    let mut buf = bytes::BytesMut::with_capacity(64);
    codec::encode(message, &mut buf)?;
    stream.write_all(&buf).and_then(|()| stream.flush()).map_err(|e| Error::net(peer, e))
}

/// Sends `bytes` (a signature or a delta) as chunks and the end marker, without a trailer.
pub fn write_blob(stream: &mut impl Write, peer: &str, bytes: &[u8]) -> Result<()> {
    let mut write = || -> std::io::Result<()> {
        for chunk in bytes.chunks(MAX_CHUNK_LEN) {
            stream.write_all(&(chunk.len() as u32).to_be_bytes())?;
            stream.write_all(chunk)?;
        }
        stream.write_all(&0u32.to_be_bytes())?;
        stream.flush()
    };
    write().map_err(|e| Error::net(peer, e))
}

/// Reads what [`write_blob`] sent, refusing more than `max_len` bytes; `what` names it in errors.
pub fn read_blob(stream: &mut impl Read, peer: &str, what: &str, max_len: u64) -> Result<Vec<u8>> {
    let mut blob = Vec::new();
    let mut keep = |chunk: Bytes| {
        blob.extend_from_slice(&chunk);
        true
    };
    let progress = Progress::default();
    receive_chunks(stream, (peer, Path::new(what), max_len), &progress, &mut keep, AfterSinkFailure::Stop)?;
    Ok(blob)
}

/// What [`receive_chunks`] does once `deliver` says the bytes can no longer be stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterSinkFailure {
    /// Stop reading: the stream ends with this file anyway.
    Stop,
    /// Read to the end of the file, dropping the bytes, so the stream stays in step.
    Drain,
}

/// Reads data chunks until the zero-length end marker, handing each to `deliver` until it says no.
fn receive_chunks(
    stream: &mut impl Read,
    (peer, out_path, max_size): (&str, &Path, u64),
    progress: &Progress,
    deliver: &mut dyn FnMut(Bytes) -> bool,
    after_failure: AfterSinkFailure,
) -> Result<u64> {
    let mut received = 0u64;
    let mut delivering = true;
    loop {
        let len = frame::parse_header(read_header(stream, peer)?, MAX_CHUNK_LEN)?;
        if len == 0 {
            return Ok(received);
        }
        if received + len as u64 > max_size {
            return Err(Error::SizeMismatch {
                path: out_path.display().to_string(),
                expected: max_size,
                actual: received + len as u64,
            });
        }
        let chunk = read_chunk(stream, len).map_err(|e| read_error(peer, e))?;
        if chunk.len() != len {
            return Err(Error::Closed { addr: peer.to_string(), during: "in the middle of the file" });
        }
        received += len as u64;
        if delivering && !deliver(chunk) {
            if after_failure == AfterSinkFailure::Stop {
                return Ok(received);
            }
            delivering = false;
        }
        progress.set(received);
    }
}

fn read_header(stream: &mut impl Read, peer: &str) -> Result<[u8; frame::HEADER_LEN]> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream.read_exact(&mut header).map_err(|e| read_error(peer, e))?;
    Ok(header)
}

fn read_error(peer: &str, e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::UnexpectedEof => Error::Closed { addr: peer.to_string(), during: "in the middle of the file" },
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Timeout {
            addr: peer.to_string(),
            seconds: super::TRANSFER_TIMEOUT.as_secs(),
            during: "during the transfer",
        },
        _ => Error::net(peer, e),
    }
}
