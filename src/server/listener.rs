//! The listening socket and its accept loop: binds with an accept queue as deep as the connection limit, caps
//! the number of connections and, per address and in total, of those still saying hello, retries failed accepts
//! with backoff, and shuts down cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::Full;
use super::{Shared, session};
use crate::error::{Error, Result};
use crate::protocol::{ErrorBody, ErrorCode, ServerFrame};
use crate::wire::FrameWriter;

/// How long open connections get to finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Binds `listen` with room for `backlog` connections waiting to be accepted (the kernel caps it at
/// `net.core.somaxconn`). Tokio's own bind asks for 128: a burst of clients beyond that, such as 200 connecting at
/// once, overflowed the queue and the kernel dropped their handshakes, so each waited a second for a resent SYN.
pub async fn bind(listen: &str, backlog: usize) -> Result<TcpListener> {
    let backlog = backlog.clamp(128, 65_535) as u32;
    let net = |e| Error::net(listen, e);
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await.map_err(net)? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(net)?;
        // As tokio's own bind does, so a restarted server gets its port back at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true).map_err(net)?;
        match socket.bind(addr).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.map_or_else(|| Error::NoAddress { addr: listen.to_string() }, net))
}

pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) -> Result<()> {
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = accept_with_backoff(&listener) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!("accept failed for good: {e}");
                break;
            }
        };
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let message = format!("server busy: all {} connections are in use", shared.config.max_connections);
                tracker.spawn(refuse_busy(stream, peer.to_string(), message));
                continue;
            }
        };
        // Counted from accept: sockets that never say hello cannot take the slots of clients that do.
        let (per_address, total) = (shared.config.max_sessions_per_address, shared.config.max_handshakes);
        let handshaking = match shared.handshakes.take(peer.ip(), per_address, total) {
            Ok(slot) => slot,
            Err(full) => {
                let message = match full {
                    Full::Address => format!(
                        "too many connections from {} still saying hello: at most {per_address} at once",
                        peer.ip()
                    ),
                    Full::Total => format!("server busy: {total} connections are still saying hello"),
                };
                tracker.spawn(refuse_busy(stream, peer.to_string(), message));
                continue;
            }
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let evicted = handshaking.evicted.clone();
        tracker.spawn(async move {
            // Eviction can only come before the client is in: its slot leaves the pool at welcome.
            tokio::select! {
                () = session::serve(stream, peer, handshaking, shared, shutdown) => {}
                () = evicted.cancelled() => tracing::debug!(%peer, "evicted while saying hello to make room"),
            }
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after {} s; closing anyway", SHUTDOWN_GRACE.as_secs());
    }
    let shared_for_flush = shared.clone();
    tokio::task::spawn_blocking(move || shared_for_flush.hashes.flush()).await.map_err(|e| {
        Error::task_failed(format!("saving the hash cache in {}", shared.share.state_dir().display()), e)
    })?
}

/// The longest wait between two failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts one connection, retrying failures with backoff. Running out of file descriptors or memory passes once
/// connections close, so it is retried for as long as it lasts; any other failure, for a few seconds.
async fn accept_with_backoff(listener: &TcpListener) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    let mut backoff = Duration::from_millis(1);
    let mut other_failures = Duration::ZERO;
    loop {
        match listener.accept().await {
            Ok(pair) => return Ok(pair),
            Err(e) => {
                let resources = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
                );
                if !resources {
                    if other_failures > Duration::from_secs(2) {
                        return Err(e);
                    }
                    other_failures += backoff;
                }
                // Logged once per backoff step, not once per failed accept.
                tracing::warn!("accept failed, retrying in {} ms: {e}", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

/// Tells a connection over a limit why it is being closed, instead of leaving it hanging.
async fn refuse_busy(stream: TcpStream, peer: String, message: String) {
    let mut writer = FrameWriter::new(stream, &peer);
    let body = ErrorBody { code: ErrorCode::Busy, message };
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(&ServerFrame::Fatal(body))).await;
}
