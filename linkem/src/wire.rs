//! One direction of the wire: a thread that reads packets from one TUN fd, lets the shaper decide each one's
//! fate, holds the survivors in a heap ordered by delivery time and writes them to the other TUN fd when due.
//! It sleeps in `ppoll` until a packet arrives, the next delivery is due, or the link stops.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::profile::Profile;
use crate::shaper::{Fate, Shaper};
use crate::stats::Counters;
use crate::tun::Tun;

/// Packets read per wake before due deliveries are looked at again.
const BATCH: usize = 64;
/// A bound on what one direction holds, whatever the profile: past it packets count as queue drops.
const MAX_IN_FLIGHT_BYTES: u64 = 256 << 20;
/// `cut_until` value for a cut with no end.
const FOREVER: u64 = u64::MAX;

/// What the link's owner can change while both directions run.
pub(crate) struct Control {
    epoch: Instant,
    profile: Mutex<Profile>,
    generation: AtomicU64,
    /// Nanoseconds since `epoch` until which every packet is dropped; 0 for none.
    cut_until: AtomicU64,
    stop: AtomicBool,
}

impl Control {
    pub(crate) fn new(profile: Profile) -> Control {
        Control {
            epoch: Instant::now(),
            profile: Mutex::new(profile),
            generation: AtomicU64::new(0),
            cut_until: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub(crate) fn profile(&self) -> Profile {
        self.profile.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_profile(&self, profile: Profile) {
        *self.profile.lock().unwrap_or_else(PoisonError::into_inner) = profile;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Drops everything for `duration` from now (`None`: until `restore`).
    pub(crate) fn cut(&self, duration: Option<Duration>) {
        let until = duration.map_or(FOREVER, |d| self.now().saturating_add(d.as_nanos() as u64).min(FOREVER - 1));
        self.cut_until.store(until, Ordering::Release);
    }

    pub(crate) fn restore(&self) {
        self.cut_until.store(0, Ordering::Release);
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut_at(self.now())
    }

    fn cut_at(&self, now: u64) -> bool {
        now < self.cut_until.load(Ordering::Acquire)
    }
}

/// A packet waiting for its delivery time; ordered by that time, then by arrival.
struct Pending {
    at: u64,
    seq: u64,
    packet: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A running direction.
pub(crate) struct Wire {
    thread: Option<JoinHandle<()>>,
    wake: Arc<OwnedFd>,
    pub(crate) counters: Arc<Counters>,
    name: String,
}

impl Wire {
    /// Starts the thread that carries packets from `from` to `to`; `direction` (0 or 1) picks its random
    /// streams; `mtu` bounds the packets it reads.
    pub(crate) fn spawn(
        name: &str,
        direction: u64,
        from: Arc<Tun>,
        to: Arc<Tun>,
        mtu: usize,
        control: Arc<Control>,
    ) -> Result<Wire> {
        // SAFETY: eventfd takes no pointers; a negative result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(Error::failed(format!("eventfd for wire {name}"), io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let counters = Arc::new(Counters::default());
        let mut state = State {
            shaper: Shaper::new(control.profile(), direction),
            direction,
            generation: control.generation.load(Ordering::Acquire),
            control,
            counters: counters.clone(),
            heap: BinaryHeap::new(),
            pool: Vec::new(),
            buf_len: mtu + 64,
            seq: 0,
            in_flight_bytes: 0,
            from,
            to,
            wake: wake.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("wire {name}"))
            .spawn(move || state.run())
            .map_err(|e| Error::failed(format!("spawning wire thread {name}"), e))?;
        Ok(Wire { thread: Some(thread), wake, counters, name: name.to_owned() })
    }

    /// Wakes the thread so that it sees `stop`.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN) already wakes it.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Waits for the thread to end (after `stop` was set and it was woken).
    pub(crate) fn join(&mut self) -> Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(Error::Failed(format!("wire thread {} panicked", self.name))),
            _ => Ok(()),
        }
    }
}

pub(crate) fn stop_all(control: &Control, wires: &mut [Wire]) -> Result<()> {
    control.stop.store(true, Ordering::Release);
    wires.iter().for_each(Wire::wake);
    let mut first = Ok(());
    for wire in wires {
        if let Err(e) = wire.join()
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

struct State {
    shaper: Shaper,
    direction: u64,
    generation: u64,
    control: Arc<Control>,
    counters: Arc<Counters>,
    heap: BinaryHeap<Reverse<Pending>>,
    /// Spare packet buffers, so steady traffic allocates nothing.
    pool: Vec<Vec<u8>>,
    buf_len: usize,
    seq: u64,
    in_flight_bytes: u64,
    from: Arc<Tun>,
    to: Arc<Tun>,
    /// Written by `Wire::wake`.
    wake: Arc<OwnedFd>,
}

impl State {
    fn run(&mut self) {
        // Default timer slack (50 µs) would blur sub-millisecond delays; errors only cost precision.
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        let mut buf = self.fresh_buffer();
        while !self.control.stop.load(Ordering::Acquire) {
            let now = self.control.now();
            self.deliver_due(now);
            let timeout = self.heap.peek().map(|Reverse(p)| p.at.saturating_sub(now));
            match self.wait(timeout) {
                Ok(true) => {
                    self.pick_up_profile();
                    for _ in 0..BATCH {
                        match self.from.read(&mut buf) {
                            Ok(len) => self.arrive(&mut buf, len),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(e) => {
                                eprintln!("linkem: reading TUN device {}: {e}", self.from.name());
                                return;
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    eprintln!("linkem: waiting on TUN device {}: {e}", self.from.name());
                    return;
                }
            }
        }
    }

    fn fresh_buffer(&mut self) -> Vec<u8> {
        fresh_buffer(&mut self.pool, self.buf_len)
    }

    fn pick_up_profile(&mut self) {
        let generation = self.control.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.shaper.set_profile(self.control.profile(), self.direction);
        }
    }

    /// Sleeps until the source is readable (true), `timeout` nanoseconds pass, or the wake fd fires (false).
    fn wait(&self, timeout: Option<u64>) -> io::Result<bool> {
        let mut fds = [
            libc::pollfd { fd: self.from.fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ts = timeout.map(|ns| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: two valid pollfds and an optional timespec, all alive for the call.
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == ErrorKind::Interrupted { Ok(false) } else { Err(e) };
        }
        if fds[1].revents != 0 {
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live buffer; draining resets the eventfd.
            unsafe { libc::read(self.wake.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        }
        Ok(fds[0].revents != 0)
    }

    /// Handles one packet of `len` bytes just read into `buf`; a kept packet takes `buf`, which is replaced.
    fn arrive(&mut self, buf: &mut Vec<u8>, len: usize) {
        let c = &*self.counters;
        Counters::add(&c.received_packets, 1);
        Counters::add(&c.received_bytes, len as u64);
        let now = self.control.now();
        if self.control.cut_at(now) {
            Counters::add(&c.cut_dropped, 1);
            return;
        }
        let (at, duplicate) = match self.shaper.arrive(now, len) {
            Fate::Lost => return Counters::add(&c.lost, 1),
            Fate::QueueFull => return Counters::add(&c.queue_dropped, 1),
            Fate::Deliver { at, duplicate, reordered } => {
                if reordered {
                    Counters::add(&c.reordered, 1);
                }
                (at, duplicate)
            }
        };
        let copies = if duplicate { 2 } else { 1 };
        if self.in_flight_bytes + copies * len as u64 > MAX_IN_FLIGHT_BYTES {
            return Counters::add(&c.queue_dropped, 1);
        }
        c.peak_queue_bytes.fetch_max(self.shaper.backlog_bytes(now), Ordering::Relaxed);
        let mut packet = std::mem::replace(buf, fresh_buffer(&mut self.pool, self.buf_len));
        packet.truncate(len);
        if duplicate {
            Counters::add(&c.duplicated, 1);
            let mut copy = fresh_buffer(&mut self.pool, self.buf_len);
            copy.truncate(len);
            copy.copy_from_slice(&packet);
            self.push(at, copy);
        }
        self.push(at, packet);
    }

    fn push(&mut self, at: u64, packet: Vec<u8>) {
        self.in_flight_bytes += packet.len() as u64;
        self.seq += 1;
        self.heap.push(Reverse(Pending { at, seq: self.seq, packet }));
        self.counters.in_flight.store(self.heap.len() as u64, Ordering::Relaxed);
    }

    /// Writes every packet due by `now` to the receiving side.
    fn deliver_due(&mut self, now: u64) {
        let c = &*self.counters;
        let mut delivered = false;
        while self.heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(pending)) = self.heap.pop() else { break };
            delivered = true;
            let len = pending.packet.len() as u64;
            self.in_flight_bytes -= len;
            if self.control.cut_at(now) {
                Counters::add(&c.cut_dropped, 1);
            } else {
                match self.to.write(&pending.packet) {
                    Ok(_) => {
                        Counters::add(&c.forwarded_packets, 1);
                        Counters::add(&c.forwarded_bytes, len);
                    }
                    Err(_) => Counters::add(&c.write_errors, 1),
                }
            }
            if self.pool.len() < 4096 {
                self.pool.push(pending.packet);
            }
        }
        if delivered {
            c.in_flight.store(self.heap.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A buffer for one packet, from the pool when it has one.
fn fresh_buffer(pool: &mut Vec<Vec<u8>>, len: usize) -> Vec<u8> {
    let mut buf = pool.pop().unwrap_or_default();
    buf.resize(len, 0);
    buf
}
