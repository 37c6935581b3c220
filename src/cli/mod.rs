//! The command-line front end: runs one parsed [`Cli`] command and prints its result as a table or as JSON.
//! Errors come back as [`crate::Error`]; `main` prints them as `error: …` and exits 1.

mod args;
pub mod cache;
pub mod demo;
pub mod log_format;
pub mod output;
mod progress;

use std::io::Write;

use tokio_util::sync::CancellationToken;

pub use args::{
    CacheCommand, CacheVerifyArgs, Cli, Command, DemoArgs, DownloadArgs, HashCommand, IndexCommand, OpenArgs, Protocol,
    ServeArgs, SyncArgs, UploadArgs,
};

use crate::auth::Token;
use crate::cache::DownloadCache;
use crate::client::{Connection, Remote, UdpOptions, Via, fetch, identity, upload_tcp};
use crate::error::{Error, Result};
use crate::protocol::ListFilter;
use crate::server::{Server, ServerConfig};
use crate::share::compile_pattern;
use crate::sync::{Engine, SyncConfig, SyncEvent};
use crate::timefmt::{Bound, parse_time};
use crate::transfer::Progress;

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let remote = Remote { addr: cli.remote.clone(), token: token(cli.token.as_deref())? };
    match cli.command {
        Command::Serve(args) => serve(args, remote.token).await,
        Command::Demo(args) => demo::run(args.tour).await,
        Command::Open(args) => open(args, &remote).await,
        Command::Index(command) => {
            let filter = index_filter(&command)?;
            let conn = remote.connect(None).await?;
            let entries = conn.list("", filter).await?;
            if cli.json {
                print_json(&output::entries_json(&entries))
            } else {
                print(&output::entries_table(&entries, false))
            }
        }
        Command::Hash(HashCommand::Verify { path }) => {
            let conn = remote.connect(None).await?;
            let entry = conn.hash(&path).await?;
            if cli.json { print_json(&output::entry_json(&entry)) } else { print(&output::entry_fields(&entry)) }
        }
        Command::Hash(HashCommand::Checkall) => {
            let conn = remote.connect(None).await?;
            let entries = conn.hash_all("", None).await?;
            if cli.json {
                print_json(&output::entries_json(&entries))
            } else {
                print(&output::entries_table(&entries, true))
            }
        }
        Command::Download(args) => download(args, &remote, cli.json).await,
        Command::Upload(args) => {
            let target = match &args.remote_path {
                Some(target) => target.clone(),
                None => args.local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            };
            let conn = connect_as_me(&remote).await?;
            let progress = Progress::default();
            let bar = (!cli.json).then(|| progress::show(progress.clone(), target.clone()));
            let result = upload_tcp(&conn, &args.local, &target, &progress).await;
            if let Some(bar) = bar {
                bar.finish().await;
            }
            let report = result?;
            if cli.json { print_json(&output::upload_json(&report)) } else { print(&output::upload_text(&report)) }
        }
        Command::Sync(args) => sync(args, &remote, cli.json).await,
        Command::Cache(command) => cache::run(command, &remote, cli.json).await,
        Command::Lock { path } => {
            let conn = connect_as_me(&remote).await?;
            let entry = conn.lock(&path).await?;
            let holder = entry.and_then(|e| e.locked_by).unwrap_or_default();
            if cli.json {
                print_json(&serde_json::json!({ "path": path, "locked_by": holder }))
            } else {
                print(&format!("locked {path} (held by {holder})\n"))
            }
        }
        Command::Unlock { path, force } => {
            let conn = connect_as_me(&remote).await?;
            conn.unlock(&path, force).await?;
            if cli.json {
                print_json(&serde_json::json!({ "path": path, "locked_by": null }))
            } else {
                print(&format!("unlocked {path}\n"))
            }
        }
    }
}

