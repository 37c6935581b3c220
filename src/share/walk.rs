//! Recursive, sorted, pre-order directory walk beneath a [`Share`]'s root handle. It opens each folder relative to
//! its parent's handle without following links, so a folder swapped for a link while the walk runs is never
//! entered; links are listed with their targets. It never enters `.tandem`, and a walk of a local folder
//! ([`Walk::local`]) also leaves out the temporary files of the client's own writes in progress.
//!
//! It reads one folder at a time, so memory grows with the depth and the widest folder, not with the tree.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::jail::{list_names, read_link_at, stat_at};
use super::{Entry, EntryKind, Meta, STATE_DIR, Share};
use crate::error::{Error, Result};

/// An iterator over every entry below a folder. A folder that cannot be read is yielded, then an
/// [`Error::UnreadableFolder`] naming it, and the walk goes on without its contents.
pub struct Walk {
    /// Folders being read, innermost last: each folder's handle and its sorted entries not yet yielded.
    stack: Vec<(OwnedFd, std::vec::IntoIter<(Entry, Meta)>)>,
    /// Folders this many levels down are listed but not entered.
    max_depth: Option<u32>,
    /// Leave out names of [`super::AtomicFile`]'s temporary files (a client's own folder).
    hide_temp_files: bool,
    /// The root's location, for messages.
    root: PathBuf,
    /// Why the folder just yielded could not be entered, yielded next.
    unreadable: Option<Error>,
}

impl Walk {
    /// Walks the folder `rel` of `share` (a clean relative path, `""` for the root).
    pub fn new(share: &Share, rel: &str) -> Result<Self> {
        let dir = share.open_dir(rel)?;
        let root = share.root().to_path_buf();
        let entries = read_sorted(&dir, rel, &root)?;
        Ok(Walk {
            stack: vec![(dir, entries.into_iter())],
            max_depth: None,
            hide_temp_files: false,
            root,
            unreadable: None,
        })
    }

    /// Walks the folder `rel` of a client's local folder `root`, without the client's temporary files.
    pub fn local(root: &Path, rel: &str) -> Result<Self> {
        let mut walk = Walk::new(&Share::open(root)?, rel)?;
        walk.hide_temp_files = true;
        Ok(walk)
    }

    /// Limits the walk to `depth` levels (`Some(1)`: the folder's own entries); `None` walks everything.
    pub fn max_depth(mut self, depth: Option<u32>) -> Self {
        self.max_depth = depth;
        self
    }

    /// The same walk, each entry with the [`Meta`] it was read from (its stamp, to check a hash cache with no
    /// further system call).
    pub fn with_meta(mut self) -> impl Iterator<Item = Result<(Entry, Meta)>> {
        std::iter::from_fn(move || self.next_with_meta())
    }

    fn next_with_meta(&mut self) -> Option<Result<(Entry, Meta)>> {
        if let Some(error) = self.unreadable.take() {
            return Some(Err(error));
        }
        loop {
            let depth = self.stack.len();
            let (dir, entries) = self.stack.last_mut()?;
            let Some((entry, meta)) = entries.next() else {
                self.stack.pop();
                continue;
            };
            if self.hide_temp_files && super::is_temp_name(entry.name()) {
                continue;
            }
            let may_descend = self.max_depth.is_none_or(|max| depth < max as usize);
            if entry.kind == EntryKind::Dir && may_descend {
                let opened = super::jail::descend(dir.as_fd(), &self.root, entry.name(), false).map_err(|e| match e {
                    // Swapped for a link since it was listed.
                    Error::Symlink { .. } => Error::Symlink { path: entry.path.clone(), link: entry.path.clone() },
                    other => other,
                });
                match opened.and_then(|child| Ok((read_sorted(&child, &entry.path, &self.root)?, child))) {
                    Ok((children, child)) => self.stack.push((child, children.into_iter())),
                    Err(Error::Io { source, .. }) => {
                        self.unreadable = Some(Error::UnreadableFolder { path: entry.path.clone(), source });
                    }
                    Err(err) => self.unreadable = Some(err),
                }
            }
            return Some(Ok((entry, meta)));
        }
    }
}

impl Iterator for Walk {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_meta().map(|found| found.map(|(entry, _)| entry))
    }
}

/// Reads the entries of the open folder `dir` (at `rel`), sorted by name, without `.tandem`.
fn read_sorted(dir: &OwnedFd, rel: &str, root: &Path) -> Result<Vec<(Entry, Meta)>> {
    let failed = |e| Error::io(root.join(rel), e);
    let mut entries = Vec::new();
    for name in list_names(dir.as_fd()).map_err(failed)? {
        if name == STATE_DIR {
            continue;
        }
        let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        // Gone between the listing and the look: it is simply no longer there.
        let Some(meta) = stat_at(dir.as_fd(), &name).map_err(|e| Error::io(root.join(&path), e))? else {
            continue;
        };
        let mut entry = Entry::from_meta(path, &meta);
        if meta.kind == EntryKind::Symlink {
            entry.target = read_link_at(dir.as_fd(), &name).ok();
        }
        entries.push((entry, meta));
    }
    entries.sort_unstable_by(|a, b| a.0.path.cmp(&b.0.path));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn walks_sorted_pre_order_skipping_state() {
        let dir = tempfile::tempdir().unwrap();
        for path in ["b/z.txt", "b/a/deep.txt", "a.txt", ".tandem/hashes", "c/.tandem/x", "b/.a.txt.tandem-Xy12.tmp"] {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"x").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let walk = Walk::local(dir.path(), "").unwrap();
        let listed: Vec<(String, EntryKind)> = walk.map(|e| e.unwrap()).map(|e| (e.path, e.kind)).collect();
        let expected = [
            ("a.txt", EntryKind::File),
            ("b", EntryKind::Dir),
            ("b/a", EntryKind::Dir),
            ("b/a/deep.txt", EntryKind::File),
            ("b/z.txt", EntryKind::File),
            ("c", EntryKind::Dir),
            ("link", EntryKind::Symlink),
        ];
        let expected: Vec<(String, EntryKind)> = expected.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(listed, expected);
        let link = Walk::local(dir.path(), "").unwrap().map(|e| e.unwrap()).find(|e| e.path == "link").unwrap();
        assert_eq!(link.target.as_deref(), Some("/etc"));

        let top: Vec<String> =
            Walk::local(dir.path(), "").unwrap().max_depth(Some(1)).map(|e| e.unwrap().path).collect();
        assert_eq!(top, ["a.txt", "b", "c", "link"]);
        let two: Vec<String> =
            Walk::local(dir.path(), "b").unwrap().max_depth(Some(2)).map(|e| e.unwrap().path).collect();
        assert_eq!(two, ["b/a", "b/a/deep.txt", "b/z.txt"]);
    }
}
