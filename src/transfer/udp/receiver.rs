//! The receiving side of a UDP transfer, on the client's blocking thread. It asks the server to start, puts
//! packets back in order with [`ReceiveWindow`], streams them into a [`with_verified_sink_from`], acknowledges at a
//! bounded rate, and finishes when every byte is in and the server's MD5 equals its own.

use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::link::Link;
use super::packet::{self, Ack, FLAG_FIN, MAX_RANGES, Packet};
use super::window::{Arrival, ReceiveWindow};
use super::{ACK_EVERY, RECEIVE_WINDOW, UdpStats, packet_count};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{ErrorBody, ErrorCode};
use crate::transfer::Progress;
use crate::transfer::sink::{Prefix, with_verified_sink_from};

/// How long to wait for a datagram before acknowledging what has arrived anyway.
const ACK_TIMER: Duration = Duration::from_micros(500);
/// How often `Start` is repeated until the first answer.
const START_INTERVAL: Duration = Duration::from_millis(100);
/// In-order bytes gathered before they go to the disk and the hasher.
const CHUNK: usize = 256 * 1024;
/// Reads taken from the socket per syscall (each may hold a train of datagrams).
const BATCH: usize = 16;

pub struct ReceiveJob<'a> {
    pub link: &'a Link,
    pub server: SocketAddr,
    pub session: u64,
    /// Shows the server this session's control connection asked for the ticket ([`crate::auth`]).
    pub proof: [u8; 16],
    /// The whole file's size.
    pub size: u64,
    /// Where this session's bytes start in the file (a resumed download has the rest), and the bytes before.
    pub offset: u64,
    pub prefix: Prefix,
    pub payload: usize,
    pub idle_timeout: Duration,
    pub progress: &'a Progress,
}

pub struct Received {
    /// The MD5 of the bytes written, and the server's.
    pub md5: Md5Digest,
    pub server_md5: Md5Digest,
    pub stats: UdpStats,
}

pub fn receive(job: &ReceiveJob<'_>, out: &mut (impl Write + Send), out_path: &Path) -> Result<Received> {
    let link = job.link;
    link.connect(job.server).map_err(|e| Error::net(job.server, e))?;
    link.set_read_timeout(Some(ACK_TIMER)).map_err(|e| Error::net(job.server, e))?;
    let remaining = job.size.saturating_sub(job.offset);
    let ((server_md5, retransmits), md5) =
        with_verified_sink_from(out, out_path, (remaining, job.prefix.clone()), |deliver| {
            let mut session = Session::new(job);
            let result = session.run(deliver);
            // Whatever arrived in order is kept, so a rerun can resume from there.
            if result.is_err() {
                session.flush(deliver);
            }
            result
        })?;
    let stats = UdpStats {
        datagrams_sent: link.sent.load(std::sync::atomic::Ordering::Relaxed),
        datagrams_received: link.received.load(std::sync::atomic::Ordering::Relaxed),
        retransmits,
    };
    Ok(Received { md5, server_md5, stats })
}

struct Session<'a, 'b> {
    job: &'a ReceiveJob<'b>,
    window: ReceiveWindow,
    total: u32,
    /// Bytes this session carries: the file's size less the offset.
    len: u64,
    chunk: BytesMut,
    delivered: u64,
    unacked: u32,
    /// The sender has already been told about the current gap.
    gap_reported: bool,
    out: Vec<u8>,
}

impl<'a, 'b> Session<'a, 'b> {
    fn new(job: &'a ReceiveJob<'b>) -> Self {
        let len = job.size.saturating_sub(job.offset);
        let total = packet_count(len, job.payload) as u32;
        Session {
            job,
            window: ReceiveWindow::new(total, RECEIVE_WINDOW),
            total,
            len,
            chunk: BytesMut::with_capacity(CHUNK),
            delivered: 0,
            unacked: 0,
            gap_reported: false,
            out: Vec::with_capacity(64 + MAX_RANGES * 8),
        }
    }

