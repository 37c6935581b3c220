//! Partial downloads, kept so an interrupted download can resume (like rsync's `--partial`). A download of a
//! non-empty file writes into `DEST/.tandem/partial/<name>`, next to a small JSON sidecar `<name>.partial.json`
//! that says which remote file and which version (size, mtime) the bytes are the start of. The sidecar is
//! written before any byte, so bytes on disk always have one; a failure leaves both where they are, and a rerun
//! of the same download asks the server for the rest.
//!
//! While a download writes the data file it holds an exclusive lock on it, so two downloads of one file into
//! one folder refuse instead of interleaving. A verified file is renamed from here over its destination (the
//! same filesystem), and the store's folders go again once empty, so a finished download leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::ResumeFrom;
use crate::share::{Entry, STATE_DIR, WRITEBACK_STEP, normalize, start_writeback};

/// The folder below the destination's `.tandem` that holds partial downloads.
pub const PARTIAL_DIR: &str = "partial";
const SIDECAR_SUFFIX: &str = ".partial.json";
/// The longest file name most filesystems take.
const MAX_NAME_LEN: usize = 255;

/// What the sidecar records: the remote file the bytes come from, and its version.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    path: String,
    size: u64,
    mtime_ns: i64,
    #[serde(default)]
    md5: Option<Md5Digest>,
}

/// A locked partial download: its data file, open for writing, and where its sidecar goes.
pub struct Partial {
    file: File,
    /// Where writes are, and where disk writeback was last started: as [`crate::share::AtomicFile`] does, so
    /// the fsync before the rename finds little left to flush.
    written: u64,
    flushed: u64,
    data: PathBuf,
    sidecar: PathBuf,
    dest_dir: PathBuf,
}

impl Partial {
    /// The partial data for the file `name` in `dest_dir`, locked for this download; `None` if there is none.
    pub fn find(dest_dir: &Path, name: &str) -> Result<Option<Partial>> {
        let (data, sidecar) = paths(dest_dir, name);
        match OpenOptions::new().read(true).write(true).open(&data) {
            Ok(file) => Partial::lock(file, data, sidecar, dest_dir).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&data, e)),
        }
    }

    /// A new (empty) partial file for `name` in `dest_dir`, or the one already there, locked.
    pub fn create(dest_dir: &Path, name: &str) -> Result<Partial> {
        let (data, sidecar) = paths(dest_dir, name);
        let store = data.parent().unwrap_or(dest_dir);
        let open = || {
            std::fs::create_dir_all(store)?;
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&data)
        };
        // Another download may tidy the empty store away between the two steps: one more try.
        let file = open().or_else(|_| open()).map_err(|e| Error::io(&data, e))?;
        Partial::lock(file, data, sidecar, dest_dir)
    }

    fn lock(file: File, data: PathBuf, sidecar: PathBuf, dest_dir: &Path) -> Result<Partial> {
        match file.try_lock() {
            Ok(()) => Ok(Partial { file, written: 0, flushed: 0, data, sidecar, dest_dir: dest_dir.to_path_buf() }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(Error::InUse { path: data, by: "another download of this file into the same folder" })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&data, e)),
        }
    }

    /// Where the data file is.
    pub fn path(&self) -> &Path {
        &self.data
    }

    /// Where the bytes kept here let a download of `remote` start again: the version they are the start of and
    /// how many there are. `None` if they belong to another file, have no readable sidecar, or are too many.
    pub fn resume_point(&self, remote: &str) -> Option<ResumeFrom> {
        let text = std::fs::read(&self.sidecar).ok()?;
        let sidecar: Sidecar = serde_json::from_slice(&text).ok()?;
        let offset = self.file.metadata().ok()?.len();
        let same_file = normalize(remote).ok()? == sidecar.path;
        (same_file && offset > 0 && offset <= sidecar.size).then_some(ResumeFrom {
            offset,
            size: sidecar.size,
            mtime_ns: sidecar.mtime_ns,
        })
    }

    /// The data file, to read the bytes kept here while new ones are appended.
    pub fn reader(&self) -> Result<Arc<File>> {
        self.file.try_clone().map(Arc::new).map_err(|e| Error::io(&self.data, e))
    }

    /// Gets ready to receive `entry` from byte `offset` on: drops any bytes after `offset`, records which file
    /// and version the bytes are (before any byte is written), and puts the write position at `offset`.
    pub fn begin(&mut self, entry: &Entry, offset: u64) -> Result<()> {
        let io = |e| Error::io(&self.data, e);
        self.file.set_len(offset).map_err(io)?;
        let sidecar = Sidecar { path: entry.path.clone(), size: entry.size, mtime_ns: entry.mtime_ns, md5: entry.md5 };
        let text = serde_json::to_vec(&sidecar).map_err(|e| Error::Malformed {
            what: "partial download record",
            reason: format!("{}: {e}", self.sidecar.display()),
        })?;
        std::fs::write(&self.sidecar, text).map_err(|e| Error::io(&self.sidecar, e))?;
        self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        (self.written, self.flushed) = (offset, offset);
        Ok(())
    }

    /// Throws the bytes away (they are not the file's), with the sidecar and the store's folders if now empty.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.data);
        let _ = std::fs::remove_file(&self.sidecar);
        tidy(&self.dest_dir);
    }

    /// Gives the verified file its permission bits (`mode`, else those of the file it replaces) and mtime, makes
    /// it durable, renames it over `dest`, and makes the rename durable; then drops the sidecar and the store's
    /// folders if now empty.
    pub fn commit(self, dest: &Path, mode: Option<u32>, mtime_ns: i64) -> Result<()> {
        let io = |e| Error::io(&self.data, e);
        let permissions = match mode {
            Some(mode) => Some(std::os::unix::fs::PermissionsExt::from_mode(mode & 0o777)),
            None => std::fs::metadata(dest).map(|m| m.permissions()).ok(),
        };
        if let Some(permissions) = permissions {
            self.file.set_permissions(permissions).map_err(io)?;
        }
        self.file.set_modified(ns_to_system_time(mtime_ns)).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        std::fs::rename(&self.data, dest).map_err(|e| Error::io(dest, e))?;
        crate::share::sync_renamed(&[dest.to_path_buf().into()])?;
        let _ = std::fs::remove_file(&self.sidecar);
        tidy(&self.dest_dir);
        Ok(())
    }
}

