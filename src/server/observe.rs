//! Keeps the journal in step with the disk, whoever changed it.
//!
//! tandem's own writes record their result at once. Changes made by other programs in the served folder are
//! found by a file watcher (inotify on Linux), whose events are gathered for a moment and then turned into
//! [`refresh`]es of the paths they name, and by a full scan at startup and every `scan_interval`, which catches
//! whatever a watcher can miss (an overflowed queue, a network filesystem, changes while the server was down).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use notify::event::{CreateKind, EventKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::hash::hash_file;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::share::events::is_change;
use crate::share::{Entry, EntryKind, FileStamp, STATE_DIR, Share, Walk, is_being_written};
use crate::task::{blocking, parallel_map, sleep_until};

/// How long watcher events are gathered before acting on them: a burst of writes becomes one refresh.
const GATHER: Duration = Duration::from_millis(50);
/// How often recorded changes and new hashes are written to disk (they are in memory at once).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// Temporary files untouched for this long are leftovers of an interrupted write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Records in the journal what is now on disk at and below `rel` (`""`: the whole share). Files are hashed through
/// the hash cache, so only those whose stamp moved are read. Blocking.
pub fn refresh(shared: &Shared, rel: &str, author: Option<&str>) -> Result<usize> {
    refresh_knowing(shared, rel, author, None)
}

/// [`refresh`], told the MD5 of a file tandem itself just wrote with this stamp, so a freshly written file is not
/// read a second time.
pub fn refresh_knowing(
    shared: &Shared,
    rel: &str,
    author: Option<&str>,
    known: Option<(FileStamp, Md5Digest)>,
) -> Result<usize> {
    refresh_settling(shared, rel, author, known, false).map(|(changed, _)| changed)
}

/// [`refresh_knowing`], also returning the paths it left unrecorded because they changed while it looked (still
/// being written, or gone again). The observer's refreshes (`observer`) also leave alone the paths a write of
/// tandem's holds: that write records its result itself, with its author, which the observer does not know (were
/// the observer first, the write's record would be no change, and the author would be lost).
fn refresh_settling(
    shared: &Shared,
    rel: &str,
    author: Option<&str>,
    known: Option<(FileStamp, Md5Digest)>,
    observer: bool,
) -> Result<(usize, Vec<String>)> {
    let share = &shared.share;
    let mut found: Vec<Entry> = Vec::new();
    // Each file's stamp as it was read, by index into `found`: the hash cache vouches with no further system call.
    let mut stamps: HashMap<usize, FileStamp> = HashMap::new();
    // Links are recorded with their targets (sync carries those that point inside the share), never entered.
    match share.meta(rel) {
        Ok(Some(meta)) if meta.kind == EntryKind::Dir => {
            if !rel.is_empty() {
                found.push(Entry::from_meta(rel.to_string(), &meta));
            }
            for entry in Walk::new(share, rel)?.with_meta() {
                match entry {
                    Ok((entry, meta)) => {
                        stamps.insert(found.len(), meta.stamp());
                        found.push(entry);
                    }
                    Err(e) => tracing::warn!("journal scan skips a folder: {e}"),
                }
            }
        }
        Ok(Some(meta)) if meta.kind == EntryKind::File => {
            stamps.insert(found.len(), meta.stamp());
            found.push(Entry::from_meta(rel.to_string(), &meta));
        }
        Ok(Some(meta)) => {
            let mut link = Entry::from_meta(rel.to_string(), &meta);
            link.target = share.read_link(rel).ok();
            found.push(link);
        }
        _ => {}
    }
    let journal = &shared.journal;
    // Folders a write created on the way to `rel` are news too.
    let mut ancestor = rel;
    while let Some(cut) = ancestor.rfind('/') {
        ancestor = &ancestor[..cut];
        if journal.get(ancestor).is_some() {
            break;
        }
        if let Ok(Some(meta)) = share.meta(ancestor)
            && meta.kind == EntryKind::Dir
        {
            found.push(Entry::from_meta(ancestor.to_string(), &meta));
        }
    }

    let mut to_hash = Vec::new();
    let mut growing = HashSet::new();
    for (i, entry) in found.iter_mut().enumerate() {
        let written = known
            .filter(|(stamp, _)| entry.path == rel && stamp.size == entry.size && stamp.mtime_ns == entry.mtime_ns);
        match entry.kind {
            EntryKind::Dir => entry.size = 0,
            EntryKind::Symlink => {}
            _ if written.is_some() => entry.md5 = written.map(|(_, md5)| md5),
            // Still growing: its watcher events and rechecks bring it once it settles.
            _ if is_being_written(entry.size, entry.mtime_ns) => {
                growing.insert(entry.path.clone());
            }
            // The hash cache checks the whole stamp: a file swapped in under the same size and mtime is read again,
            // where the journal's size and mtime would vouch for the wrong bytes.
            _ => match stamps.get(&i).and_then(|stamp| shared.hashes.get(&entry.path, *stamp)) {
                Some(md5) => entry.md5 = Some(md5),
                None => to_hash.push(i),
            },
        }
    }
    let hashed = parallel_map(&to_hash, |&i| hash_file(shared, &found[i].path));
    let mut unsettled = growing;
    for (i, result) in to_hash.into_iter().zip(hashed) {
        match result {
            // The hashed entry's size and mtime are the ones that go with its MD5.
            Ok(entry) => found[i] = entry,
            // Still being written, or gone again: its own watcher event or a recheck brings it.
            Err(Error::Changed { .. }) => {
                unsettled.insert(found[i].path.clone());
            }
            Err(Error::NotFound { .. } | Error::NotAFile { .. } | Error::Symlink { .. } | Error::NotAFolder { .. }) => {
                unsettled.insert(found[i].path.clone());
            }
            Err(e) => return Err(e),
        }
    }
    // Refreshes record one at a time, each re-checking what it saw: whichever ran last saw the disk last, so a
    // scan that read a file just before a write replaced it can never record the old version over the new.
    let _recording = shared.refresh_lock.lock().unwrap_or_else(|p| p.into_inner());
    for entry in &found {
        if !still_there(share, entry) {
            unsettled.insert(entry.path.clone());
        }
    }
    let present: HashSet<&str> = found.iter().map(|e| e.path.as_str()).collect();
    let vanished: Vec<String> = journal
        .live_under(rel)
        .into_iter()
        .filter(|path| !present.contains(path.as_str()) && !unsettled.contains(path))
        .filter(|path| is_gone(share, path))
        .collect();
    // What a write of tandem's holds is that write's to record; the observer looks again later.
    let held = |path: &&String| observer && shared.path_locks.is_held(path);
    unsettled.extend(found.iter().map(|e| &e.path).chain(&vanished).filter(held).cloned());
    let gone = vanished.into_iter().filter(|path| !unsettled.contains(path)).map(|path| (path, None));
    let mut observed: Vec<(String, Option<Entry>)> =
        found.into_iter().filter(|e| !unsettled.contains(&e.path)).map(|e| (e.path.clone(), Some(e))).collect();
    observed.extend(gone);
    let changed = journal.record(observed, author)?;
    Ok((changed, unsettled.into_iter().collect()))
}

