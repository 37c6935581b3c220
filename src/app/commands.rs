//! Each command as a typed call: what `tandem index`, `hash`, `lock`, `cache`, `serve`, `open` and `sync --once`
//! do, returning values rather than text. The command line prints what comes back ([`super::output`]); the TUI's
//! `:` prompt shows it; neither knows how the other does so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::command::{IndexCommand, OpenArgs, ServeArgs, UploadArgs};
use crate::auth::Token;
use crate::cache::{CacheEntry, Cleared, DownloadCache};
use crate::client::{Connection, Remote, UdpOptions, Via, identity};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::protocol::{Entry, ListFilter};
use crate::server::{Server, ServerConfig};
use crate::share::compile_pattern;
use crate::sync::{Engine, SyncSummary};
use crate::task::blocking;
use crate::timefmt::{Bound, parse_time};
use crate::transfer::Protocol;

/// The token from `--token` or `TANDEM_TOKEN` (`given`), or else from `token` in `config.toml`.
pub fn token(given: Option<&str>, config: &Config) -> Result<Option<Token>> {
    match given {
        Some(given) => Token::new(given, "--token or TANDEM_TOKEN").map(Some),
        None => config.token(),
    }
}

/// Connects with this user's client identity, which owns locks and names conflict copies.
pub async fn connect_as_me(remote: &Remote, config: &Config) -> Result<Connection> {
    let config = config.clone();
    let me = blocking(move || identity::current(&config)).await?;
    remote.connect(Some(me)).await
}

/// The listing filter for an `index` command, with every user value checked before anything is sent.
pub fn index_filter(command: &IndexCommand) -> Result<ListFilter> {
    Ok(match command {
        IndexCommand::Longlist => ListFilter::default(),
        IndexCommand::Shortlist { start, end } => {
            let from = parse_time(start, Bound::Start)?;
            let to = parse_time(end, Bound::End)?;
            if from > to {
                return Err(Error::BadRange { start: start.clone(), end: end.clone() });
            }
            ListFilter { modified_from_ns: Some(from), modified_to_ns: Some(to), ..Default::default() }
        }
        IndexCommand::Regex { pattern, path } => {
            compile_pattern(pattern)?;
            ListFilter { pattern: Some(pattern.clone()), match_path: *path, ..Default::default() }
        }
    })
}

/// `index …`: the share's entries that pass the command's filter.
pub async fn index(conn: &Connection, command: &IndexCommand) -> Result<Vec<Entry>> {
    let filter = index_filter(command)?;
    conn.list("", filter).await
}

/// `hash checkall`: every file of the share with its MD5.
pub async fn hash_all(conn: &Connection) -> Result<Vec<Entry>> {
    conn.hash_all("", None).await
}

/// `lock PATH`: who holds the lock now (this client, unless someone else had it).
pub async fn lock(conn: &Connection, path: &str) -> Result<String> {
    let entry = conn.lock(path).await?;
    Ok(entry.and_then(|e| e.locked_by).unwrap_or_default())
}

/// How a download travels, from the command's `--protocol` and `--udp-idle-timeout`.
pub fn via(protocol: Protocol, udp_idle_timeout_secs: u64, config: &Config) -> Via {
    match protocol {
        Protocol::Tcp => Via::Tcp,
        Protocol::Udp => {
            let idle_timeout = std::time::Duration::from_secs(udp_idle_timeout_secs.max(1));
            Via::Udp(UdpOptions { idle_timeout, loss: config.udp_loss, ..UdpOptions::default() })
        }
    }
}

/// Where `upload LOCAL [REMOTE]` puts the file: the given remote path, else the local file's name.
pub fn upload_target(args: &UploadArgs) -> String {
    match &args.remote_path {
        Some(target) => target.clone(),
        None => args.local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    }
}

/// What `cache show` lists.
pub struct CacheListing {
    pub entries: Vec<CacheEntry>,
    pub limit: u64,
    pub dir: PathBuf,
}

/// `cache show`: the cache's entries, most recently used first.
pub async fn cache_show(cache: Arc<DownloadCache>) -> Result<CacheListing> {
    let (limit, dir) = (cache.limit(), cache.dir().to_path_buf());
    let entries = blocking(move || cache.entries()).await?;
    Ok(CacheListing { entries, limit, dir })
}

