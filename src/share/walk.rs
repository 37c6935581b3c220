//! Recursive, sorted, pre-order directory walk that never follows symlinks, never enters `.tandem`, and skips
//! the temporary files of writes in progress.
//!
//! It reads one folder at a time, so memory grows with the depth and the widest folder, not with the tree.

use std::fs;
use std::path::PathBuf;

use super::{Entry, EntryKind, STATE_DIR};
use crate::error::{Error, Result};

/// An iterator over every entry below a folder. Folders that cannot be read yield an error item and are skipped.
pub struct Walk {
    /// Folders being read, innermost last: the sorted entries not yet yielded.
    stack: Vec<std::vec::IntoIter<Entry>>,
    /// Absolute location of the share root the relative paths are based on.
    root: PathBuf,
    /// Folders this many levels down are listed but not entered.
    max_depth: Option<u32>,
}

impl Walk {
    /// Walks the folder at `root/rel`; `rel` is a clean relative path (`""` for the root).
    pub fn new(root: PathBuf, rel: &str) -> Result<Self> {
        let entries = read_sorted(&root, rel)?;
        Ok(Walk { stack: vec![entries.into_iter()], root, max_depth: None })
    }

    /// Limits the walk to `depth` levels (`Some(1)`: the folder's own entries); `None` walks everything.
    pub fn max_depth(mut self, depth: Option<u32>) -> Self {
        self.max_depth = depth;
        self
    }
}

impl Iterator for Walk {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(entry) = top.next() else {
                self.stack.pop();
                continue;
            };
            let may_descend = self.max_depth.is_none_or(|depth| self.stack.len() < depth as usize);
            if entry.kind == EntryKind::Dir && may_descend {
                match read_sorted(&self.root, &entry.path) {
                    Ok(children) => self.stack.push(children.into_iter()),
                    Err(err) => return Some(Err(err)),
                }
            }
            return Some(Ok(entry));
        }
    }
}

/// Reads one folder's entries, sorted by name, without `.tandem` and without names that are not UTF-8.
fn read_sorted(root: &std::path::Path, rel: &str) -> Result<Vec<Entry>> {
    let dir = root.join(rel);
    let mut entries = Vec::new();
    for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let item = item.map_err(|e| Error::io(&dir, e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(path = %item.path().display(), "skipping a name that is not valid UTF-8");
            continue;
        };
        // tandem's own state, and files it is still writing, are not content.
        if name == STATE_DIR || super::is_temp_name(name) {
            continue;
        }
        let path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
        match item.metadata() {
            Ok(metadata) => entries.push(Entry::from_metadata(path, &metadata)),
            // Deleted between read_dir and stat: it is simply no longer there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(item.path(), e)),
        }
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let walk = Walk::new(dir.path().to_path_buf(), "").unwrap();
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

        let top: Vec<String> =
            Walk::new(dir.path().to_path_buf(), "").unwrap().max_depth(Some(1)).map(|e| e.unwrap().path).collect();
        assert_eq!(top, ["a.txt", "b", "c", "link"]);
        let two: Vec<String> =
            Walk::new(dir.path().to_path_buf(), "b").unwrap().max_depth(Some(2)).map(|e| e.unwrap().path).collect();
        assert_eq!(two, ["b/a", "b/a/deep.txt", "b/z.txt"]);
    }
}
