//! The wire form of one entry of a listing: a file, folder or symbolic link with its path, size, mtime and, once
//! known, its MD5.

use serde::{Deserialize, Serialize};

use crate::digest::Md5Digest;

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
