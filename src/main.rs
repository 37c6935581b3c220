//! The `tandem` binary: parses the command line, reads the configuration once, sets up logging, runs the command
//! on a tokio runtime (the terminal UI for `open` and `demo`, the command line for the rest), and turns errors
//! into `error: …` on stderr with exit status 1 (clap's usage errors exit 2).

use std::process::ExitCode;
use std::sync::Mutex;

use clap::Parser;
use tandem::app::{Cli, Command};
use tandem::config::Config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = Config::load();
    init_logging(&cli, &config);
    match run(cli, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Commands log to stderr, except the full-screen TUI, which owns the terminal: it logs to
/// `$XDG_STATE_HOME/tandem/tandem.log`, never to the screen. `TANDEM_LOG` sets the level (default `warn`).
fn init_logging(cli: &Cli, config: &Config) {
    // `tandem sync` says what it does as it goes; other commands speak only when something is wrong.
    let default = if matches!(cli.command, Command::Sync(_)) { "warn,tandem::sync=info" } else { "warn" };
    let filter = EnvFilter::try_from_env("TANDEM_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let full_screen = match &cli.command {
        Command::Open(_) => true,
        Command::Demo(args) => !args.tour,
        _ => false,
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal());
    if !full_screen {
        builder.event_format(tandem::cli::log_format::TerminalFormat).with_writer(std::io::stderr).init();
    } else if let Some(file) = open_log_file(config) {
        builder.with_ansi(false).with_writer(Mutex::new(file)).init();
    } else {
        builder.with_writer(std::io::sink).init();
    }
}

fn open_log_file(config: &Config) -> Option<std::fs::File> {
    let dir = config.dirs.state.as_ref()?;
    std::fs::create_dir_all(dir).ok()?;
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join("tandem.log")).ok()
}

fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Open(args) => {
                let token = tandem::app::commands::token(cli.token.as_deref(), &config)?;
                let remote = tandem::client::Remote { addr: cli.remote, token };
                tandem::tui::open(args, remote, config).await
            }
            Command::Demo(args) if !args.tour => tandem::tui::demo(config).await,
            _ => tandem::cli::run(cli, config).await,
        }
    })?;
    Ok(())
}