/// Whether the disk still holds what `entry` describes (a folder, a link to that target, or a file of that size
/// and mtime).
fn still_there(share: &Share, entry: &Entry) -> bool {
    match share.meta(&entry.path) {
        Ok(Some(meta)) if entry.kind == EntryKind::Dir => meta.kind == EntryKind::Dir,
        Ok(Some(meta)) if entry.kind == EntryKind::Symlink => {
            meta.kind == EntryKind::Symlink && share.read_link(&entry.path).ok() == entry.target
        }
        Ok(Some(meta)) => meta.kind == EntryKind::File && meta.size == entry.size && meta.mtime_ns == entry.mtime_ns,
        _ => false,
    }
}

/// Whether nothing the journal records is at `rel` any more: nothing at all, or something reached only through a
/// link or a file.
fn is_gone(share: &Share, rel: &str) -> bool {
    match share.meta(rel) {
        Ok(meta) => meta.is_none(),
        Err(e) => matches!(e, Error::NotFound { .. } | Error::Symlink { .. } | Error::NotAFolder { .. }),
    }
}

/// Writes what the journal and the hash cache hold only in memory.
fn save(shared: &Shared) -> Result<()> {
    shared.journal.flush()?;
    shared.hashes.flush()
}

/// Runs the watcher and the periodic scan until `shutdown`; the first scan starts at once.
pub async fn run(shared: Arc<Shared>, scan_interval: Duration, shutdown: CancellationToken) {
    let (events_tx, events) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let root = shared.share.root().to_path_buf();
    // Links are not followed: a link to a folder outside must not bring its changes in. (Whatever a watch sees,
    // a refresh looks beneath the share's root handle and never records anything reached through a link.)
    let config = notify::Config::default().with_follow_symlinks(false);
    let watcher = notify::RecommendedWatcher::new(
        move |event| {
            let _ = events_tx.send(event);
        },
        config,
    )
    .and_then(|mut watcher| watcher.watch(&root, notify::RecursiveMode::Recursive).map(|_| watcher));
    let _watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} ({e}); changes by other programs are found by the scan only",
                root.display()
            );
            None
        }
    };
    observe(shared, events, scan_interval, shutdown).await;
}