    /// Returns the server's MD5 and retransmission count once everything is in.
    fn run(&mut self, deliver: &mut dyn FnMut(Bytes) -> bool) -> Result<(Md5Digest, u64)> {
        let job = self.job;
        let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; 65_536]).collect();
        let mut heard_from_server = false;
        let mut last_heard = Instant::now();
        let mut last_start: Option<Instant> = None;
        loop {
            if !heard_from_server && last_start.is_none_or(|t| t.elapsed() >= START_INTERVAL) {
                self.send(&Packet::Start {
                    session: job.session,
                    window: RECEIVE_WINDOW,
                    payload: job.payload as u16,
                    proof: job.proof,
                })?;
                last_start = Some(Instant::now());
            }
            let arrived = match job.link.recv_batch(&mut bufs) {
                Ok(arrived) => arrived,
                // The server's port is not open (yet): keep asking until the idle timeout.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => Vec::new(),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.unacked > 0 {
                        self.ack(0)?;
                    }
                    if last_heard.elapsed() >= job.idle_timeout {
                        return Err(Error::Timeout {
                            addr: job.server.to_string(),
                            seconds: job.idle_timeout.as_secs(),
                            during: "during the UDP transfer",
                        });
                    }
                    continue;
                }
                Err(e) => return Err(Error::net(job.server, e)),
            };
            for (index, offset, len) in arrived {
                let Ok(packet) = packet::decode(&bufs[index][offset..offset + len]) else { continue };
                if packet.session() != job.session {
                    continue;
                }
                heard_from_server = true;
                last_heard = Instant::now();
                if let Some(done) = self.handle(packet, deliver)? {
                    return Ok(done);
                }
            }
        }
    }

    /// Handles one datagram of this session; returns the server's MD5 and retransmissions once all is in.
    fn handle(
        &mut self,
        packet: Packet<'_>,
        deliver: &mut dyn FnMut(Bytes) -> bool,
    ) -> Result<Option<(Md5Digest, u64)>> {
        let job = self.job;
        {
            match packet {
                Packet::Data { seq, sent_us, payload, .. } => {
                    if !self.accept(seq, sent_us, payload, deliver)? {
                        // The sink reports the disk's own error in place of this one.
                        return Err(Error::Closed { addr: job.server.to_string(), during: "(the disk stopped)" });
                    }
                }
                Packet::Done { size, packets, retransmits, md5, .. } => {
                    if size != job.size || packets != self.total {
                        return Err(Error::SizeMismatch {
                            path: job.server.to_string(),
                            expected: job.size,
                            actual: size,
                        });
                    }
                    if self.window.is_complete() {
                        self.flush(deliver);
                        for _ in 0..3 {
                            self.ack(FLAG_FIN)?;
                        }
                        return Ok(Some((Md5Digest(md5), retransmits)));
                    }
                    self.ack(0)?;
                }
                Packet::Fail { code, message, .. } => {
                    let code = match code {
                        super::sender::FAIL_CHANGED => ErrorCode::Changed,
                        super::sender::FAIL_TICKET => ErrorCode::BadTicket,
                        super::sender::FAIL_BUSY => ErrorCode::Busy,
                        _ => ErrorCode::Io,
                    };
                    return Err(Error::Remote(ErrorBody { code, message: message.to_string() }));
                }
                Packet::Start { .. } | Packet::Ack(_) => {}
            }
        }
        Ok(None)
    }

    /// Takes one data packet; returns false if the disk side has stopped.
    fn accept(
        &mut self,
        seq: u32,
        sent_us: u32,
        payload: &[u8],
        deliver: &mut dyn FnMut(Bytes) -> bool,
    ) -> Result<bool> {
        if seq >= self.total {
            return Ok(true); // beyond the file: a datagram that cannot be ours, dropped
        }
        let expected_len = if seq + 1 == self.total {
            (self.len - seq as u64 * self.job.payload as u64) as usize
        } else {
            self.job.payload
        };
        if payload.len() != expected_len {
            return Ok(true);
        }
        self.window.last_sent_us = sent_us;
        let in_order = seq == self.window.cumulative();
        let mut alive = true;
        // The common case on a good link: the next packet, nothing waiting. Straight into the chunk.
        let arrival = if self.window.take_in_order(seq) {
            self.chunk.extend_from_slice(payload);
            self.delivered += payload.len() as u64;
            Arrival::Stored
        } else {
            self.window.on_data(seq, Bytes::copy_from_slice(payload))
        };
        while let Some(ready) = self.window.pop_ready() {
            self.chunk.extend_from_slice(&ready);
            self.delivered += ready.len() as u64;
        }
        if self.chunk.len() >= CHUNK {
            alive &= deliver(self.chunk.split().freeze());
        }
        self.job.progress.set(self.delivered);
        self.unacked += 1;
        // A new gap or a duplicate is news for the sender at once; after that, SACKs every few packets suffice.
        let news = (!in_order && !self.gap_reported) || arrival == Arrival::Duplicate;
        self.gap_reported = !in_order || (self.gap_reported && self.window.has_gap());
        if news || self.unacked >= ACK_EVERY || self.window.is_complete() {
            self.ack(0)?;
        }
        Ok(alive)
    }

    fn flush(&mut self, deliver: &mut dyn FnMut(Bytes) -> bool) {
        if !self.chunk.is_empty() {
            deliver(self.chunk.split().freeze());
        }
    }

    fn ack(&mut self, flags: u8) -> Result<()> {
        let ack = Ack {
            session: self.job.session,
            cumulative: self.window.cumulative(),
            window: self.window.free(),
            echo_us: self.window.last_sent_us,
            flags,
            ranges: self.window.ranges(MAX_RANGES),
        };
        self.unacked = 0;
        self.send(&Packet::Ack(ack))
    }

    fn send(&mut self, packet: &Packet<'_>) -> Result<()> {
        packet::encode(packet, &mut self.out);
        self.job.link.send_to(&self.out, self.job.server).map_err(|e| Error::net(self.job.server, e))
    }
}
