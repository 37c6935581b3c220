//! A synced folder's memory, in `ROOT/.tandem/sync.sqlite`: for every path, the version both sides held at the
//! last successful sync (the base of the three-way comparison), a mirror of the server's journal as far as it has
//! been read, and that journal's sequence number. Memory holds the same tables; each pass writes what changed in
//! one transaction, so a crash leaves either the old state or the new, and a base that is behind only makes the
//! next pass find "both sides already agree".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};

use super::plan::{Kind, Version};
use crate::db::{meta, select_all};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};

/// A remote version and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVersion {
    pub version: Version,
    pub author: Option<String>,
    /// For a link, its target.
    pub target: Option<String>,
}

pub struct SyncState {
    /// Shared with the blocking thread that writes each update ([`SyncState::apply`]).
    db: Arc<Mutex<Connection>>,
    db_path: PathBuf,
    pub base: HashMap<String, Version>,
    pub remote: HashMap<String, RemoteVersion>,
    /// The server journal's sequence number the mirror is complete up to.
    pub remote_seq: u64,
    /// Which server journal the base and mirror describe.
    pub server: Option<String>,
}

/// Changes to write in one transaction.
#[derive(Default)]
pub struct Update {
    pub base: Vec<(String, Option<Version>)>,
    pub remote: Vec<(String, Option<RemoteVersion>)>,
    pub remote_seq: Option<u64>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.remote.is_empty() && self.remote_seq.is_none()
    }
}

impl SyncState {
    /// Opens (or creates) the state database at `db_path`.
    pub fn open(db_path: &Path) -> Result<SyncState> {
        let db = crate::db::open(
            db_path,
            "CREATE TABLE IF NOT EXISTS base (
                 path TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, md5 BLOB);
             CREATE TABLE IF NOT EXISTS remote (
                 path TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, md5 BLOB,
                 author TEXT);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        crate::db::add_column(&db, db_path, "remote", "target TEXT")?;
        let base: HashMap<_, _> =
            select_all(&db, db_path, "SELECT path, kind, size, mtime_ns, md5 FROM base", version_row)?
                .into_iter()
                .collect();
        let sql = "SELECT path, kind, size, mtime_ns, md5, author, target FROM remote";
        let remote = select_all(&db, db_path, sql, |row| Ok((version_row(row)?, row.get(5)?, row.get(6)?)))?
            .into_iter()
            .map(|((path, version), author, target)| (path, RemoteVersion { version, author, target }))
            .collect();
        let remote_seq = meta(&db, db_path, "remote_seq")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let server = meta(&db, db_path, "server")?;
        Ok(SyncState { db: Arc::new(Mutex::new(db)), db_path: db_path.to_path_buf(), base, remote, remote_seq, server })
    }

    /// Starts over with the journal `server`: a folder synced with another server (or with a share whose journal
    /// was wiped) keeps its files, but its base and mirror describe the old one, so they are dropped; the next pass
    /// merges without deleting anything.
    pub fn bind_to(&mut self, server: &str) -> Result<()> {
        if self.server.as_deref() == Some(server) {
            return Ok(());
        }
        let fail = |source| Error::Database { path: self.db_path.clone(), source };
        let mut db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = db.transaction().map_err(fail)?;
        tx.execute_batch("DELETE FROM base; DELETE FROM remote; DELETE FROM meta;").map_err(fail)?;
        tx.execute("INSERT INTO meta (key, value) VALUES ('server', ?)", params![server]).map_err(fail)?;
        tx.commit().map_err(fail)?;
        self.base.clear();
        self.remote.clear();
        self.remote_seq = 0;
        self.server = Some(server.to_string());
        Ok(())
    }