/// What to refresh next, and why.
enum Wake {
    Scan,
    Events(Vec<notify::Result<notify::Event>>),
    Rechecks(Vec<(String, u32)>),
}

/// The loop behind [`run`], fed with watcher events by whoever owns the watcher.
async fn observe(
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    scan_interval: Duration,
    shutdown: CancellationToken,
) {
    let root = shared.share.root().to_path_buf();
    let mut scans = tokio::time::interval(scan_interval);
    scans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saves = tokio::time::interval(SAVE_EVERY);
    saves.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rechecks = Rechecks::default();
    loop {
        let next_recheck = rechecks.next_due();
        let wake = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = blocking(move || save(&shared)).await;
                return;
            }
            _ = saves.tick() => {
                let shared = shared.clone();
                if let Err(e) = blocking(move || save(&shared)).await {
                    tracing::warn!("{e}");
                }
                continue;
            }
            _ = scans.tick() => {
                // Writes cut off by a crash left hidden temporary files; a full scan is the time to sweep them.
                let share = shared.share.clone();
                let swept = blocking(move || Ok(share.sweep_temps(STALE_TEMP_AGE))).await.unwrap_or(0);
                if swept > 0 {
                    tracing::info!("removed {swept} temporary files left by interrupted writes");
                }
                Wake::Scan
            }
            Some(first) = events.recv() => {
                let mut batch = vec![first];
                tokio::time::sleep(GATHER).await;
                while let Ok(event) = events.try_recv() {
                    batch.push(event);
                }
                Wake::Events(batch)
            }
            _ = sleep_until(next_recheck), if next_recheck.is_some() => Wake::Rechecks(rechecks.take_due(Instant::now())),
        };
        // Each target comes with how many times it has been looked at again already.
        let targets: Vec<(String, u32)> = match wake {
            Wake::Scan => vec![(String::new(), 0)],
            Wake::Events(batch) => {
                // The watcher reports a new folder before it watches it, so what lands inside it in between is
                // never reported: the folder is looked at again a second later.
                for folder in new_folders_of(&root, &batch) {
                    rechecks.schedule(folder, NEW_FOLDER_WAIT);
                }
                targets_of(&root, &batch).into_iter().map(|rel| (rel, 0)).collect()
            }
            Wake::Rechecks(due) => outermost(due, |(path, _)| path),
        };
        let shared = shared.clone();
        let outcome = blocking(move || {
            let mut changed = 0;
            let mut again = Vec::new();
            for (rel, attempt) in targets {
                match refresh_settling(&shared, &rel, None, None, true) {
                    Ok((count, unsettled)) => {
                        changed += count;
                        again.extend(unsettled.into_iter().map(|path| (path, attempt + 1)));
                    }
                    // One path's failure (a folder that vanished mid-walk, say) does not hold up the others.
                    Err(e) => {
                        tracing::warn!("journal scan failed: {e}");
                        again.push((rel, attempt + 1));
                    }
                }
            }
            Ok((changed, again))
        })
        .await;
        match outcome {
            Ok((changed, again)) => {
                if changed > 0 {
                    tracing::debug!("journal recorded {changed} changes made on disk");
                }
                for (path, attempt) in again {
                    rechecks.schedule(path, attempt);
                }
            }
            Err(e) => tracing::warn!("journal scan failed: {e}"),
        }
    }
}

/// The share-relative paths to refresh for a batch of watcher events: tandem's state and temporary files are
/// ignored, and a path below another one in the batch is covered by it. A watcher error means events may be
/// lost, so the whole share is rescanned.
fn targets_of(root: &Path, batch: &[notify::Result<notify::Event>]) -> Vec<String> {
    let mut paths = Vec::new();
    for event in batch {
        let Ok(event) = event else { return vec![String::new()] };
        if event.need_rescan() {
            return vec![String::new()];
        }
        if is_change(&event.kind) {
            paths.extend(event.paths.iter().filter_map(|path| share_relative(root, path)));
        }
    }
    outermost(paths, |path| path)
}

/// `items` without those whose path is at or below another's: refreshing the outer path covers them.
fn outermost<T>(mut items: Vec<T>, path: impl Fn(&T) -> &str) -> Vec<T> {
    // Component by component, so a folder's contents sort right after it ("a", "a/b", "a b").
    items.sort_by(|x, y| path(x).split('/').cmp(path(y).split('/')));
    let mut kept: Vec<T> = Vec::new();
    for item in items {
        if kept.last().is_none_or(|last| !super::journal::is_at_or_below(path(&item), path(last))) {
            kept.push(item);
        }
    }
    kept
}

