//! The command-line front end: runs one parsed [`Cli`] command and prints its result as a table or as JSON.
//! Errors come back as [`crate::Error`]; `main` prints them as `error: …` and exits 1.

mod args;
pub mod demo;
pub mod output;
mod progress;

use std::io::Write;

use tokio_util::sync::CancellationToken;

pub use args::{
    Cli, Command, DemoArgs, DownloadArgs, HashCommand, IndexCommand, OpenArgs, Protocol, ServeArgs, UploadArgs,
};

use crate::client::{Connection, UdpOptions, download_tcp, download_udp, upload_tcp};
use crate::error::{Error, Result};
use crate::protocol::ListFilter;
use crate::server::{Server, ServerConfig};
use crate::share::compile_pattern;
use crate::timefmt::{Bound, parse_time};
use crate::transfer::Progress;

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => demo::run(args.tour).await,
        Command::Open(args) => open(args, &cli.remote).await,
        Command::Index(command) => {
            let filter = index_filter(&command)?;
            let conn = Connection::connect(&cli.remote).await?;
            let entries = conn.list("", filter).await?;
            if cli.json {
                print_json(&output::entries_json(&entries))
            } else {
                print(&output::entries_table(&entries, false))
            }
        }
        Command::Hash(HashCommand::Verify { path }) => {
            let conn = Connection::connect(&cli.remote).await?;
            let entry = conn.hash(&path).await?;
            if cli.json { print_json(&output::entry_json(&entry)) } else { print(&output::entry_fields(&entry)) }
        }
        Command::Hash(HashCommand::Checkall) => {
            let conn = Connection::connect(&cli.remote).await?;
            let entries = conn.hash_all("", None).await?;
            if cli.json {
                print_json(&output::entries_json(&entries))
            } else {
                print(&output::entries_table(&entries, true))
            }
        }
        Command::Download(args) => download(args, &cli.remote, cli.json).await,
        Command::Upload(args) => {
            let remote = match &args.remote_path {
                Some(remote) => remote.clone(),
                None => args.local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            };
            let conn = Connection::connect(&cli.remote).await?;
            let progress = Progress::default();
            let bar = (!cli.json).then(|| progress::show(progress.clone(), remote.clone()));
            let result = upload_tcp(&conn, &args.local, &remote, &progress).await;
            if let Some(bar) = bar {
                bar.finish().await;
            }
            let report = result?;
            if cli.json { print_json(&output::upload_json(&report)) } else { print(&output::upload_text(&report)) }
        }
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

async fn open(args: OpenArgs, remote: &str) -> Result<()> {
    let serving = match &args.listen {
        Some(listen) => {
            let mut config = ServerConfig::new(&args.local);
            config.listen = listen.clone();
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

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(&args.dir);
    config.listen = args.listen;
    config.max_connections = args.max_connections.max(1);
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout.max(1));
    config.read_only = args.read_only;
    let server = Server::bind(config).await?;
    print(&format!("serving {} on {}\n", server.root().display(), server.local_addr()?))?;
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

async fn download(args: DownloadArgs, remote: &str, json: bool) -> Result<()> {
    let conn = Connection::connect(remote).await?;
    let progress = Progress::default();
    let bar = (!json).then(|| progress::show(progress.clone(), args.path.clone()));
    let result = match args.protocol {
        Protocol::Tcp => download_tcp(&conn, &args.path, &args.to, &progress).await,
        Protocol::Udp => download_udp(&conn, &args.path, &args.to, &progress, UdpOptions::default()).await,
    };
    if let Some(bar) = bar {
        bar.finish().await;
    }
    let report = result?;
    if json { print_json(&output::download_json(&report)) } else { print(&output::download_text(&report)) }
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
