//! tandem's UDP socket layer: large kernel buffers, datagram counters, and optional loss injection
//! (`TANDEM_UDP_LOSS`), which drops that fraction of datagrams in both directions on this side.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffer size asked for; the kernel may grant less.
const SOCKET_BUFFER: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct Link {
    socket: UdpSocket,
    /// Fraction of datagrams dropped each way, for demos and tests.
    loss: f64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
}

impl Link {
    /// Binds `addr` with large buffers, dropping `loss` of the datagrams each way (see [`loss_from_env`]).
    pub fn bind(addr: SocketAddr, loss: f64) -> io::Result<Link> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        Ok(Link::new(socket.into(), loss))
    }

    pub fn new(socket: UdpSocket, loss: f64) -> Link {
        Link { socket, loss, sent: AtomicU64::new(0), received: AtomicU64::new(0), dropped: AtomicU64::new(0) }
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
        match self.socket.send_to(datagram, to) {
            Ok(_) => Ok(()),
            // A full send buffer is loss by another name; the protocol recovers from it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Receives one datagram, skipping those the loss injection drops.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let (len, from) = self.socket.recv_from(buf)?;
            if self.drops() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.received.fetch_add(1, Ordering::Relaxed);
            return Ok((len, from));
        }
    }
}

/// `TANDEM_UDP_LOSS` as a fraction in `0..1`; anything else means no loss.
pub fn loss_from_env() -> f64 {
    std::env::var("TANDEM_UDP_LOSS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|loss| (0.0..1.0).contains(loss))
        .unwrap_or(0.0)
}
