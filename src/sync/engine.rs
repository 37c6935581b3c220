//! One synced folder against one server: a pass reads the server's journal since the last sequence number,
//! scans the local folder, asks the [`plan`](super::plan) what to do, and does it.
//!
//! Safety comes from three habits. Every write says what it expects to replace (the server refuses a stale
//! upload or delete, and locally a download checks the file is still the scanned version before it moves that
//! version to the trash), so a change that arrives mid-pass is never overwritten but planned again next pass.
//! Nothing is deleted outright: both sides move deleted and replaced files to `.tandem/trash/`. And a folder that
//! is suddenly empty (an unmounted disk, a wiped share) stops sync with an error instead of reading as "the user
//! deleted everything".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Serialize;

use super::log::ActionLog;
use super::plan::{Action, Kind, PathState, Version, plan};
use super::scan::{LeftOut, LocalEntry, Scan, hash_files, scan, still_being_written};
use super::state::{RemoteVersion, SyncState, Update};
use super::transfer::{PARALLEL_BATCHES, Planned, batched, check_local, transfer_batch, worth_a_delta};
use crate::client::Connection;
use crate::digest::{HashCache, Md5Digest};
use crate::error::{Error, Result};
use crate::protocol::{ErrorCode, Expect};
use crate::share::{EntryKind, FileStamp, STATE_DIR, Share, normalize, system_time_to_ns};
use crate::task::blocking;

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

    /// Catches the mirror up with the server's journal.
    async fn pull_changes(&mut self) -> Result<()> {
        let (changes, latest) = self.conn.changes_since(self.state.remote_seq).await?;
        let mut update = Update { remote_seq: Some(latest), ..Default::default() };
        for change in changes {
            let remote = change.entry.map(|entry| {
                let (kind, md5) = match entry.kind {
                    EntryKind::File => (Kind::File, entry.md5),
                    EntryKind::Dir => (Kind::Dir, entry.md5),
                    // A link's content is its target text.
                    EntryKind::Symlink => {
                        (Kind::Symlink, entry.target.as_ref().map(|target| Md5Digest::of(target.as_bytes())))
                    }
                };
                let version = Version { kind, size: entry.size, mtime_ns: entry.mtime_ns, md5 };
                RemoteVersion { version, author: change.author.clone(), target: entry.target }
            });
            // Paths from the network go through the same checks as any other remote path.
            match normalize(&change.path) {
                Ok(path) if !path.is_empty() => update.remote.push((path, remote)),
                _ => tracing::warn!(path = %change.path, "sync ignores a journal entry with an invalid path"),
            }
        }
        let changed = !update.remote.is_empty();
        if latest != self.state.remote_seq || changed {
            self.state.apply(update)?;
        }
        self.unplanned_remote |= changed;
        Ok(())
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
            return Err(Error::Unsupported(format!(
                "{} is empty, but {synced} files and folders were synced from it before; refusing to sync, because \
                 that would delete them on the server. If the folder is on a disk, check that it is mounted. If you \
                 meant to empty it, delete the files on the server too, or remove {} to start afresh",
                self.root.display(),
                self.root.join(STATE_DIR).join("sync.sqlite").display()
            )));
        }
        if self.state.remote.is_empty() {
            return Err(Error::Unsupported(format!(
                "the share at {} is empty, but {synced} files and folders were synced with it before; refusing to \
                 sync, because that would delete them in {}",
                self.conn.addr(),
                self.root.display()
            )));
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

    async fn execute(
        &mut self,
        actions: Vec<Action>,
        states: &HashMap<&str, &PathState>,
        local: &HashMap<String, LocalEntry>,
    ) -> Result<PassOutcome> {
        let mut outcome = PassOutcome::default();
        let mut update = Update::default();
        // Paths renamed away on one side this pass: that side now expects nothing there.
        let mut renamed_local = HashSet::new();
        let mut renamed_remote = HashSet::new();
        let (transfers, others): (Vec<Action>, Vec<Action>) =
            actions.into_iter().partition(|a| matches!(a, Action::Upload { .. } | Action::Download { .. }));
        let (before, after): (Vec<Action>, Vec<Action>) = others.into_iter().partition(|a| {
            matches!(
                a,
                Action::RenameLocal { .. }
                    | Action::RenameRemote { .. }
                    | Action::MkdirLocal { .. }
                    | Action::MkdirRemote { .. }
                    | Action::MoveLocal { .. }
                    | Action::MoveRemote { .. }
            )
        });

        for action in before {
            let done = self.structural(&action, states, local, &mut update, &mut outcome.summary).await;
            if let Action::RenameLocal { from, .. } = &action {
                renamed_local.insert(from.clone());
            }
            if let Action::RenameRemote { from, .. } = &action {
                renamed_remote.insert(from.clone());
            }
            self.settle(&action, done, states, &mut outcome)?;
        }

        let planned: Vec<Planned> = transfers
            .into_iter()
            .map(|action| {
                let path = action_path(&action).to_string();
                let state = states.get(path.as_str()).copied();
                let local_stamp =
                    if renamed_local.contains(&path) { None } else { local.get(&path).and_then(|e| e.stamp) };
                let remote_expect =
                    if renamed_remote.contains(&path) { Some(Expect::Absent) } else { expect_of(state) };
                let remote_file = state.and_then(|s| s.remote.as_ref()).filter(|v| v.kind == Kind::File);
                let (size, base_size) = match action {
                    Action::Upload { .. } => {
                        let remote_base = remote_file.filter(|_| matches!(remote_expect, Some(Expect::File { .. })));
                        (local.get(&path).map_or(0, |e| e.version.size), remote_base.map(|v| v.size))
                    }
                    _ => (remote_file.map_or(0, |v| v.size), local_stamp.map(|s| s.size)),
                };
                let delta = worth_a_delta(size, base_size);
                Planned { action, local_stamp, remote_expect, size, delta }
            })
            .collect();
        let (conn, folder) = (self.conn.clone(), self.folder.clone());
        let batches = batched(planned).into_iter().map(|batch| {
            let (conn, folder) = (conn.clone(), folder.clone());
            async move { futures::stream::iter(transfer_batch(&conn, &folder, batch).await) }
        });
        let mut running = futures::stream::iter(batches).buffer_unordered(PARALLEL_BATCHES).flatten();
        while let Some((action, result)) = running.next().await {
            let done = result.map(|(version, moved)| {
                let path = action_path(&action).to_string();
                let uploaded = local.get(&path).and_then(|entry| entry.stamp);
                self.remember_hash(
                    &path,
                    &version,
                    matches!(action, Action::Upload { .. }).then_some(uploaded).flatten(),
                );
                update.base.push((path.clone(), Some(version.clone())));
                if let Action::Upload { .. } = action {
                    outcome.summary.uploaded += 1;
                    let mirrored = RemoteVersion { version, author: Some(self.host.clone()), target: None };
                    update.remote.push((path, Some(mirrored)));
                } else {
                    outcome.summary.downloaded += 1;
                }
                outcome.summary.bytes_sent += moved.sent;
                outcome.summary.bytes_received += moved.received;
            });
            self.settle(&action, done, states, &mut outcome)?;
        }
        drop(running);

        for action in after {
            let done = self.structural(&action, states, local, &mut update, &mut outcome.summary).await;
            self.settle(&action, done, states, &mut outcome)?;
        }
        let hashes = self.hashes.clone();
        blocking(move || hashes.flush()).await?;
        self.state.apply(update)?;
        Ok(outcome)
    }

    /// Puts the MD5 of a file this pass just transferred in the hash cache, under the stamp the local file has, so
    /// the next scan does not read it again. An upload's stamp is the scanned one; a download's is read now, and
    /// trusted only while its size and mtime are still the ones the download gave it.
    fn remember_hash(&self, path: &str, version: &Version, uploaded: Option<FileStamp>) {
        let Some(md5) = version.md5 else { return };
        let stamp = match uploaded {
            Some(scanned) => Some(scanned),
            None => self.folder.meta(path).ok().flatten().filter(|m| m.kind == EntryKind::File).map(|m| m.stamp()),
        };
        if let Some(stamp) = stamp.filter(|s| s.size == version.size && s.mtime_ns == version.mtime_ns) {
            self.hashes.insert(path, stamp, md5);
        }
    }

    /// Everything but transfers: renames, folders, deletions and bookkeeping.
    async fn structural(
        &mut self,
        action: &Action,
        states: &HashMap<&str, &PathState>,
        local: &HashMap<String, LocalEntry>,
        update: &mut Update,
        summary: &mut SyncSummary,
    ) -> Result<()> {
        let dir = Version { kind: Kind::Dir, size: 0, mtime_ns: 0, md5: None };
        match action {
            Action::RenameLocal { from, to } => {
                check_local(&self.folder, from, local.get(from).and_then(|e| e.stamp))?;
                // Never replaces what is at `to`.
                self.folder.rename(from, to)?;
                summary.conflicts += 1;
            }
            Action::RenameRemote { from, to } => {
                self.conn.rename(from, to).await?;
                summary.conflicts += 1;
            }
            Action::MoveLocal { from, to } => {
                let moved = local.get(from).ok_or_else(|| Error::NotFound { path: from.clone() })?;
                check_local(&self.folder, from, moved.stamp)?;
                // Never replaces what is at `to`; makes its folders.
                self.folder.rename(from, to)?;
                self.remember_hash(to, &moved.version, None);
                update.base.push((from.clone(), None));
                update.base.push((to.clone(), Some(moved.version.clone())));
                summary.moved += 1;
            }
            Action::MoveRemote { from, to } => {
                let state = states.get(from.as_str()).copied();
                let remote =
                    state.and_then(|s| s.remote.clone()).ok_or_else(|| Error::NotFound { path: from.clone() })?;
                let here = local.get(to).ok_or_else(|| Error::NotFound { path: to.clone() })?;
                self.conn.rename_expecting(from, to, expect_of(state)).await?;
                update.base.push((from.clone(), None));
                update.remote.push((from.clone(), None));
                update.base.push((to.clone(), Some(here.version.clone())));
                update.remote.push((
                    to.clone(),
                    Some(RemoteVersion { version: remote, author: Some(self.host.clone()), target: None }),
                ));
                summary.moved += 1;
            }
            Action::LinkRemote { path } => {
                let here = local.get(path).ok_or_else(|| Error::NotFound { path: path.clone() })?;
                let target = self.folder.read_link(path)?;
                if Some(Md5Digest::of(target.as_bytes())) != here.version.md5 {
                    return Err(Error::Stale { path: path.clone(), found: "the link changed during the sync".into() });
                }
                self.conn.symlink(path, &target, expect_of(states.get(path.as_str()).copied())).await?;
                update.base.push((path.clone(), Some(here.version.clone())));
                let mirrored = RemoteVersion {
                    version: here.version.clone(),
                    author: Some(self.host.clone()),
                    target: Some(target),
                };
                update.remote.push((path.clone(), Some(mirrored)));
                summary.uploaded += 1;
            }
            Action::LinkLocal { path } => {
                let remote = self.state.remote.get(path).ok_or_else(|| Error::NotFound { path: path.clone() })?;
                let target = remote.target.clone().ok_or_else(|| Error::NotFound { path: path.clone() })?;
                let version = remote.version.clone();
                // What is here must still be what the scan saw; the link replaces it (into the trash), or fills a gap.
                check_local(&self.folder, path, local.get(path).and_then(|e| e.stamp))?;
                self.folder.place_symlink(path, &target)?;
                update.base.push((path.clone(), Some(version)));
                summary.downloaded += 1;
            }
            Action::MkdirLocal { path } => {
                self.folder.create_dirs(path)?;
                update.base.push((path.clone(), Some(dir)));
            }
            Action::MkdirRemote { path } => {
                self.conn.mkdir(path).await?;
                update.base.push((path.clone(), Some(dir)));
            }
            Action::DeleteLocal { path, kind } => {
                if *kind != Kind::Dir {
                    check_local(&self.folder, path, local.get(path).and_then(|e| e.stamp))?;
                }
                // An emptied folder simply goes; anything else is kept in the trash.
                let removed = *kind == Kind::Dir && self.folder.remove_empty_dir(path)?;
                if !removed && self.folder.meta(path)?.is_some() {
                    self.folder.trash(path)?;
                }
                update.base.push((path.clone(), None));
                summary.deleted += 1;
            }
            Action::DeleteRemote { path, .. } => {
                let expect = expect_of(states.get(path.as_str()).copied());
                match self.conn.delete_expecting(path, expect).await {
                    Err(Error::Remote(body)) if body.code == ErrorCode::NotFound => {}
                    other => other?,
                }
                update.base.push((path.clone(), None));
                update.remote.push((path.clone(), None));
                summary.deleted += 1;
            }
            Action::Record { path, version } => update.base.push((path.clone(), Some(version.clone()))),
            Action::Forget { path } => update.base.push((path.clone(), None)),
            Action::Upload { .. } | Action::Download { .. } => {}
        }
        Ok(())
    }

    /// Logs an action's result. A lost connection ends the pass; anything else skips this path until next pass.
    fn settle(
        &mut self,
        action: &Action,
        done: Result<()>,
        states: &HashMap<&str, &PathState>,
        outcome: &mut PassOutcome,
    ) -> Result<()> {
        if matches!(action, Action::Record { .. } | Action::Forget { .. }) {
            return done;
        }
        outcome.attempted += 1;
        match done {
            Ok(()) => {
                outcome.succeeded += 1;
                self.log.done(action);
                self.left_out.remove(action_path(action));
                Ok(())
            }
            Err(e) if self.conn.close_reason().is_some() => Err(e),
            Err(e) => {
                self.log.skipped(action, &e);
                let stale = matches!(&e, Error::Stale { .. })
                    || matches!(&e, Error::Remote(body) if body.code == ErrorCode::Stale || body.code == ErrorCode::Changed);
                outcome.stale += usize::from(stale);
                let path = action_path(action);
                // The next pass plans a stale path again; anything else stays left out until a later run.
                if !stale {
                    self.left_out.insert(path.to_string(), e.to_string());
                }
                if let (Error::Remote(body), Some(state)) = (&e, states.get(path))
                    && body.code == ErrorCode::Locked
                {
                    self.blocked.insert(path.to_string(), (state.local.clone(), state.remote.clone()));
                }
                Ok(())
            }
        }
    }
}

/// What a write to the server expects to find: the remote version this pass planned against.
fn expect_of(state: Option<&PathState>) -> Option<Expect> {
    Some(match state.and_then(|s| s.remote.as_ref()) {
        None => Expect::Absent,
        Some(Version { kind: Kind::Dir, .. }) => Expect::EmptyDir,
        Some(Version { kind: Kind::Symlink, md5: Some(md5), .. }) => Expect::Link { md5: *md5 },
        Some(Version { md5: Some(md5), .. }) => Expect::File { md5: *md5 },
        Some(Version { md5: None, .. }) => return None,
    })
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
        Ok(_) => Err(Error::io(root, std::io::Error::other("not a folder; sync needs a folder"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::io(
            root,
            std::io::Error::other(
                "does not exist; refusing to sync, since a missing folder would read as every file deleted",
            ),
        )),
        Err(e) => Err(Error::io(root, e)),
    }
}
