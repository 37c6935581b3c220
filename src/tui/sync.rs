//! Auto-sync of the two panes' roots, toggled with `s`. Two halves: [`SyncStatus`], what the title bar shows,
//! updated by the app from the events it hears (no I/O); and [`SyncRunner`], the worker's side, which runs
//! [`crate::sync::run`] on a tokio task, forwards its events, and stops it by cancelling its token.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::worker::Event;
use crate::client::{Remote, identity};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sync::{SyncConfig, SyncEvent, SyncSummary};
use crate::task::blocking;

/// Full rescan and poll, as `tandem sync` does by default; changes on either side are picked up at once anyway.
const SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// A stop waits this long for a pass to finish before cutting it short. Cutting is safe (every write is
/// checked and atomic, as after a crash) but leaves the work to the next start.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where sync stands, as the title bar shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SyncPhase {
    #[default]
    Off,
    Starting,
    Syncing,
    InSync,
    /// Running, but the last attempt went wrong; sync keeps trying.
    Problem(String),
    Stopping,
    /// Ended on its own with this error; `s` starts it again.
    Failed(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatus {
    pub phase: SyncPhase,
    /// The last pass that changed something, kept through the quiet passes after it.
    pub last: Option<SyncSummary>,
    /// Paths the last run of passes could not sync (each told in the message log).
    pub left_out: usize,
}

impl SyncStatus {
    /// True from `s` until the worker says sync has stopped.
    pub fn is_running(&self) -> bool {
        !matches!(self.phase, SyncPhase::Off | SyncPhase::Failed(_))
    }

    /// Applies a report from the sync task; returns the line for the message log, if any, and whether it is an
    /// error.
    pub fn apply(&mut self, event: SyncEvent) -> Option<(String, bool)> {
        // A stop in progress stays on screen whatever the last passes say.
        let stopping = self.phase == SyncPhase::Stopping;
        let (phase, line) = match event {
            SyncEvent::Connected { server } => {
                (SyncPhase::Syncing, Some((format!("sync: connected to {server}"), false)))
            }
            SyncEvent::Syncing => (SyncPhase::Syncing, None),
            SyncEvent::Idle { summary, left_out } if summary.is_empty() => {
                self.left_out = left_out;
                (SyncPhase::InSync, None)
            }
            SyncEvent::Idle { summary, left_out } => {
                self.last = Some(summary);
                self.left_out = left_out;
                (SyncPhase::InSync, Some((format!("sync: {}", describe(&summary)), false)))
            }
            SyncEvent::LeftOut { path, reason } => {
                return Some((format!("sync: left out {path}: {reason}"), true));
            }
            SyncEvent::Problem(problem) => {
                // The task retries with backoff: one log line per distinct problem, not one per attempt.
                let repeated = self.phase == SyncPhase::Problem(problem.clone());
                let line = (!repeated).then(|| (format!("sync: {problem}"), true));
                (SyncPhase::Problem(problem), line)
            }
        };
        if !stopping {
            self.phase = phase;
        }
        line
    }

    /// The task ended: stopped on request (with its totals) or failed.
    pub fn stopped(&mut self, result: std::result::Result<SyncSummary, String>) -> (String, bool) {
        match result {
            Ok(totals) => {
                self.phase = SyncPhase::Off;
                let line = if totals.is_empty() {
                    "sync stopped".to_string()
                } else {
                    format!("sync stopped; in all {}", describe(&totals))
                };
                (line, false)
            }
            Err(e) => {
                self.phase = SyncPhase::Failed(e.clone());
                (format!("sync failed: {e}"), true)
            }
        }
    }
}

/// `2 uploaded, 1 downloaded, 0 deleted, 0 conflicts`, for the message log.
pub fn describe(summary: &SyncSummary) -> String {
    format!(
        "{} uploaded, {} downloaded, {}{} deleted, {}",
        summary.uploaded,
        summary.downloaded,
        summary.moved_phrase(),
        summary.deleted,
        summary.conflicts_phrase()
    )
}

/// `↑2 ↓1 · 1 deleted · 1 conflict` (uploaded, downloaded; zeros left out), for the title bar.
pub fn counts(summary: &SyncSummary) -> String {
    let arrows = [("↑", summary.uploaded), ("↓", summary.downloaded)];
    let arrows: Vec<String> = arrows.iter().filter(|(_, n)| *n > 0).map(|(mark, n)| format!("{mark}{n}")).collect();
    let mut parts = vec![arrows.join(" ")];
    parts.extend((summary.moved > 0).then(|| format!("{} moved", summary.moved)));
    parts.extend((summary.deleted > 0).then(|| format!("{} deleted", summary.deleted)));
    parts.extend((summary.conflicts > 0).then(|| summary.conflicts_phrase()));
    parts.retain(|p| !p.is_empty());
    parts.join(" · ")
}

/// The worker's handle on the one sync task. Start and stop are called in job order from the worker's job loop.
#[derive(Default)]
pub struct SyncRunner {
    current: Mutex<Option<Running>>,
}

struct Running {
    /// Cancelled to stop; also cancelled by the task itself when it ends, which marks it finished.
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SyncRunner {
    /// Starts syncing `root` with `remote`, unless sync is running already.
    pub fn start(&self, root: PathBuf, remote: Remote, config: Arc<Config>, events: mpsc::UnboundedSender<Event>) {
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = match current.take() {
            Some(running) if !running.stop.is_cancelled() => {
                *current = Some(running);
                return;
            }
            previous => previous,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(root, remote, config, events, stop.clone(), previous));
        *current = Some(Running { stop, task });
    }

    /// Asks sync to stop; it reports [`Event::SyncStopped`] once it has. The task stays here until the next
    /// start or [`SyncRunner::shutdown`] waits for it.
    pub fn stop(&self) {
        if let Some(running) = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
            running.stop.cancel();
        }
    }

    /// Stops sync and waits until it has, including a stop already under way.
    pub async fn shutdown(&self) {
        let running = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(running) = running {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}

/// Runs sync until `stop`, forwarding its events, then reports how it ended.
async fn run(
    root: PathBuf,
    remote: Remote,
    config: Arc<Config>,
    events: mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
    previous: Option<Running>,
) {
    // A stopped run may still be finishing its pass: never two on one folder.
    if let Some(previous) = previous {
        let _ = previous.task.await;
    }
    let result = forward(root, remote, config, &events, stop.clone()).await;
    stop.cancel();
    let _ = events.send(Event::SyncStopped { result: result.map_err(|e| e.to_string()) });
}

async fn forward(
    root: PathBuf,
    remote: Remote,
    config: Arc<Config>,
    events: &mpsc::UnboundedSender<Event>,
    stop: CancellationToken,
) -> Result<SyncSummary> {
    let client = blocking(move || identity::current(&config)).await?;
    let sync_config = SyncConfig { root: root.clone(), remote, client, interval: SYNC_INTERVAL };
    let (sync_tx, mut sync_rx) = mpsc::unbounded_channel();
    let mut task = tokio::spawn(crate::sync::run(sync_config, sync_tx, stop.clone()));
    // The channel closes when the sync task returns, having sent everything.
    let relay = async {
        while let Some(event) = sync_rx.recv().await {
            let _ = events.send(Event::Sync(event));
        }
    };
    let grace = async {
        stop.cancelled().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        _ = relay => {}
        _ = grace => {
            tracing::info!("sync did not finish its pass within {STOP_GRACE:?} of the stop; cut short");
            task.abort();
        }
    }
    match (&mut task).await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Ok(SyncSummary::default()),
        Err(e) => Err(Error::task_failed(format!("the sync of {}", root.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_leave_out_zeros() {
        let summary = SyncSummary { uploaded: 2, downloaded: 1, conflicts: 1, ..Default::default() };
        assert_eq!(counts(&summary), "↑2 ↓1 · 1 conflict");
        assert_eq!(counts(&SyncSummary { deleted: 3, ..Default::default() }), "3 deleted");
        assert_eq!(describe(&summary), "2 uploaded, 1 downloaded, 0 deleted, 1 conflict");
    }

    #[test]
    fn a_repeated_problem_is_logged_once_and_a_stop_in_progress_stays() {
        let mut status = SyncStatus { phase: SyncPhase::Starting, ..SyncStatus::default() };
        assert!(status.apply(SyncEvent::Problem("refused".into())).is_some());
        assert!(status.apply(SyncEvent::Problem("refused".into())).is_none());
        assert_eq!(status.phase, SyncPhase::Problem("refused".into()));
        status.phase = SyncPhase::Stopping;
        status.apply(SyncEvent::Syncing);
        assert_eq!(status.phase, SyncPhase::Stopping);
        assert_eq!(status.stopped(Ok(SyncSummary::default())).0, "sync stopped");
        assert!(!status.is_running());
    }
}
