//! tandem's reliable UDP transfer: selective repeat with SACK, RTT-based retransmission timers, paced sending under
//! a BBR-style congestion model ([`congestion`]) and receiver flow control, confirmed end to end by MD5.
//!
//! # Session
//!
//! 1. On the control connection the client asks for a download ticket, as for TCP.
//! 2. From its own UDP socket it sends `Start` datagrams to the server's UDP socket, which shares the TCP port
//!    number. The session id in every datagram is the ticket, so the data plane is bound to it, and it is
//!    redeemed once: later datagrams of that session are accepted only from the address that started it.
//! 3. The server sends `Data` packets (at most [`DEFAULT_PAYLOAD`] payload bytes each, numbered from 0), paced at
//!    the rate its congestion model allows, never more in flight than its window or the receiver's advertised
//!    window. The receiver acknowledges with a cumulative point plus SACK ranges, every [`ACK_EVERY`] packets, at
//!    once when it sees a gap, and on a short timer otherwise.
//! 4. Once every packet is acknowledged, the server checks that the file did not change while it was read and
//!    sends `Done` with the size, the packet count, its retransmission count and the MD5. The receiver, which has
//!    written and hashed the bytes in order, compares the MD5s and answers with a `FIN` ack.
//!
//! Either side that hears nothing for the idle timeout (10 s by default) gives up with an error; the receiver's
//! temporary file is removed. A datagram that does not parse, belongs to no session, or comes from the wrong
//! address is dropped and counted, and never disturbs another session. Loss, duplication and reordering are
//! normal. The datagram layout is in [`packet`]; the window logic, sans-IO, in [`window`].
//!
//! `TANDEM_UDP_LOSS=0.05` makes this side's UDP socket drop that fraction of datagrams in both directions, to
//! watch recovery on a clean network.

pub mod congestion;
pub mod link;
pub mod packet;
pub mod receiver;
pub mod sender;
#[cfg(test)]
mod sim_tests;
pub mod window;

use std::time::Duration;

/// Payload bytes per data datagram unless told otherwise.
pub const DEFAULT_PAYLOAD: usize = 1400;
/// The payload sizes a receiver may ask for: from small links up to what one datagram can carry.
pub const PAYLOAD_RANGE: std::ops::RangeInclusive<usize> = 256..=65_000;
/// The receiver acknowledges at least every this many data packets.
pub const ACK_EVERY: u32 = 16;
/// How many packets the receiver buffers ahead of a gap; also its largest advertised window.
pub const RECEIVE_WINDOW: u32 = 8192;
/// A peer silent for this long ends the transfer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Number of data packets for a file of `size` bytes.
pub fn packet_count(size: u64, payload: usize) -> u64 {
    size.div_ceil(payload as u64)
}

/// Datagram counts of one transfer, as `download --json` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub retransmits: u64,
}
