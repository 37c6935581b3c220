//! The share's change journal and its locks, in `.tandem/journal.sqlite`.
//!
//! Every path the share has ever held has one row: its latest state and the sequence number of the change that
//! produced it. Recording a state that differs from the row gives the path the next sequence number, so "every
//! change since N" is just the rows with a larger number, and a client that was away for a week catches up with
//! one query, however often each file changed meanwhile. A deletion stays as a row with no kind (a tombstone), so
//! it reaches clients too. Folders change only by appearing or disappearing: their mtimes move whenever a child
//! does, and that is not a change worth sending.
//!
//! Locks live in the same database, so they survive a restart. Memory holds a copy of both tables: lookups
//! during listings and writes never touch the disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};
use tokio::sync::watch;

use crate::db::{meta, select_all};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{Change, ClientIdentity};
use crate::share::{Entry, EntryKind};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOwner {
    pub id: String,
    pub host: String,
}

/// Sequence numbers reserved at a time.
const RESERVE: u64 = 100_000;
/// Pending changes that are written at once rather than waiting for the next flush.
const FLUSH_AT: usize = 4_096;

/// One answer of [`Journal::since`].
pub struct Batch {
    pub changes: Vec<Change>,
    /// The latest sequence number the changes cover.
    pub cursor: u64,
    /// The batch was cut short: more changes may follow the cursor.
    pub full: bool,
}

pub struct Journal {
    /// Random, made with the database; see [`crate::protocol::ServerHello::journal`].
    id: String,
    inner: Mutex<Inner>,
    /// The latest sequence number, for subscribers.
    latest: watch::Sender<u64>,
    db_path: PathBuf,
}

struct Inner {
    db: Connection,
    seq: u64,
    /// Sequence numbers up to this one may have been handed out; a restart continues after it.
    reserved: u64,
    /// Changes recorded in memory and not yet written: writing each upload's change in its own transaction would
    /// cost more than the upload. Written in batches, and always before the database is read.
    pending: Vec<Row>,
    /// The live entries (tombstones are only in the database), sorted so a folder's entries are one range.
    live: BTreeMap<String, Entry>,
    /// Sorted, so a folder's locked descendants are one range away.
    locks: BTreeMap<String, LockOwner>,
}

