//! The two-pane terminal UI behind `tandem open` and `tandem demo`.
//!
//! One loop owns the terminal. It waits for whichever comes first (a key, a report from the background
//! [`worker`], a timer tick, or SIGTERM), lets [`App`] update its state, drains every other pending report, sends
//! the resulting jobs to the worker, and draws one frame. The loop never waits on the network: the worker does
//! all I/O on tokio tasks and reports through a channel. The terminal is restored on quit, on error, on SIGTERM,
//! and on panic (ratatui's panic hook); a running sync is stopped first, so it never ends mid-report.

pub mod action;
pub mod app;
#[cfg(test)]
mod app_tests;
pub mod cached;
pub mod keymap;
pub mod pane;
pub mod prompt;
pub mod sync;
pub mod transfers;
pub mod view;
pub mod worker;

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

pub use app::App;

use crate::app::OpenArgs;
use crate::app::commands::Serving;
use crate::app::demo::Sample;
use crate::client::Remote;
use crate::config::Config;
use crate::error::{Error, Result};
use keymap::KeyMap;
use worker::Event;

/// How often the transfers panel refreshes while something moves.
const TICK: Duration = Duration::from_millis(250);

/// `tandem open`: the TUI on the local folder and the remote share, serving the local folder beside it when
/// `--listen` asks.
pub async fn open(args: OpenArgs, remote: Remote, config: Config) -> Result<()> {
    let serving = Serving::start(&args, &remote, &config).await?;
    let result = run(&args.local, &remote, config).await;
    if let Some(serving) = serving {
        serving.stop().await;
    }
    result
}

/// `tandem demo`: the TUI on the sample share of [`crate::app::demo`].
pub async fn demo(config: Config) -> Result<()> {
    let sample = Sample::start(&config).await?;
    let result = run(&sample.local, &Remote::new(sample.addr.to_string()), config).await;
    sample.stop().await;
    result
}

/// Opens the TUI on `local_root` (left) and the server at `remote` (right) until the person quits.
pub async fn run(local_root: &Path, remote: &Remote, config: Config) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::NotSupported(
            "the two-pane view needs a terminal, and standard output is not one; in scripts use `index`, `hash` and \
             `download`"
                .into(),
        ));
    }
    let local_root = local_root.canonicalize().map_err(|e| Error::io(local_root, e))?;
    let (keys, mut problems) = config.keys();
    let (keymap, key_problems) = KeyMap::with_config(&keys);
    problems.extend(key_problems);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let jobs = worker::spawn(local_root.clone(), remote.clone(), config, events_tx);
    let mut app = App::new(local_root.display().to_string(), remote.addr.clone(), keymap);
    for problem in problems {
        app.message(problem, true);
    }
    for job in app.start() {
        jobs.send(job);
    }
    let mut terminal = ratatui::try_init().map_err(|e| Error::io("<terminal>", e))?;
    let result = event_loop(&mut terminal, &mut app, &mut events_rx, &jobs).await;
    if app.sync.is_running() {
        // A pass may take a moment to finish: say why the screen is still up.
        app.message("stopping sync…", false);
        let _ = terminal.draw(|frame| view::draw(frame, &app));
    }
    jobs.shutdown().await;
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    events: &mut mpsc::UnboundedReceiver<Event>,
    jobs: &worker::Handle,
) -> Result<()> {
    let terminal_error = |e| Error::io("<terminal>", e);
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = terminate_signal()?;
    let mut redraw = true;
    loop {
        if redraw {
            terminal.draw(|frame| view::draw(frame, app)).map_err(terminal_error)?;
        }
        let mut new_jobs = Vec::new();
        redraw = true;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => new_jobs = app.on_key(key),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(terminal_error(e)),
                None => return Ok(()),
            },
            Some(event) = events.recv() => new_jobs = app.on_event(event),
            _ = tick.tick() => {
                app.on_tick(Instant::now());
                redraw = app.animating();
            }
            _ = sigterm.recv() => app.should_quit = true,
        }
        // Take every report that is already waiting before drawing once.
        while let Ok(event) = events.try_recv() {
            new_jobs.extend(app.on_event(event));
        }
        for job in new_jobs {
            jobs.send(job);
        }
        if app.should_quit {
            return Ok(());
        }
    }
}

#[cfg(unix)]
fn terminate_signal() -> Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::terminate()).map_err(|e| Error::io("<signal>", e))
}
