//! The engine's mirror of the server's journal: caught up change by change from the client's cursor, and checked
//! now and then against the whole journal, so that a change the cursor ever skipped (a bug, a journal restored
//! from a backup) is repaired and reported, never silently missed for good.

use std::collections::HashMap;

use super::Engine;
use crate::digest::Md5Digest;
use crate::error::Result;
use crate::protocol::Change;
use crate::share::{Entry, EntryKind, normalize};
use crate::sync::plan::{Kind, Version};
use crate::sync::state::{RemoteVersion, Update};

/// Paths named in the report of a repaired mirror.
const SHOWN: usize = 5;

impl Engine {
    /// Catches the mirror up with the server's journal. A journal that went back behind this client's cursor
    /// (restored from a backup) cannot say what changed since: the whole mirror is checked instead.
    pub(super) async fn pull_changes(&mut self) -> Result<()> {
        let (changes, latest) = self.conn.changes_since(self.state.remote_seq).await?;
        if latest < self.state.remote_seq {
            let what = format!(
                "the server's journal is at change {latest}, behind this folder's {} (restored from a backup?); \
                 comparing everything",
                self.state.remote_seq
            );
            self.log.noted(self.conn.addr(), &what);
            self.verify_mirror().await?;
            return Ok(());
        }
        let mut update = Update { remote_seq: Some(latest), ..Default::default() };
        for (_, path, remote) in checked(changes) {
            update.remote.push((path, remote));
        }
        let changed = !update.remote.is_empty();
        if latest != self.state.remote_seq || changed {
            self.state.apply(update).await?;
        }
        self.unplanned_remote |= changed;
        Ok(())
    }

    /// The safety net: reads the whole journal and compares it with the mirror (kind, size, mtime, MD5 and link
    /// target of every path the cursor covers). Any difference is repaired, so the next pass plans it, and
    /// reported in the log as the bug it is. Returns how many paths differed.
    pub async fn verify_mirror(&mut self) -> Result<usize> {
        let (changes, latest) = self.conn.changes_since(0).await?;
        // Changes recorded after this folder's cursor are simply news, not differences.
        let cursor = self.state.remote_seq.min(latest);
        let journal: HashMap<String, (u64, Option<RemoteVersion>)> =
            checked(changes).map(|(seq, path, remote)| (path, (seq, remote))).collect();
        let mut differ: Vec<(String, Option<RemoteVersion>)> = Vec::new();
        let mut news: Vec<(String, Option<RemoteVersion>)> = Vec::new();
        for (path, (seq, remote)) in &journal {
            if *seq > cursor {
                news.push((path.clone(), remote.clone()));
                continue;
            }
            let same = match (remote, self.state.remote.get(path)) {
                (None, None) => true,
                (Some(theirs), Some(ours)) => theirs.version == ours.version && theirs.target == ours.target,
                _ => false,
            };
            if !same {
                differ.push((path.clone(), remote.clone()));
            }
        }
        differ.extend(
            (self.state.remote.keys()).filter(|path| !journal.contains_key(*path)).map(|path| (path.clone(), None)),
        );
        differ.sort_by(|a, b| a.0.cmp(&b.0));
        if !differ.is_empty() {
            let shown: Vec<&str> = differ.iter().take(SHOWN).map(|(path, _)| path.as_str()).collect();
            let more = differ.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            self.log.noted(
                &shown.join(", "),
                &format!(
                    "this folder's copy of the server's journal differed from it at {} paths{more}; repaired, and \
                     the next pass syncs them (this is a bug in tandem: please report it)",
                    differ.len()
                ),
            );
            self.unplanned_remote = true;
            self.quiet = false;
        }
        let count = differ.len();
        self.unplanned_remote |= !news.is_empty();
        differ.extend(news);
        self.state.apply(Update { remote: differ, remote_seq: Some(latest), ..Default::default() }).await?;
        Ok(count)
    }
}

/// Journal changes as mirror entries with their sequence numbers, each path checked like any other from the
/// network.
fn checked(changes: Vec<Change>) -> impl Iterator<Item = (u64, String, Option<RemoteVersion>)> {
    changes.into_iter().filter_map(|change| match normalize(&change.path) {
        Ok(path) if !path.is_empty() => {
            let author = change.author;
            Some((change.seq, path, change.entry.map(|entry| remote_version(entry, author))))
        }
        _ => {
            tracing::warn!(path = %change.path, "sync ignores a journal entry with an invalid path");
            None
        }
    })
}

fn remote_version(entry: Entry, author: Option<String>) -> RemoteVersion {
    let (kind, md5) = match entry.kind {
        EntryKind::File => (Kind::File, entry.md5),
        EntryKind::Dir => (Kind::Dir, entry.md5),
        // A link's content is its target text.
        EntryKind::Symlink => (Kind::Symlink, entry.target.as_ref().map(|target| Md5Digest::of(target.as_bytes()))),
    };
    let version = Version { kind, size: entry.size, mtime_ns: entry.mtime_ns, md5 };
    RemoteVersion { version, author, target: entry.target }
}
