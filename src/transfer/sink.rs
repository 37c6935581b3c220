//! Where received bytes go: a writer thread that puts them on disk and a hasher thread that computes their MD5,
//! each behind its own bounded queue. A disk that stalls for a moment does not stop hashing, a slow disk slows
//! the network reader instead of filling memory, and the caller gets the MD5 of exactly what was written. A small
//! stream is written and hashed on the caller's thread instead: for a 100 KB file, two threads would cost more
//! than they overlap. The rest of a resumed download is hashed from disk instead, behind the writer, after the
//! bytes kept from before ([`Prefix::OnDisk`]).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, mpsc};

use bytes::Bytes;

use crate::digest::{FollowingHasher, HasherThread, INLINE_HASH_MAX, Md5Digest, Md5Stream, Watermark};
use crate::error::{Error, Result};

/// Chunks waiting for the hasher and for the disk.
const HASH_QUEUE: usize = 8;
const WRITE_QUEUE: usize = 32;

/// Runs `receive` with a `deliver` function that sends bytes, in order, to disk and to the hasher. `deliver`
/// returns false once the disk has failed; the disk's error is then what this returns. `size` is how many bytes
/// are expected, which decides whether the work is worth threads.
pub fn with_verified_sink<T>(
    out: &mut (impl Write + Send),
    out_path: &Path,
    size: u64,
    receive: impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> Result<T>,
) -> Result<(T, Md5Digest)> {
    with_verified_sink_from(out, out_path, (size, Prefix::Hashed(Md5Stream::new())), receive)
}

/// The bytes of the file before those a sink receives (a resumed download keeps them on disk).
#[derive(Clone)]
pub enum Prefix {
    /// Hashed already into this state (a fresh download: nothing).
    Hashed(Md5Stream),
    /// The first `len` bytes of `file`, the file the sink appends to. A thread hashes them from disk and then
    /// each received byte once it is written, so the prefix costs no time before the first byte is received.
    OnDisk { file: Arc<File>, len: u64 },
}

/// [`with_verified_sink`] after a prefix, so the MD5 returned is the whole file's; `size` counts only the bytes
/// still to come.
pub fn with_verified_sink_from<T>(
    out: &mut (impl Write + Send),
    out_path: &Path,
    (size, prefix): (u64, Prefix),
    receive: impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> Result<T>,
) -> Result<(T, Md5Digest)> {
    let hashed = match prefix {
        Prefix::Hashed(hashed) => hashed,
        Prefix::OnDisk { file, len } => return following_sink(out, out_path, (file, len), receive),
    };
    if size <= INLINE_HASH_MAX {
        return inline_sink(out, out_path, hashed, receive);
    }
    let hasher = HasherThread::spawn_from(HASH_QUEUE, hashed);
    let received = std::thread::scope(|scope| {
        let (to_disk, from_net) = mpsc::sync_channel::<Bytes>(WRITE_QUEUE);
        let writer = scope.spawn(move || -> Result<()> {
            for chunk in from_net {
                out.write_all(&chunk).map_err(|e| Error::io(out_path, e))?;
            }
            Ok(())
        });
        let result = receive(&mut |chunk: Bytes| {
            hasher.feed(chunk.clone());
            to_disk.send(chunk).is_ok()
        });
        drop(to_disk);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A disk error explains a stop better than whatever the network did next.
        written.and(result)
    });
    let md5 = hasher.finish();
    Ok((received?, md5))
}

/// [`with_verified_sink_from`] for a prefix on disk: the writer thread moves a [`Watermark`] as it writes, and a
/// [`FollowingHasher`] hashes the file from its start up to the mark.
fn following_sink<T>(
    out: &mut (impl Write + Send),
    out_path: &Path,
    (file, len): (Arc<File>, u64),
    receive: impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> Result<T>,
) -> Result<(T, Md5Digest)> {
    let mark = Arc::new(Watermark::new(len));
    let hasher = FollowingHasher::spawn(file, mark.clone());
    let received = std::thread::scope(|scope| {
        let (to_disk, from_net) = mpsc::sync_channel::<Bytes>(WRITE_QUEUE);
        let writer_mark = mark.clone();
        let writer = scope.spawn(move || -> Result<()> {
            let written = from_net.iter().try_for_each(|chunk| {
                out.write_all(&chunk).map_err(|e| Error::io(out_path, e))?;
                writer_mark.advance(chunk.len() as u64);
                Ok(())
            });
            writer_mark.close();
            written
        });
        let result = receive(&mut |chunk: Bytes| to_disk.send(chunk).is_ok());
        drop(to_disk);
        let written = writer.join().unwrap_or_else(|panic| {
            mark.close();
            std::panic::resume_unwind(panic)
        });
        written.and(result)
    });
    let md5 = hasher.finish().map_err(|e| Error::io(out_path, e));
    let received = received?;
    Ok((received, md5?))
}

/// [`with_verified_sink`] on the caller's thread.
fn inline_sink<T>(
    out: &mut impl Write,
    out_path: &Path,
    mut hasher: Md5Stream,
    receive: impl FnOnce(&mut dyn FnMut(Bytes) -> bool) -> Result<T>,
) -> Result<(T, Md5Digest)> {
    let mut failed = None;
    let result = receive(&mut |chunk: Bytes| {
        if failed.is_some() {
            return false;
        }
        hasher.update(&chunk);
        match out.write_all(&chunk) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(Error::io(out_path, e));
                false
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok((result?, hasher.finish())),
    }
}
