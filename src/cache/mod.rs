//! The client's download cache in `$XDG_CACHE_HOME/tandem/`: verified downloads kept by content, so a file
//! whose MD5 is already here is copied from disk instead of crossing the network again.
//!
//! Objects are plain files named by their MD5 (`objects/ab/ab12…`), written to a temporary file and renamed, so
//! a concurrent tandem never sees half an object. [`index`] records each object's name, size and use in SQLite;
//! after every store the least recently used objects go until the total is within the limit ([`Config::cache_limit`]). An
//! object is trusted only as far as its MD5: whoever copies it out hashes it again (`client::fetch` does), and a
//! damaged object is dropped. Sync never uses the cache; `client::fetch` layers it over the raw downloads.

pub mod index;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

pub use index::CacheEntry;

use crate::config::Config;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::share::{remove_stale_temps, system_time_to_ns};
use index::Index;

/// A temporary object file untouched this long was left by a store that never finished.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// One cache folder with its size limit. Methods block on disk; async callers run them on a blocking thread.
pub struct DownloadCache {
    dir: PathBuf,
    limit: u64,
    /// A std mutex: held only for one index query, never across an await.
    index: Mutex<Index>,
}

/// What [`DownloadCache::clear`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    pub entries: usize,
    pub bytes: u64,
}

impl DownloadCache {
    /// Opens (or creates) the cache in `dir`, holding at most `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<Self> {
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(|e| Error::io(&objects, e))?;
        let index_path = dir.join("index.sqlite");
        let index = match Index::open(&index_path) {
            // It is only a cache: a damaged index (a crash, a full disk, an edit) starts it afresh.
            Err(Error::Database { source, .. }) if is_damaged(&source) => {
                tracing::warn!(
                    "the download cache's index {} is damaged ({source}); starting an empty cache",
                    index_path.display()
                );
                for stale in [index_path.clone(), dir.join("index.sqlite-wal"), dir.join("index.sqlite-shm")] {
                    remove_object(&stale)?;
                }
                std::fs::remove_dir_all(&objects).map_err(|e| Error::io(&objects, e))?;
                std::fs::create_dir_all(&objects).map_err(|e| Error::io(&objects, e))?;
                Index::open(&index_path)?
            }
            opened => opened?,
        };
        Ok(DownloadCache { dir: dir.to_path_buf(), limit, index: Mutex::new(index) })
    }

    /// This user's cache, in the configured cache folder, with the configured limit.
    pub fn open_default(config: &Config) -> Result<Self> {
        let limit = config.cache_limit()?;
        let dir = config.dirs.cache.as_deref().ok_or_else(|| Error::NoHomeFolder { purpose: "the download cache" })?;
        Self::open(dir, limit)
    }

    /// The cache downloads go through: `None` when the limit is 0 (the cache is off) or there is no home folder.
    /// A limit that is not a size is an error; a cache that cannot be opened only warns, since downloads work
    /// without it.
    pub fn for_downloads(config: &Config) -> Result<Option<Self>> {
        let limit = config.cache_limit()?;
        let Some(dir) = config.dirs.cache.as_deref().filter(|_| limit > 0) else { return Ok(None) };
        match Self::open(dir, limit) {
            Ok(cache) => Ok(Some(cache)),
            Err(e) => {
                tracing::warn!("download cache unusable, downloading without it: {e}");
                Ok(None)
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the object with this MD5 lives (whether or not it is there).
    pub fn object_path(&self, md5: Md5Digest) -> PathBuf {
        let hex = md5.to_string();
        self.dir.join("objects").join(&hex[..2]).join(hex)
    }

    /// The entry and object file for `md5`, if both are here. An entry whose file went missing is forgotten.
    pub fn lookup(&self, md5: Md5Digest) -> Result<Option<(CacheEntry, PathBuf)>> {
        let Some(entry) = self.index().get(md5)? else { return Ok(None) };
        let path = self.object_path(md5);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(Some((entry, path))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.index().remove(md5)?;
                Ok(None)
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Whether an entry of exactly `size` bytes is here; if not, a file of that size cannot be a hit, and
    /// there is no need to learn its MD5.
    pub fn holds_size(&self, size: u64) -> Result<bool> {
        self.index().has_size(size)
    }

    /// Whether the cache holds nothing at all.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.index().entries()?.is_empty())
    }

    /// Keeps a copy of the verified file `source`, whose MD5 is `md5`, under `name`; then evicts least recently
    /// used entries until the cache is within its limit. A file larger than the limit is not kept (false).
    pub fn store(&self, source: &Path, md5: Md5Digest, name: &str) -> Result<bool> {
        let size = std::fs::metadata(source).map_err(|e| Error::io(source, e))?.len();
        if size > self.limit {
            return Ok(false);
        }
        let object = self.object_path(md5);
        let present = std::fs::metadata(&object).is_ok_and(|m| m.is_file() && m.len() == size);
        if !present {
            let folder = object.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
            // What a store cut off by a crash left in this folder; one folder holds 1/256 of the objects.
            remove_stale_temps(folder, STALE_TEMP_AGE);
            let temp = tempfile::Builder::new()
                .prefix(".tandem-store-")
                .suffix(".tmp")
                .tempfile_in(folder)
                .map_err(|e| Error::io(folder, e))?;
            // `fs::copy` uses copy_file_range on Linux: no bytes pass through this process. No fsync: an object
            // damaged by a crash is caught by its MD5 when used, and dropped.
            std::fs::copy(source, temp.path()).map_err(|e| Error::io(source, e))?;
            temp.persist(&object).map_err(|e| Error::io(&object, e.error))?;
        }
        self.index().record_use(md5, name, size, now_ns())?;
        self.evict()?;
        Ok(true)
    }

    /// Records that `md5` was just served from the cache under `name`.
    pub fn touch(&self, md5: Md5Digest, name: &str) -> Result<()> {
        let Some(entry) = self.index().get(md5)? else { return Ok(()) };
        self.index().record_use(md5, name, entry.size, now_ns())
    }

    /// Drops the entry for `md5` and its object file (a damaged object, say).
    pub fn remove(&self, md5: Md5Digest) -> Result<()> {
        self.index().remove(md5)?;
        remove_object(&self.object_path(md5))
    }

    /// Every entry, most recently used first.
    pub fn entries(&self) -> Result<Vec<CacheEntry>> {
        self.index().entries()
    }

    /// Bytes held, as the index counts them.
    pub fn total(&self) -> Result<u64> {
        self.index().total()
    }

    /// Empties the cache: every entry and every object file, including any a crash left unrecorded.
    pub fn clear(&self) -> Result<Cleared> {
        let removed = self.index().clear()?;
        let objects = self.dir.join("objects");
        match std::fs::remove_dir_all(&objects) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&objects, e)),
            _ => {}
        }
        std::fs::create_dir_all(&objects).map_err(|e| Error::io(&objects, e))?;
        Ok(Cleared { entries: removed.len(), bytes: removed.iter().map(|e| e.size).sum() })
    }

    /// Evicts least recently used entries until the total is within the limit.
    fn evict(&self) -> Result<()> {
        let evicted = self.index().evict_to(self.limit)?;
        for entry in evicted {
            tracing::debug!("download cache: evicted {} ({}, {} bytes)", entry.name, entry.md5, entry.size);
            remove_object(&self.object_path(entry.md5))?;
        }
        Ok(())
    }
}

