//! The datagram format, sans-IO. Every datagram starts with the same 12 bytes:
//!
//! ```text
//! magic "tU" (2) | version (1) | kind (1) | session id (8, big-endian)
//! ```
//!
//! and continues by kind (all integers big-endian):
//!
//! | kind | from | body |
//! |---|---|---|
//! | `Start` (1) | receiver | receive window in packets (4), payload bytes per packet (2), ticket proof (16): see [`crate::auth`] |
//! | `Data` (2) | sender | sequence number (4), send time in µs (4), payload (the rest, at most the payload size) |
//! | `Ack` (3) | receiver | cumulative ack (4), receive window (4), echoed send time (4), flags (1), range count (1), ranges of 8 bytes: first and one-past-last sequence number received above the cumulative ack |
//! | `Done` (4) | sender | file size (8), packets (4), retransmissions (8), MD5 (16) |
//! | `Fail` (5) | sender | error code (1), message (UTF-8, the rest) |
//!
//! A datagram that is too short, carries another magic or version, an unknown kind, too many ranges, or a range
//! that runs backwards is refused by [`decode`] with a reason; nothing here panics on any input.

use crate::error::{Error, Result};

pub const MAGIC: [u8; 2] = *b"tU";
pub const VERSION: u8 = 2;
pub const HEADER_LEN: usize = 12;
/// Bytes in front of a data payload.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 8;
/// Most SACK ranges one ack carries.
pub const MAX_RANGES: usize = 64;
/// The `Ack` flag sent once the receiver has verified the whole file.
pub const FLAG_FIN: u8 = 1;

const START: u8 = 1;
const DATA: u8 = 2;
const ACK: u8 = 3;
const DONE: u8 = 4;
const FAIL: u8 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Start { session: u64, window: u32, payload: u16, proof: [u8; 16] },
    Data { session: u64, seq: u32, sent_us: u32, payload: &'a [u8] },
    Ack(Ack),
    Done { session: u64, size: u64, packets: u32, retransmits: u64, md5: [u8; 16] },
    Fail { session: u64, code: u8, message: &'a str },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    pub session: u64,
    /// Every sequence number below this has arrived.
    pub cumulative: u32,
    /// How many more packets the receiver can buffer.
    pub window: u32,
    /// The send time of the data packet that prompted this ack, for RTT.
    pub echo_us: u32,
    pub flags: u8,
    /// Half-open ranges `[first, end)` received above `cumulative`, in increasing order.
    pub ranges: Vec<(u32, u32)>,
}

impl Packet<'_> {
    pub fn session(&self) -> u64 {
        match self {
            Packet::Start { session, .. }
            | Packet::Data { session, .. }
            | Packet::Done { session, .. }
            | Packet::Fail { session, .. } => *session,
            Packet::Ack(ack) => ack.session,
        }
    }
}

fn header(out: &mut Vec<u8>, kind: u8, session: u64) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&session.to_be_bytes());
}

/// Writes a data packet's header into the first [`DATA_HEADER_LEN`] bytes of `out`.
pub fn write_data_header(out: &mut [u8], session: u64, seq: u32, sent_us: u32) {
    out[..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    out[3] = DATA;
    out[4..12].copy_from_slice(&session.to_be_bytes());
    out[12..16].copy_from_slice(&seq.to_be_bytes());
    out[16..20].copy_from_slice(&sent_us.to_be_bytes());
}

/// Encodes `packet` into `out`, replacing its contents.
pub fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) {
    match packet {
        Packet::Start { session, window, payload, proof } => {
            header(out, START, *session);
            out.extend_from_slice(&window.to_be_bytes());
            out.extend_from_slice(&payload.to_be_bytes());
            out.extend_from_slice(proof);
        }
        Packet::Data { session, seq, sent_us, payload } => {
            out.clear();
            out.resize(DATA_HEADER_LEN, 0);
            write_data_header(out, *session, *seq, *sent_us);
            out.extend_from_slice(payload);
        }
        Packet::Ack(ack) => {
            header(out, ACK, ack.session);
            out.extend_from_slice(&ack.cumulative.to_be_bytes());
            out.extend_from_slice(&ack.window.to_be_bytes());
            out.extend_from_slice(&ack.echo_us.to_be_bytes());
            out.push(ack.flags);
            let ranges = &ack.ranges[..ack.ranges.len().min(MAX_RANGES)];
            out.push(ranges.len() as u8);
            for (first, end) in ranges {
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&end.to_be_bytes());
            }
        }
        Packet::Done { session, size, packets, retransmits, md5 } => {
            header(out, DONE, *session);
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&packets.to_be_bytes());
            out.extend_from_slice(&retransmits.to_be_bytes());
            out.extend_from_slice(md5);
        }
        Packet::Fail { session, code, message } => {
            header(out, FAIL, *session);
            out.push(*code);
            out.extend_from_slice(message.as_bytes());
        }
    }
}

