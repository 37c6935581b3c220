//! The tandem server: serves one folder to many clients over TCP.
//!
//! [`Server::bind`] opens the port; [`Server::run`] accepts connections until its shutdown token is cancelled.
//! Each connection is a [`session`]: a control session answering requests, or a bulk transfer opened with a
//! ticket. Request kinds live one per file ([`list`], [`hash`], [`download`], [`upload`], [`change`],
//! [`sync_requests`]); [`bulk`] streams file bytes. Every write passes [`guard`], holds its path in
//! [`path_locks`], and records its result in the [`journal`], which [`observe`] also keeps in step with changes
//! other programs make on disk.

mod auth_limit;
mod batch;
mod bulk;
mod bulk_delta;
mod change;
mod download;
mod fd_limit;
mod guard;
mod handshakes;
mod hash;
mod history;
mod journal;
mod limits;
mod list;
mod listener;
mod memory;
mod observe;
mod path_locks;
mod session;
mod state;
mod sync_requests;
mod tickets;
pub mod udp;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Token;
use crate::digest::HashCache;
use crate::error::{Error, Result};
use crate::share::Share;
use crate::transfer::udp::link::Link;

pub use history::History;
pub use state::Shared;
pub use tickets::Tickets;

/// Delta transfers the server runs at once. Each holds up to two versions of a file of at most
/// [`crate::transfer::delta::DELTA_MAX_SIZE`] in memory; one that finds none free within [`DELTA_WAIT`] goes
/// whole instead.
const DELTA_SLOTS: usize = 2;

/// How long a delta transfer waits for a delta slot before it goes whole: a few stalled deltas must not hold up
/// everyone else's.
pub const DELTA_WAIT: Duration = Duration::from_millis(200);

/// How long a bulk connection waits for its transfer slot (its session's, its address's, the server's) before it
/// is told the server is busy: a waiting connection holds a socket.
pub const TRANSFER_WAIT: Duration = Duration::from_secs(10);

/// How long a new connection may stay silent before it counts against `max_handshakes_per_address`: a client
/// sends its hello at once, an idle socket does not.
pub const HELLO_GRACE: Duration = Duration::from_secs(1);

/// The shortest token a server beyond loopback accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// Everything `tandem serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub root: PathBuf,
    pub listen: String,
    /// Connections served at once; one more is told the server is busy and closed.
    pub max_connections: usize,
    /// Control sessions one client address may hold at once; one more is told why and closed.
    pub max_sessions_per_address: usize,
    /// Bulk connections one client address may hold at once, running or waiting for a transfer slot; one more is
    /// told the server is busy. At most a quarter of `max_connections`.
    pub max_bulk_per_address: usize,
    /// Bulk transfers one session may run at once; more wait their turn.
    pub max_transfers_per_client: usize,
    /// Bulk transfers (TCP and UDP) one client address may run at once, over all its sessions; more TCP ones wait
    /// their turn, more UDP ones are refused as busy.
    pub max_transfers_per_address: usize,
    /// Bulk transfers the whole server runs at once. Each holds a thread; this stays well below tokio's 512
    /// blocking threads, so listings and hashing always find one.
    pub max_transfers: usize,
    /// Listings and whole-tree hashes one client address may run at once, over all its sessions. A listing holds
    /// a thread for as long as its client takes to read it; more wait their turn.
    pub max_listings_per_address: usize,
    /// Listings and whole-tree hashes the whole server runs at once.
    pub max_listings: usize,
    /// Connections from one address that have sent nothing for [`HELLO_GRACE`] after being accepted; one more
    /// is refused. (Up to `max_sessions_per_address` may be saying hello at once, so a burst of clients behind one
    /// address gets in.)
    pub max_handshakes_per_address: usize,
    /// Connections that have not yet said hello (and proved the token), from all addresses. At most half of
    /// `max_connections`. When all are taken, a newcomer evicts the oldest handshake of the address holding the
    /// most, so no few addresses can keep the others from saying hello ([`handshakes`]).
    pub max_handshakes: usize,
    /// Bytes of answers one session may have waiting to be sent; a request with more to say waits for the client
    /// to read.
    pub max_queued_bytes: usize,
    /// A client that reads nothing of its waiting answers for this long loses its session.
    pub stall_timeout: Duration,
    /// Failed authentications after which an address is refused before hello, for `auth_lockout`.
    pub max_auth_failures: u32,
    /// How long an address that failed `max_auth_failures` times in a row is refused.
    pub auth_lockout: Duration,
    /// Requests one session may have running at once; more wait their turn.
    pub max_requests_in_flight: usize,
    /// Requests one session may start per second, after a burst of as many; faster ones are delayed.
    pub requests_per_second: u32,
    /// A control connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A new connection must say hello within this time.
    pub handshake_timeout: Duration,
    /// Refuse every write: uploads, mkdir, delete, rename.
    pub read_only: bool,
    /// Accept names that Windows or macOS cannot hold (`CON`, `a:b`, a trailing dot, case twins …) from clients.
    pub allow_unportable_names: bool,
    /// How often the whole share is rescanned for changes the file watcher missed (it also is at startup).
    pub scan_interval: Duration,
    /// The shared secret clients must prove they hold; `None` lets anyone in (only sane on loopback).
    pub token: Option<Token>,
    /// Serve beyond loopback without a token anyway (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Fraction of UDP datagrams dropped each way, to test recovery (`TANDEM_UDP_LOSS`); 0 in real use.
    pub udp_loss: f64,
}