/// Whether SQLite says the file is not a database, or a damaged one.
fn is_damaged(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

fn remove_object(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn now_ns() -> i64 {
    system_time_to_ns(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, Md5Digest) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        (path, Md5Digest::of(bytes))
    }

    #[test]
    fn a_damaged_index_starts_an_empty_cache_instead_of_failing() {
        let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = DownloadCache::open(home.path(), 1 << 20).unwrap();
        let (path, md5) = file(data.path(), "a.txt", b"kept bytes");
        assert!(cache.store(&path, md5, "a.txt").unwrap());
        drop(cache);
        std::fs::write(home.path().join("index.sqlite"), b"this is not a database, it is long enough to tell").unwrap();
        let reopened = DownloadCache::open(home.path(), 1 << 20).unwrap();
        assert!(reopened.entries().unwrap().is_empty());
        assert!(!reopened.object_path(md5).exists(), "objects the index no longer knows are gone too");
        assert!(reopened.store(&path, md5, "a.txt").unwrap(), "and the fresh cache works");
        assert_eq!(reopened.entries().unwrap().len(), 1);
    }

    #[test]
    fn store_lookup_evict_and_clear_keep_files_and_index_in_step() {
        let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = DownloadCache::open(home.path(), 25).unwrap();
        let (a, a_md5) = file(data.path(), "a", &[1; 10]);
        let (b, b_md5) = file(data.path(), "b", &[2; 10]);
        let (c, c_md5) = file(data.path(), "c", &[3; 10]);
        assert!(cache.is_empty().unwrap());
        assert!(cache.store(&a, a_md5, "a").unwrap());
        assert!(cache.store(&b, b_md5, "b").unwrap());
        assert_eq!(std::fs::read(cache.object_path(a_md5)).unwrap(), [1; 10]);
        cache.touch(a_md5, "a again").unwrap();
        assert!(cache.store(&c, c_md5, "c").unwrap());
        // 30 bytes over a 25-byte limit: b, the least recently used, went.
        assert_eq!(cache.total().unwrap(), 20);
        assert!(cache.lookup(b_md5).unwrap().is_none());
        assert!(!cache.object_path(b_md5).exists());
        let names: Vec<String> = cache.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["c", "a again"]);
        assert!(cache.holds_size(10).unwrap() && !cache.holds_size(11).unwrap());

        let (big, big_md5) = file(data.path(), "big", &[4; 26]);
        assert!(!cache.store(&big, big_md5, "big").unwrap(), "larger than the limit");
        assert!(!cache.object_path(big_md5).exists());

        std::fs::remove_file(cache.object_path(c_md5)).unwrap();
        assert!(cache.lookup(c_md5).unwrap().is_none(), "a missing object is a miss");
        assert_eq!(cache.total().unwrap(), 10, "and its entry is forgotten");

        assert_eq!(cache.clear().unwrap(), Cleared { entries: 1, bytes: 10 });
        assert!(cache.entries().unwrap().is_empty());
        assert_eq!(std::fs::read_dir(home.path().join("objects")).unwrap().count(), 0);
    }
}
