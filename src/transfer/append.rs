//! Appends: a file that grew by bytes added at its end (a log) travels as those bytes alone. The receiving side
//! names the version it holds ([`Held`]: its length and MD5); the sending side checks that its file begins with
//! exactly those bytes, and sends only the rest. The receiver copies its own bytes into a temporary file, adds the
//! rest, and checks the whole file's MD5 before it replaces anything, as for every transfer.
//!
//! The checks here read files through handles the caller opened (beneath a share's root, on a server), and
//! compare stamps before and after, so a file that changes meanwhile is never taken for the version it was.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use crate::digest::Md5Stream;
use crate::protocol::Held;
use crate::share::FileStamp;

/// Below this size an older version is not worth an append: a file this small travels whole in a batch with
/// others, while an append needs a request and a connection of its own.
pub const APPEND_MIN_SIZE: u64 = 16 * 1024;

/// Whether a file of `size` bytes, whose receiving side holds a version of `base_size` bytes, may have grown by
/// an append worth sending alone.
pub fn may_be_an_append(size: u64, base_size: u64) -> bool {
    base_size >= APPEND_MIN_SIZE && size > base_size
}

/// Whether `file` (which must be the version `stamp` describes, before and after it is read) begins with the
/// version `held` describes. `Ok(false)` when it is shorter or its first bytes differ, or it changed meanwhile.
pub fn begins_with(file: &File, stamp: FileStamp, held: Held) -> std::io::Result<bool> {
    let unchanged = || file.metadata().map(|m| FileStamp::of(&m) == stamp);
    if held.size > stamp.size || !unchanged()? {
        return Ok(false);
    }
    let md5 = Md5Stream::of_file_prefix(file, held.size)?.finish();
    Ok(md5 == held.md5 && unchanged()?)
}

/// Copies the first `len` bytes of `from` (with positioned reads: its cursor stays where it is) to `to`, and
/// returns their MD5 state, to go on with the bytes that follow. A file shorter than `len` is an
/// `UnexpectedEof` error.
pub fn copy_prefix(from: &File, len: u64, to: &mut impl Write) -> std::io::Result<Md5Stream> {
    const BLOCK: usize = 1 << 20;
    let mut md5 = Md5Stream::new();
    let mut buf = vec![0u8; BLOCK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = from.read_at(&mut buf[..want], done)?;
        if n == 0 {
            let why = format!("the file ends at byte {done}, before the {len} bytes to copy");
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why));
        }
        md5.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(md5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Md5Digest;
    use crate::pseudo_random::pseudo_random;

    fn md5(bytes: &[u8]) -> Md5Digest {
        let mut md5 = Md5Stream::new();
        md5.update(bytes);
        md5.finish()
    }

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, FileStamp) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let stamp = FileStamp::of(&file.as_file().metadata().unwrap());
        (file, stamp)
    }

    #[test]
    fn only_a_grown_file_over_the_minimum_may_be_an_append() {
        assert!(may_be_an_append(APPEND_MIN_SIZE + 1, APPEND_MIN_SIZE));
        assert!(!may_be_an_append(APPEND_MIN_SIZE, APPEND_MIN_SIZE), "same size: an edit, not an append");
        assert!(!may_be_an_append(APPEND_MIN_SIZE - 1, APPEND_MIN_SIZE), "shrank");
        assert!(!may_be_an_append(1 << 20, APPEND_MIN_SIZE - 1), "too small to go alone");
        assert!(may_be_an_append(u64::MAX, 1 << 40));
    }

    #[test]
    fn a_file_begins_with_its_own_prefix_and_nothing_else() {
        let old = pseudo_random(300_000, 1);
        let mut new = old.clone();
        new.extend_from_slice(&pseudo_random(5_000, 2));
        let (file, stamp) = file_with(&new);
        let held = |bytes: &[u8]| Held { size: bytes.len() as u64, md5: md5(bytes) };
        assert!(begins_with(file.as_file(), stamp, held(&old)).unwrap());
        assert!(begins_with(file.as_file(), stamp, held(&new)).unwrap(), "the whole file is its own prefix");
        assert!(begins_with(file.as_file(), stamp, held(&[])).unwrap());
        let mut edited = old.clone();
        edited[123_456] ^= 1;
        assert!(!begins_with(file.as_file(), stamp, held(&edited)).unwrap());
        let mut longer = new.clone();
        longer.push(0);
        assert!(!begins_with(file.as_file(), stamp, held(&longer)).unwrap(), "longer than the file");
        let hostile = Held { size: u64::MAX, md5: md5(&old) };
        assert!(!begins_with(file.as_file(), stamp, hostile).unwrap());
    }

    #[test]
    fn a_file_that_is_not_the_stamped_version_begins_with_nothing() {
        let old = pseudo_random(50_000, 3);
        let (file, stamp) = file_with(&old);
        let held = Held { size: old.len() as u64, md5: md5(&old) };
        let moved_on = FileStamp { mtime_ns: stamp.mtime_ns + 1, ..stamp };
        assert!(!begins_with(file.as_file(), moved_on, held).unwrap());
    }

    #[test]
    fn a_copied_prefix_is_byte_identical_and_hashes_on_into_the_whole() {
        let bytes = pseudo_random(2_500_000, 4);
        let (file, _) = file_with(&bytes);
        let mut out = Vec::new();
        let mut state = copy_prefix(file.as_file(), 2_000_001, &mut out).unwrap();
        assert_eq!(out, bytes[..2_000_001]);
        assert_eq!(state.clone().finish(), md5(&bytes[..2_000_001]));
        state.update(&bytes[2_000_001..]);
        assert_eq!(state.finish(), md5(&bytes));
        let Err(short) = copy_prefix(file.as_file(), 3_000_000, &mut Vec::new()) else { panic!("copied past the end") };
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(short.to_string().contains("ends at byte 2500000"), "{short}");
    }
}
