//! What the download cache holds, as the TUI knows it: the MD5s and sizes the worker last reported. The remote
//! pane marks a file whose known MD5 is among them; a remote file of a size the cache holds is worth hashing to
//! find out, and one of any other size cannot be cached. Pure state: the worker reads the cache, never the UI.

use std::collections::HashSet;

use super::pane::{HashState, PaneState};
use crate::digest::Md5Digest;
use crate::share::{Entry, EntryKind};

#[derive(Debug, Clone, Default)]
pub struct CachedObjects {
    md5s: HashSet<Md5Digest>,
    sizes: HashSet<u64>,
}

impl CachedObjects {
    /// From the worker's report: MD5 and size of each object.
    pub fn new(objects: &[(Md5Digest, u64)]) -> Self {
        CachedObjects {
            md5s: objects.iter().map(|(md5, _)| *md5).collect(),
            sizes: objects.iter().map(|(_, size)| *size).collect(),
        }
    }

    /// Whether the cache holds the bytes of `entry` of `pane`, as far as its MD5 is known.
    pub fn holds(&self, pane: &PaneState, entry: &Entry) -> bool {
        if entry.kind != EntryKind::File || !self.sizes.contains(&entry.size) {
            return false;
        }
        let md5 = match pane.hashes.get(entry.name()) {
            Some(HashState::Known(md5)) => Some(*md5),
            _ => entry.md5,
        };
        md5.is_some_and(|md5| self.md5s.contains(&md5))
    }

    /// Up to `limit` files of `pane` whose size the cache holds and whose MD5 is neither known nor asked for.
    pub fn candidates(&self, pane: &PaneState, limit: usize) -> Vec<String> {
        if pane.loading || self.sizes.is_empty() {
            return Vec::new();
        }
        pane.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.md5.is_none() && self.sizes.contains(&e.size))
            .filter(|e| !pane.hashes.contains_key(e.name()))
            .take(limit)
            .map(|e| e.name().to_string())
            .collect()
    }
}
