//! Delta transfers, the rsync way. When the receiving side already holds an older version of a file, it sends a
//! signature of that version (a rolling checksum and a strong hash per block), the sending side answers with a
//! delta (copy this old block, then these new bytes), and the receiver rebuilds the new file from its old one.
//!
//! The algorithm is `fast_rsync`'s. This module picks its parameters, bounds every input that comes from the
//! other side, and says when a delta is not worth it. Its strong hash is MD4, so a rebuilt file is only as good
//! as the whole-file MD5 check every caller still makes.

use std::io::Write;

use fast_rsync::{Signature, SignatureOptions};

/// Below this size a file travels whole: its signature and the extra round trip cost more than they save.
pub const DELTA_MIN_SIZE: u64 = 256 * 1024;
/// Both versions of a file are held in memory while a delta is made or applied, so larger files travel whole.
pub const DELTA_MAX_SIZE: u64 = 1 << 30;
/// The largest signature either side accepts. A 1 GiB file's signature is about 400 KB.
pub const MAX_SIGNATURE_LEN: usize = 8 * 1024 * 1024;
/// Strong-hash bytes per block, as rsync uses for files of these sizes.
const STRONG_HASH_LEN: u32 = 8;
/// rsync's block sizes: the square root of the file's length, kept within these bounds.
const MIN_BLOCK: u32 = 700;
const MAX_BLOCK: u32 = 128 * 1024;
/// Signatures from the other side may use smaller blocks than ours, but not so small that their index is huge.
const SMALLEST_ACCEPTED_BLOCK: u32 = 256;
/// `fast_rsync` signature header: magic, block size, strong-hash length, each 4 bytes.
const SIGNATURE_HEADER_LEN: usize = 12;

/// Whether a file of `size` bytes may travel as a delta.
pub fn worth_a_delta(size: u64) -> bool {
    (DELTA_MIN_SIZE..=DELTA_MAX_SIZE).contains(&size)
}

/// rsync's block size for a base of `len` bytes: about its square root, a multiple of 8.
pub fn block_size(len: u64) -> u32 {
    let root = (len as f64).sqrt() as u64 / 8 * 8;
    root.clamp(MIN_BLOCK as u64, MAX_BLOCK as u64) as u32
}

/// The signature of `base`, serialized for the wire.
pub fn signature(base: &[u8]) -> Vec<u8> {
    let options = SignatureOptions { block_size: block_size(base.len() as u64), crypto_hash_size: STRONG_HASH_LEN };
    Signature::calculate(base, options).into_serialized()
}

/// Why a delta could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("signature of {len} bytes is not valid: {reason}")]
    BadSignature { len: usize, reason: String },
    #[error("delta of {len} bytes does not apply: {reason}")]
    BadDelta { len: usize, reason: String },
}

/// Checks a signature that came from the other side before any work is done with it: its length, format, block
/// size and hash length must all be ones tandem would send.
pub fn parse_signature(bytes: Vec<u8>) -> Result<Signature, DeltaError> {
    let len = bytes.len();
    let bad = |reason: String| DeltaError::BadSignature { len, reason };
    if len > MAX_SIGNATURE_LEN {
        return Err(bad(format!("more than {MAX_SIGNATURE_LEN} bytes")));
    }
    if len < SIGNATURE_HEADER_LEN {
        return Err(bad("shorter than its header".into()));
    }
    let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (block, hash_len) = (word(4), word(8));
    if !(SMALLEST_ACCEPTED_BLOCK..=MAX_BLOCK).contains(&block) {
        return Err(bad(format!("block size {block} is outside {SMALLEST_ACCEPTED_BLOCK}..={MAX_BLOCK}")));
    }
    if !(4..=16).contains(&hash_len) {
        return Err(bad(format!("strong hash length {hash_len} is outside 4..=16")));
    }
    Signature::deserialize(bytes).map_err(|e| bad(e.to_string()))
}

