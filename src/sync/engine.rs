//! One synced folder against one server: a pass reads the server's journal since the last sequence number,
//! scans the local folder, asks the [`plan`](super::plan) what to do, and does it.
//!
//! Safety comes from three habits. Every write says what it expects to replace (the server refuses a stale
//! upload or delete, and locally a download checks the file is still the scanned version before it moves that
//! version to the trash), so a change that arrives mid-pass is never overwritten but planned again next pass.
//! Nothing is deleted outright: both sides move deleted and replaced files to `.tandem/trash/`. And a folder that
//! is suddenly empty (an unmounted disk, a wiped share) stops sync with an error instead of reading as "the user
//! deleted everything".
//!
//! `mirror` keeps the copy of the server's journal (and checks it against the whole journal now and then);
//! `act` carries out a plan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::log::ActionLog;
use super::plan::{Action, Kind, PathState, Version, plan};
use super::scan::{LeftOut, LocalEntry, Scan, hash_files, scan, still_being_written};
use super::state::SyncState;
use crate::client::Connection;
use crate::digest::HashCache;
use crate::error::{Error, Result};
use crate::share::{STATE_DIR, Share, system_time_to_ns};
use crate::task::blocking;

mod act;
mod mirror;

/// Passes in a row before a sync is called quiet: a conflict needs two (rename, then copy the copy).
const MAX_PASSES: usize = 6;
/// How long one run of passes waits, at most, for files still being written to settle...
const SETTLE_WAIT: Duration = Duration::from_secs(2);
/// ...looking again this often.
const SETTLE_LOOK: Duration = Duration::from_millis(250);

/// What sync did; the fields of `sync --json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    pub uploaded: u64,
    pub downloaded: u64,
    /// Files moved or renamed on one side and moved the same way on the other, no bytes sent.
    pub moved: u64,
    pub deleted: u64,
    pub conflicts: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl SyncSummary {
    pub fn add(&mut self, other: &SyncSummary) {
        self.uploaded += other.uploaded;
        self.downloaded += other.downloaded;
        self.moved += other.moved;
        self.deleted += other.deleted;
        self.conflicts += other.conflicts;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }

    pub fn is_empty(&self) -> bool {
        *self == SyncSummary::default()
    }

    /// `3 moved, ` when anything was moved, else nothing: moves are rare enough not to crowd every summary.
    pub fn moved_phrase(&self) -> String {
        if self.moved == 0 { String::new() } else { format!("{} moved, ", self.moved) }
    }

    /// `1 conflict`, `2 conflicts`.
    pub fn conflicts_phrase(&self) -> String {
        match self.conflicts {
            1 => "1 conflict".to_string(),
            n => format!("{n} conflicts"),
        }
    }
}

pub struct Engine {
    root: PathBuf,
    /// The same folder opened as a jail: every change sync makes in it is made beneath this handle, following no
    /// link, whatever path the server names.
    folder: Arc<Share>,
    conn: Connection,
    host: String,
    state: SyncState,
    hashes: Arc<HashCache>,
    log: ActionLog,
    /// Paths refused by a lock, with the states that were refused: not retried until one side changes.
    blocked: HashMap<String, (Option<Version>, Option<Version>)>,
    /// What the latest run of passes left out, and why: paths whose action failed for a reason another pass will
    /// not mend, and folders that cannot be read. The rest of the tree syncs all the same.
    left_out: BTreeMap<String, String>,
    /// What was already reported as left out (path and reason), and the files reported as hard links: each is
    /// told once, until it changes.
    reported: HashSet<(String, String)>,
    /// The last pass found nothing to do: until the journal or the folder changes, there is nothing to plan.
    quiet: bool,
    /// The last pass left files alone because a program was still writing them.
    growing: bool,
    /// Journal changes pulled since the last plan.
    unplanned_remote: bool,
}

