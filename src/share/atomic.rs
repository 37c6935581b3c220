//! Atomic file replacement: bytes go to a temporary file, and only a verified, fsynced file is renamed over the
//! destination. In a folder tandem writes in as a jail (a served share, a sync client's folder) the temporary file
//! is an unnamed file in the destination's folder (`O_TMPFILE`, then `linkat`), or where the filesystem has none a
//! short name in its `.tandem/tmp`, and it is named beneath the folder's handle, the old version going to the
//! trash ([`Destination::InFolder`]); for a path a person named, it is a hidden file beside the destination. A
//! failure or a drop before [`AtomicFile::commit`] removes the temporary file and leaves the destination as it was.
//!
//! Many files written together can share their syncs ([`AtomicFile::stage`], [`sync_staged`],
//! [`AtomicFile::rename_into_place`], [`sync_renamed`]): one filesystem sync before all their renames and one
//! fsync per folder after, instead of two fsyncs per file. The order that makes a rename safe is the same: no
//! file is renamed into place before its bytes are on disk, and nobody is told it is there before the rename is.
//!
//! Writes through [`AtomicFile`]'s `Write` impl also start the disk writeback of each few MiB as they go, so the
//! fsync in `commit` finds little left to flush: for a 1 GiB download that turns a quarter-second stall at the
//! end into disk work that overlaps the transfer.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::{Share, TempName};

use crate::error::{Error, Result};

/// Whether a file name is one of [`AtomicFile`]'s temporary files: never listed as content, synced or journaled.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp") && name.contains(".tandem-")
}

/// Removes tandem's temporary files below `root` (outside its state folder) that were last written more than
/// `age` ago: what a write cut off by a crash or a power cut left behind. A write in progress touches its file
/// all the time, so it is never taken for one. Returns how many went; a file that cannot be removed is skipped.
pub fn remove_stale_temps(root: &Path, age: Duration) -> usize {
    let mut removed = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && !(folder == root && name == crate::share::STATE_DIR) {
                folders.push(entry.path());
            } else if kind.is_file()
                && is_temp_name(&name.to_string_lossy())
                && entry.metadata().is_ok_and(|m| untouched_for(&m) > age)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// How long since a file's inode last changed. Not its mtime: a staged file already carries the mtime it will
/// have, which may be years ago.
fn untouched_for(metadata: &std::fs::Metadata) -> Duration {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let changed = UNIX_EPOCH + Duration::new(metadata.ctime().max(0) as u64, metadata.ctime_nsec().max(0) as u32);
        changed.elapsed().unwrap_or_default()
    }
    #[cfg(not(unix))]
    {
        metadata.modified().ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
    }
}

/// A file being written that replaces its destination on commit.
pub struct AtomicFile {
    place: Place,
    /// Bytes written so far, and how many of them have had writeback started.
    written: u64,
    flushed: u64,
}

/// Where the bytes wait, and how they get to their destination.
enum Place {
    /// A hidden temporary file beside the destination: a client's own folder.
    Beside { temp: tempfile::NamedTempFile, dest: PathBuf },
    /// A file in a folder opened as a jail (unnamed in the destination's folder, or in `.tandem/tmp`), named `rel`
    /// beneath the folder's root handle.
    Jailed(JailedTemp),
}

/// A temporary file in a served share; removed on drop unless it was placed.
struct JailedTemp {
    file: File,
    share: Arc<Share>,
    /// Where it waits until it is placed.
    name: TempName,
    placed: bool,
    rel: String,
    shown: PathBuf,
}

impl Drop for JailedTemp {
    fn drop(&mut self) {
        // An unnamed file goes with its last descriptor.
        if let (false, TempName::Named(name)) = (self.placed, &self.name) {
            self.share.remove_temp(name);
        }
    }
}

/// A file renamed into place, whose folder still needs an fsync ([`sync_renamed`]).
pub enum Renamed {
    Path(PathBuf),
    /// The folder's open handle, and where it is for messages.
    Folder {
        dir: OwnedFd,
        shown: PathBuf,
    },
}

impl From<PathBuf> for Renamed {
    fn from(dest: PathBuf) -> Self {
        Renamed::Path(dest)
    }
}

/// Where a download lands: a path a person named, or a clean relative path inside a folder opened as a jail
/// (a sync client's own folder), reached without following any link, its old version kept in that folder's
/// trash.
#[derive(Debug, Clone)]
pub enum Destination {
    Path(PathBuf),
    InFolder { folder: Arc<Share>, rel: String },
}

impl Destination {
    /// A temporary file that will replace the destination on commit.
    pub fn create_file(&self) -> Result<AtomicFile> {
        match self {
            Destination::Path(dest) => AtomicFile::create(dest),
            Destination::InFolder { folder, rel } => AtomicFile::create_in(folder, rel),
        }
    }

