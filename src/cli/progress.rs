//! A one-line progress bar on stderr for command-line transfers, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use humansize::{BINARY, format_size};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::transfer::Progress;

const REDRAW_INTERVAL: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 24;

pub struct Bar {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Starts drawing `progress` for `label`; does nothing when stderr is not a terminal.
pub fn show(progress: Progress, label: String) -> Bar {
    let stop = CancellationToken::new();
    let task = std::io::stderr().is_terminal().then(|| tokio::spawn(draw(progress, label, stop.clone())));
    Bar { stop, task }
}

impl Bar {
    /// Stops drawing and clears the line.
    pub async fn finish(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

async fn draw(progress: Progress, label: String, stop: CancellationToken) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(REDRAW_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (done, total) = (progress.get(), progress.total());
        let fraction = if total == 0 { 0.0 } else { done as f64 / total as f64 };
        let filled = (fraction * BAR_WIDTH as f64) as usize;
        let rate = (done as f64 / started.elapsed().as_secs_f64().max(0.001)) as u64;
        let line = format!(
            "\r{label}  [{}{}] {:>3.0}%  {} / {}  {}/s ",
            "#".repeat(filled.min(BAR_WIDTH)),
            ".".repeat(BAR_WIDTH - filled.min(BAR_WIDTH)),
            fraction * 100.0,
            format_size(done, BINARY),
            format_size(total, BINARY),
            format_size(rate, BINARY),
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    let _ = std::io::stderr().write_all(b"\r\x1b[2K");
}
