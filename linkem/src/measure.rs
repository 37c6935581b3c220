//! Measurements through a link with the kernel's own TCP at both ends, from threads of this process: round
//! trips of one byte, a bulk transfer's rate, and the emulator's own ceiling (a bulk transfer with no
//! impairment). Every wait is bounded by socket timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::link::{Link, Side};
use crate::profile::Profile;

/// A TCP connection from `from` to the other side: (the connecting end, the accepted end).
pub fn tcp_pair(link: &Link, from: Side, timeout: Duration) -> Result<(TcpStream, TcpStream)> {
    let to = other(from);
    let listener = link
        .run_in(to, || TcpListener::bind(SocketAddrV4::new(link.addr(to), 0)))?
        .map_err(|e| Error::failed(format!("listening on {} in {}", link.addr(to), link.ns(to)), e))?;
    let addr = listener.local_addr().map_err(|e| Error::failed(format!("listener in {}", link.ns(to)), e))?;
    let client = link
        .run_in(from, || TcpStream::connect_timeout(&addr, timeout))?
        .map_err(|e| Error::failed(format!("connecting from {} to {addr}", link.ns(from)), e))?;
    // The handshake is done, so the connection is already waiting to be accepted.
    let (server, _) = listener.accept().map_err(|e| Error::failed(format!("accepting on {addr}"), e))?;
    for stream in [&client, &server] {
        stream.set_read_timeout(Some(timeout)).map_err(|e| Error::failed("setting a read timeout", e))?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| Error::failed("setting a write timeout", e))?;
    }
    Ok((client, server))
}

fn other(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// `samples` round trips of one byte from A to B and back over one TCP connection (Nagle off), in order.
pub fn tcp_round_trips(link: &Link, samples: usize, timeout: Duration) -> Result<Vec<Duration>> {
    let (mut client, mut server) = tcp_pair(link, Side::A, timeout)?;
    client.set_nodelay(true).map_err(|e| Error::failed("TCP_NODELAY", e))?;
    server.set_nodelay(true).map_err(|e| Error::failed("TCP_NODELAY", e))?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut byte = [0u8; 1];
        for _ in 0..samples {
            server.read_exact(&mut byte)?;
            server.write_all(&byte)?;
        }
        Ok(())
    });
    let mut times = Vec::with_capacity(samples);
    let mut byte = [7u8; 1];
    for i in 0..samples {
        let start = Instant::now();
        client.write_all(&byte).map_err(|e| Error::failed(format!("round trip {i}: sending"), e))?;
        client.read_exact(&mut byte).map_err(|e| Error::failed(format!("round trip {i}: reading the echo"), e))?;
        times.push(start.elapsed());
    }
    match echo.join() {
        Ok(Ok(())) => Ok(times),
        Ok(Err(e)) => Err(Error::failed("echoing round trips in B", e)),
        Err(_) => Err(Error::Failed("the echo thread panicked".into())),
    }
}

/// What a bulk transfer achieved.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    /// From the first byte's arrival to the last one's: the steady rate, without the handshake.
    pub elapsed: Duration,
}

impl Transfer {
    /// Goodput: payload bits per second.
    pub fn bits_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `bytes` bytes over a new TCP connection from `from` to the other side and times their arrival;
/// `timeout` bounds each socket call and the whole transfer.
pub fn tcp_bulk(link: &Link, from: Side, bytes: u64, timeout: Duration) -> Result<Transfer> {
    let (mut sender, mut receiver) = tcp_pair(link, from, timeout)?;
    let send = std::thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![0x5Au8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            sender.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        sender.shutdown(std::net::Shutdown::Write)
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let deadline = last + timeout;
    while got < bytes {
        if Instant::now() > deadline {
            return Err(Error::Failed(format!("bulk transfer: only {got} of {bytes} bytes within {timeout:?}")));
        }
        let n = receiver.read(&mut buf).map_err(|e| Error::failed(format!("bulk transfer after {got} bytes"), e))?;
        if n == 0 {
            break;
        }
        last = Instant::now();
        first.get_or_insert(last);
        got += n as u64;
    }
    match send.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Error::failed(format!("sending the bulk transfer from {:?}", from), e)),
        Err(_) => return Err(Error::Failed("the sending thread panicked".into())),
    }
    if got < bytes {
        return Err(Error::Failed(format!("bulk transfer ended after {got} of {bytes} bytes")));
    }
    Ok(Transfer { bytes: got, elapsed: last - first.unwrap_or(last) })
}

/// The emulator's own ceiling: a TCP transfer of `bytes` from A to B through a fresh link with no impairment.
pub fn ceiling(bytes: u64) -> Result<Transfer> {
    let link = Link::start(Profile::unlimited())?;
    // A short warm-up fills the buffer pools and lets TCP leave slow start.
    tcp_bulk(&link, Side::A, bytes.min(8 << 20), Duration::from_secs(10))?;
    let transfer = tcp_bulk(&link, Side::A, bytes, Duration::from_secs(30))?;
    link.close()?;
    Ok(transfer)
}
