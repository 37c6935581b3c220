//! Metadata of one entry in a share, as listed and sent over the wire, and the stamp that tells whether a file
//! changed.

use std::fs::Metadata;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Md5Digest;

/// The per-root folder for tandem's own state; never listed, hashed, served or synced.
pub const STATE_DIR: &str = ".tandem";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
        }
    }
}

/// One file, folder or symbolic link, with its path relative to the share root (`/`-separated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    /// Bytes for a file; for a symlink, the length of its target text; for a folder, what the filesystem says.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch (negative before 1970).
    pub mtime_ns: i64,
    /// Set by hash requests, and on download tickets when the server already knows it.
    #[serde(default)]
    pub md5: Option<Md5Digest>,
    /// The host name of the client holding a lock on this path (`tandem lock`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// For a symbolic link, the text it points at. tandem lists links and never follows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Entry {
    /// Builds an entry from metadata read without following symlinks.
    pub fn from_metadata(path: String, metadata: &Metadata) -> Self {
        Entry::from_meta(path, &Meta::from_std(metadata))
    }

    /// Builds an entry from [`Meta`] read without following symlinks.
    pub fn from_meta(path: String, meta: &Meta) -> Self {
        let (size, mtime_ns) = (meta.size, meta.mtime_ns);
        Entry { path, kind: meta.kind, size, mtime_ns, md5: None, locked_by: None, target: None }
    }

    /// About how many bytes this entry takes in an answer frame: what batches are sized by.
    pub fn weight(&self) -> usize {
        64 + self.path.len()
            + self.target.as_ref().map_or(0, String::len)
            + self.locked_by.as_ref().map_or(0, String::len)
    }

    /// The last path component.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// What tandem reads of an entry's inode, from `std` metadata or from a `stat` made relative to a folder handle
/// ([`crate::share::Share`]), always of the entry itself, never of what a symlink points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    /// When the inode last changed (a write, a rename, a chmod): with the inode, what tells a file swapped in or
    /// rewritten under a restored mtime from the one that was hashed.
    pub ctime_ns: i64,
    pub inode: u64,
    /// The filesystem the entry lives on: a rename cannot cross from one to another.
    pub device: u64,
    /// Permission bits as `ls -l` shows them, with setuid, setgid and sticky (`0o7777`); only `0o777` travel.
    pub mode: u32,
}

impl Meta {
    pub fn from_std(metadata: &Metadata) -> Self {
        let file_type = metadata.file_type();
        let kind = if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        #[cfg(unix)]
        let (inode, device) =
            (std::os::unix::fs::MetadataExt::ino(metadata), std::os::unix::fs::MetadataExt::dev(metadata));
        #[cfg(not(unix))]
        let (inode, device) = (0, 0);
        #[cfg(unix)]
        let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777;
        #[cfg(not(unix))]
        let mode = 0o644;
        Meta {
            kind,
            size: metadata.len(),
            mtime_ns: mtime_ns(metadata),
            ctime_ns: ctime_ns(metadata),
            inode,
            device,
            mode,
        }
    }

    /// From a raw `stat`. Anything that is neither a folder nor a symlink (a fifo, a socket, a device) counts as
    /// a file here; opening it for reading is refused later, since it is not a regular one.
    #[allow(clippy::unnecessary_cast)] // field types differ between targets
    pub fn from_stat(stat: &rustix::fs::Stat) -> Self {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(stat.st_mode as _) {
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::File,
        };
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Meta {
            kind,
            size: (stat.st_size as i64).max(0) as u64,
            mtime_ns: ns(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime_ns: ns(stat.st_ctime as i64, stat.st_ctime_nsec as i64),
            inode: stat.st_ino as u64,
            device: stat.st_dev as u64,
            mode: (stat.st_mode as u32) & 0o7777,
        }
    }

    pub fn stamp(&self) -> FileStamp {
        FileStamp { size: self.size, mtime_ns: self.mtime_ns, ctime_ns: self.ctime_ns, inode: self.inode }
    }
}

/// What identifies one version of a file without reading it: if any part differs, the bytes may differ. Size and
/// mtime alone miss two files swapped by renames, and a rewrite that puts the old mtime back; the inode and the
/// ctime (which no program can set) catch both, as in git's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(metadata: &Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        FileStamp { size: metadata.len(), mtime_ns: mtime_ns(metadata), ctime_ns: ctime_ns(metadata), inode }
    }

    /// Whether the file was modified so recently that a stamp cannot vouch for its bytes: filesystems tick their
    /// clocks coarsely, so a second same-size write within one tick keeps the stamp. Such a file is hashed
    /// again rather than trusted (git's "racily clean" rule).
    pub fn is_recent(&self) -> bool {
        let now = system_time_to_ns(SystemTime::now());
        now.saturating_sub(self.mtime_ns) < RACY_WINDOW_NS
    }
}

/// How recent a modification must be for [`FileStamp::is_recent`].
const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Whether a file of `size` bytes modified at `mtime_ns` looks like one a program is still writing: large, and
/// modified within the last [`SETTLE_NS`] (or a moment in the future, for a clock that steps). Hashing such a
/// file on every watcher event would read it again and again as it grows; it is hashed once it has settled.
pub fn is_being_written(size: u64, mtime_ns: i64) -> bool {
    is_being_written_at(size, mtime_ns, system_time_to_ns(SystemTime::now()))
}

/// [`is_being_written`] at the time `now_ns`.
pub fn is_being_written_at(size: u64, mtime_ns: i64, now_ns: i64) -> bool {
    size >= SETTLE_MIN_SIZE && (-1_000_000_000..SETTLE_NS).contains(&now_ns.saturating_sub(mtime_ns))
}

/// Files smaller than this are hashed at once: reading them again costs less than waiting.
const SETTLE_MIN_SIZE: u64 = 4 * 1024 * 1024;
/// How long a large file must be left alone before it is taken to be written.
const SETTLE_NS: i64 = 200_000_000;

fn mtime_ns(metadata: &Metadata) -> i64 {
    metadata.modified().map(system_time_to_ns).unwrap_or(0)
}

fn ctime_ns(metadata: &Metadata) -> i64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        metadata.ctime().saturating_mul(1_000_000_000).saturating_add(metadata.ctime_nsec())
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        0
    }
}

/// A file's permission bits as `ls -l` shows them (`0o755`), the ones that travel: setuid, setgid and sticky
/// never leave this machine. `None` where the platform has none.
pub fn permission_bits(metadata: &Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        Some(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Nanoseconds since the Unix epoch, saturating outside the years 1677 to 2262.
pub fn system_time_to_ns(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map(|ns| -ns).unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_modified_just_now_are_still_being_written() {
        let now = 1_700_000_000_000_000_000;
        let big = SETTLE_MIN_SIZE;
        assert!(is_being_written_at(big, now - 100_000_000, now));
        assert!(is_being_written_at(big, now + 500_000_000, now), "a clock that stepped back a little");
        assert!(!is_being_written_at(big, now - 300_000_000, now), "left alone long enough");
        assert!(!is_being_written_at(big, now + 5_000_000_000, now), "a date in the future is not a write");
        assert!(!is_being_written_at(big - 1, now, now), "small files are hashed at once");
    }
}
