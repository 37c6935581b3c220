//! Fuzzes the frame layer that every TCP byte from a peer passes first: `frame::parse_header` on every 4-byte
//! window of the input and `frame::decode` over the whole input, under a limit the input picks. A body handed
//! out must fit the limit, the buffer must shrink by exactly header + body, "not enough bytes yet" must leave
//! the buffer untouched, and decoding must never grow the buffer (a length prefix is not an allocation).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tandem::protocol::{MAX_FRAME_LEN, frame};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit: the real one, or a small one where most refusals happen.
    let (max_len, input) = match data {
        [0xff, rest @ ..] => (MAX_FRAME_LEN, rest),
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => (MAX_FRAME_LEN, data),
    };

    for window in input.windows(frame::HEADER_LEN) {
        let header: [u8; frame::HEADER_LEN] = window.try_into().expect("window of HEADER_LEN bytes");
        let announced = u32::from_be_bytes(header) as usize;
        match frame::parse_header(header, max_len) {
            Ok(len) => assert!(len == announced && len <= max_len),
            Err(e) => {
                assert!(announced > max_len);
                assert_eq!(e.to_string(), format!("frame of {announced} bytes exceeds the limit of {max_len} bytes"));
            }
        }
    }

    let mut buf = BytesMut::from(input);
    let capacity = buf.capacity();
    loop {
        let before = buf.clone();
        match frame::decode(&mut buf, max_len) {
            Ok(Some(body)) => {
                assert!(body.len() <= max_len);
                assert_eq!(buf.len() + frame::HEADER_LEN + body.len(), before.len());
                assert_eq!(&body[..], &before[frame::HEADER_LEN..frame::HEADER_LEN + body.len()]);
            }
            Ok(None) => {
                assert_eq!(buf, before, "a partial frame must stay in the buffer");
                break;
            }
            Err(_) => {
                assert!(before.len() >= frame::HEADER_LEN);
                break;
            }
        }
        assert!(buf.capacity() <= capacity, "decode grew the buffer");
    }

    // Whatever fits the limit survives encode + decode unchanged.
    let mut wire = BytesMut::new();
    match frame::encode(input, max_len, &mut wire) {
        Ok(()) => {
            let body = frame::decode(&mut wire, max_len).expect("own frame decodes").expect("whole frame");
            assert_eq!(&body[..], input);
            assert!(wire.is_empty());
        }
        Err(_) => assert!(input.len() > max_len),
    }
});
