//! The local file watcher: turns filesystem events under a synced folder into "something changed" signals,
//! ignoring tandem's own state (`.tandem/`) and the temporary files of writes in progress, so sync's own
//! bookkeeping never wakes it up. What changed is not passed on: the pass that follows rescans, which also
//! covers whatever a watcher can miss.

use std::path::Path;

use notify::event::{CreateKind, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::share::events::is_change;
use crate::share::{STATE_DIR, is_temp_name};

/// What a relevant event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirty {
    /// Something changed.
    Changed,
    /// A folder was created. The watcher reports it before it watches it, so whatever lands inside it in between
    /// is never reported: the folder deserves a second look a moment later.
    NewFolder,
}

/// Watches `root` recursively; each relevant event sends a [`Dirty`] on `dirty`. Dropping the watcher stops it.
pub fn watch(root: &Path, dirty: mpsc::UnboundedSender<Dirty>) -> Result<RecommendedWatcher> {
    // Events name absolute paths, so the root they are compared with must be absolute too.
    let root = &root.canonicalize().map_err(|e| Error::io(root, e))?;
    let base = root.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) if event.need_rescan() => Some(Dirty::Changed),
            Ok(event) if is_change(&event.kind) && event.paths.iter().any(|path| is_content(&base, path)) => {
                Some(match event.kind {
                    EventKind::Create(CreateKind::Folder) => Dirty::NewFolder,
                    _ => Dirty::Changed,
                })
            }
            Ok(_) => None,
            // The watcher lost track: assume anything changed.
            Err(_) => Some(Dirty::Changed),
        };
        if let Some(news) = relevant {
            let _ = dirty.send(news);
        }
    })
    .map_err(|e| watch_error(root, e))?;
    watcher.watch(root, RecursiveMode::Recursive).map_err(|e| watch_error(root, e))?;
    Ok(watcher)
}

/// Whether an event path is synced content rather than tandem's own files.
fn is_content(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else { return false };
    let in_state = rel.components().any(|c| c.as_os_str() == STATE_DIR);
    let temp = rel.file_name().and_then(|n| n.to_str()).is_some_and(is_temp_name);
    !rel.as_os_str().is_empty() && !in_state && !temp
}

fn watch_error(root: &Path, e: notify::Error) -> Error {
    Error::CannotWatch { path: root.to_path_buf(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_temporary_files_are_not_content() {
        let root = Path::new("/home/me/Sync");
        assert!(is_content(root, &root.join("docs/a.txt")));
        assert!(!is_content(root, &root.join(".tandem/sync.sqlite-wal")));
        assert!(!is_content(root, &root.join("docs/.a.txt.tandem-Qw12.tmp")));
        assert!(!is_content(root, Path::new("/elsewhere/x")));
    }

    #[tokio::test]
    async fn a_new_folder_is_told_apart_from_other_changes() {
        let root = tempfile::tempdir().unwrap();
        let (dirty_tx, mut dirty) = mpsc::unbounded_channel();
        let _watcher = watch(root.path(), dirty_tx).unwrap();
        std::fs::create_dir(root.path().join("photos")).unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), dirty.recv()).await.unwrap();
        assert_eq!(first, Some(Dirty::NewFolder));
        std::fs::write(root.path().join("notes.txt"), b"x").unwrap();
        let second = tokio::time::timeout(std::time::Duration::from_secs(20), dirty.recv()).await.unwrap();
        assert_eq!(second, Some(Dirty::Changed));
    }
}
