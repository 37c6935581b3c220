//! The path sandbox: turns a path that came from the network into a file inside the share, or refuses it.
//!
//! Two steps. [`normalize`] works on the text alone: it refuses NUL bytes, absolute paths, `..` that climbs out
//! of the root, over-long names and anything inside `.tandem`, and returns a clean `/`-separated relative path.
//! [`Share::resolve`] then asks the filesystem: it follows symlinks and refuses any path whose real location is
//! outside the root or inside its `.tandem` folder. A missing path is judged by its deepest folder that exists,
//! so "no such file" never tells a client what exists behind a link that leads out.

use std::path::{Component, Path, PathBuf};

use super::STATE_DIR;
use crate::error::{Error, Result};

/// Longest accepted file name, in bytes (the common filesystem limit).
const MAX_NAME_LEN: usize = 255;
/// Longest accepted relative path, in bytes.
const MAX_PATH_LEN: usize = 4096;

/// A served root directory, held in canonical form.
#[derive(Debug, Clone)]
pub struct Share {
    root: PathBuf,
}

/// A remote path that passed the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Clean relative path, `""` for the root.
    pub rel: String,
    /// The real location on disk, symlinks resolved, inside the root.
    pub abs: PathBuf,
}

impl Share {
    /// Opens `dir` as a share root; it must be an existing folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        if !root.is_dir() {
            return Err(Error::io(dir, std::io::Error::other("not a folder")));
        }
        Ok(Share { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.tandem` folder of this share.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// Resolves an existing remote path to its real location inside the share.
    pub fn resolve(&self, remote: &str) -> Result<Resolved> {
        let rel = normalize(remote)?;
        let joined = self.root.join(&rel);
        let abs = match joined.canonicalize() {
            Ok(abs) => abs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink exists but leads nowhere; say where it tried to go if that was outside.
                if std::fs::symlink_metadata(&joined).is_ok() {
                    return Err(Error::InvalidPath { path: remote.to_string(), reason: "symbolic link leads nowhere" });
                }
                // "No such file" below a link that leads outside would tell what exists out there.
                self.existing_ancestor(remote, &joined)?;
                return Err(Error::NotFound { path: rel });
            }
            Err(e) => return Err(Error::io(joined, e)),
        };
        self.check_inside(remote, &abs)?;
        Ok(Resolved { rel, abs })
    }

    /// Resolves a path that a write will create or replace: its text must pass [`normalize`] and name something
    /// below the root, and the deepest folder of it that exists must really be inside the share. Missing parent
    /// folders are allowed (the caller creates them). `abs` is where the entry will be.
    pub fn resolve_for_write(&self, remote: &str) -> Result<Resolved> {
        let rel = normalize(remote)?;
        if rel.is_empty() {
            return Err(Error::InvalidPath { path: remote.to_string(), reason: "names the share itself" });
        }
        let joined = self.root.join(&rel);
        let (existing, real) = self.existing_ancestor(remote, &joined)?;
        let below = joined.strip_prefix(&existing).unwrap_or(Path::new(""));
        Ok(Resolved { rel, abs: real.join(below) })
    }

    /// The deepest folder above `joined` that exists, as joined and in its real location, which must be inside.
    fn existing_ancestor(&self, remote: &str, joined: &Path) -> Result<(PathBuf, PathBuf)> {
        let mut existing = joined.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone());
        while !existing.exists() {
            match existing.parent() {
                Some(parent) => existing = parent.to_path_buf(),
                None => break,
            }
        }
        let real = existing.canonicalize().map_err(|e| Error::io(&existing, e))?;
        self.check_inside(remote, &real)?;
        Ok((existing, real))
    }

    /// Refuses a real (canonical) location outside the root or inside its `.tandem` folder.
    fn check_inside(&self, remote: &str, real: &Path) -> Result<()> {
        let inside = real.strip_prefix(&self.root).map_err(|_| Error::InvalidPath {
            path: remote.to_string(),
            reason: "a symbolic link leads outside the share",
        })?;
        if inside.components().any(|c| c.as_os_str() == STATE_DIR) {
            return Err(Error::InvalidPath { path: remote.to_string(), reason: "tandem's state folder is private" });
        }
        Ok(())
    }
}

/// Checks a remote path's text and returns it as a clean relative path (`""` for the root).
pub fn normalize(remote: &str) -> Result<String> {
    let refuse = |reason| Err(Error::InvalidPath { path: remote.to_string(), reason });
    if remote.contains('\0') {
        return refuse("contains a NUL byte");
    }
    if remote.len() > MAX_PATH_LEN {
        return refuse("longer than 4096 bytes");
    }
    let path = Path::new(remote);
    if path.has_root() {
        return refuse("absolute paths are not allowed; give a path relative to the share");
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return refuse("`..` leads outside the share");
                }
            }
            Component::Normal(name) => {
                let Some(name) = name.to_str() else {
                    return refuse("not valid UTF-8");
                };
                if name.len() > MAX_NAME_LEN {
                    return refuse("a name is longer than 255 bytes");
                }
                if name == STATE_DIR {
                    return refuse("tandem's state folder is private");
                }
                // Checked on the first name of the result, not of the text, so `./C:x` cannot become `C:x`.
                if parts.is_empty() && is_drive_prefixed(name) {
                    return refuse("absolute paths are not allowed; give a path relative to the share");
                }
                parts.push(name);
            }
            Component::RootDir | Component::Prefix(_) => {
                return refuse("absolute paths are not allowed; give a path relative to the share");
            }
        }
    }
    Ok(parts.join("/"))
}

/// `C:` style prefixes mean an absolute path to anyone on Windows; refuse them everywhere.
fn is_drive_prefixed(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_normalize() {
        assert_eq!(normalize("").unwrap(), "");
        assert_eq!(normalize(".").unwrap(), "");
        assert_eq!(normalize("a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(normalize("a/../b").unwrap(), "b");
        assert_eq!(normalize("naïve file.txt").unwrap(), "naïve file.txt");
    }

    #[test]
    fn hostile_text_is_refused_with_the_reason() {
        for (path, reason) in [
            ("..", "`..` leads outside the share"),
            ("a/../../b", "`..` leads outside the share"),
            ("/etc/passwd", "absolute paths are not allowed"),
            ("C:/Windows", "absolute paths are not allowed"),
            // Found by fuzzing: a drive letter that only leads once `.` or `..` are gone.
            ("./C:x", "absolute paths are not allowed"),
            ("a/../c:/Windows", "absolute paths are not allowed"),
            ("a\0b", "contains a NUL byte"),
            (".tandem/hashes.sqlite", "tandem's state folder is private"),
            ("x/.tandem", "tandem's state folder is private"),
        ] {
            let err = normalize(path).unwrap_err().to_string();
            assert!(err.contains(reason), "{path:?}: {err}");
            assert!(err.starts_with("invalid path "), "{err}");
        }
        assert!(normalize(&"n".repeat(256)).is_err());
        assert!(normalize(&"a/".repeat(2100)).is_err());
    }

    #[test]
    fn a_missing_path_behind_a_link_out_is_refused_rather_than_reported_missing() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("share");
        std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::os::unix::fs::symlink(STATE_DIR, root.join("state")).unwrap();
        let share = Share::open(&root).unwrap();
        for (path, reason) in [
            ("up/no-such-file", "a symbolic link leads outside the share"),
            ("up/no/such/folder", "a symbolic link leads outside the share"),
            ("state/no-such-file", "tandem's state folder is private"),
        ] {
            assert_eq!(share.resolve(path).unwrap_err().to_string(), format!("invalid path {path:?}: {reason}"));
        }
        assert_eq!(
            share.resolve("up/share/missing").unwrap_err().to_string(),
            "up/share/missing: no such file or folder"
        );
        assert_eq!(share.resolve("missing/x").unwrap_err().to_string(), "missing/x: no such file or folder");
    }
}