impl Write for Partial {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK_STEP {
            start_writeback(&self.file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// How many bytes an interrupted download of `name` into `dest_dir` kept, if one did (without opening it).
pub fn kept_bytes(dest_dir: &Path, name: &str) -> Option<u64> {
    std::fs::metadata(paths(dest_dir, name).0).ok().filter(|m| m.is_file()).map(|m| m.len())
}

/// The data file and the sidecar for the file `name` in `dest_dir`.
fn paths(dest_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let store = dest_dir.join(STATE_DIR).join(PARTIAL_DIR);
    let sidecar = if name.len() + SIDECAR_SUFFIX.len() <= MAX_NAME_LEN {
        format!("{name}{SIDECAR_SUFFIX}")
    } else {
        // A name near the limit: the sidecar is named by the name's hash instead.
        format!("{}{SIDECAR_SUFFIX}", Md5Digest::of(name.as_bytes()))
    };
    (store.join(name), store.join(sidecar))
}

/// Removes the store's folders if they are empty, so a finished download leaves no `.tandem` behind.
fn tidy(dest_dir: &Path) {
    let state = dest_dir.join(STATE_DIR);
    if std::fs::remove_dir(state.join(PARTIAL_DIR)).is_ok() {
        let _ = std::fs::remove_dir(state);
    }
}

fn ns_to_system_time(ns: i64) -> std::time::SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::EntryKind;

    fn entry(path: &str, size: u64) -> Entry {
        Entry { path: path.into(), kind: EntryKind::File, size, mtime_ns: -5, md5: None, locked_by: None, target: None }
    }

    #[test]
    fn a_partial_resumes_only_its_own_file_and_is_locked_while_in_use() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Partial::find(dir.path(), "a.bin").unwrap().is_none());
        let mut partial = Partial::create(dir.path(), "a.bin").unwrap();
        partial.begin(&entry("x/a.bin", 10), 0).unwrap();
        partial.write_all(b"0123").unwrap();
        let busy = Partial::find(dir.path(), "a.bin").err().unwrap().to_string();
        assert!(busy.contains("a.bin") && busy.contains("locked"), "{busy}");
        drop(partial);

        let partial = Partial::find(dir.path(), "a.bin").unwrap().unwrap();
        assert_eq!(partial.resume_point("x//a.bin"), Some(ResumeFrom { offset: 4, size: 10, mtime_ns: -5 }));
        assert_eq!(partial.resume_point("y/a.bin"), None, "another file of the same name");
        let kept = crate::digest::Md5Stream::of_file_prefix(&partial.reader().unwrap(), 4).unwrap();
        assert_eq!(kept.finish(), Md5Digest::of(b"0123"));
        partial.discard();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is left");
    }

    #[test]
    fn a_commit_renames_over_the_destination_and_tidies_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(STATE_DIR)).unwrap();
        std::fs::write(dir.path().join(STATE_DIR).join("keep"), b"sync state").unwrap();
        let long = "n".repeat(250);
        let mut partial = Partial::create(dir.path(), &long).unwrap();
        partial.begin(&entry(&long, 3), 0).unwrap();
        partial.write_all(b"abc").unwrap();
        partial.commit(&dir.path().join(&long), Some(0o640), 1_600_000_000_000_000_001).unwrap();
        let meta = std::fs::metadata(dir.path().join(&long)).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o640);
        assert_eq!(crate::share::system_time_to_ns(meta.modified().unwrap()), 1_600_000_000_000_000_001);
        assert!(!dir.path().join(STATE_DIR).join(PARTIAL_DIR).exists());
        assert!(dir.path().join(STATE_DIR).join("keep").exists(), "a .tandem in use stays");
    }
}