/// The token from `--token` or `TANDEM_TOKEN` (`given`), or else from `token` in `config.toml`.
fn token(given: Option<&str>) -> Result<Option<Token>> {
    if let Some(given) = given {
        return Token::new(given, "--token or TANDEM_TOKEN").map(Some);
    }
    let Some(path) = identity::config_dir().map(|dir| dir.join("config.toml")) else { return Ok(None) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    #[derive(serde::Deserialize)]
    struct TokenConfig {
        token: Option<String>,
    }
    let config: TokenConfig =
        toml::from_str(&text).map_err(|e| Error::io(&path, std::io::Error::other(e.message().to_string())))?;
    config.token.map(|token| Token::new(&token, &path.display().to_string())).transpose()
}

/// Connects with this user's client identity, which owns locks and names conflict copies.
async fn connect_as_me(remote: &Remote) -> Result<Connection> {
    remote.connect(Some(identity::current()?)).await
}

/// `tandem sync`: one full sync with `--once`, otherwise until Ctrl-C; then the summary.
async fn sync(args: SyncArgs, remote: &Remote, json: bool) -> Result<()> {
    let client = identity::current()?;
    let (summary, left_out) = if args.once {
        let conn = remote.connect(Some(client.clone())).await?;
        let mut engine = Engine::open(&args.dir, conn, &client.host)?;
        let summary = engine.sync_until_quiet().await?;
        (summary, engine.left_out().clone())
    } else {
        let interval = std::time::Duration::from_secs(args.interval.max(1));
        let config = SyncConfig { root: args.dir.clone(), remote: remote.clone(), client, interval };
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        let task = tokio::spawn(crate::sync::run(config, events_tx, stop));
        while let Some(event) = events.recv().await {
            match event {
                SyncEvent::Problem(problem) => tracing::warn!("{problem}"),
                SyncEvent::Connected { server } => tracing::info!("syncing {} with {server}", args.dir.display()),
                // The engine's log has told each left-out path already.
                SyncEvent::Syncing | SyncEvent::Idle { .. } | SyncEvent::LeftOut { .. } => {}
            }
        }
        let summary =
            task.await.map_err(|e| Error::io(&args.dir, std::io::Error::other(format!("sync task failed: {e}"))))??;
        (summary, Default::default())
    };
    if json {
        print_json(&output::sync_json(&summary, &left_out))?;
    } else {
        print(&output::sync_text(&summary))?;
    }
    // Everything else synced; what could not be is a failure the person must hear about.
    match left_out.len() {
        0 => Ok(()),
        n => Err(Error::Unsupported(format!(
            "{n} {} left out of this sync (each is told above, with the reason)",
            if n == 1 { "path was" } else { "paths were" }
        ))),
    }
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

async fn open(args: OpenArgs, remote: &Remote) -> Result<()> {
    let serving = match &args.listen {
        Some(listen) => {
            let mut config = ServerConfig::new(&args.local);
            config.listen = listen.clone();
            config.token = remote.token.clone();
            Some(Server::spawn(config).await?)
        }
        None => None,
    };
    let result = crate::tui::run(&args.local, remote).await;
    if let Some((_, shutdown, task)) = serving {
        shutdown.cancel();
        let _ = task.await;
    }
    result
}

async fn serve(args: ServeArgs, token: Option<Token>) -> Result<()> {
    let mut config = ServerConfig::new(&args.dir);
    config.listen = args.listen;
    config.max_connections = args.max_connections.max(1);
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout.max(1));
    config.handshake_timeout = std::time::Duration::from_secs(args.handshake_timeout.max(1));
    config.max_sessions_per_address = args.max_sessions_per_address.max(1);
    config.max_transfers_per_client = args.max_transfers_per_client.max(1);
    config.max_bulk_per_address = args.max_bulk_per_address.max(1);
    config.max_requests_in_flight = args.max_requests_in_flight.max(1);
    config.requests_per_second = args.requests_per_second.max(1);
    config.max_transfers_per_address = args.max_transfers_per_address.max(1);
    config.max_transfers = args.max_transfers.max(1);
    config.max_listings_per_address = args.max_listings_per_address.max(1);
    config.max_listings = args.max_listings.max(1);
    config.max_handshakes_per_address = args.max_handshakes_per_address.max(1);
    config.max_handshakes = args.max_handshakes.max(1);
    config.max_queued_bytes = args.max_queued_bytes;
    config.stall_timeout = std::time::Duration::from_secs(args.stall_timeout.max(1));
    config.max_auth_failures = args.max_auth_failures.max(1);
    config.auth_lockout = std::time::Duration::from_secs(args.auth_lockout);
    config.read_only = args.read_only;
    config.allow_unportable_names = args.allow_unportable_names;
    // A generated token replaces any other: the user asked for a new one.
    let generated = args.generate_token.then(Token::generate);
    let token = generated.clone().or(token);
    let open_to_anyone = token.is_none();
    config.token = token;
    config.insecure_no_auth = args.insecure_no_auth;
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    if open_to_anyone && !addr.ip().is_loopback() {
        eprintln!(
            "warning: serving {} on {addr} without authentication (--insecure-no-auth): anyone who can reach it can \
             read and change the folder",
            server.root().display()
        );
    }
    print(&format!("serving {} on {}\n", server.root().display(), server.local_addr()?))?;
    if let Some(token) = generated {
        print(&format!("token: {} (clients give it with --token or TANDEM_TOKEN)\n", token.reveal()))?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    server.run(shutdown).await
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
}

/// `tandem download`: through the download cache, unless its limit is 0.
async fn download(args: DownloadArgs, remote: &Remote, json: bool) -> Result<()> {
    let cache = crate::task::blocking(DownloadCache::for_downloads).await?.map(std::sync::Arc::new);
    let how = (args.protocol, args.udp_idle_timeout);
    let (report, _) = fetch_shown(remote, (&args.path, &args.to), how, json, cache).await?;
    if json { print_json(&output::download_json(&report)) } else { print(&output::download_text(&report)) }
}

/// One download as `download` and `cache verify` run it: a progress bar on a terminal (not with `--json`), and
/// the download's notes on stderr, so `--json` output stays one document.
async fn fetch_shown(
    remote: &Remote,
    (path, to): (&str, &std::path::Path),
    (protocol, udp_idle_timeout): (Protocol, u64),
    json: bool,
    cache: Option<std::sync::Arc<DownloadCache>>,
) -> Result<(crate::client::DownloadReport, crate::client::CacheOutcome)> {
    let conn = remote.connect(None).await?;
    let progress = Progress::default();
    let bar = (!json).then(|| progress::show(progress.clone(), path.to_string()));
    let via = match protocol {
        Protocol::Tcp => Via::Tcp,
        Protocol::Udp => {
            let idle_timeout = std::time::Duration::from_secs(udp_idle_timeout.max(1));
            Via::Udp(UdpOptions { idle_timeout, ..UdpOptions::default() })
        }
    };
    let result = fetch(&conn, path, to, via, &progress, cache).await;
    if let Some(bar) = bar {
        bar.finish().await;
    }
    let fetched = result?;
    for note in &fetched.0.notes {
        eprintln!("note: {note}");
    }
    Ok(fetched)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("<stdout>", e)),
        _ => Ok(()),
    }
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print(&(text + "\n"))
}