/// How a pass went.
#[derive(Default)]
struct PassOutcome {
    summary: SyncSummary,
    attempted: usize,
    succeeded: usize,
    /// Actions refused because the other side had moved on: the next pass sees why and plans again.
    stale: usize,
    /// Files left alone because a program is still writing them.
    growing: usize,
}

impl Engine {
    /// Opens the folder's sync state for the server `conn` talks to. Refuses a missing root.
    /// [`Engine::open`] on a blocking thread: it opens databases and reads the folder.
    pub async fn open_async(root: &Path, conn: Connection, host: &str) -> Result<Engine> {
        let (root, host) = (root.to_path_buf(), host.to_string());
        crate::task::blocking(move || Engine::open(&root, conn, &host)).await
    }

    pub fn open(root: &Path, conn: Connection, host: &str) -> Result<Engine> {
        let root = checked_root(root)?;
        let folder = Arc::new(Share::open_writable(&root)?);
        // Downloads a crash cut off left their bytes in `.tandem/tmp`: nothing of this client writes there yet. (A
        // second sync of the same folder, if one runs, loses only its download in flight, which it fetches again.)
        let swept = folder.sweep_temps(Duration::ZERO);
        if swept > 0 {
            tracing::info!("removed {swept} temporary files left by interrupted downloads");
        }
        let state_dir = root.join(STATE_DIR);
        let mut state = SyncState::open(&state_dir.join("sync.sqlite"))?;
        // State belongs to the server's journal: the same share reached by another address keeps it; a wiped
        // or different share starts afresh (a merge that deletes nothing).
        let journal = conn.server().journal.clone().unwrap_or_else(|| conn.addr().to_string());
        state.bind_to(&journal)?;
        let hashes = Arc::new(HashCache::open(&state_dir.join("hashes.sqlite"))?);
        let log = ActionLog::open(&state_dir.join("sync.log"))?;
        Ok(Engine {
            root,
            folder,
            conn,
            host: host.to_string(),
            state,
            hashes,
            log,
            blocked: HashMap::new(),
            left_out: BTreeMap::new(),
            reported: HashSet::new(),
            quiet: false,
            growing: false,
            unplanned_remote: false,
        })
    }

    /// The server journal's sequence number this client has caught up to.
    pub fn remote_seq(&self) -> u64 {
        self.state.remote_seq
    }

    /// Runs passes until one finds nothing to do (or only things it cannot do yet). Files a program is still
    /// writing are waited for, a little.
    pub async fn sync_until_quiet(&mut self) -> Result<SyncSummary> {
        let mut total = SyncSummary::default();
        self.left_out.clear();
        let (mut passes, mut waited) = (0, Duration::ZERO);
        while passes < MAX_PASSES {
            let outcome = self.pass().await?;
            total.add(&outcome.summary);
            self.growing = outcome.growing > 0;
            if outcome.attempted > 0 && (outcome.succeeded > 0 || outcome.stale > 0) {
                passes += 1;
            } else if self.growing && waited < SETTLE_WAIT {
                tokio::time::sleep(SETTLE_LOOK).await;
                waited += SETTLE_LOOK;
            } else {
                break;
            }
        }
        Ok(total)
    }

    /// What the latest run of passes left out, by path, with the reason.
    pub fn left_out(&self) -> &BTreeMap<String, String> {
        &self.left_out
    }

    /// Whether the last pass left files alone because a program was still writing them.
    pub fn waiting_for_writers(&self) -> bool {
        self.growing
    }

    /// Asks the server for journal changes without scanning the folder; says whether there were any (then a
    /// pass has work to plan). This is the cheap periodic poll.
    pub async fn poll_remote(&mut self) -> Result<bool> {
        self.pull_changes().await?;
        Ok(self.unplanned_remote)
    }

