//! The share's trash, `.tandem/trash/`: nothing tandem deletes or replaces is destroyed. Each entry keeps its
//! relative path under a folder named for the time it was moved, so a person can find it and copy it back.

use std::path::{Path, PathBuf};

use super::STATE_DIR;
use crate::error::{Error, Result};

/// Moves `abs` (the entry at relative path `rel` in the share at `root`) into the trash; returns where it went.
pub fn move_to_trash(root: &Path, rel: &str, abs: &Path) -> Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    let trash = root.join(STATE_DIR).join("trash");
    let mut folder = trash.join(&stamp);
    let mut n = 1;
    while folder.join(rel).exists() {
        n += 1;
        folder = trash.join(format!("{stamp}-{n}"));
    }
    let target = folder.join(rel);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::rename(abs, &target).map_err(|e| Error::io(abs, e))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_relative_path_and_never_overwrites() {
        let root = tempfile::tempdir().unwrap();
        for round in 0..2 {
            let file = root.path().join("a/b.txt");
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, format!("version {round}")).unwrap();
            let kept = move_to_trash(root.path(), "a/b.txt", &file).unwrap();
            assert!(kept.starts_with(root.path().join(".tandem/trash")));
            assert!(kept.ends_with("a/b.txt"));
            assert_eq!(std::fs::read_to_string(&kept).unwrap(), format!("version {round}"));
            assert!(!file.exists());
        }
    }
}
