//! The download cache's index: one SQLite row per cached object (MD5, the name it was last stored or served
//! under, size, when tandem last used it, and a use counter). The counter, not the clock and not file atimes
//! (which noatime mounts never update), orders uses: every store or hit takes the next number, so the least
//! recently used entry is the one with the smallest number even when two uses share a timestamp or the clock
//! steps back. Several tandem processes may share the index; writes run in immediate transactions, and a busy
//! database is waited for. This module knows nothing of the object files; [`super::DownloadCache`] does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::digest::Md5Digest;
use crate::error::{Error, Result};

/// How long a process waits for another one's write to the index before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
        md5 BLOB PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL,
        last_used_ns INTEGER NOT NULL, use_seq INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS objects_by_use ON objects (use_seq);
    CREATE INDEX IF NOT EXISTS objects_by_size ON objects (size);";

/// One cached object, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub md5: Md5Digest,
    /// The file name it was last stored or served under, for people.
    pub name: String,
    pub size: u64,
    /// When tandem last stored or served it, in nanoseconds since the epoch.
    pub last_used_ns: i64,
    /// The order of uses: larger is more recent.
    pub use_seq: i64,
}

pub struct Index {
    db: Connection,
    path: PathBuf,
}

impl Index {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = crate::db::open_shared(path, SCHEMA, BUSY_TIMEOUT)?;
        Ok(Index { db, path: path.to_path_buf() })
    }

    /// An index that lives in memory, for tests.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        let db = Connection::open_in_memory().expect("in-memory database");
        db.execute_batch(SCHEMA).expect("schema");
        Index { db, path: PathBuf::from(":memory:") }
    }

    fn fail(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |source| Error::Database { path: self.path.clone(), source }
    }

    pub fn get(&self, md5: Md5Digest) -> Result<Option<CacheEntry>> {
        self.db
            .query_row(
                "SELECT md5, name, size, last_used_ns, use_seq FROM objects WHERE md5 = ?1",
                [&md5.0[..]],
                row_to_entry,
            )
            .optional()
            .map_err(self.fail())
    }

    /// Whether some entry has exactly `size` bytes: only then can a file of that size be a hit.
    pub fn has_size(&self, size: u64) -> Result<bool> {
        self.db
            .query_row("SELECT EXISTS (SELECT 1 FROM objects WHERE size = ?1)", [size as i64], |row| row.get(0))
            .map_err(self.fail())
    }

    /// Records a use of `md5` (stored or served now, under `name`), adding the entry if it is new.
    pub fn record_use(&mut self, md5: Md5Digest, name: &str, size: u64, now_ns: i64) -> Result<()> {
        let fail = |source| Error::Database { path: self.path.clone(), source };
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let seq: i64 =
            tx.query_row("SELECT COALESCE(MAX(use_seq), 0) + 1 FROM objects", [], |r| r.get(0)).map_err(fail)?;
        tx.execute(
            "INSERT INTO objects (md5, name, size, last_used_ns, use_seq) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (md5) DO UPDATE SET name = ?2, size = ?3, last_used_ns = ?4, use_seq = ?5",
            params![&md5.0[..], name, size as i64, now_ns, seq],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)
    }

    /// Forgets `md5`; true if it was there.
    pub fn remove(&mut self, md5: Md5Digest) -> Result<bool> {
        let removed = self.db.execute("DELETE FROM objects WHERE md5 = ?1", [&md5.0[..]]).map_err(self.fail())?;
        Ok(removed > 0)
    }

    /// Bytes of all entries together.
    pub fn total(&self) -> Result<u64> {
        let total: i64 =
            self.db.query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| r.get(0)).map_err(self.fail())?;
        Ok(total.max(0) as u64)
    }

    /// Every entry, most recently used first.
    pub fn entries(&self) -> Result<Vec<CacheEntry>> {
        let mut statement = self
            .db
            .prepare("SELECT md5, name, size, last_used_ns, use_seq FROM objects ORDER BY use_seq DESC")
            .map_err(self.fail())?;
        let rows = statement.query_map([], row_to_entry).map_err(self.fail())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.fail())
    }

    /// Forgets least recently used entries until the total is at most `limit`, and returns them (their files are
    /// the caller's to delete).
    pub fn evict_to(&mut self, limit: u64) -> Result<Vec<CacheEntry>> {
        let fail = |source| Error::Database { path: self.path.clone(), source };
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let mut total: i64 =
            tx.query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| r.get(0)).map_err(fail)?;
        let mut evicted = Vec::new();
        {
            let mut oldest = tx
                .prepare("SELECT md5, name, size, last_used_ns, use_seq FROM objects ORDER BY use_seq ASC")
                .map_err(fail)?;
            let mut rows = oldest.query([]).map_err(fail)?;
            while total > limit as i64 {
                let Some(row) = rows.next().map_err(fail)? else { break };
                let entry = row_to_entry(row).map_err(fail)?;
                total -= entry.size as i64;
                evicted.push(entry);
            }
        }
        for entry in &evicted {
            tx.execute("DELETE FROM objects WHERE md5 = ?1", [&entry.md5.0[..]]).map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(evicted)
    }

    /// Forgets every entry and returns them.
    pub fn clear(&mut self) -> Result<Vec<CacheEntry>> {
        let fail = |source| Error::Database { path: self.path.clone(), source };
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let entries = {
            let mut statement =
                tx.prepare("SELECT md5, name, size, last_used_ns, use_seq FROM objects").map_err(fail)?;
            let rows = statement.query_map([], row_to_entry).map_err(fail)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(fail)?
        };
        tx.execute("DELETE FROM objects", []).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(entries)
    }
}

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<CacheEntry> {
    let md5: Vec<u8> = row.get(0)?;
    let md5 = Md5Digest::from_slice(&md5).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, "not a 16-byte MD5".into())
    })?;
    let size: i64 = row.get(2)?;
    Ok(CacheEntry { md5, name: row.get(1)?, size: size.max(0) as u64, last_used_ns: row.get(3)?, use_seq: row.get(4)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(n: u8) -> Md5Digest {
        Md5Digest([n; 16])
    }

    fn names(entries: &[CacheEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn uses_order_entries_and_a_reuse_moves_one_to_the_front() {
        let mut index = Index::in_memory();
        index.record_use(md5(1), "a", 10, 100).unwrap();
        index.record_use(md5(2), "b", 20, 100).unwrap();
        index.record_use(md5(3), "c", 30, 100).unwrap();
        assert_eq!(names(&index.entries().unwrap()), ["c", "b", "a"]);
        index.record_use(md5(1), "a renamed", 10, 200).unwrap();
        let entries = index.entries().unwrap();
        assert_eq!(names(&entries), ["a renamed", "c", "b"]);
        assert_eq!(entries[0].last_used_ns, 200);
        assert_eq!(index.total().unwrap(), 60, "a reuse does not count twice");
        assert_eq!(index.get(md5(2)).unwrap().map(|e| e.size), Some(20));
        assert_eq!(index.get(md5(9)).unwrap(), None);
    }

    #[test]
    fn eviction_goes_least_recently_used_first_until_under_the_limit() {
        let mut index = Index::in_memory();
        for (n, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
            index.record_use(md5(n), name, 100, 1_000).unwrap();
        }
        index.record_use(md5(1), "a", 100, 1_000).unwrap(); // a is now the most recent
        assert!(index.evict_to(400).unwrap().is_empty(), "at the limit nothing goes");
        assert_eq!(names(&index.evict_to(250).unwrap()), ["b", "c"]);
        assert_eq!(names(&index.entries().unwrap()), ["a", "d"]);
        assert_eq!(index.total().unwrap(), 200);
        assert_eq!(names(&index.evict_to(0).unwrap()), ["d", "a"]);
        assert_eq!(index.total().unwrap(), 0);
    }

    #[test]
    fn a_clock_that_steps_back_does_not_reorder_uses() {
        let mut index = Index::in_memory();
        index.record_use(md5(1), "old", 5, 2_000).unwrap();
        index.record_use(md5(2), "new", 5, 1_000).unwrap(); // the clock went back
        assert_eq!(names(&index.evict_to(5).unwrap()), ["old"]);
    }

    #[test]
    fn sizes_removal_and_clear() {
        let mut index = Index::in_memory();
        index.record_use(md5(1), "a", 10, 1).unwrap();
        index.record_use(md5(2), "b", 20, 2).unwrap();
        assert!(index.has_size(20).unwrap());
        assert!(!index.has_size(15).unwrap());
        assert!(index.remove(md5(2)).unwrap());
        assert!(!index.remove(md5(2)).unwrap());
        assert!(!index.has_size(20).unwrap());
        assert_eq!(names(&index.clear().unwrap()), ["a"]);
        assert!(index.entries().unwrap().is_empty());
    }

    #[test]
    fn two_handles_on_one_file_share_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let (mut first, mut second) = (Index::open(&path).unwrap(), Index::open(&path).unwrap());
        first.record_use(md5(1), "a", 1, 1).unwrap();
        second.record_use(md5(2), "b", 1, 1).unwrap();
        first.record_use(md5(3), "c", 1, 1).unwrap();
        assert_eq!(names(&second.entries().unwrap()), ["c", "b", "a"]);
    }
}