impl ServerConfig {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ServerConfig {
            root: root.into(),
            listen: crate::DEFAULT_ADDR.to_string(),
            max_connections: 1024,
            max_sessions_per_address: 256,
            max_bulk_per_address: 256,
            max_transfers_per_client: 16,
            max_transfers_per_address: 32,
            max_transfers: 128,
            max_listings_per_address: 16,
            max_listings: 256,
            max_handshakes_per_address: 16,
            max_handshakes: 512,
            max_queued_bytes: 4 << 20,
            stall_timeout: Duration::from_secs(30),
            max_auth_failures: 5,
            auth_lockout: Duration::from_secs(60),
            max_requests_in_flight: 32,
            requests_per_second: 5000,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            read_only: false,
            allow_unportable_names: false,
            scan_interval: Duration::from_secs(600),
            token: None,
            insecure_no_auth: false,
            udp_loss: 0.0,
        }
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    /// The UDP socket on the same port number as the TCP listener.
    udp: Arc<Link>,
    refused: Arc<udp::Refused>,
}

impl Server {
    /// Opens the share and the hash cache, and binds the port.
    pub async fn bind(mut config: ServerConfig) -> Result<Server> {
        if let Some(fds) = fd_limit::raise() {
            fd_limit::fit(&mut config, fds);
        }
        // One address's bulk connections and everyone's handshakes each leave most connections to the others.
        config.max_bulk_per_address = config.max_bulk_per_address.min(config.max_connections / 4).max(1);
        config.max_handshakes = config.max_handshakes.min(config.max_connections / 2).max(1);
        let share = Arc::new(Share::open_writable(&config.root)?);
        let state_dir = share.state_dir();
        let hashes = HashCache::open(&state_dir.join("hashes.sqlite"))?;
        let history = History::open(&state_dir.join("history.log"))?;
        let journal = journal::Journal::open(&state_dir.join("journal.sqlite"))?;
        let listener = listener::bind(&config.listen, config.max_connections).await?;
        let addr = listener.local_addr().map_err(|e| Error::net(&config.listen, e))?;
        if let Some(token) = &config.token
            && !addr.ip().is_loopback()
            && token.len() < MIN_TOKEN_LEN
        {
            return Err(Error::Refused {
                what: format!("to serve on {addr} with a token of {} characters", token.len()),
                reason: format!(
                    "beyond loopback it must have at least {MIN_TOKEN_LEN}, or it can be guessed. \
                     `tandem serve --generate-token` makes a strong one"
                ),
            });
        }
        if !addr.ip().is_loopback() && config.token.is_none() && !config.insecure_no_auth {
            return Err(Error::Refused {
                what: format!("to serve {} on {addr} without a token", share.root().display()),
                reason: "anyone who can reach that address could read and change it. Give a token with --token, \
                         TANDEM_TOKEN or `token = \"…\"` in config.toml, or pass --insecure-no-auth"
                    .into(),
            });
        }
        let udp = Arc::new(Link::bind(addr, config.udp_loss).map_err(|e| Error::net(format!("{addr} (UDP)"), e))?);
        let shared = Arc::new(Shared {
            share,
            hashes,
            journal,
            path_locks: Default::default(),
            refresh_lock: Default::default(),
            history,
            tickets: Tickets::default(),
            sessions: Default::default(),
            handshakes: Arc::new(handshakes::Handshakes::default()),
            bulk: Default::default(),
            silent: Default::default(),
            transfers: Default::default(),
            listings: Default::default(),
            auth_failures: Default::default(),
            auth_turns: Default::default(),
            config,
            delta_slots: Arc::new(tokio::sync::Semaphore::new(DELTA_SLOTS)),
        });
        Ok(Server { listener, shared, udp, refused: Arc::default() })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::net(&self.shared.config.listen, e))
    }

    /// The canonical folder being served.
    pub fn root(&self) -> &std::path::Path {
        self.shared.share.root()
    }

    /// Datagrams the UDP side has refused so far (malformed, or of no session).
    pub fn refused(&self) -> Arc<udp::Refused> {
        self.refused.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every connection and saves the hash cache.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let (udp, shared, refused, stop) = (self.udp, self.shared.clone(), self.refused, shutdown.clone());
        let dispatcher = std::thread::spawn(move || udp::dispatch(udp, shared, refused, stop));
        let interval = self.shared.config.scan_interval;
        let observer = tokio::spawn(observe::run(self.shared.clone(), interval, shutdown.clone()));
        let result = listener::run(self.listener, self.shared, shutdown.clone()).await;
        // The listener ends only on shutdown or a failure it cannot get past: either way the process must end,
        // not linger serving UDP with nobody accepting connections.
        if let Err(e) = &result {
            tracing::error!("stopped accepting connections: {e}");
        }
        shutdown.cancel();
        let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
        let _ = observer.await;
        result
    }

    /// Binds and runs on a background task; returns the address and a token that stops it.
    pub async fn spawn(
        config: ServerConfig,
    ) -> Result<(SocketAddr, CancellationToken, tokio::task::JoinHandle<Result<()>>)> {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server.run(shutdown.clone()));
        Ok((addr, shutdown, handle))
    }
}