impl Journal {
    /// Opens (or creates) the journal at `db_path` and loads it.
    pub fn open(db_path: &Path) -> Result<Journal> {
        let fail = |source| Error::Database { path: db_path.to_path_buf(), source };
        let db = crate::db::open(
            db_path,
            "CREATE TABLE IF NOT EXISTS entries (
                 path TEXT PRIMARY KEY, seq INTEGER NOT NULL, kind TEXT, size INTEGER NOT NULL,
                 mtime_ns INTEGER NOT NULL, md5 BLOB, author TEXT);
             CREATE INDEX IF NOT EXISTS entries_by_seq ON entries (seq);
             CREATE TABLE IF NOT EXISTS locks (
                 path TEXT PRIMARY KEY, owner_id TEXT NOT NULL, owner_host TEXT NOT NULL, since_ns INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        // A link's target, which is its content; journals of versions that did not record links lack it.
        crate::db::add_column(&db, db_path, "entries", "target TEXT")?;
        let fresh_id = format!("{:032x}", rand::random::<u128>());
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('id', ?)", params![&fresh_id]).map_err(fail)?;
        let id = meta(&db, db_path, "id")?.unwrap_or(fresh_id);
        let seq: Option<i64> = db.query_row("SELECT MAX(seq) FROM entries", [], |row| row.get(0)).map_err(fail)?;
        let sql = "SELECT path, kind, size, mtime_ns, md5, target FROM entries WHERE kind IS NOT NULL";
        let live: BTreeMap<_, _> = select_all(&db, db_path, sql, |row| entry_row(row.get(0)?, row, 1))?
            .into_iter()
            .flatten()
            .map(|entry| (entry.path.clone(), entry))
            .collect();
        let sql = "SELECT path, owner_id, owner_host FROM locks";
        let locks =
            select_all(&db, db_path, sql, |row| Ok((row.get(0)?, LockOwner { id: row.get(1)?, host: row.get(2)? })))?
                .into_iter()
                .collect();
        let reserved = meta(&db, db_path, "reserved")?.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let seq = (seq.unwrap_or(0) as u64).max(reserved);
        Ok(Journal {
            id,
            inner: Mutex::new(Inner { db, seq, reserved: seq, pending: Vec::new(), live, locks }),
            latest: watch::Sender::new(seq),
            db_path: db_path.to_path_buf(),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |source| Error::Database { path: self.db_path.clone(), source }
    }

    /// This journal's random id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The latest sequence number.
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Wakes up whenever the latest sequence number moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The journal's view of `path`, if it is live.
    pub fn get(&self, path: &str) -> Option<Entry> {
        self.inner().live.get(path).cloned()
    }

    /// Live paths equal to `rel` or below it (`""`: all).
    pub fn live_under(&self, rel: &str) -> Vec<String> {
        let inner = self.inner();
        if rel.is_empty() {
            return inner.live.keys().cloned().collect();
        }
        // `rel` itself, then everything from `rel/` up to (not including) `rel0`, '0' being the byte after '/'.
        let exact = inner.live.get_key_value(rel).map(|(path, _)| path.clone());
        let below = inner.live.range(format!("{rel}/")..format!("{rel}0")).map(|(path, _)| path.clone());
        exact.into_iter().chain(below).collect()
    }

    /// Records what was observed at each path (`None`: absent). Paths whose state is unchanged are skipped; each
    /// change gets the next sequence number. Returns how many paths changed. Blocking.
    pub fn record(&self, observed: Vec<(String, Option<Entry>)>, author: Option<&str>) -> Result<usize> {
        let mut inner = self.inner();
        let count = record_locked(&mut inner, observed, author).map_err(self.fail())?;
        let latest = inner.seq;
        drop(inner);
        if count > 0 {
            self.latest.send_replace(latest);
        }
        Ok(count)
    }

    /// Up to `limit` changes after sequence number `since` (fewer if their paths pass
    /// [`crate::protocol::BATCH_BYTES`]), oldest first; the cursor they bring a client to, the latest sequence
    /// number they cover; and whether more may follow (the batch is full). Read in one snapshot under the journal's
    /// lock, so a change recorded while this runs is either among the changes or after the cursor, never skipped.
    /// Blocking.
    pub fn since(&self, since: u64, limit: usize) -> Result<Batch> {
        self.since_interleaved(since, limit, |_| Ok(()))
    }

    /// [`Journal::since`], calling `interleave` twice with the journal's state: after the cursor is read and
    /// before the query, then after the query. Tests record changes there, at the moments a concurrent writer
    /// would hit if the lock did not keep it out.
    fn since_interleaved(
        &self,
        since: u64,
        limit: usize,
        mut interleave: impl FnMut(&mut Inner) -> rusqlite::Result<()>,
    ) -> Result<Batch> {
        let fail = self.fail();
        let mut inner = self.inner();
        // The cursor is read first: whatever is recorded after this moment is beyond it, so at worst a change
        // is sent twice, never skipped.
        let covered = inner.seq;
        interleave(&mut inner).map_err(&fail)?;
        let Inner { db, pending, .. } = &mut *inner;
        write_rows(db, pending).map_err(&fail)?;
        let mut query = inner
            .db
            .prepare_cached(
                "SELECT seq, path, kind, size, mtime_ns, md5, target, author FROM entries WHERE seq > ?
                 ORDER BY seq LIMIT ?",
            )
            .map_err(&fail)?;
        let rows = query
            .query_map(params![since as i64, limit as i64], |row| {
                let path: String = row.get(1)?;
                let entry = entry_row(path.clone(), row, 2)?;
                Ok(Change { seq: row.get::<_, i64>(0)? as u64, path, entry, author: row.get(7)? })
            })
            .map_err(&fail)?;
        // A batch also ends once its paths pass `BATCH_BYTES`, however long they are.
        let (mut changes, mut bytes, mut full) = (Vec::new(), 0, false);
        for row in rows {
            let change = row.map_err(&fail)?;
            bytes += 64 + change.path.len();
            changes.push(change);
            if changes.len() == limit || bytes >= crate::protocol::BATCH_BYTES {
                full = true;
                break;
            }
        }
        drop(query);
        interleave(&mut inner).map_err(&fail)?;
        for change in &mut changes {
            if let Some(entry) = &mut change.entry {
                entry.locked_by = inner.locks.get(&change.path).map(|owner| owner.host.clone());
            }
        }
        // Every change up to `covered` was in the database when it was queried; a full batch covers only up to its
        // last change. A `since` beyond `covered` gets `covered`: the client learns the journal is behind it.
        let cursor = match changes.last() {
            Some(last) if full => last.seq,
            _ => covered,
        };
        Ok(Batch { changes, cursor, full })
    }

    /// Sets `locked_by` on each entry someone holds a lock on.
    pub fn mark_locks(&self, entries: &mut [Entry]) {
        let inner = self.inner();
        if inner.locks.is_empty() {
            return;
        }
        for entry in entries {
            entry.locked_by = inner.locks.get(&entry.path).map(|owner| owner.host.clone());
        }
    }

    /// Refuses a write to `path` by `client` if anyone else holds a lock on it, on a folder above it, or on
    /// anything below it (a folder cannot be deleted or renamed out from under a locked file).
    pub fn check_write(&self, path: &str, client: Option<&ClientIdentity>) -> Result<()> {
        let inner = self.inner();
        let foreign = |owner: &LockOwner| client.is_none_or(|c| c.id != owner.id);
        let mut ancestors = std::iter::successors(Some(path), |p| p.rfind('/').map(|i| &p[..i]));
        if let Some(owner) = ancestors.find_map(|p| inner.locks.get(p).filter(|o| foreign(o))) {
            return Err(Error::Locked { path: path.to_string(), host: owner.host.clone() });
        }
        let below = format!("{path}/");
        let descendant =
            inner.locks.range(below.clone()..).take_while(|(p, _)| p.starts_with(&below)).find(|(_, o)| foreign(o));
        if let Some((locked, owner)) = descendant {
            return Err(Error::Locked { path: locked.clone(), host: owner.host.clone() });
        }
        Ok(())
    }

    /// Locks `path` for `client`. Taking a lock one already holds is fine; someone else's is refused. Blocking.
    pub fn lock(&self, path: &str, client: &ClientIdentity) -> Result<()> {
        let fail = self.fail();
        let mut inner = self.inner();
        match inner.locks.get(path) {
            Some(owner) if owner.id == client.id => return Ok(()),
            Some(owner) => return Err(Error::Locked { path: path.to_string(), host: owner.host.clone() }),
            None => {}
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        inner
            .db
            .execute(
                "INSERT OR REPLACE INTO locks (path, owner_id, owner_host, since_ns) VALUES (?, ?, ?, ?)",
                params![path, client.id, client.host, now],
            )
            .map_err(&fail)?;
        inner.locks.insert(path.to_string(), LockOwner { id: client.id.clone(), host: client.host.clone() });
        Ok(())
    }

    /// Releases the lock on `path`: the owner's own, or anyone's with `force`. Blocking.
    pub fn unlock(&self, path: &str, client: Option<&ClientIdentity>, force: bool) -> Result<()> {
        let fail = self.fail();
        let mut inner = self.inner();
        let Some(owner) = inner.locks.get(path) else {
            return Err(Error::NotLocked { path: path.to_string() });
        };
        if !force && client.is_none_or(|c| c.id != owner.id) {
            return Err(Error::Locked { path: path.to_string(), host: owner.host.clone() });
        }
        inner.db.execute("DELETE FROM locks WHERE path = ?", params![path]).map_err(&fail)?;
        inner.locks.remove(path);
        Ok(())
    }

    /// Writes recorded changes that are still only in memory. Blocking.
    pub fn flush(&self) -> Result<()> {
        let fail = self.fail();
        let mut inner = self.inner();
        let Inner { db, pending, .. } = &mut *inner;
        write_rows(db, pending).map_err(&fail)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("journal changes not saved: {e}");
        }
    }
}

/// One recorded change not yet written to the database.
struct Row {
    path: String,
    seq: u64,
    entry: Option<Entry>,
    author: Option<String>,
}

/// [`Journal::record`] with the journal's state already held: gives each changed path the next sequence number,
/// queues its row, and updates the live entries. Returns how many paths changed.
fn record_locked(
    inner: &mut Inner,
    observed: Vec<(String, Option<Entry>)>,
    author: Option<&str>,
) -> rusqlite::Result<usize> {
    let changed: Vec<(String, Option<Entry>)> = observed
        .into_iter()
        .filter(|(path, now)| match (inner.live.get(path), now) {
            (None, None) => false,
            (Some(before), Some(now)) => !same_state(before, now),
            _ => true,
        })
        .collect();
    if changed.is_empty() {
        return Ok(0);
    }
    let Inner { db, seq, reserved, live, pending, .. } = inner;
    for (path, entry) in &changed {
        *seq += 1;
        if *seq > *reserved {
            // Numbers are handed out before rows are written; reserving them first means a crash can never hand
            // out a number a client has already seen.
            *reserved = *seq + RESERVE;
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('reserved', ?)",
                params![reserved.to_string()],
            )?;
        }
        pending.push(Row { path: path.clone(), seq: *seq, entry: entry.clone(), author: author.map(str::to_string) });
    }
    if pending.len() >= FLUSH_AT {
        write_rows(db, pending)?;
    }
    let count = changed.len();
    for (path, entry) in changed {
        match entry {
            Some(mut entry) => {
                entry.locked_by = None;
                live.insert(path, entry);
            }
            None => {
                live.remove(&path);
            }
        }
    }
    Ok(count)
}

/// Writes and clears `pending` in one transaction.
fn write_rows(db: &mut Connection, pending: &mut Vec<Row>) -> rusqlite::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let tx = db.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT OR REPLACE INTO entries (path, seq, kind, size, mtime_ns, md5, target, author)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for row in pending.iter() {
            let (kind, size, mtime_ns, md5, target) = match &row.entry {
                Some(e) => {
                    (Some(e.kind.as_str()), e.size as i64, e.mtime_ns, e.md5.map(|m| m.0.to_vec()), e.target.as_deref())
                }
                None => (None, 0, 0, None, None),
            };
            upsert.execute(params![row.path, row.seq as i64, kind, size, mtime_ns, md5, target, row.author])?;
        }
    }
    tx.commit()?;
    pending.clear();
    Ok(())
}

