//! The sync task: connects, subscribes to the server's pushes, watches the local folder, and runs the engine
//! whenever either side changes, and every `interval` in any case. A lost connection is retried with backoff;
//! a refusal (such as an emptied folder) is reported and retried on the next change, never acted on.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, SyncSummary};
use super::watch::{Dirty, watch};
use crate::client::{Backoff, Connection, Remote};
use crate::error::Result;
use crate::protocol::ClientIdentity;
use crate::task::sleep_until;

/// A burst of local writes is gathered until it has been quiet this long...
const QUIET: Duration = Duration::from_millis(100);
/// ...or until this long after its first event, so a file written continuously still syncs.
const MAX_GATHER: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Without news from the watcher or the server, the folder is rescanned in full on every this many polls (so
/// every ten minutes by default), and the mirror of the server's journal is compared with the whole journal
/// ([`Engine::verify_mirror`]): safety nets for what a watcher or a cursor can miss, kept rare so an idle sync
/// costs next to nothing.
const RESCAN_EVERY_POLLS: u32 = 10;
/// How long after a new folder appeared (see [`Dirty::NewFolder`]), or after a pass that left files still being
/// written, the folder is looked at again.
const SECOND_LOOK: Duration = Duration::from_secs(1);

/// What `tandem sync` or the TUI is told while sync runs.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEvent {
    /// Connected, and about to run a first full pass.
    Connected { server: String },
    /// A pass is running.
    Syncing,
    /// Caught up; `summary` is what the last run of passes did, `left_out` how many paths it could not sync.
    Idle { summary: SyncSummary, left_out: usize },
    /// A path newly left out of sync, and why (told once until it syncs again).
    LeftOut { path: String, reason: String },
    /// Something went wrong; sync keeps trying.
    Problem(String),
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub root: PathBuf,
    /// The server, with the token it wants if it has one.
    pub remote: Remote,
    pub client: ClientIdentity,
    /// How often the server's journal is polled, whatever the pushes say; the folder is rescanned in full every
    /// tenth poll (every poll if it cannot be watched).
    pub interval: Duration,
}

/// Syncs until `stop` is cancelled; returns what was done in total. Fails at once only for a root that cannot
/// be synced at all (missing, not a folder).
pub async fn run(
    config: SyncConfig,
    events: mpsc::UnboundedSender<SyncEvent>,
    stop: CancellationToken,
) -> Result<SyncSummary> {
    let (dirty_tx, mut dirty) = mpsc::unbounded_channel();
    let watching = match watch(&config.root, dirty_tx) {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            let _ = events.send(SyncEvent::Problem(format!("{e}; relying on the periodic scan")));
            None
        }
    };
    let mut totals = SyncSummary::default();
    // Left-out paths already told, so each is told once until it syncs again.
    let mut told = std::collections::BTreeMap::new();
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
    loop {
        let conn = match connect(&config).await {
            Ok(conn) => conn,
            Err(e) => {
                let _ = events.send(SyncEvent::Problem(e.to_string()));
                tokio::select! {
                    _ = stop.cancelled() => return Ok(totals),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
                continue;
            }
        };
        backoff.reset();
        let mut engine = Engine::open_async(&config.root, conn.clone(), &config.client.host).await?;
        let _ = events.send(SyncEvent::Connected { server: conn.addr().to_string() });
        let mut pushed = conn.journal_seq();
        let mut polls = 0u32;
        let mut full_pass = true;
        let mut second_look = None;
        let mut verify_due = false;
        loop {
            if std::mem::take(&mut verify_due)
                && let Err(e) = engine.verify_mirror().await
            {
                let _ = events.send(SyncEvent::Problem(e.to_string()));
                if conn.close_reason().is_some() {
                    break;
                }
            }
            if !full_pass {
                // A poll: the journal only, unless it has news.
                match engine.poll_remote().await {
                    Ok(true) => full_pass = true,
                    Ok(false) => {}
                    Err(e) => {
                        let _ = events.send(SyncEvent::Problem(e.to_string()));
                        if conn.close_reason().is_some() {
                            break;
                        }
                    }
                }
            }
            if full_pass {
                let _ = events.send(SyncEvent::Syncing);
                match engine.sync_until_quiet().await {
                    Ok(summary) => {
                        totals.add(&summary);
                        let left_out = engine.left_out();
                        for (path, reason) in left_out {
                            if told.get(path) != Some(reason) {
                                let (path, reason) = (path.clone(), reason.clone());
                                let _ = events.send(SyncEvent::LeftOut { path, reason });
                            }
                        }
                        told = left_out.clone();
                        let _ = events.send(SyncEvent::Idle { summary, left_out: told.len() });
                        // A file still being written gets a look of its own once its writer may be done.
                        if engine.waiting_for_writers() {
                            second_look.get_or_insert(tokio::time::Instant::now() + SECOND_LOOK);
                        }
                    }
                    Err(e) => {
                        let _ = events.send(SyncEvent::Problem(e.to_string()));
                        if conn.close_reason().is_some() {
                            break;
                        }
                    }
                }
            }
            let wake = tokio::select! {
                _ = stop.cancelled() => return Ok(totals),
                _ = conn.closed() => None,
                Some(news) = dirty.recv() => {
                    if gather(&mut dirty, news).await == Dirty::NewFolder {
                        second_look = Some(tokio::time::Instant::now() + SECOND_LOOK);
                    }
                    Some(true)
                }
                _ = sleep_until(second_look), if second_look.is_some() => {
                    second_look = None;
                    Some(true)
                }
                Ok(()) = pushed.changed() => Some(true),
                _ = tokio::time::sleep(config.interval) => {
                    // The folder is rescanned in full every few polls, or every poll without a watcher.
                    polls += 1;
                    verify_due = polls.is_multiple_of(RESCAN_EVERY_POLLS);
                    Some(watching.is_none() || verify_due)
                }
            };
            if let Some(full) = wake {
                full_pass = full;
            } else {
                let _ = events.send(SyncEvent::Problem(format!("lost the connection to {}", conn.addr())));
                break;
            }
        }
    }
}

async fn connect(config: &SyncConfig) -> Result<Connection> {
    let conn = config.remote.connect(Some(config.client.clone())).await?;
    conn.subscribe().await?;
    Ok(conn)
}

/// Waits until local events have been quiet for [`QUIET`], or [`MAX_GATHER`] has passed; says
/// [`Dirty::NewFolder`] if any of them did.
async fn gather(dirty: &mut mpsc::UnboundedReceiver<Dirty>, first: Dirty) -> Dirty {
    let deadline = tokio::time::Instant::now() + MAX_GATHER;
    let mut gathered = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return gathered,
            more = tokio::time::timeout(QUIET, dirty.recv()) => match more {
                Ok(Some(Dirty::NewFolder)) => gathered = Dirty::NewFolder,
                Ok(Some(Dirty::Changed)) => {}
                _ => return gathered,
            },
        }
    }
}