    /// Writes `update` to disk in one transaction, on a blocking thread, then to memory.
    pub async fn apply(&mut self, update: Update) -> Result<()> {
        if update.is_empty() {
            return Ok(());
        }
        let (db, path) = (self.db.clone(), self.db_path.clone());
        let update = crate::task::blocking(move || {
            let mut db = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            write(&mut db, &path, &update)?;
            Ok(update)
        })
        .await?;
        for (path, version) in update.base {
            match version {
                Some(version) => self.base.insert(path, version),
                None => self.base.remove(&path),
            };
        }
        for (path, remote) in update.remote {
            match remote {
                Some(remote) => self.remote.insert(path, remote),
                None => self.remote.remove(&path),
            };
        }
        if let Some(seq) = update.remote_seq {
            self.remote_seq = seq;
        }
        Ok(())
    }
}

/// Writes `update` in one transaction.
fn write(db: &mut Connection, db_path: &Path, update: &Update) -> Result<()> {
    let fail = |source| Error::Database { path: db_path.to_path_buf(), source };
    let tx = db.transaction().map_err(fail)?;
    {
        let mut put_base = tx
            .prepare_cached("INSERT OR REPLACE INTO base (path, kind, size, mtime_ns, md5) VALUES (?, ?, ?, ?, ?)")
            .map_err(fail)?;
        let mut drop_base = tx.prepare_cached("DELETE FROM base WHERE path = ?").map_err(fail)?;
        for (path, version) in &update.base {
            match version {
                Some(v) => put_base.execute(params![path, kind_str(v.kind), v.size as i64, v.mtime_ns, md5_blob(v)]),
                None => drop_base.execute(params![path]),
            }
            .map_err(fail)?;
        }
        let mut put_remote = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO remote (path, kind, size, mtime_ns, md5, author, target)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(fail)?;
        let mut drop_remote = tx.prepare_cached("DELETE FROM remote WHERE path = ?").map_err(fail)?;
        for (path, remote) in &update.remote {
            match remote {
                Some(RemoteVersion { version: v, author, target }) => put_remote.execute(params![
                    path,
                    kind_str(v.kind),
                    v.size as i64,
                    v.mtime_ns,
                    md5_blob(v),
                    author,
                    target
                ]),
                None => drop_remote.execute(params![path]),
            }
            .map_err(fail)?;
        }
        if let Some(seq) = update.remote_seq {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('remote_seq', ?)", params![seq.to_string()])
                .map_err(fail)?;
        }
    }
    tx.commit().map_err(fail)?;
    Ok(())
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
    }
}

fn md5_blob(version: &Version) -> Option<Vec<u8>> {
    version.md5.map(|m| m.0.to_vec())
}

fn version_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Version)> {
    let kind: String = row.get(1)?;
    let md5: Option<Vec<u8>> = row.get(4)?;
    let version = Version {
        kind: match kind.as_str() {
            "dir" => Kind::Dir,
            "symlink" => Kind::Symlink,
            _ => Kind::File,
        },
        size: row.get::<_, i64>(2)? as u64,
        mtime_ns: row.get(3)?,
        md5: md5.and_then(|bytes| Md5Digest::from_slice(&bytes)),
    };
    Ok((row.get(0)?, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn updates_survive_reopen_and_a_new_server_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sync.sqlite");
        let file = Version { kind: Kind::File, size: 3, mtime_ns: 7, md5: Some(Md5Digest::of(b"abc")) };
        {
            let mut state = SyncState::open(&db).unwrap();
            state.bind_to("10.0.0.1:7878").unwrap();
            let remote = RemoteVersion { version: file.clone(), author: Some("alice".into()), target: None };
            let update = Update {
                base: vec![("a.txt".into(), Some(file.clone())), ("gone".into(), None)],
                remote: vec![("a.txt".into(), Some(remote))],
                remote_seq: Some(42),
            };
            state.apply(update).await.unwrap();
        }
        let mut state = SyncState::open(&db).unwrap();
        assert_eq!(state.base.get("a.txt"), Some(&file));
        assert_eq!(state.remote["a.txt"].author.as_deref(), Some("alice"));
        assert_eq!(state.remote_seq, 42);
        state.bind_to("10.0.0.1:7878").unwrap();
        assert_eq!(state.base.len(), 1, "the same server keeps the base");
        state.bind_to("10.0.0.2:7878").unwrap();
        assert!(state.base.is_empty() && state.remote.is_empty() && state.remote_seq == 0);
    }
}