    async fn pass(&mut self) -> Result<PassOutcome> {
        self.pull_changes().await?;
        let (root, hashes) = (self.root.clone(), self.hashes.clone());
        let Scan { entries: mut local, left_out, hard_linked } = blocking(move || scan(&root, &hashes)).await?;
        self.note_left_out(&left_out, &hard_linked);
        self.refuse_if_emptied(&local)?;
        // The idle case, every minute or so: nothing changed on either side since a pass that had nothing to do.
        if self.quiet && !self.unplanned_remote && self.matches_base(&local) {
            return Ok(PassOutcome::default());
        }

        // Bytes are read only where a decision needs them: a local file with a file on the other side or in the base,
        // or one that may have been moved here (the size of a synced file that is gone from its path).
        let moved_sizes: HashSet<u64> = (self.state.base.iter())
            .filter(|(path, base)| base.kind == Kind::File && base.size > 0 && !local.contains_key(*path))
            .map(|(_, base)| base.size)
            .collect();
        let needs_md5: Vec<String> = local
            .iter()
            .filter(|(_, entry)| entry.version.kind == Kind::File && entry.version.md5.is_none())
            .filter(|(path, entry)| {
                let is_file = |v: Option<&Version>| v.is_some_and(|v| v.kind == Kind::File);
                is_file(self.state.base.get(*path))
                    || is_file(self.state.remote.get(*path).map(|r| &r.version))
                    || moved_sizes.contains(&entry.version.size)
            })
            .map(|(path, _)| path.clone())
            .collect();
        let growing = still_being_written(&local, &self.state.base, system_time_to_ns(SystemTime::now()));
        let needs_md5 = needs_md5.into_iter().filter(|path| !growing.contains(path)).collect();
        let (root, hashes) = (self.root.clone(), self.hashes.clone());
        let (local, mut unsettled) = blocking(move || {
            let unsettled = hash_files(&root, &mut local, needs_md5, &hashes)?;
            Ok((local, unsettled))
        })
        .await?;
        unsettled.extend(growing.iter().cloned());

        let states = self.path_states(&local, &unsettled, &left_out);
        let by_path: HashMap<&str, &PathState> = states.iter().map(|s| (s.path.as_str(), s)).collect();
        // A path a lock refused waits until one side changes again, instead of being refused every pass.
        self.blocked.retain(|path, refused| {
            by_path.get(path.as_str()).is_some_and(|s| *refused == (s.local.clone(), s.remote.clone()))
        });
        let actions: Vec<Action> =
            plan(&states, &self.host).into_iter().filter(|a| !self.blocked.contains_key(action_path(a))).collect();
        self.quiet = actions.is_empty();
        self.unplanned_remote = false;
        let mut outcome = self.execute(actions, &by_path, &local).await?;
        outcome.growing = growing.len();
        Ok(outcome)
    }

    /// Whether the folder holds exactly the base: the same paths, and files with the stamps they were synced with.
    fn matches_base(&self, local: &HashMap<String, LocalEntry>) -> bool {
        local.len() == self.state.base.len()
            && local.iter().all(|(path, entry)| {
                let now = &entry.version;
                self.state.base.get(path).is_some_and(|base| {
                    base.kind == now.kind
                        && (now.kind == Kind::Dir
                            || (now.kind == Kind::Symlink && now.md5 == base.md5)
                            || (now.md5.is_some()
                                && now.md5 == base.md5
                                && now.size == base.size
                                && now.mtime_ns == base.mtime_ns))
                })
            })
    }

