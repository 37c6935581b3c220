//! The text of a path from the network: [`normalize`] refuses NUL bytes, absolute paths, `..` that climbs out of
//! the root, over-long names and anything inside `.tandem`, and returns a clean `/`-separated relative path, which
//! [`super::Share`] then resolves beneath the share's root without following any link. [`check_portable`] refuses
//! names that Windows or macOS cannot hold, so a share stays usable from every client.

use std::path::{Component, Path};

use super::STATE_DIR;
use crate::error::{Error, Result};

/// Longest accepted file name, in bytes (the common filesystem limit).
const MAX_NAME_LEN: usize = 255;
/// Longest accepted relative path, in bytes.
const MAX_PATH_LEN: usize = 4096;

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

/// Refuses a clean relative path with a name that Windows or macOS cannot hold, or that means something else
/// there: reserved device names (`CON`, `NUL`, `COM1` …, with any extension), a trailing dot or space, the
/// characters `< > : " \\ | ? *`, and control characters. A server checks every name a client creates, unless
/// told to allow them.
pub fn check_portable(rel: &str) -> Result<()> {
    for name in rel.split('/') {
        if let Some(reason) = unportable(name) {
            return Err(Error::InvalidPath { path: rel.to_string(), reason });
        }
    }
    Ok(())
}

fn unportable(name: &str) -> Option<&'static str> {
    if name.chars().any(|c| c.is_control()) {
        return Some("a name holds a control character, which Windows and macOS refuse");
    }
    if name.chars().any(|c| matches!(c, '<' | '>' | ':' | '"' | '\\' | '|' | '?' | '*')) {
        return Some("a name holds one of < > : \" \\ | ? *, which Windows refuses");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("a name ends with a dot or a space, which Windows drops");
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && matches!(stem.as_bytes()[3], b'1'..=b'9'));
    reserved.then_some("a name is reserved for a device on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
}

/// `C:` style prefixes mean an absolute path to anyone on Windows; refuse them everywhere.
fn is_drive_prefixed(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Longest link target sync carries: the length of a path on Linux.
pub const MAX_LINK_TARGET: usize = 4096;

/// Whether a symbolic link at `rel` pointing at `target` stays inside the folder it is in, read as text: a relative
/// target whose `..` never climb above the folder's root and that never reaches tandem's own `.tandem`. Only such
/// links are synced; one to `/etc` or `../../elsewhere` would mean something else, or nothing, on the other side.
pub fn link_stays_inside(rel: &str, target: &str) -> bool {
    if target.is_empty() || target.len() > MAX_LINK_TARGET || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut resolved: Vec<&str> = rel.split('/').collect();
    resolved.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if resolved.pop().is_none() {
                    return false;
                }
            }
            name => resolved.push(name),
        }
    }
    resolved.first() != Some(&super::STATE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_synced_only_when_their_target_stays_inside_the_folder() {
        for (rel, target) in [("a", "b"), ("docs/up", ".."), ("docs/x", "../notes/./y.txt"), ("d/e/f", "../../g")] {
            assert!(link_stays_inside(rel, target), "{rel} -> {target}");
        }
        for (rel, target) in [
            ("a", "/etc/passwd"),
            ("a", ".."),
            ("docs/x", "../../outside"),
            ("docs/x", "../.tandem/sync.sqlite"),
            ("a", ""),
            ("a", "b\0c"),
        ] {
            assert!(!link_stays_inside(rel, target), "{rel} -> {target}");
        }
        assert!(!link_stays_inside("a", &"x/".repeat(3000)), "too long");
    }

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
    fn names_windows_or_macos_cannot_hold_are_refused() {
        for path in ["CON", "docs/nul.txt", "Com1.log", "lpt9", "a\nb", "..\\..\\x", "what?", "a:b", "dot.", "space "] {
            let err = check_portable(path).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid path {path:?}: ")), "{err}");
        }
        for path in ["console.txt", "COM10", "docs/nul-ish.txt", "naïve file.txt", ".hidden", "a.b.c"] {
            assert!(check_portable(path).is_ok(), "{path:?}");
        }
    }
}
