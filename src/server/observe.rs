//! Keeps the journal in step with the disk, whoever changed it.
//!
//! tandem's own writes record their result at once. Changes made by other programs in the served folder are
//! found by a file watcher (inotify on Linux), whose events are gathered for a moment and then turned into
//! [`refresh`]es of the paths they name, and by a full scan at startup and every `scan_interval`, which catches
//! whatever a watcher can miss (an overflowed queue, a network filesystem, changes while the server was down).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::hash::hash_file;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::share::events::is_change;
use crate::share::{Entry, EntryKind, FileStamp, STATE_DIR, Walk, is_temp_name, remove_stale_temps};
use crate::task::{blocking, parallel_map};

/// How long watcher events are gathered before acting on them: a burst of writes becomes one refresh.
const GATHER: Duration = Duration::from_millis(50);
/// How often recorded changes and new hashes are written to disk (they are in memory at once).
const SAVE_EVERY: Duration = Duration::from_millis(500);
/// Temporary files untouched for this long are leftovers of an interrupted write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Records in the journal what is now on disk at and below `rel` (`""`: the whole share). Files whose size and
/// mtime match the journal keep their MD5; others are hashed through the hash cache. Blocking.
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
    let root = shared.share.root();
    let abs = if rel.is_empty() { root.to_path_buf() } else { root.join(rel) };
    let mut found: Vec<Entry> = Vec::new();
    match std::fs::symlink_metadata(&abs) {
        Ok(metadata) if metadata.is_dir() => {
            if !rel.is_empty() {
                found.push(Entry::from_metadata(rel.to_string(), &metadata));
            }
            for entry in Walk::new(root.to_path_buf(), rel)? {
                match entry {
                    Ok(entry) if entry.kind != EntryKind::Symlink => found.push(entry),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("journal scan skips a folder: {e}"),
                }
            }
        }
        Ok(metadata) if metadata.is_file() && !is_temp_name(name_of(rel)) => {
            found.push(Entry::from_metadata(rel.to_string(), &metadata));
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
        if let Ok(metadata) = std::fs::symlink_metadata(root.join(ancestor))
            && metadata.is_dir()
        {
            found.push(Entry::from_metadata(ancestor.to_string(), &metadata));
        }
    }

    let mut to_hash = Vec::new();
    for (i, entry) in found.iter_mut().enumerate() {
        let written = known
            .filter(|(stamp, _)| entry.path == rel && stamp.size == entry.size && stamp.mtime_ns == entry.mtime_ns);
        match entry.kind {
            EntryKind::Dir => entry.size = 0,
            _ if written.is_some() => entry.md5 = written.map(|(_, md5)| md5),
            _ => match journal.get(&entry.path) {
                Some(known)
                    if known.size == entry.size
                        && known.mtime_ns == entry.mtime_ns
                        && known.md5.is_some()
                        && !FileStamp { size: entry.size, mtime_ns: entry.mtime_ns, inode: 0 }.is_recent() =>
                {
                    entry.md5 = known.md5;
                }
                _ => to_hash.push(i),
            },
        }
    }
    let hashed = parallel_map(&to_hash, |&i| hash_file(shared, &found[i].path, &root.join(&found[i].path)));
    let mut unsettled = HashSet::new();
    for (i, result) in to_hash.into_iter().zip(hashed) {
        match result {
            // The hashed entry's size and mtime are the ones that go with its MD5.
            Ok(entry) => found[i] = entry,
            // Still being written, or gone again: its own watcher event (or the next scan) brings it.
            Err(Error::Changed { .. }) => {
                unsettled.insert(found[i].path.clone());
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                unsettled.insert(found[i].path.clone());
            }
            Err(e) => return Err(e),
        }
    }
    // Refreshes record one at a time, each re-checking what it saw: whichever ran last saw the disk last, so a
    // scan that read a file just before a write replaced it can never record the old version over the new.
    let _recording = shared.refresh_lock.lock().unwrap_or_else(|p| p.into_inner());
    for entry in &found {
        if !still_there(&root.join(&entry.path), entry) {
            unsettled.insert(entry.path.clone());
        }
    }
    let present: HashSet<&str> = found.iter().map(|e| e.path.as_str()).collect();
    let gone: Vec<(String, Option<Entry>)> = journal
        .live_under(rel)
        .into_iter()
        .filter(|path| !present.contains(path.as_str()) && !unsettled.contains(path))
        .filter(|path| std::fs::symlink_metadata(root.join(path)).is_err())
        .map(|path| (path, None))
        .collect();
    let mut observed: Vec<(String, Option<Entry>)> =
        found.into_iter().filter(|e| !unsettled.contains(&e.path)).map(|e| (e.path.clone(), Some(e))).collect();
    observed.extend(gone);
    journal.record(observed, author)
}