    /// A root with nothing in it, where the base remembers files, is far more likely an unmounted disk or a
    /// wiped folder than a person deleting everything; the same holds for the server's share.
    fn refuse_if_emptied(&self, local: &HashMap<String, LocalEntry>) -> Result<()> {
        let synced = self.state.base.len();
        if synced == 0 {
            return Ok(());
        }
        if local.is_empty() {
            return Err(Error::Refused {
                what: format!("to sync {}", self.root.display()),
                reason: format!(
                    "it is empty, but {synced} files and folders were synced from it before, and syncing would \
                     delete them on the server. If the folder is on a disk, check that it is mounted. If you meant \
                     to empty it, delete the files on the server too, or remove {} to start afresh",
                    self.root.join(STATE_DIR).join("sync.sqlite").display()
                ),
            });
        }
        if self.state.remote.is_empty() {
            return Err(Error::Refused {
                what: format!("to sync {} with {}", self.root.display(), self.conn.addr()),
                reason: format!(
                    "the share there is empty, but {synced} files and folders were synced with it before, and \
                     syncing would delete them here"
                ),
            });
        }
        Ok(())
    }

    /// Reports each path the scan left out, once until it changes, and leaves it out of this run; and tells once
    /// of each file with hard links, which syncs as a file of its own.
    fn note_left_out(&mut self, left_out: &[LeftOut], hard_linked: &[String]) {
        const HARD_LINK: &str = "has other names (hard links); the other side gets it as a separate file";
        let now: HashSet<(String, String)> = (left_out.iter().map(|l| (l.path.clone(), l.reason.clone())))
            .chain(hard_linked.iter().map(|path| (path.clone(), HARD_LINK.to_string())))
            .collect();
        self.reported.retain(|seen| now.contains(seen));
        for (path, reason) in now {
            if !self.reported.contains(&(path.clone(), reason.clone())) {
                self.log.noted(&path, &reason);
                self.reported.insert((path.clone(), reason.clone()));
            }
            if reason != HARD_LINK {
                self.left_out.insert(path, reason);
            }
        }
    }

    /// Every path to plan for: in the base, on the server or here, but not one still settling, nor one left out
    /// (a special file, a link outside, or anything inside a folder that cannot be read: unknown, not gone).
    fn path_states(
        &self,
        local: &HashMap<String, LocalEntry>,
        unsettled: &HashSet<String>,
        left_out: &[LeftOut],
    ) -> Vec<PathState> {
        let mut paths: HashSet<&str> = HashSet::new();
        paths.extend(self.state.base.keys().map(String::as_str));
        paths.extend(self.state.remote.keys().map(String::as_str));
        paths.extend(local.keys().map(String::as_str));
        let unknown = |path: &str| left_out.iter().any(|l| l.covers(path));
        paths
            .into_iter()
            .filter(|path| !unsettled.contains(*path) && !unknown(path))
            .map(|path| {
                let remote = self.state.remote.get(path);
                PathState {
                    path: path.to_string(),
                    base: self.state.base.get(path).cloned(),
                    local: local.get(path).map(|entry| entry.version.clone()),
                    remote: remote.map(|r| r.version.clone()),
                    remote_author: remote.and_then(|r| r.author.clone()),
                }
            })
            .collect()
    }
}

pub fn action_path(action: &Action) -> &str {
    match action {
        Action::Upload { path }
        | Action::Download { path }
        | Action::MkdirLocal { path }
        | Action::MkdirRemote { path }
        | Action::DeleteLocal { path, .. }
        | Action::DeleteRemote { path, .. }
        | Action::LinkLocal { path }
        | Action::LinkRemote { path }
        | Action::Record { path, .. }
        | Action::Forget { path } => path,
        Action::RenameLocal { from, .. }
        | Action::RenameRemote { from, .. }
        | Action::MoveLocal { from, .. }
        | Action::MoveRemote { from, .. } => from,
    }
}

/// The root as an absolute folder, or an error saying why it cannot be synced.
fn checked_root(root: &Path) -> Result<PathBuf> {
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => root.canonicalize().map_err(|e| Error::io(root, e)),
        Ok(_) => Err(Error::UnusableFolder { path: root.into(), problem: "not a folder; sync needs a folder" }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::UnusableFolder {
            path: root.into(),
            problem: "does not exist; refusing to sync, since a missing folder would read as every file deleted",
        }),
        Err(e) => Err(Error::io(root, e)),
    }
}