    /// Where it is, for reports and messages.
    pub fn shown(&self) -> PathBuf {
        match self {
            Destination::Path(dest) => dest.clone(),
            Destination::InFolder { folder, rel } => folder.shown(rel),
        }
    }

    /// The regular file there now, opened for reading, if there is one (a link is never followed).
    pub fn open_current(&self) -> Result<Option<(File, super::Meta)>> {
        let opened = match self {
            Destination::Path(dest) => match std::fs::symlink_metadata(dest) {
                Ok(metadata) if metadata.is_file() => File::open(dest)
                    .map(|file| (file, super::Meta::from_std(&metadata)))
                    .map_err(|e| Error::io(dest, e)),
                _ => return Ok(None),
            },
            Destination::InFolder { folder, rel } => folder.open_file(rel),
        };
        match opened {
            Ok(opened) => Ok(Some(opened)),
            Err(Error::NotFound { .. } | Error::NotAFile { .. } | Error::Symlink { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl From<PathBuf> for Destination {
    fn from(dest: PathBuf) -> Self {
        Destination::Path(dest)
    }
}

/// Start writeback every this many bytes.
pub const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

impl AtomicFile {
    /// Starts a temporary file next to `dest`. Its permissions are those of an existing `dest`, or `rw-r--r--`.
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let permissions = std::fs::metadata(dest).map(|m| m.permissions()).unwrap_or_else(|_| default_permissions());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tandem-"))
            .suffix(".tmp")
            .permissions(permissions)
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(AtomicFile::with(Place::Beside { temp, dest: dest.to_path_buf() }))
    }

    /// Starts a file that will become `rel` in the served `share`: it waits unnamed (or in `.tandem/tmp`),
    /// readable by the server alone, and reaches `rel` by a link or rename beneath the share's root that follows
    /// no link.
    pub fn create_in(share: &Arc<Share>, rel: &str) -> Result<Self> {
        let (file, name) = share.temp_file_for(rel)?;
        let shown = match &name {
            TempName::Named(name) => share.temp_shown(name),
            TempName::Unnamed => PathBuf::from(format!("{} (being written)", share.shown(rel).display())),
        };
        let temp = JailedTemp { file, share: share.clone(), name, placed: false, rel: rel.to_string(), shown };
        Ok(AtomicFile::with(Place::Jailed(temp)))
    }

    fn with(place: Place) -> Self {
        AtomicFile { place, written: 0, flushed: 0 }
    }

    fn file(&self) -> &File {
        match &self.place {
            Place::Beside { temp, .. } => temp.as_file(),
            Place::Jailed(temp) => &temp.file,
        }
    }

    /// Where the temporary file is, for error messages and tests.
    pub fn temp_path(&self) -> &Path {
        match &self.place {
            Place::Beside { temp, .. } => temp.path(),
            Place::Jailed(temp) => &temp.shown,
        }
    }

    /// Gives the file these permission bits when it is committed. Only `rwxrwxrwx` travel: setuid, setgid and
    /// sticky bits from the other side are dropped.
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let permissions = Permissions::from_mode(mode & 0o777);
            self.file().set_permissions(permissions).map_err(|e| Error::io(self.temp_path(), e))?;
        }
        let _ = mode;
        Ok(())
    }

    /// Sets the modification time, flushes the bytes to disk, and renames the file over the destination, durably.
    pub fn commit(mut self, mtime_ns: Option<i64>) -> Result<()> {
        self.stage(mtime_ns)?;
        sync_staged(&[&self])?;
        let dest = self.rename_into_place()?;
        sync_renamed(&[dest])
    }

    /// Gives the file its modification time, for a group commit: then [`sync_staged`] for the group,
    /// [`AtomicFile::rename_into_place`] for each file, [`sync_renamed`] for all. (The sync writes the bytes; asking
    /// for each small file's writeback here would cost a disk request per file.)
    pub fn stage(&mut self, mtime_ns: Option<i64>) -> Result<()> {
        if let Some(mtime_ns) = mtime_ns {
            self.file().set_modified(ns_to_system_time(mtime_ns)).map_err(|e| Error::io(self.temp_path(), e))?;
        }
        Ok(())
    }

    /// Renames a staged file over its destination (in a share, the version it replaces goes to the trash first).
    /// Only after [`sync_staged`] has made its bytes durable; nobody may be told the file is there until
    /// [`sync_renamed`] has made the rename durable too.
    pub fn rename_into_place(self) -> Result<Renamed> {
        match self.place {
            Place::Beside { temp, dest } => {
                temp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
                Ok(Renamed::Path(dest))
            }
            Place::Jailed(mut temp) => {
                let dir = temp.share.place_file(&temp.file, &temp.name, &temp.rel)?;
                temp.placed = true;
                Ok(Renamed::Folder { dir, shown: temp.share.shown(&temp.rel) })
            }
        }
    }
}

/// How many received files, or bytes, are staged before a group commit: enough to spread a disk flush over
/// many small files, while a large file still commits on its own.
pub const GROUP_FILES: usize = 64;
pub const GROUP_BYTES: u64 = 8 * 1024 * 1024;

/// Makes staged files durable before their renames: an fsync for one file; for several, one sync of the
/// filesystem, which costs one disk flush instead of one per file.
pub fn sync_staged(files: &[&AtomicFile]) -> Result<()> {
    match files {
        [] => Ok(()),
        [one] => one.file().sync_all().map_err(|e| Error::io(one.temp_path(), e)),
        [first, ..] => sync_filesystem(first.file(), first.temp_path()),
    }
}

/// Makes renames durable: one fsync of each folder they happened in.
pub fn sync_renamed(renamed: &[Renamed]) -> Result<()> {
    let mut paths: Vec<&Path> = Vec::new();
    let mut folders: Vec<(&OwnedFd, &Path)> = Vec::new();
    for one in renamed {
        match one {
            Renamed::Path(dest) => {
                paths.push(dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
            }
            Renamed::Folder { dir, shown } => folders.push((dir, shown.parent().unwrap_or(shown))),
        }
    }
    paths.sort();
    paths.dedup();
    for folder in paths {
        File::open(folder).and_then(|dir| dir.sync_all()).map_err(|e| Error::io(folder, e))?;
    }
    folders.sort_by_key(|(_, shown)| *shown);
    folders.dedup_by_key(|(_, shown)| *shown);
    for (dir, shown) in folders {
        rustix::fs::fsync(dir).map_err(|e| Error::io(shown, e.into()))?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn sync_filesystem(file: &File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(Error::io(path, std::io::Error::last_os_error()))
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_file: &File, _path: &Path) -> Result<()> {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(())
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&mut self.file()).write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed >= WRITEBACK_STEP {
            start_writeback(self.file(), self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&mut self.file()).flush()
    }
}

/// Asks the kernel to begin writing a range to disk without waiting for it; `commit`'s fsync still waits.
#[cfg(target_os = "linux")]
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the call only schedules I/O on it.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

fn ns_to_system_time(ns: i64) -> std::time::SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn default_permissions() -> Permissions {
    #[cfg(unix)]
    {
        std::os::unix::fs::PermissionsExt::from_mode(0o644)
    }
    #[cfg(not(unix))]
    {
        File::open(".").and_then(|f| f.metadata()).map(|m| m.permissions()).expect("metadata of current folder")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_and_drop_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.txt");
        std::fs::write(&dest, b"old").unwrap();

        let mut dropped = AtomicFile::create(&dest).unwrap();
        dropped.write_all(b"half").unwrap();
        drop(dropped);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut file = AtomicFile::create(&dest).unwrap();
        file.write_all(b"new").unwrap();
        file.commit(Some(1_600_000_000_000_000_123)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        let mtime = std::fs::metadata(&dest).unwrap().modified().unwrap();
        assert_eq!(crate::share::system_time_to_ns(mtime), 1_600_000_000_000_000_123);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn only_stale_temporary_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        let touch = |rel: &str, time: Option<std::time::SystemTime>| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = File::create(&path).unwrap();
            if let Some(time) = time {
                file.set_modified(time).unwrap();
            }
        };
        touch("a/.x.bin.tandem-abc.tmp", Some(old));
        touch(".y.tandem-def.tmp", Some(old));
        touch("a/.busy.tandem-ghi.tmp", None);
        touch("a/kept.tmp", Some(old));
        touch(".tandem/.state.tandem-jkl.tmp", Some(old));
        // Every file here changed just now (an old mtime is no excuse): nothing is stale yet.
        assert_eq!(remove_stale_temps(dir.path(), Duration::from_secs(600)), 0);
        assert!(dir.path().join("a/.x.bin.tandem-abc.tmp").exists(), "a staged file with an old mtime is kept");
        // Seen from far enough ahead, all three temporary files outside the state folder are.
        assert_eq!(remove_stale_temps(dir.path(), Duration::ZERO), 3);
        assert!(!dir.path().join("a/.busy.tandem-ghi.tmp").exists());
        assert!(dir.path().join("a/kept.tmp").exists(), "a user's file is never touched");
        assert!(dir.path().join(".tandem/.state.tandem-jkl.tmp").exists(), "the state folder is not swept");
        assert!(!dir.path().join("a/.x.bin.tandem-abc.tmp").exists());
    }
}