/// The share-relative folders a batch of watcher events reports as created.
fn new_folders_of(root: &Path, batch: &[notify::Result<notify::Event>]) -> Vec<String> {
    batch
        .iter()
        .flatten()
        .filter(|event| matches!(event.kind, EventKind::Create(CreateKind::Folder)))
        .flat_map(|event| event.paths.iter().filter_map(|path| share_relative(root, path)))
        .collect()
}

/// `path` relative to the share, unless it is tandem's own state, a temporary file, or outside the share.
fn share_relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?.to_str()?.replace('\\', "/");
    let first = rel.split('/').next().unwrap_or("");
    (first != STATE_DIR).then_some(rel)
}

/// How long after the first look a path is looked at again; each further look waits twice as long.
const RECHECK_AFTER: Duration = Duration::from_millis(250);
/// A new folder is looked at again after the wait of this attempt (250 ms × 2² = 1 s).
const NEW_FOLDER_WAIT: u32 = 2;
/// Looks after which a path still changing is left to its watcher events and the periodic scan (about a minute).
const RECHECK_LOOKS: u32 = 8;

/// Paths to look at again a little later: files that were changing while a refresh read them, and new folders.
#[derive(Default)]
struct Rechecks {
    due: HashMap<String, (Instant, u32)>,
}