/// The delta that turns the signed base into `data`, or `None` when it would be longer than `cap` bytes, in
/// which case sending `data` whole is as cheap and saves the receiver the rebuilding.
pub fn diff(signature: &Signature, data: &[u8], cap: usize) -> Result<Option<Vec<u8>>, DeltaError> {
    let mut out = CappedBuffer { bytes: Vec::new(), cap };
    match fast_rsync::diff(&signature.index(), data, &mut out) {
        Ok(()) => Ok(Some(out.bytes)),
        Err(fast_rsync::DiffError::Io(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => Ok(None),
        Err(e) => Err(DeltaError::BadSignature { len: signature.serialized().len(), reason: e.to_string() }),
    }
}

/// The largest delta worth sending for a file of `size` bytes.
pub fn delta_cap(size: u64) -> usize {
    (size - size / 10) as usize
}

/// Rebuilds a file of exactly `size` bytes from `base` and `delta` into `out`. A delta that would write more is
/// refused as it goes, so a hostile one cannot fill the disk.
pub fn apply(base: &[u8], delta: &[u8], out: &mut impl Write, size: u64) -> Result<u64, DeltaError> {
    let bad = |reason: String| DeltaError::BadDelta { len: delta.len(), reason };
    let limit = usize::try_from(size).map_err(|_| bad(format!("target size {size} does not fit in memory")))?;
    let mut counted = CountingWriter { inner: out, written: 0 };
    fast_rsync::apply_limited(base, delta, &mut counted, limit).map_err(|e| bad(e.to_string()))?;
    if counted.written != size {
        return Err(bad(format!("it rebuilds {} bytes, not {size}", counted.written)));
    }
    Ok(counted.written)
}

/// A `Vec` that refuses to grow past `cap` bytes.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
}

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            return Err(std::io::Error::new(std::io::ErrorKind::FileTooLarge, "delta larger than the file is worth"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudo_random::pseudo_random;
    use proptest::prelude::*;

    fn rebuild(base: &[u8], new: &[u8]) -> (Vec<u8>, usize) {
        let signature = parse_signature(signature(base)).expect("own signature parses");
        let delta = diff(&signature, new, usize::MAX).expect("diff").expect("under the cap");
        let mut out = Vec::new();
        apply(base, &delta, &mut out, new.len() as u64).expect("apply");
        (out, delta.len())
    }

    #[test]
    fn one_changed_byte_costs_about_one_block() {
        let base = pseudo_random(4 << 20, 7);
        let mut new = base.clone();
        new[2 << 20] ^= 0xff;
        let (out, delta_len) = rebuild(&base, &new);
        assert_eq!(out, new);
        assert!(delta_len < 2 * block_size(base.len() as u64) as usize + 1024, "delta of {delta_len} bytes");
    }

    #[test]
    fn an_insertion_near_the_start_still_matches_the_rest() {
        let base = pseudo_random(2 << 20, 9);
        let mut new = base.clone();
        new.splice(1000..1000, b"inserted bytes".iter().copied());
        new.drain(5000..5100);
        let (out, delta_len) = rebuild(&base, &new);
        assert_eq!(out, new);
        assert!(delta_len < new.len() / 50, "delta of {delta_len} bytes");
    }

    #[test]
    fn a_delta_over_the_cap_is_not_made() {
        let base = pseudo_random(1 << 20, 1);
        let new = pseudo_random(1 << 20, 2);
        let signature = parse_signature(signature(&base)).unwrap();
        assert_eq!(diff(&signature, &new, delta_cap(new.len() as u64)).unwrap(), None);
    }

    #[test]
    fn a_delta_that_rebuilds_another_size_is_refused() {
        let base = pseudo_random(1 << 20, 3);
        let signature = parse_signature(signature(&base)).unwrap();
        let delta = diff(&signature, &base, usize::MAX).unwrap().unwrap();
        let err = apply(&base, &delta, &mut Vec::new(), 1000).unwrap_err();
        assert!(matches!(err, DeltaError::BadDelta { .. }), "{err}");
        let err = apply(&base, &delta, &mut Vec::new(), (1 << 20) + 1).unwrap_err();
        assert!(err.to_string().contains("not 1048577"), "{err}");
    }

    #[test]
    fn hostile_signatures_are_refused_with_their_length() {
        let mut tiny_blocks = signature(&pseudo_random(100_000, 4));
        tiny_blocks[4..8].copy_from_slice(&16u32.to_be_bytes());
        let err = parse_signature(tiny_blocks).unwrap_err();
        assert!(err.to_string().contains("block size 16"), "{err}");
        assert!(parse_signature(vec![0; 5]).unwrap_err().to_string().contains("5 bytes"));
        assert!(parse_signature(vec![0; MAX_SIGNATURE_LEN + 1]).is_err());
        let mut wrong_magic = signature(&pseudo_random(100_000, 5));
        wrong_magic[0] ^= 1;
        assert!(parse_signature(wrong_magic).is_err());
    }

    #[test]
    fn block_sizes_follow_rsync() {
        assert_eq!(block_size(0), MIN_BLOCK);
        assert_eq!(block_size(50_000_000), 7064);
        assert_eq!(block_size(u64::MAX), MAX_BLOCK);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_edit_rebuilds_byte_identical(
            seed in any::<u64>(),
            len in 0usize..40_000,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..300, any::<u8>()), 0..6),
        ) {
            let base = pseudo_random(len, seed);
            let mut new = base.clone();
            for (at, run, byte) in edits {
                let at = at.index(new.len() + 1);
                match byte % 3 {
                    0 => { new.splice(at..at, std::iter::repeat_n(byte, run)); }
                    1 => { let end = (at + run).min(new.len()); new.drain(at..end); }
                    _ => { for b in new.iter_mut().skip(at).take(run) { *b ^= byte | 1; } }
                }
            }
            let (out, _) = rebuild(&base, &new);
            prop_assert_eq!(out, new);
        }

        #[test]
        fn any_bytes_as_a_signature_are_refused_or_diff_safely(mut bytes in proptest::collection::vec(any::<u8>(), 0..3000),
                                                              valid_header in any::<bool>(),
                                                              data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            if valid_header && bytes.len() >= SIGNATURE_HEADER_LEN {
                bytes[..SIGNATURE_HEADER_LEN].copy_from_slice(&signature(&[])[..SIGNATURE_HEADER_LEN]);
                bytes[4..8].copy_from_slice(&512u32.to_be_bytes());
            }
            if let Ok(signature) = parse_signature(bytes) {
                let _ = diff(&signature, &data, usize::MAX);
            }
        }

        #[test]
        fn garbage_deltas_never_panic_or_overrun(base in proptest::collection::vec(any::<u8>(), 0..2000),
                                                 delta in proptest::collection::vec(any::<u8>(), 0..2000),
                                                 size in 0u64..5000) {
            let mut out = Vec::new();
            if apply(&base, &delta, &mut out, size).is_ok() {
                prop_assert_eq!(out.len() as u64, size);
            }
            prop_assert!(out.len() as u64 <= size);
        }
    }
}
