//! The sending side of a UDP transfer, on a blocking thread per session. The server's dispatcher hands it the
//! acks of its session through a channel; it reads the file in order, keeps the payloads not yet acknowledged for
//! retransmission, and lets [`SendWindow`] decide what goes out next.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::link::Link;
use super::packet::{self, DATA_HEADER_LEN, FLAG_FIN, Packet};
use super::packet_count;
use super::window::{Next, SendWindow};
use crate::digest::{FileHasherThread, HasherThread, Md5Digest};
use crate::error::{Error, ErrorCode, Result};
use crate::share::FileStamp;

/// Largest train of datagrams handed to the kernel in one send (the most one UDP GSO send carries).
const MAX_TRAIN_BYTES: usize = 65_000;
/// How often `Done` is repeated while waiting for the receiver's final ack.
const DONE_ATTEMPTS: u32 = 20;
/// How often the receiver hears that the sender is still hashing, well within its idle timeout.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);

/// Fail codes, for the receiver's message.
pub const FAIL_CHANGED: u8 = 1;
pub const FAIL_TICKET: u8 = 2;
pub const FAIL_IO: u8 = 3;
pub const FAIL_BUSY: u8 = 4;

/// Everything one session needs to know.
pub struct SendJob {
    pub session: u64,
    pub peer: SocketAddr,
    /// Where the file is, for messages (the caller opens it).
    pub path: PathBuf,
    /// The path as the client named it, for messages.
    pub rel: String,
    pub stamp: FileStamp,
    /// Where the bytes start (a resumed download has the rest); sequence numbers count from here.
    pub offset: u64,
    pub known_md5: Option<Md5Digest>,
    pub payload: usize,
    pub peer_window: u32,
    pub idle_timeout: Duration,
}

pub struct Sent {
    pub bytes: u64,
    pub retransmits: u64,
    pub computed_md5: Option<Md5Digest>,
}

/// Runs the session to its end: every packet acknowledged and `Done` confirmed, or an error. `file` is the file
/// `job` names, opened by the caller (or why it could not be, which the receiver is told).
pub fn send(link: &Link, job: &SendJob, file: Result<File>, acks: &Receiver<Vec<u8>>) -> Result<Sent> {
    let result = file.and_then(|file| run(link, job, file, acks));
    if let Err(e) = &result {
        // The code TCP's trailer would carry, as far as a datagram can say it.
        let code = if e.code() == ErrorCode::Changed { FAIL_CHANGED } else { FAIL_IO };
        let message = e.to_string();
        let mut buf = Vec::new();
        packet::encode(&Packet::Fail { session: job.session, code, message: &message }, &mut buf);
        let _ = link.send_to(&buf, job.peer);
    }
    result
}

