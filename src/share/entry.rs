//! What tandem reads of an entry in a folder: [`Meta`] from a `stat`, the wire [`Entry`] built from it, and
//! whether a file is still being written.

use std::fs::Metadata;
use std::time::SystemTime;

use crate::digest::{FileStamp, ctime_ns, mtime_ns};
use crate::protocol::{Entry, EntryKind};
use crate::timefmt::system_time_to_ns;

/// The per-root folder for tandem's own state; never listed, hashed, served or synced.
pub const STATE_DIR: &str = ".tandem";

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
