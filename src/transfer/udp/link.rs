//! tandem's UDP socket layer: large kernel buffers, batched sends and receives (`sendmmsg`/`recvmmsg` on Linux,
//! one syscall for up to 64 datagrams), datagram counters, and optional loss injection (`TANDEM_UDP_LOSS`),
//! which drops that fraction of datagrams in both directions on this side.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffer size asked for; the kernel may grant less.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Link {
    socket: UdpSocket,
    /// Fraction of datagrams dropped each way, for demos and tests.
    loss: f64,
    /// Whether the kernel takes a train of datagrams in one send (UDP GSO); cleared on the first refusal.
    segmentation: std::sync::atomic::AtomicBool,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
}

impl Link {
    /// Binds `addr` with large buffers, dropping `loss` of the datagrams each way (a test setting: `TANDEM_UDP_LOSS`).
    pub fn bind(addr: SocketAddr, loss: f64) -> io::Result<Link> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        batch::force_buffers(&socket, SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        Ok(Link::new(socket.into(), loss))
    }

    pub fn new(socket: UdpSocket, loss: f64) -> Link {
        Link {
            socket,
            loss,
            segmentation: std::sync::atomic::AtomicBool::new(cfg!(target_os = "linux")),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    fn drops(&self) -> bool {
        self.loss > 0.0 && rand::random::<f64>() < self.loss
    }

    pub fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if self.drops() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // Never blocks: a full send buffer is loss by another name, which the protocol repairs.
        batch::send(&self.socket, &[datagram], to)
    }

    /// Sends a train of datagrams laid end to end in `train`, each `segment` bytes but the last (which may be
    /// shorter): one syscall with UDP GSO where the kernel has it, `sendmmsg` otherwise.
    pub fn send_train(&self, train: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
        let count = train.len().div_ceil(segment);
        self.sent.fetch_add(count as u64, Ordering::Relaxed);
        if self.loss > 0.0 {
            // Loss injection picks datagrams one by one, so this rare path sends them one by one too.
            let kept: Vec<&[u8]> = train.chunks(segment).filter(|_| !self.drops()).collect();
            return batch::send(&self.socket, &kept, to);
        }
        if count > 1 && self.segmentation.load(Ordering::Relaxed) {
            match batch::send_segmented(&self.socket, train, segment, to) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    tracing::debug!("UDP segmentation offload refused ({e}); sending datagrams one by one");
                    self.segmentation.store(false, Ordering::Relaxed);
                }
            }
        }
        batch::send(&self.socket, &train.chunks(segment).collect::<Vec<_>>(), to)
    }

    /// Limits receiving to datagrams from `peer`, and asks the kernel to hand over trains of datagrams in one
    /// read where it can (UDP GRO).
    pub fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.socket.connect(peer)?;
        batch::enable_coalescing(&self.socket);
        Ok(())
    }

    /// Receives from the connected peer into `bufs`, waiting (up to the read timeout) only for the first read.
    /// Returns each datagram as (buffer index, offset, length), after loss injection.
    pub fn recv_batch(&self, bufs: &mut [Vec<u8>]) -> io::Result<Vec<(usize, usize, usize)>> {
        // A signal (a debugger, a stop and continue) interrupts the call; it is not a failure.
        let reads = loop {
            match batch::recv(&self.socket, bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                reads => break reads?,
            }
        };
        let mut datagrams = Vec::with_capacity(reads.len());
        for (index, (len, segment)) in reads.into_iter().enumerate() {
            let segment = segment.filter(|s| *s > 0).unwrap_or(len.max(1));
            let mut offset = 0;
            while offset < len {
                let this = segment.min(len - offset);
                if self.drops() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    datagrams.push((index, offset, this));
                }
                offset += this;
            }
        }
        self.received.fetch_add(datagrams.len() as u64, Ordering::Relaxed);
        Ok(datagrams)
    }

    /// Receives one datagram, skipping those the loss injection drops.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = match self.socket.recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                received => received?,
            };
            if self.drops() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.received.fetch_add(1, Ordering::Relaxed);
            return Ok((len, from));
        }
    }
}