impl Rechecks {
    /// Looks at `path` again after its `attempt`-th wait. An earlier appointment for it stands, and the lower
    /// count wins: news from the watcher starts the waits over.
    fn schedule(&mut self, path: String, attempt: u32) {
        if attempt >= RECHECK_LOOKS {
            return;
        }
        let at = Instant::now() + RECHECK_AFTER * 2u32.pow(attempt);
        self.due
            .entry(path)
            .and_modify(|(when, looks)| (*when, *looks) = ((*when).min(at), (*looks).min(attempt)))
            .or_insert((at, attempt));
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(at, _)| *at).min()
    }

    /// The paths whose time has come, with how many times each has been looked at again already.
    fn take_due(&mut self, now: Instant) -> Vec<(String, u32)> {
        let due: Vec<String> = self.due.iter().filter(|(_, (at, _))| *at <= now).map(|(p, _)| p.clone()).collect();
        due.into_iter().filter_map(|path| self.due.remove_entry(&path).map(|(p, (_, attempt))| (p, attempt))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_events_become_the_fewest_refreshes() {
        let root = Path::new("/srv/share");
        let event = |paths: &[&str]| {
            let mut event = notify::Event::new(notify::EventKind::Any);
            event.paths = paths.iter().map(|p| root.join(p)).collect();
            Ok(event)
        };
        let targets = targets_of(
            root,
            &[
                event(&["docs/a.txt", "docs", ".tandem/journal.sqlite"]),
                // A user's file named like a temporary file is content: tandem's own are in `.tandem/tmp`.
                event(&["docs/sub/b.txt", "notes.md", "dir/.x.tandem-Ab12.tmp", ".tandem/tmp/incoming-1"]),
                event(&["docs2/c", "docs b", "docs b/x/y"]),
            ],
        );
        assert_eq!(targets, ["dir/.x.tandem-Ab12.tmp", "docs", "docs b", "docs2/c", "notes.md"]);
        let rescan = targets_of(root, &[event(&["a"]), Err(notify::Error::generic("queue overflow"))]);
        assert_eq!(rescan, [""]);
    }

    #[test]
    fn rechecks_wait_longer_each_time_and_give_up_at_last() {
        let mut rechecks = Rechecks::default();
        let start = Instant::now();
        rechecks.schedule("growing.iso".into(), 0);
        rechecks.schedule("new folder".into(), NEW_FOLDER_WAIT);
        rechecks.schedule("growing.iso".into(), 5);
        rechecks.schedule("new folder".into(), RECHECK_LOOKS - 1);
        rechecks.schedule("given up".into(), RECHECK_LOOKS);
        assert_eq!(rechecks.take_due(start), []);
        assert_eq!(rechecks.take_due(start + Duration::from_millis(600)), [("growing.iso".to_string(), 0)]);
        assert_eq!(rechecks.take_due(start + Duration::from_millis(600)), []);
        assert!(rechecks.next_due().is_some_and(|at| at >= start + Duration::from_secs(1)));
        assert_eq!(rechecks.take_due(start + Duration::from_secs(2)), [("new folder".to_string(), NEW_FOLDER_WAIT)]);
        assert_eq!(rechecks.next_due(), None);
    }

    /// An observer over `root` fed by the test's own watcher events; the full scan runs only at startup.
    struct Observed {
        shared: Arc<Shared>,
        events: mpsc::UnboundedSender<notify::Result<notify::Event>>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Observed {
        async fn start(root: &Path) -> Observed {
            let mut config = super::super::ServerConfig::new(root);
            config.listen = "127.0.0.1:0".into();
            let shared = super::super::Server::bind(config).await.unwrap().shared;
            let (events, receiver) = mpsc::unbounded_channel();
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(observe(shared.clone(), receiver, Duration::from_secs(3600), shutdown.clone()));
            Observed { shared, events, shutdown, task }
        }

        fn tell(&self, kind: EventKind, path: &Path) {
            let mut event = notify::Event::new(kind);
            event.paths.push(path.to_path_buf());
            self.events.send(Ok(event)).unwrap();
        }

        /// The journal's entry for `path`, once there is one (within 20 s).
        async fn recorded(&self, path: &str) -> Option<Entry> {
            let mut journal_moved = self.shared.journal.subscribe();
            let until = async {
                loop {
                    if let Some(entry) = self.shared.journal.get(path) {
                        return entry;
                    }
                    journal_moved.changed().await.unwrap();
                }
            };
            tokio::time::timeout(Duration::from_secs(20), until).await.ok()
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.unwrap();
        }
    }

    /// An upload holds its path from placing the file until it records it; the watcher, woken by the rename,
    /// may look in between (a slow disk makes that likely). It must leave the path to the upload, whose record
    /// names its author: conflict copies are named after it.
    #[tokio::test]
    async fn the_observer_leaves_a_path_being_written_to_the_writer_and_its_author() {
        let root = tempfile::tempdir().unwrap();
        let mut config = super::super::ServerConfig::new(root.path());
        config.listen = "127.0.0.1:0".into();
        let shared = super::super::Server::bind(config).await.unwrap().shared;
        let held = shared.path_locks.hold(&["plan.txt"]);
        std::fs::write(shared.share.root().join("plan.txt"), b"alice's v2").unwrap();

        let (_, unsettled) = refresh_settling(&shared, "", None, None, true).unwrap();
        assert_eq!(unsettled, ["plan.txt"], "looked at again later");
        assert!(shared.journal.get("plan.txt").is_none(), "the observer recorded a path a write holds");
        refresh(&shared, "plan.txt", Some("alice")).unwrap();
        drop(held);
        // Once the write is done, the observer's second look finds nothing new.
        assert_eq!(refresh_settling(&shared, "", None, None, true).unwrap().0, 0);
        let changes = shared.journal.since(0, 100).unwrap().changes;
        let plan = changes.iter().find(|c| c.path == "plan.txt").unwrap();
        assert_eq!(plan.author.as_deref(), Some("alice"));
    }

    #[tokio::test]
    async fn a_file_the_watcher_never_reported_inside_a_new_folder_is_still_recorded() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("before.txt"), b"here at startup").unwrap();
        let observed = Observed::start(root.path()).await;
        // The startup scan is done once it has recorded what was there.
        assert!(observed.recorded("before.txt").await.is_some());

        // The watcher reports the folder, then, as inotify does, watches it only a moment later: the file that
        // lands inside meanwhile is never reported.
        let folder = observed.shared.share.root().join("new folder");
        std::fs::create_dir(&folder).unwrap();
        observed.tell(EventKind::Create(CreateKind::Folder), &folder);
        assert!(observed.recorded("new folder").await.is_some());
        std::fs::write(folder.join("inside.txt"), b"never reported").unwrap();

        let found = observed.recorded("new folder/inside.txt").await;
        assert_eq!(found.map(|e| e.size), Some(14), "the file inside the new folder was never recorded");
        observed.stop().await;
    }

    #[tokio::test]
    async fn a_large_file_still_being_written_is_recorded_once_it_settles() {
        let root = tempfile::tempdir().unwrap();
        let observed = Observed::start(root.path()).await;

        // One event, for a file modified just now: the refresh it causes waits for the file to settle, and no
        // further event comes to bring it.
        let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let file = observed.shared.share.root().join("video.mkv");
        std::fs::write(&file, &bytes).unwrap();
        observed.tell(EventKind::Modify(notify::event::ModifyKind::Any), &file);

        let recorded = observed.recorded("video.mkv").await.expect("the settled file was never recorded");
        assert_eq!(recorded.size, 5_000_000);
        assert_eq!(recorded.md5, Some(Md5Digest::of(&bytes)));
        observed.stop().await;
    }
}
