//! Fuzzes the UDP data plane: `packet::decode` on the whole input as one datagram, then the input split into a
//! stream of datagrams (each prefixed by one length byte) driven through the sans-IO windows the way a sender
//! and a receiver would use them. A datagram that decodes must encode to one that decodes to the same packet;
//! hostile acks and data packets must leave both windows within their bounds.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tandem::transfer::udp::packet::{self, Packet};
use tandem::transfer::udp::window::{Arrival, ReceiveWindow, SendWindow};

fn round_trip(datagram: &[u8]) -> Option<Packet<'_>> {
    let packet = match packet::decode(datagram) {
        Ok(packet) => packet,
        Err(e) => {
            assert!(e.to_string().starts_with("malformed datagram: "), "{e}");
            return None;
        }
    };
    let mut again = Vec::new();
    packet::encode(&packet, &mut again);
    assert_eq!(packet::decode(&again).expect("own encoding decodes"), packet);
    Some(packet)
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    let Some((&[total, capacity], mut rest)) = data.split_first_chunk::<2>() else { return };
    let (total, capacity) = (u32::from(total), u32::from(capacity));
    let mut sender = SendWindow::new(total, capacity, 0);
    let mut receiver = ReceiveWindow::new(total, capacity);
    let mut now_us = 0u64;
    let mut in_order = 0u32;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        now_us += 1_000;
        while let Some(next) = sender.next_packet() {
            sender.on_sent(next, now_us);
        }
        match round_trip(datagram) {
            Some(Packet::Ack(ack)) => sender.on_ack(ack.cumulative, &ack.ranges, ack.window, ack.echo_us, now_us),
            Some(Packet::Data { seq, payload, .. }) => {
                if !receiver.take_in_order(seq)
                    && receiver.on_data(seq, Bytes::copy_from_slice(payload)) == Arrival::Stored
                {
                    assert!(seq >= receiver.cumulative() && seq < total);
                }
                while receiver.pop_ready().is_some() {}
            }
            Some(_) => sender.on_timeout(now_us + sender.rtt.rto_us()),
            None => {}
        }
        assert!(sender.cumulative() <= total && sender.in_flight() <= total as usize);
        assert!(receiver.cumulative() <= total && receiver.free() <= capacity.max(1));
        assert!(receiver.cumulative() >= in_order, "the in-order point never moves back");
        in_order = receiver.cumulative();
        for (first, end) in receiver.ranges(packet::MAX_RANGES) {
            assert!(receiver.cumulative() < first && first < end && end <= total);
        }
    }
});