fn run(link: &Link, job: &SendJob, file: File, acks: &Receiver<Vec<u8>>) -> Result<Sent> {
    let net = |e| Error::net(job.peer, e);
    let epoch = Instant::now();
    let now_us = || epoch.elapsed().as_micros() as u64;
    let mut source = Source::open(job, file)?;
    let total = u32::try_from(packet_count(job.remaining(), job.payload)).map_err(|_| {
        Error::NotSupported(format!(
            "{}: {} bytes are too large for one UDP transfer (at most {} datagrams); send it over TCP",
            job.rel,
            job.remaining(),
            u32::MAX
        ))
    })?;
    let mut window = SendWindow::new(total, job.peer_window, now_us());
    // A burst is a train of datagrams laid end to end, every one full-size but possibly the file's last, so the
    // kernel can send it in one go.
    let segment = DATA_HEADER_LEN + job.payload;
    let burst = (MAX_TRAIN_BYTES / segment).clamp(1, 64);
    let mut train = vec![0u8; burst * segment];

    let mut last_report_us = 0;
    while !window.is_complete() {
        let mut filled = 0;
        while filled + segment <= train.len() {
            let Some(next) = window.next_packet(now_us()) else { break };
            let seq = match next {
                Next::New(seq) | Next::Retransmit(seq) => seq,
            };
            let payload = source.payload(seq)?;
            let sent_us = now_us();
            let datagram = &mut train[filled..filled + DATA_HEADER_LEN + payload.len()];
            packet::write_data_header(datagram, job.session, seq, sent_us as u32);
            datagram[DATA_HEADER_LEN..].copy_from_slice(&payload);
            filled += DATA_HEADER_LEN + payload.len();
            window.on_sent(next, sent_us);
            if payload.len() < job.payload {
                break; // the short last packet ends a train
            }
        }
        if filled > 0 {
            link.send_train(&train[..filled], segment, job.peer).map_err(net)?;
        }
        // With a packet due, only look for acks already waiting; otherwise wait for one, or for the next pacing
        // slot or the retransmission timer.
        let now = now_us();
        let wait = if window.can_send(now) {
            Duration::ZERO
        } else {
            let at = window.next_event_us().unwrap_or(now + 1_000);
            Duration::from_micros(at.saturating_sub(now).max(100))
        };
        let handle = |bytes: Vec<u8>, window: &mut SendWindow| {
            if let Ok(Packet::Ack(ack)) = packet::decode(&bytes) {
                window.on_ack(ack.cumulative, &ack.ranges, ack.window, ack.echo_us, now_us());
            }
        };
        match acks.recv_timeout(wait) {
            Ok(bytes) => {
                handle(bytes, &mut window);
                while let Ok(bytes) = acks.try_recv() {
                    handle(bytes, &mut window);
                }
            }
            Err(RecvTimeoutError::Timeout) => window.on_timeout(now_us()),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Closed { addr: job.peer.to_string(), during: "(server shutting down)" });
            }
        }
        source.forget_below(window.cumulative());
        if now_us() > last_report_us + 1_000_000 {
            // Once a second, what the congestion model believes (`TANDEM_LOG=tandem=trace`).
            last_report_us = now_us();
            let model = window.congestion();
            tracing::trace!(
                path = %job.rel,
                acked = window.cumulative(),
                in_flight = window.in_flight(),
                cwnd = window.cwnd() as u64,
                pacing_pps = model.pacing_pps() as u64,
                mode = ?model.mode(),
                srtt_us = window.rtt.srtt_us().map(|r| r as u64),
                retransmits = window.retransmits,
                timeouts = window.timeouts,
                "UDP transfer under way"
            );
        }
        if now_us() - window.last_progress_us > job.idle_timeout.as_micros() as u64 {
            return Err(silent(job));
        }
    }

    let model = window.congestion();
    tracing::debug!(
        peer = %job.peer,
        path = %job.rel,
        packets = total,
        retransmits = window.retransmits,
        timeouts = window.timeouts,
        bottleneck_pps = model.bottleneck_pps() as u64,
        min_rtt_us = model.min_rtt_us(),
        seconds = epoch.elapsed().as_secs_f64(),
        "UDP transfer sent"
    );
    let computed_md5 = source.finish(|| {
        // The whole file's MD5 is still being hashed (a resumed download): a datagram past the end, which
        // receivers drop, tells the receiver the sender is still there.
        let mut keepalive = [0u8; DATA_HEADER_LEN];
        packet::write_data_header(&mut keepalive, job.session, total, now_us() as u32);
        let _ = link.send_to(&keepalive, job.peer);
    })?;
    let md5 = computed_md5.or(job.known_md5).ok_or_else(|| Error::Changed { path: job.rel.clone() })?;
    let done = Packet::Done {
        session: job.session,
        size: job.stamp.size,
        packets: total,
        retransmits: window.retransmits,
        md5: md5.0,
    };
    let mut buf = Vec::new();
    packet::encode(&done, &mut buf);
    let wait = Duration::from_micros(window.rtt.rto_us()).max(Duration::from_millis(20));
    for _ in 0..DONE_ATTEMPTS {
        link.send_to(&buf, job.peer).map_err(net)?;
        match acks.recv_timeout(wait) {
            Ok(bytes) => {
                if matches!(packet::decode(&bytes), Ok(Packet::Ack(ack)) if ack.flags & FLAG_FIN != 0) {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(Sent { bytes: job.remaining(), retransmits: window.retransmits, computed_md5 })
}

impl SendJob {
    /// The bytes this session sends.
    fn remaining(&self) -> u64 {
        self.stamp.size.saturating_sub(self.offset)
    }
}

fn silent(job: &SendJob) -> Error {
    Error::Timeout { addr: job.peer.to_string(), seconds: job.idle_timeout.as_secs(), during: "waiting for acks" }
}

/// The file's payloads from the job's offset on: read once, in order, in blocks of whole packets; kept until
/// acknowledged.
struct Source<'a> {
    job: &'a SendJob,
    file: File,
    /// Payloads not yet acknowledged, by sequence number.
    kept: BTreeMap<u32, Bytes>,
    next_to_read: u32,
    total: u32,
    /// Hashes the bytes as they are read; for a resumed download, a thread hashes the whole file from disk
    /// instead, so the first packet does not wait for the prefix.
    hasher: Option<HasherThread>,
    whole_file_hasher: Option<FileHasherThread>,
}

/// Packets read from the file at a time (about 1 MiB at the default payload size).
const PACKETS_PER_READ: u32 = 749;

impl<'a> Source<'a> {
    fn open(job: &'a SendJob, file: File) -> Result<Self> {
        let now = file.metadata().map(|m| FileStamp::of(&m)).map_err(|e| Error::io(&job.path, e))?;
        if now != job.stamp {
            return Err(Error::Changed { path: job.rel.clone() });
        }
        if job.offset > job.stamp.size {
            return Err(Error::BadOffset { path: job.rel.clone(), offset: job.offset, size: job.stamp.size });
        }
        let mut file = file;
        file.seek(SeekFrom::Start(job.offset)).map_err(|e| Error::io(&job.path, e))?;
        let total = packet_count(job.remaining(), job.payload) as u32;
        let (mut hasher, mut whole_file_hasher) = (None, None);
        if job.known_md5.is_none() && job.offset == 0 {
            hasher = Some(HasherThread::spawn(8));
        } else if job.known_md5.is_none() {
            let copy = file.try_clone().map_err(|e| Error::io(&job.path, e))?;
            whole_file_hasher = Some(FileHasherThread::spawn(copy, job.stamp.size, &job.path));
        }
        Ok(Source { job, file, kept: BTreeMap::new(), next_to_read: 0, total, hasher, whole_file_hasher })
    }

    fn payload(&mut self, seq: u32) -> Result<Bytes> {
        while seq >= self.next_to_read {
            self.read_block()?;
        }
        // A payload already acknowledged is never asked for again; an empty one would be a window bug.
        Ok(self.kept.get(&seq).cloned().unwrap_or_default())
    }

    fn read_block(&mut self) -> Result<()> {
        let payload = self.job.payload as u64;
        let first = self.next_to_read as u64;
        let packets = PACKETS_PER_READ.min(self.total - self.next_to_read) as u64;
        let want = (packets * payload).min(self.job.remaining() - first * payload) as usize;
        let mut block = Vec::with_capacity(want);
        (&mut self.file).take(want as u64).read_to_end(&mut block).map_err(|e| Error::io(&self.job.path, e))?;
        if block.len() != want {
            return Err(Error::Changed { path: self.job.rel.clone() });
        }
        let block = Bytes::from(block);
        if let Some(hasher) = &self.hasher {
            hasher.feed(block.clone());
        }
        for i in 0..packets {
            let start = (i * payload) as usize;
            let end = (start + self.job.payload).min(block.len());
            self.kept.insert(self.next_to_read, block.slice(start..end));
            self.next_to_read += 1;
        }
        Ok(())
    }

    fn forget_below(&mut self, cumulative: u32) {
        if self.kept.first_key_value().is_some_and(|(first, _)| *first < cumulative) {
            self.kept = self.kept.split_off(&cumulative);
        }
    }

    /// Confirms the file is still the version announced, and returns the MD5 computed while reading, if any.
    /// Calls `waiting` every [`KEEPALIVE_INTERVAL`] while the MD5 is not ready.
    fn finish(self, mut waiting: impl FnMut()) -> Result<Option<Md5Digest>> {
        let mut md5 = self.hasher.map(HasherThread::finish);
        if let Some(thread) = self.whole_file_hasher {
            let hashed = loop {
                match thread.wait(KEEPALIVE_INTERVAL) {
                    Some(hashed) => break hashed,
                    None => waiting(),
                }
            };
            md5 = Some(hashed?);
        }
        // Checked on the open file: an in-place write changes its stamp; a rename over the path cannot change
        // what this handle read.
        let open = self.file.metadata().map(|m| FileStamp::of(&m)).ok();
        if open != Some(self.job.stamp) {
            return Err(Error::Changed { path: self.job.rel.clone() });
        }
        Ok(md5)
    }
}