/// Reads big-endian integers off the front of a datagram, refusing to run past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(malformed(format!("datagram ends {} bytes early", n - self.0.len())));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

fn malformed(reason: String) -> Error {
    Error::Malformed { what: "datagram", reason }
}

/// Parses one datagram.
pub fn decode(datagram: &[u8]) -> Result<Packet<'_>> {
    let mut r = Reader(datagram);
    if r.take(2)? != MAGIC {
        return Err(malformed("not a tandem datagram".into()));
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(malformed(format!("version {version}, expected {VERSION}")));
    }
    let kind = r.u8()?;
    let session = r.u64()?;
    let packet = match kind {
        START => Packet::Start {
            session,
            window: r.u32()?,
            payload: u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes")),
            proof: r.take(16)?.try_into().expect("16 bytes"),
        },
        DATA => Packet::Data { session, seq: r.u32()?, sent_us: r.u32()?, payload: r.0 },
        ACK => {
            let (cumulative, window, echo_us, flags) = (r.u32()?, r.u32()?, r.u32()?, r.u8()?);
            let count = r.u8()? as usize;
            if count > MAX_RANGES {
                return Err(malformed(format!("{count} ranges, at most {MAX_RANGES}")));
            }
            let mut ranges = Vec::with_capacity(count);
            for _ in 0..count {
                let (first, end) = (r.u32()?, r.u32()?);
                if end <= first || first < cumulative {
                    return Err(malformed(format!("range {first}..{end} below {cumulative} or backwards")));
                }
                ranges.push((first, end));
            }
            Packet::Ack(Ack { session, cumulative, window, echo_us, flags, ranges })
        }
        DONE => Packet::Done {
            session,
            size: r.u64()?,
            packets: r.u32()?,
            retransmits: r.u64()?,
            md5: r.take(16)?.try_into().expect("16 bytes"),
        },
        FAIL => {
            let code = r.u8()?;
            let message = std::str::from_utf8(r.0).map_err(|_| malformed("message is not UTF-8".into()))?;
            Packet::Fail { session, code, message }
        }
        other => return Err(malformed(format!("unknown kind {other}"))),
    };
    Ok(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_round_trips() {
        let packets = [
            Packet::Start { session: 7, window: 4096, payload: 1400, proof: [9; 16] },
            Packet::Data { session: u64::MAX, seq: 3, sent_us: 99, payload: b"bytes" },
            Packet::Data { session: 1, seq: 0, sent_us: 0, payload: b"" },
            Packet::Ack(Ack {
                session: 2,
                cumulative: 10,
                window: 5,
                echo_us: 8,
                flags: FLAG_FIN,
                ranges: vec![(12, 14), (20, 21)],
            }),
            Packet::Done { session: 3, size: 1 << 40, packets: 9, retransmits: 4, md5: [7; 16] },
            Packet::Fail { session: 4, code: 2, message: "file changed — ünïcode" },
        ];
        let mut buf = Vec::new();
        for packet in packets {
            encode(&packet, &mut buf);
            assert_eq!(decode(&buf).unwrap(), packet);
        }
    }

    #[test]
    fn refusals_say_why() {
        let reason = |bytes: &[u8]| decode(bytes).unwrap_err().to_string();
        assert_eq!(reason(b"xx"), "malformed datagram: not a tandem datagram");
        assert_eq!(reason(b"tU\x01\x01"), "malformed datagram: version 1, expected 2");
        assert_eq!(reason(b"tU\x02\x09\0\0\0\0\0\0\0\x01"), "malformed datagram: unknown kind 9");
        assert_eq!(reason(b"tU\x02\x01\0\0"), "malformed datagram: datagram ends 6 bytes early");
        let mut buf = Vec::new();
        encode(
            &Packet::Ack(Ack { session: 1, cumulative: 10, ranges: vec![(12, 14)], ..Default::default() }),
            &mut buf,
        );
        let backwards = buf.len() - 4;
        buf[backwards..].copy_from_slice(&11u32.to_be_bytes());
        assert_eq!(reason(&buf), "malformed datagram: range 12..11 below 10 or backwards");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_packets_never_panic(flip in 0usize..80, value in any::<u8>()) {
            let mut buf = Vec::new();
            encode(&Packet::Ack(Ack { session: 9, cumulative: 1, window: 2, echo_us: 3, flags: 0, ranges: vec![(5, 9), (11, 12)] }), &mut buf);
            let at = flip % buf.len();
            buf[at] = value;
            let _ = decode(&buf);
        }
    }
}