/// Batched syscalls. On Linux, `sendmmsg` and `recvmmsg`; elsewhere, one datagram per call.
#[cfg(target_os = "linux")]
mod batch {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    pub fn send(socket: &UdpSocket, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<()> {
        let address = socket2::SockAddr::from(to);
        let mut iovecs: Vec<libc::iovec> = datagrams
            .iter()
            .map(|d| libc::iovec { iov_base: d.as_ptr() as *mut libc::c_void, iov_len: d.len() })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: msghdr is plain data; all-zero is a valid empty header, filled in below.
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                header.msg_name = address.as_ptr() as *mut libc::c_void;
                header.msg_namelen = address.len();
                header.msg_iov = iov;
                header.msg_iovlen = 1;
                libc::mmsghdr { msg_hdr: header, msg_len: 0 }
            })
            .collect();
        let mut done = 0;
        while done < messages.len() {
            let remaining = &mut messages[done..];
            // SAFETY: every header points at a live iovec, a live address and a live datagram for the call.
            let sent = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), remaining.as_mut_ptr(), remaining.len() as u32, libc::MSG_DONTWAIT)
            };
            if sent < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // A full send buffer drops the rest; the protocol sees it as loss.
                    io::ErrorKind::WouldBlock => return Ok(()),
                    _ => return Err(err),
                }
            }
            done += sent as usize;
        }
        Ok(())
    }

    /// From linux/udp.h: the segment size of a GSO send, and of a GRO receive.
    const UDP_SEGMENT: libc::c_int = 103;
    const UDP_GRO: libc::c_int = 104;

    pub fn send_segmented(socket: &UdpSocket, train: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
        let address = socket2::SockAddr::from(to);
        let mut iov = libc::iovec { iov_base: train.as_ptr() as *mut libc::c_void, iov_len: train.len() };
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        let mut control = vec![0u8; space];
        // SAFETY: msghdr is plain data; all-zero is a valid empty header, filled in below.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_name = address.as_ptr() as *mut libc::c_void;
        header.msg_namelen = address.len();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        header.msg_controllen = space as _;
        // SAFETY: the control buffer is CMSG_SPACE bytes for one u16, so the first header and its data fit.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment as u16);
        }
        loop {
            // SAFETY: the header points at a live address, iovec, train and control buffer for the call.
            let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_DONTWAIT) };
            if sent >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Past the system's cap on socket buffers, where the process may (root, or CAP_NET_ADMIN); otherwise the
    /// capped size stays and the protocol's flow control copes with it.
    pub fn force_buffers(socket: &socket2::Socket, bytes: usize) {
        for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            set_int_option(socket.as_raw_fd(), libc::SOL_SOCKET, option, bytes as libc::c_int);
        }
    }

    /// Sets one integer socket option; a refusal leaves the default, which the callers can live with.
    fn set_int_option(fd: std::os::fd::RawFd, level: libc::c_int, option: libc::c_int, value: libc::c_int) {
        // SAFETY: setsockopt reads one c_int from a live local.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                option,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Asks for trains of datagrams in one read; without it every datagram is its own read, which also works.
    pub fn enable_coalescing(socket: &UdpSocket) {
        set_int_option(socket.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1);
    }

    /// Reads up to one message per buffer; returns each message's length and, for a coalesced train, the size
    /// of its datagrams.
    pub fn recv(socket: &UdpSocket, bufs: &mut [Vec<u8>]) -> io::Result<Vec<(usize, Option<usize>)>> {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
        let mut controls = vec![0u8; space * bufs.len()];
        let mut iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr() as *mut libc::c_void, iov_len: b.len() })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(controls.chunks_mut(space))
            .map(|(iov, control)| {
                // SAFETY: as above; no source address is asked for (the socket is connected).
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                header.msg_iov = iov;
                header.msg_iovlen = 1;
                header.msg_control = control.as_mut_ptr() as *mut libc::c_void;
                header.msg_controllen = space as _;
                libc::mmsghdr { msg_hdr: header, msg_len: 0 }
            })
            .collect();
        let n = loop {
            // SAFETY: every header points at a live iovec over a live buffer and a live control buffer.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    messages.as_mut_ptr(),
                    messages.len() as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        let mut reads = Vec::with_capacity(n);
        for message in &messages[..n] {
            let mut segment = None;
            // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_* walk only within them.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&message.msg_hdr);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                        segment = Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int) as usize);
                    }
                    cmsg = libc::CMSG_NXTHDR(&message.msg_hdr, cmsg);
                }
            }
            reads.push((message.msg_len as usize, segment));
        }
        Ok(reads)
    }
}

#[cfg(not(target_os = "linux"))]
mod batch {
    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    pub fn send(socket: &UdpSocket, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<()> {
        for datagram in datagrams {
            socket.send_to(datagram, to)?;
        }
        Ok(())
    }

    pub fn send_segmented(_: &UdpSocket, _: &[u8], _: usize, _: SocketAddr) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    pub fn enable_coalescing(_: &UdpSocket) {}

    pub fn force_buffers(_: &socket2::Socket, _: usize) {}

    pub fn recv(socket: &UdpSocket, bufs: &mut [Vec<u8>]) -> io::Result<Vec<(usize, Option<usize>)>> {
        Ok(vec![(socket.recv(&mut bufs[0])?, None)])
    }
}