/// `cache clear`: what was removed.
pub async fn cache_clear(cache: Arc<DownloadCache>) -> Result<Cleared> {
    blocking(move || cache.clear()).await
}

/// This user's download cache, opened off the async threads.
pub async fn open_cache(config: &Config) -> Result<Arc<DownloadCache>> {
    let config = config.clone();
    Ok(Arc::new(blocking(move || DownloadCache::open_default(&config)).await?))
}

/// The cache downloads go through, or `None` when it is off (see [`DownloadCache::for_downloads`]).
pub async fn cache_for_downloads(config: &Config) -> Result<Option<Arc<DownloadCache>>> {
    let config = config.clone();
    Ok(blocking(move || DownloadCache::for_downloads(&config)).await?.map(Arc::new))
}

/// `sync DIR --once`: one full sync until nothing is left to do, and the paths left out of it with the reason.
pub async fn sync_once(
    dir: &Path,
    remote: &Remote,
    config: &Config,
) -> Result<(SyncSummary, std::collections::BTreeMap<String, String>)> {
    let owned = config.clone();
    let client = blocking(move || identity::current(&owned)).await?;
    let conn = remote.connect(Some(client.clone())).await?;
    let mut engine = Engine::open_async(dir, conn, &client.host).await?;
    let summary = engine.sync_until_quiet().await?;
    Ok((summary, engine.left_out().clone()))
}

/// Fails when a sync left paths out: everything else synced, but the person must hear about those.
pub fn left_out_failure(count: usize) -> Result<()> {
    match count {
        0 => Ok(()),
        count => Err(Error::LeftOut { count }),
    }
}

/// The server `tandem serve` runs, from its arguments: every limit at least 1.
pub fn server_config(args: &ServeArgs, token: Option<Token>, config: &Config) -> ServerConfig {
    let mut server = ServerConfig::new(&args.dir);
    server.listen = args.listen.clone();
    server.max_connections = args.max_connections.max(1);
    server.idle_timeout = std::time::Duration::from_secs(args.idle_timeout.max(1));
    server.handshake_timeout = std::time::Duration::from_secs(args.handshake_timeout.max(1));
    server.max_sessions_per_address = args.max_sessions_per_address.max(1);
    server.max_transfers_per_client = args.max_transfers_per_client.max(1);
    server.max_bulk_per_address = args.max_bulk_per_address.max(1);
    server.max_requests_in_flight = args.max_requests_in_flight.max(1);
    server.requests_per_second = args.requests_per_second.max(1);
    server.max_transfers_per_address = args.max_transfers_per_address.max(1);
    server.max_transfers = args.max_transfers.max(1);
    server.max_listings_per_address = args.max_listings_per_address.max(1);
    server.max_listings = args.max_listings.max(1);
    server.max_handshakes_per_address = args.max_handshakes_per_address.max(1);
    server.max_handshakes = args.max_handshakes.max(1);
    server.max_queued_bytes = args.max_queued_bytes;
    server.stall_timeout = std::time::Duration::from_secs(args.stall_timeout.max(1));
    server.max_auth_failures = args.max_auth_failures.max(1);
    server.auth_lockout = std::time::Duration::from_secs(args.auth_lockout);
    server.read_only = args.read_only;
    server.allow_unportable_names = args.allow_unportable_names;
    server.token = token;
    server.insecure_no_auth = args.insecure_no_auth;
    server.udp_loss = config.udp_loss;
    server
}

/// A server `tandem open --listen` runs beside the TUI, serving its local folder to the other machine.
pub struct Serving {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Serving {
    /// Starts serving `args.local` when `--listen` was given.
    pub async fn start(args: &OpenArgs, remote: &Remote, config: &Config) -> Result<Option<Serving>> {
        let Some(listen) = &args.listen else { return Ok(None) };
        let mut server = ServerConfig::new(&args.local);
        server.listen = listen.clone();
        server.token = remote.token.clone();
        server.udp_loss = config.udp_loss;
        let (_, shutdown, task) = Server::spawn(server).await?;
        Ok(Some(Serving { shutdown, task }))
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
