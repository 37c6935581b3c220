//! Rows of the transfers panel: each transfer's state, and its speed and time left, smoothed over ticks. The
//! bytes moved come from the transfer's shared [`Progress`] counter, read when drawing: the transfer itself never
//! sends a message per chunk.

use std::time::{Duration, Instant};

use crate::client::{CacheOutcome, DownloadReport};
use crate::transfer::Progress;

/// Finished transfers stay on screen this long.
const KEEP_FINISHED: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, PartialEq)]
pub enum TransferState {
    Queued,
    Running,
    Done,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: u64,
    pub name: String,
    pub protocol: &'static str,
    pub progress: Progress,
    pub state: TransferState,
    started: Option<Instant>,
    finished: Option<Instant>,
    last_sample: Option<(Instant, u64)>,
    /// Bytes per second, smoothed.
    pub speed: f64,
}

impl Transfer {
    pub fn new(id: u64, name: String, protocol: &'static str, progress: Progress) -> Self {
        Transfer {
            id,
            name,
            protocol,
            progress,
            state: TransferState::Queued,
            started: None,
            finished: None,
            last_sample: None,
            speed: 0.0,
        }
    }

    pub fn start(&mut self, now: Instant) {
        self.state = TransferState::Running;
        self.started = Some(now);
        self.last_sample = Some((now, 0));
    }

    pub fn finish(&mut self, state: TransferState, now: Instant) {
        if let (TransferState::Done, Some(started)) = (&state, self.started) {
            let seconds = now.duration_since(started).as_secs_f64().max(1e-3);
            self.speed = self.progress.get() as f64 / seconds;
        }
        self.state = state;
        self.finished = Some(now);
    }

    /// Updates the smoothed speed from the bytes moved since the last sample.
    pub fn sample(&mut self, now: Instant) {
        if self.state != TransferState::Running {
            return;
        }
        let bytes = self.progress.get();
        if let Some((then, before)) = self.last_sample {
            let seconds = now.duration_since(then).as_secs_f64();
            if seconds > 0.0 {
                let instant = bytes.saturating_sub(before) as f64 / seconds;
                self.speed = if self.speed == 0.0 { instant } else { 0.7 * self.speed + 0.3 * instant };
            }
        }
        self.last_sample = Some((now, bytes));
    }

    /// Seconds left at the current speed.
    pub fn eta_seconds(&self) -> Option<u64> {
        let left = self.progress.total().saturating_sub(self.progress.get());
        (self.state == TransferState::Running && self.speed > 1.0).then(|| (left as f64 / self.speed).ceil() as u64)
    }

    pub fn fraction(&self) -> f64 {
        match self.progress.total() {
            0 if self.state == TransferState::Done => 1.0,
            0 => 0.0,
            total => (self.progress.get() as f64 / total as f64).min(1.0),
        }
    }
}

/// Drops finished transfers after a while; running and queued ones stay.
pub fn retire(transfers: &mut Vec<Transfer>, now: Instant) {
    transfers.retain(|t| t.finished.is_none_or(|at| now.duration_since(at) < KEEP_FINISHED));
}

/// What the status line says when a download finishes: where the bytes came from (the cache, a delta, a resumed
/// partial file or the network) and any note the download made.
pub fn download_message(r: &DownloadReport, outcome: CacheOutcome) -> String {
    let notes: String = r.notes.iter().map(|note| format!("; {note}")).collect();
    let how = match outcome {
        CacheOutcome::Hit => {
            return format!("copied {} ({}) from the download cache, MD5 verified{notes}", r.path, r.md5);
        }
        CacheOutcome::Repaired => "; its damaged cached copy was replaced".to_string(),
        CacheOutcome::Miss | CacheOutcome::Off if r.delta => {
            let moved = humansize::format_size(r.bytes_received + r.bytes_sent, humansize::BINARY);
            return format!("updated {} ({}) with a {moved} delta, MD5 verified{notes}", r.path, r.md5);
        }
        CacheOutcome::Miss | CacheOutcome::Off => String::new(),
    };
    let resumed = match r.resumed_from {
        0 => String::new(),
        offset => format!(", resumed at byte {offset}"),
    };
    format!("downloaded {} ({}), MD5 verified{resumed}{how}{notes}", r.path, r.md5)
}
