//! The command-line front end: runs one parsed [`Cli`] command and prints its result as a table or as JSON.
//! Errors come back as [`crate::Error`]; `main` prints them as `error: …` and exits 1.

pub mod cache;
pub mod demo;
pub mod log_format;
mod progress;

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::app::commands::{self, connect_as_me};
use crate::app::output;
use crate::app::{Cli, Command, DownloadArgs, HashCommand, ServeArgs, SyncArgs};
use crate::auth::Token;
use crate::cache::DownloadCache;
use crate::client::{Remote, fetch, upload_tcp};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::Server;
use crate::sync::{SyncConfig, SyncEvent};
use crate::transfer::{Progress, Protocol};

/// Runs one command to completion. `open` and `demo` without `--tour` are the TUI's, which `main` runs.
pub async fn run(cli: Cli, config: Config) -> Result<()> {
    let remote = Remote { addr: cli.remote.clone(), token: commands::token(cli.token.as_deref(), &config)? };
    match cli.command {
        Command::Serve(args) => serve(args, remote.token, &config).await,
        Command::Demo(_) => demo::tour(&config).await,
        Command::Open(_) => Err(Error::NotSupported("`open` runs the terminal UI, which `tandem open` starts".into())),
        Command::Index(command) => {
            let entries = commands::index(&remote.connect(None).await?, &command).await?;
            if cli.json {
                print_json(&output::entries_json(&entries))
            } else {
                print(&output::entries_table(&entries, false))
            }
        }
        Command::Hash(HashCommand::Verify { path }) => {
            let entry = remote.connect(None).await?.hash(&path).await?;
            if cli.json { print_json(&output::entry_json(&entry)) } else { print(&output::entry_fields(&entry)) }
        }
        Command::Hash(HashCommand::Checkall) => {
            let entries = commands::hash_all(&remote.connect(None).await?).await?;
            if cli.json {
                print_json(&output::entries_json(&entries))
            } else {
                print(&output::entries_table(&entries, true))
            }
        }
        Command::Download(args) => download(args, &remote, &config, cli.json).await,
        Command::Upload(args) => {
            let target = commands::upload_target(&args);
            let conn = connect_as_me(&remote, &config).await?;
            let progress = Progress::default();
            let bar = (!cli.json).then(|| progress::show(progress.clone(), target.clone()));
            let result = upload_tcp(&conn, &args.local, &target, &progress).await;
            if let Some(bar) = bar {
                bar.finish().await;
            }
            let report = result?;
            if cli.json { print_json(&output::upload_json(&report)) } else { print(&output::upload_text(&report)) }
        }
        Command::Sync(args) => sync(args, &remote, &config, cli.json).await,
        Command::Cache(command) => cache::run(command, &remote, &config, cli.json).await,
        Command::Lock { path } => {
            let holder = commands::lock(&connect_as_me(&remote, &config).await?, &path).await?;
            if cli.json {
                print_json(&serde_json::json!({ "path": path, "locked_by": holder }))
            } else {
                print(&format!("locked {path} (held by {holder})\n"))
            }
        }
        Command::Unlock { path, force } => {
            connect_as_me(&remote, &config).await?.unlock(&path, force).await?;
            if cli.json {
                print_json(&serde_json::json!({ "path": path, "locked_by": null }))
            } else {
                print(&format!("unlocked {path}\n"))
            }
        }
    }
}

/// `tandem sync`: one full sync with `--once`, otherwise until Ctrl-C; then the summary.
async fn sync(args: SyncArgs, remote: &Remote, config: &Config, json: bool) -> Result<()> {
    let (summary, left_out) = if args.once {
        commands::sync_once(&args.dir, remote, config).await?
    } else {
        let owned = config.clone();
        let client = crate::task::blocking(move || crate::client::identity::current(&owned)).await?;
        let interval = std::time::Duration::from_secs(args.interval.max(1));
        let sync_config = SyncConfig { root: args.dir.clone(), remote: remote.clone(), client, interval };
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        let task = tokio::spawn(crate::sync::run(sync_config, events_tx, stop));
        while let Some(event) = events.recv().await {
            match event {
                SyncEvent::Problem(problem) => tracing::warn!("{problem}"),
                SyncEvent::Connected { server } => tracing::info!("syncing {} with {server}", args.dir.display()),
                // The engine's log has told each left-out path already.
                SyncEvent::Syncing | SyncEvent::Idle { .. } | SyncEvent::LeftOut { .. } => {}
            }
        }
        let summary =
            task.await.map_err(|e| Error::task_failed(format!("the sync of {}", args.dir.display()), e))??;
        (summary, Default::default())
    };
    if json {
        print_json(&output::sync_json(&summary, &left_out))?;
    } else {
        print(&output::sync_text(&summary))?;
    }
    commands::left_out_failure(left_out.len())
}

async fn serve(args: ServeArgs, token: Option<Token>, config: &Config) -> Result<()> {
    // A generated token replaces any other: the user asked for a new one.
    let generated = args.generate_token.then(Token::generate);
    let token = generated.clone().or(token);
    let open_to_anyone = token.is_none();
    let server = Server::bind(commands::server_config(&args, token, config)).await?;
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
async fn download(args: DownloadArgs, remote: &Remote, config: &Config, json: bool) -> Result<()> {
    let cache = commands::cache_for_downloads(config).await?;
    let how = (args.protocol, args.udp_idle_timeout);
    let (report, _) = fetch_shown(remote, config, (&args.path, &args.to), how, json, cache).await?;
    if json { print_json(&output::download_json(&report)) } else { print(&output::download_text(&report)) }
}

/// One download as `download` and `cache verify` run it: a progress bar on a terminal (not with `--json`), and
/// the download's notes on stderr, so `--json` output stays one document.
async fn fetch_shown(
    remote: &Remote,
    config: &Config,
    (path, to): (&str, &std::path::Path),
    (protocol, udp_idle_timeout): (Protocol, u64),
    json: bool,
    cache: Option<std::sync::Arc<DownloadCache>>,
) -> Result<(crate::client::DownloadReport, crate::client::CacheOutcome)> {
    let conn = remote.connect(None).await?;
    let progress = Progress::default();
    let bar = (!json).then(|| progress::show(progress.clone(), path.to_string()));
    let via = commands::via(protocol, udp_idle_timeout, config);
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
