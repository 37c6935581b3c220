//! Length-prefixed framing: a 4-byte big-endian length, then the body.
//!
//! [`decode`] first checks that a whole frame is buffered and only then splits it off, so "not enough bytes yet"
//! is `Ok(None)` and the buffer is untouched. A length above the caller's limit is an error before anything is
//! allocated, so a hostile peer cannot make us reserve gigabytes by sending four bytes.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::{Error, Result};

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Appends one frame holding `body` to `dst`.
pub fn encode(body: &[u8], max_len: usize, dst: &mut BytesMut) -> Result<()> {
    if body.len() > max_len {
        return Err(Error::FrameTooLarge { len: body.len() as u64, max: max_len as u64 });
    }
    dst.reserve(HEADER_LEN + body.len());
    dst.put_u32(body.len() as u32);
    dst.put_slice(body);
    Ok(())
}

/// The body length announced by a 4-byte header, refused if it exceeds `max_len`.
pub fn parse_header(header: [u8; HEADER_LEN], max_len: usize) -> Result<usize> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max_len {
        return Err(Error::FrameTooLarge { len: len as u64, max: max_len as u64 });
    }
    Ok(len)
}

/// Splits the next complete frame's body off the front of `src`, or returns `Ok(None)` if more bytes are needed.
pub fn decode(src: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>> {
    let Some(header) = src.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let header: [u8; HEADER_LEN] = header.try_into().expect("slice of HEADER_LEN bytes");
    let len = parse_header(header, max_len)?;
    if src.len() < HEADER_LEN + len {
        // Nothing is reserved here: the reader grows its buffer as bytes actually arrive.
        return Ok(None);
    }
    src.advance(HEADER_LEN);
    Ok(Some(src.split_to(len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_frame_waits_and_leaves_the_buffer_alone() {
        let mut buf = BytesMut::new();
        encode(b"hello", 100, &mut buf).unwrap();
        let mut partial = BytesMut::from(&buf[..6]);
        assert_eq!(decode(&mut partial, 100).unwrap(), None);
        assert_eq!(&partial[..], &buf[..6]);
        assert_eq!(&decode(&mut buf, 100).unwrap().unwrap()[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = decode(&mut buf, 1024).unwrap_err();
        assert_eq!(err.to_string(), "frame of 4294967295 bytes exceeds the limit of 1024 bytes");
        assert!(buf.capacity() < 1024);
        assert!(encode(&[0; 11], 10, &mut BytesMut::new()).is_err());
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_split(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8), cut in 0usize..2000) {
            let mut wire = BytesMut::new();
            for body in &bodies {
                encode(body, 1000, &mut wire).unwrap();
            }
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut decoded = Vec::new();
            while let Some(frame) = decode(&mut buf, 1000).unwrap() {
                decoded.push(frame.to_vec());
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(frame) = decode(&mut buf, 1000).unwrap() {
                decoded.push(frame.to_vec());
            }
            prop_assert_eq!(decoded, bodies);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode(&mut buf, 16) {}
        }
    }
}
