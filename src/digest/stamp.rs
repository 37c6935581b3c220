//! The stamp of one version of a file, read from its metadata: what the hash caches are keyed by.

use std::fs::Metadata;
use std::time::SystemTime;

use crate::timefmt::system_time_to_ns;

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

/// A file's mtime in nanoseconds since the epoch; 0 where the platform has none.
pub fn mtime_ns(metadata: &Metadata) -> i64 {
    metadata.modified().map(system_time_to_ns).unwrap_or(0)
}

/// A file's ctime in nanoseconds since the epoch; 0 where the platform has none.
pub fn ctime_ns(metadata: &Metadata) -> i64 {
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
