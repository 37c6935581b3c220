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
    while !fits(&folder, rel) {
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

/// Whether `rel` can be placed in `folder`: nothing there yet, and no file where one of its folders must go.
fn fits(folder: &Path, rel: &str) -> bool {
    if std::fs::symlink_metadata(folder.join(rel)).is_ok() {
        return false;
    }
    let mut prefix = PathBuf::from(folder);
    let parents: Vec<&str> = rel.split('/').collect();
    for part in &parents[..parents.len().saturating_sub(1)] {
        prefix.push(part);
        if std::fs::symlink_metadata(&prefix).is_ok_and(|m| !m.is_dir()) {
            return false;
        }
    }
    true
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

    #[test]
    fn a_file_and_a_folder_of_one_name_both_fit() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f"), b"a file named f").unwrap();
        let first = move_to_trash(root.path(), "f", &root.path().join("f")).unwrap();
        std::fs::create_dir(root.path().join("f")).unwrap();
        std::fs::write(root.path().join("f/y"), b"inside a folder named f").unwrap();
        let second = move_to_trash(root.path(), "f/y", &root.path().join("f/y")).unwrap();
        assert_eq!(std::fs::read(first).unwrap(), b"a file named f");
        assert_eq!(std::fs::read(second).unwrap(), b"inside a folder named f");
    }
}