/// Whether two observations of one path are the same state: folders by kind alone, files by size, mtime and MD5,
/// links by target.
fn same_state(a: &Entry, b: &Entry) -> bool {
    match (a.kind, b.kind) {
        (EntryKind::Dir, EntryKind::Dir) => true,
        (EntryKind::File, EntryKind::File) => a.size == b.size && a.mtime_ns == b.mtime_ns && a.md5 == b.md5,
        (EntryKind::Symlink, EntryKind::Symlink) => a.target == b.target,
        _ => false,
    }
}

/// The entry in `row`'s columns from `first` on (kind, size, mtime_ns, md5, target); `None` for a deletion.
fn entry_row(path: String, row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<Entry>> {
    let Some(kind) = row.get::<_, Option<String>>(first)? else { return Ok(None) };
    let md5: Option<Vec<u8>> = row.get(first + 3)?;
    Ok(Some(Entry {
        path,
        kind: match kind.as_str() {
            "dir" => EntryKind::Dir,
            "symlink" => EntryKind::Symlink,
            _ => EntryKind::File,
        },
        size: row.get::<_, i64>(first + 1).unwrap_or(0) as u64,
        mtime_ns: row.get(first + 2).unwrap_or(0),
        md5: md5.and_then(|bytes| Md5Digest::from_slice(&bytes)),
        locked_by: None,
        target: row.get(first + 4)?,
    }))
}

pub fn is_at_or_below(path: &str, rel: &str) -> bool {
    rel.is_empty() || path == rel || (path.starts_with(rel) && path.as_bytes().get(rel.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, bytes: &[u8], mtime_ns: i64) -> (String, Option<Entry>) {
        let entry = Entry {
            path: path.into(),
            kind: EntryKind::File,
            size: bytes.len() as u64,
            mtime_ns,
            md5: Some(Md5Digest::of(bytes)),
            locked_by: None,
            target: None,
        };
        (path.into(), Some(entry))
    }

    /// A client that follows the cursor, against writes landing at each moment a concurrent writer could hit
    /// while changes are read (after the cursor is read and before the query, or after the query), with every
    /// batch size: it always ends with the journal's live state, so no change fell behind its cursor unsent.
    #[test]
    fn no_change_recorded_while_changes_are_read_falls_behind_the_cursor() {
        for limit in [1, 2, 3, 100] {
            for moment in 0..2 {
                let dir = tempfile::tempdir().unwrap();
                let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
                journal.record(vec![file("a", b"1", 1), file("b", b"2", 1)], None).unwrap();
                let mut seen: BTreeMap<String, Option<Md5Digest>> = BTreeMap::new();
                let (mut cursor, mut calls, mut writes) = (0, 0, 0);
                for _ in 0..100 {
                    let Batch { changes, cursor: next, .. } = journal
                        .since_interleaved(cursor, limit, |inner| {
                            calls += 1;
                            if calls % 2 != moment || writes == 6 {
                                return Ok(());
                            }
                            writes += 1;
                            // New paths, a changed one and a deleted one.
                            let observed = match writes % 3 {
                                0 => vec![file(&format!("new{writes}"), b"n", writes)],
                                1 => vec![file("a", format!("v{writes}").as_bytes(), writes)],
                                _ => vec![("b".to_string(), None), file(&format!("b{writes}"), b"b", 1)],
                            };
                            record_locked(inner, observed, None).map(drop)
                        })
                        .unwrap();
                    assert!(next >= cursor, "the cursor never goes back");
                    for change in &changes {
                        match &change.entry {
                            Some(entry) => seen.insert(change.path.clone(), entry.md5),
                            None => seen.remove(&change.path),
                        };
                    }
                    cursor = next;
                    if changes.is_empty() && writes == 6 {
                        break;
                    }
                }
                let live: BTreeMap<String, Option<Md5Digest>> =
                    journal.inner().live.iter().map(|(path, e)| (path.clone(), e.md5)).collect();
                assert_eq!(seen, live, "limit {limit}, writes at moment {moment}");
            }
        }
    }

    #[test]
    fn sequence_numbers_survive_reopen_and_skip_unchanged_states() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("journal.sqlite");
        {
            let journal = Journal::open(&db).unwrap();
            assert_eq!(journal.record(vec![file("a", b"1", 1), file("b", b"2", 1)], Some("alice")).unwrap(), 2);
            assert_eq!(journal.record(vec![file("a", b"1", 1)], None).unwrap(), 0);
            assert_eq!(journal.record(vec![("a".into(), None)], None).unwrap(), 1);
            assert_eq!(journal.latest(), 3);
        }
        let journal = Journal::open(&db).unwrap();
        assert!(journal.latest() >= 3, "a reopened journal never hands out a number again");
        assert_eq!(journal.id(), Journal::open(&db).unwrap().id(), "the id lasts");
        assert_ne!(journal.id(), Journal::open(&dir.path().join("other.sqlite")).unwrap().id());
        let Batch { changes, cursor, .. } = journal.since(1, 100).unwrap();
        assert_eq!(cursor, journal.latest());
        assert_eq!(changes.iter().map(|c| (c.seq, c.path.as_str())).collect::<Vec<_>>(), [(2, "b"), (3, "a")]);
        assert_eq!(changes[0].author.as_deref(), Some("alice"));
        assert!(changes[1].entry.is_none(), "a deletion is a tombstone");
        assert_eq!(journal.live_under(""), ["b"]);
        let before = journal.latest();
        journal.record(vec![file("b", b"22", 2)], None).unwrap();
        assert_eq!(journal.since(before, 10).unwrap().changes.len(), 1);
        journal.record(vec![file("b/c", b"3", 1), file("b c", b"4", 1), file("bc", b"5", 1)], None).unwrap();
        assert_eq!(journal.live_under("b"), ["b", "b/c"]);
    }

    #[test]
    fn locks_refuse_others_survive_reopen_and_cover_folders() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("journal.sqlite");
        let alice = ClientIdentity { id: "a1".into(), host: "alice-laptop".into() };
        let bob = ClientIdentity { id: "b2".into(), host: "bob-desktop".into() };
        {
            let journal = Journal::open(&db).unwrap();
            journal.lock("docs/plan.txt", &alice).unwrap();
        }
        let journal = Journal::open(&db).unwrap();
        journal.check_write("docs/plan.txt", Some(&alice)).unwrap();
        let refused = journal.check_write("docs/plan.txt", Some(&bob)).unwrap_err();
        assert_eq!(refused.to_string(), "docs/plan.txt is locked by alice-laptop");
        assert!(journal.check_write("docs", Some(&bob)).is_err(), "deleting the folder would take the file");
        assert!(journal.check_write("docs/other.txt", None).is_ok());
        assert!(journal.lock("docs/plan.txt", &bob).is_err());
        assert!(journal.unlock("docs/plan.txt", Some(&bob), false).is_err());
        journal.unlock("docs/plan.txt", Some(&bob), true).unwrap();
        journal.check_write("docs/plan.txt", Some(&bob)).unwrap();
    }
}