/// Whether the disk still holds what `entry` describes (a folder, or a file of that size and mtime).
fn still_there(abs: &Path, entry: &Entry) -> bool {
    match std::fs::symlink_metadata(abs) {
        Ok(metadata) if entry.kind == EntryKind::Dir => metadata.is_dir(),
        Ok(metadata) => {
            let stamp = FileStamp::of(&metadata);
            metadata.is_file() && stamp.size == entry.size && stamp.mtime_ns == entry.mtime_ns
        }
        Err(_) => false,
    }
}

/// Writes what the journal and the hash cache hold only in memory.
fn save(shared: &Shared) -> Result<()> {
    shared.journal.flush()?;
    shared.hashes.flush()
}

fn name_of(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap_or(rel)
}

/// Runs the watcher and the periodic scan until `shutdown`; the first scan starts at once.
pub async fn run(shared: Arc<Shared>, scan_interval: Duration, shutdown: CancellationToken) {
    let (events_tx, mut events) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let root = shared.share.root().to_path_buf();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = events_tx.send(event);
    })
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
    let mut scans = tokio::time::interval(scan_interval);
    scans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saves = tokio::time::interval(SAVE_EVERY);
    saves.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let targets = tokio::select! {
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
                let root = root.clone();
                let swept = blocking(move || Ok(remove_stale_temps(&root, STALE_TEMP_AGE))).await.unwrap_or(0);
                if swept > 0 {
                    tracing::info!("removed {swept} temporary files left by interrupted writes");
                }
                vec![String::new()]
            }
            Some(first) = events.recv() => {
                let mut batch = vec![first];
                tokio::time::sleep(GATHER).await;
                while let Ok(event) = events.try_recv() {
                    batch.push(event);
                }
                targets_of(&root, batch)
            }
        };
        let shared = shared.clone();
        let outcome =
            blocking(move || targets.iter().try_fold(0, |changed, rel| Ok(changed + refresh(&shared, rel, None)?)))
                .await;
        match outcome {
            Ok(0) => {}
            Ok(changed) => tracing::debug!("journal recorded {changed} changes made on disk"),
            Err(e) => tracing::warn!("journal scan failed: {e}"),
        }
    }
}

/// The share-relative paths to refresh for a batch of watcher events: tandem's state and temporary files are
/// ignored, and a path below another one in the batch is covered by it. A watcher error means events may be
/// lost, so the whole share is rescanned.
fn targets_of(root: &Path, batch: Vec<notify::Result<notify::Event>>) -> Vec<String> {
    let mut paths = Vec::new();
    for event in batch {
        let Ok(event) = event else { return vec![String::new()] };
        if event.need_rescan() {
            return vec![String::new()];
        }
        if !is_change(&event.kind) {
            continue;
        }
        for path in event.paths {
            let Ok(rel) = path.strip_prefix(root) else { continue };
            let Some(rel) = rel.to_str().map(|r| r.replace('\\', "/")) else { continue };
            let first = rel.split('/').next().unwrap_or("");
            if first == STATE_DIR || is_temp_name(name_of(&rel)) {
                continue;
            }
            paths.push(rel);
        }
    }
    paths.sort();
    paths.dedup();
    let mut targets: Vec<String> = Vec::new();
    for path in paths {
        if targets.last().is_none_or(|kept| !super::journal::is_at_or_below(&path, kept)) {
            targets.push(path);
        }
    }
    targets
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
            vec![
                event(&["docs/a.txt", "docs", ".tandem/journal.sqlite"]),
                event(&["docs/sub/b.txt", "notes.md", "dir/.x.tandem-Ab12.tmp"]),
                event(&["docs2/c"]),
            ],
        );
        assert_eq!(targets, ["docs", "docs2/c", "notes.md"]);
        let rescan = targets_of(root, vec![event(&["a"]), Err(notify::Error::generic("queue overflow"))]);
        assert_eq!(rescan, [""]);
    }
}
