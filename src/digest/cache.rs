//! A folder's hash cache (the server's share, or a synced folder): MD5s keyed by relative path and checked against
//! the file's whole [`FileStamp`] (size, mtime, ctime, inode), kept in memory and persisted to SQLite in
//! `.tandem/hashes.sqlite`, so a second `hash checkall` over an unchanged tree reads no file, even after a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};

use super::FileStamp;
use super::Md5Digest;
use crate::error::{Error, Result};

/// Cached MD5s of one share.
pub struct HashCache {
    /// Lookups are plain memory reads; a std mutex because no lock is held across an await.
    known: Mutex<HashMap<String, (FileStamp, Md5Digest)>>,
    /// Entries hashed since the last flush, written in one transaction.
    unsaved: Mutex<Vec<(String, FileStamp, Md5Digest)>>,
    db: Option<Mutex<Connection>>,
    db_path: PathBuf,
}

impl HashCache {
    /// Opens (or creates) the cache database at `db_path` and loads it.
    pub fn open(db_path: &Path) -> Result<Self> {
        let db = crate::db::open(
            db_path,
            // `hashes` was the table of versions that did not record the ctime; it is only a cache, so it goes.
            "DROP TABLE IF EXISTS hashes;
             CREATE TABLE IF NOT EXISTS file_hashes (
                 path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
                 inode INTEGER NOT NULL, md5 BLOB NOT NULL);",
        )?;
        let sql = "SELECT path, size, mtime_ns, ctime_ns, inode, md5 FROM file_hashes";
        let rows = crate::db::select_all(&db, db_path, sql, |row| {
            let stamp = FileStamp {
                size: row.get::<_, i64>(1)? as u64,
                mtime_ns: row.get(2)?,
                ctime_ns: row.get(3)?,
                inode: row.get::<_, i64>(4)? as u64,
            };
            Ok((row.get::<_, String>(0)?, stamp, row.get::<_, Vec<u8>>(5)?))
        })?;
        // A damaged row is simply not trusted; the file gets hashed again.
        let known: HashMap<_, _> = rows
            .into_iter()
            .filter_map(|(path, stamp, md5)| Some((path, (stamp, Md5Digest::from_slice(&md5)?))))
            .collect();
        Ok(HashCache {
            known: Mutex::new(known),
            unsaved: Mutex::new(Vec::new()),
            db: Some(Mutex::new(db)),
            db_path: db_path.to_path_buf(),
        })
    }

    /// A cache that lives only in memory.
    pub fn in_memory() -> Self {
        HashCache { known: Mutex::default(), unsaved: Mutex::default(), db: None, db_path: PathBuf::from(":memory:") }
    }

    /// The cached MD5 of `path`, if the file still has the stamp it had when it was hashed, and that stamp is old
    /// enough to vouch for the bytes.
    pub fn get(&self, path: &str, stamp: FileStamp) -> Option<Md5Digest> {
        if stamp.is_recent() {
            return None;
        }
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(path).filter(|(cached, _)| *cached == stamp).map(|(_, md5)| *md5)
    }

    /// Records a freshly computed MD5.
    pub fn insert(&self, path: &str, stamp: FileStamp, md5: Md5Digest) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.get(path) == Some(&(stamp, md5)) {
            return;
        }
        known.insert(path.to_string(), (stamp, md5));
        drop(known);
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner()).push((path.to_string(), stamp, md5));
    }

    /// Writes new entries to the database. Blocking: call from a blocking context.
    pub fn flush(&self) -> Result<()> {
        let Some(db) = &self.db else { return Ok(()) };
        let pending = std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        let fail = |source| Error::Database { path: self.db_path.clone(), source };
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        let tx = db.transaction().map_err(fail)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, ctime_ns, inode, md5)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .map_err(fail)?;
            for (path, stamp, md5) in &pending {
                insert
                    .execute(params![
                        path,
                        stamp.size as i64,
                        stamp.mtime_ns,
                        stamp.ctime_ns,
                        stamp.inode as i64,
                        &md5.0[..]
                    ])
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_misses_on_a_changed_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hashes.sqlite");
        let stamp = FileStamp { size: 3, mtime_ns: 42, ctime_ns: 44, inode: 7 };
        let md5 = Md5Digest::of(b"abc");
        {
            let cache = HashCache::open(&db).unwrap();
            cache.insert("a/b.txt", stamp, md5);
            cache.flush().unwrap();
        }
        let cache = HashCache::open(&db).unwrap();
        assert_eq!(cache.get("a/b.txt", stamp), Some(md5));
        assert_eq!(cache.get("a/b.txt", FileStamp { mtime_ns: 43, ..stamp }), None);
        assert_eq!(cache.get("a/b.txt", FileStamp { inode: 8, ..stamp }), None);
        assert_eq!(cache.get("a/b.txt", FileStamp { ctime_ns: 45, ..stamp }), None);
        assert_eq!(cache.get("other", stamp), None);
    }
}
