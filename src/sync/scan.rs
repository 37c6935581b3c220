//! Reading the local side of a synced folder: one walk that stats every file and folder (never following
//! symlinks, never entering `.tandem`, skipping files tandem is still writing), and MD5s only where a decision
//! needs the bytes. A file whose whole stamp (size, mtime, ctime, inode) matches the hash cache gets the cached MD5,
//! as in git's index: size and mtime alone would miss two files swapped by renames. Sync fills the cache with every
//! file it hashes, uploads or downloads, so an unchanged folder is not read again (unless a file was modified
//! within the last two seconds, when a coarse filesystem clock cannot tell two writes apart). Any other file is
//! hashed only if the other side or the base has a file at that path to compare with, or it may be a file moved
//! from elsewhere; a new file with nothing to compare against is hashed while it uploads instead, so a first sync
//! reads each file once.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::plan::{Kind, Version};
use crate::digest::{HashCache, Md5Digest, md5_file};
use crate::error::{Error, Result};
use crate::share::{EntryKind, FileStamp, Walk, is_being_written_at, link_stays_inside};
use crate::task::parallel_map;

/// One local file or folder as the scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub version: Version,
    /// For files: what must still be true when sync replaces or deletes it.
    pub stamp: Option<FileStamp>,
}

/// A path sync leaves out, and why: a folder it cannot read (what is in it is unknown, not gone), a special file
/// (a FIFO, a socket, a device), or a link whose target leaves the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub path: String,
    pub reason: String,
    /// An unreadable folder: the folder itself still syncs, only what is below it is unknown.
    pub folder: bool,
}

impl LeftOut {
    /// Whether planning must leave `path` alone because of this.
    pub fn covers(&self, path: &str) -> bool {
        let below =
            path.len() > self.path.len() && path.starts_with(&self.path) && path.as_bytes()[self.path.len()] == b'/';
        below || (!self.folder && path == self.path)
    }
}

/// What a scan of the local folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every file, folder and syncable link, by path.
    pub entries: HashMap<String, LocalEntry>,
    pub left_out: Vec<LeftOut>,
    /// Files with more than one name (hard links): each name syncs as a file of its own.
    pub hard_linked: Vec<String>,
}

/// Every file, folder and link below `root`, with MD5s from the hash cache where they are known (a link's content is
/// its target text), and what is left out (the rest of the tree is scanned all the same). Blocking.
pub fn scan(root: &Path, hashes: &HashCache) -> Result<Scan> {
    let mut found = Scan::default();
    for entry in Walk::local(root, "")? {
        let entry = match entry {
            Ok(entry) => entry,
            // An unreadable folder is not an empty one: the caller must not take its files for deleted.
            Err(Error::UnreadableFolder { path, source }) => {
                let reason = format!("the folder cannot be read: {source}");
                found.left_out.push(LeftOut { path, reason, folder: true });
                continue;
            }
            Err(e) => return Err(e),
        };
        if entry.kind == EntryKind::Dir {
            let version = Version { kind: Kind::Dir, size: 0, mtime_ns: 0, md5: None };
            found.entries.insert(entry.path, LocalEntry { version, stamp: None });
            continue;
        }
        let abs = root.join(&entry.path);
        let metadata = match std::fs::symlink_metadata(&abs) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&abs, e)),
        };
        let stamp = FileStamp::of(&metadata);
        let file_type = metadata.file_type();
        let version = if file_type.is_symlink() {
            let Some(target) = entry.target.filter(|target| link_stays_inside(&entry.path, target)) else {
                let reason = "a symbolic link that points outside the folder; only links inside it are synced";
                found.left_out.push(LeftOut { path: entry.path, reason: reason.into(), folder: false });
                continue;
            };
            let md5 = Some(Md5Digest::of(target.as_bytes()));
            Version { kind: Kind::Symlink, size: target.len() as u64, mtime_ns: stamp.mtime_ns, md5 }
        } else if file_type.is_file() {
            if hard_link_count(&metadata) > 1 {
                found.hard_linked.push(entry.path.clone());
            }
            let md5 = hashes.get(&entry.path, stamp);
            Version { kind: Kind::File, size: stamp.size, mtime_ns: stamp.mtime_ns, md5 }
        } else {
            let reason = "a special file (a FIFO, socket or device), which has no content to sync";
            found.left_out.push(LeftOut { path: entry.path, reason: reason.into(), folder: false });
            continue;
        };
        found.entries.insert(entry.path, LocalEntry { version, stamp: Some(stamp) });
    }
    Ok(found)
}

fn hard_link_count(metadata: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::nlink(metadata)
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        1
    }
}

/// The local files a program still seems to be writing (see [`is_being_written_at`]) at `now_ns`, apart from
/// those whose stamp is the one they were synced with. A pass leaves them alone rather than read them as they
/// grow, and perhaps sync a half-written version.
pub fn still_being_written(
    local: &HashMap<String, LocalEntry>,
    base: &HashMap<String, Version>,
    now_ns: i64,
) -> HashSet<String> {
    local
        .iter()
        .filter(|(path, entry)| {
            let Some(stamp) = entry.stamp else { return false };
            let synced = base.get(*path).is_some_and(|b| b.size == stamp.size && b.mtime_ns == stamp.mtime_ns);
            !synced && is_being_written_at(stamp.size, stamp.mtime_ns, now_ns)
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// Hashes the listed local files (on all cores, through the cache) and fills in their MD5s. Returns the paths
/// that changed or vanished while being read: they are still being written, so this pass leaves them alone.
pub fn hash_files(
    root: &Path,
    local: &mut HashMap<String, LocalEntry>,
    paths: Vec<String>,
    hashes: &HashCache,
) -> Result<HashSet<String>> {
    let hashed = parallel_map(&paths, |path| -> Result<Option<crate::digest::Md5Digest>> {
        let abs = root.join(path);
        let Some(stamp) = local.get(path).and_then(|entry| entry.stamp) else { return Ok(None) };
        let md5 = match md5_file(&abs) {
            Ok(md5) => md5,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let after = std::fs::symlink_metadata(&abs).map(|m| FileStamp::of(&m));
        if after.ok() != Some(stamp) {
            return Ok(None);
        }
        hashes.insert(path, stamp, md5);
        Ok(Some(md5))
    });
    let mut unsettled = HashSet::new();
    for (path, result) in paths.into_iter().zip(hashed) {
        match result? {
            Some(md5) => {
                if let Some(entry) = local.get_mut(&path) {
                    entry.version.md5 = Some(md5);
                }
            }
            None => {
                unsettled.insert(path);
            }
        }
    }
    hashes.flush()?;
    Ok(unsettled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_spares_reading_until_a_stamp_moves_and_new_files_wait_to_be_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("docs/.tandem")).unwrap();
        std::fs::write(root.join("docs/a.txt"), b"alpha").unwrap();
        std::fs::write(root.join("docs/b.txt"), b"bravo").unwrap();
        std::fs::write(root.join("new.txt"), b"new").unwrap();
        std::fs::write(root.join("docs/.a.txt.tandem-Zz99.tmp"), b"half").unwrap();
        // Stamps of files written just now vouch for nothing (see `FileStamp::is_recent`); these are older.
        let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        for file in ["docs/a.txt", "docs/b.txt", "new.txt"] {
            std::fs::File::options().write(true).open(root.join(file)).unwrap().set_modified(long_ago).unwrap();
        }
        let hashes = HashCache::in_memory();
        let pretend = crate::digest::Md5Digest::of(b"what the cache says");
        for file in ["docs/a.txt", "docs/b.txt"] {
            hashes.insert(file, FileStamp::of(&std::fs::metadata(root.join(file)).unwrap()), pretend);
        }

        let Scan { entries: mut local, left_out, .. } = scan(root, &hashes).unwrap();
        assert!(left_out.is_empty());
        let mut paths: Vec<&str> = local.keys().map(String::as_str).collect();
        paths.sort();
        assert_eq!(paths, ["docs", "docs/a.txt", "docs/b.txt", "new.txt"]);
        assert_eq!(local["docs/a.txt"].version.md5, Some(pretend), "an unchanged stamp trusts the cache");
        assert_eq!(local["new.txt"].version.md5, None);

        let unsettled = hash_files(root, &mut local, vec!["new.txt".into()], &hashes).unwrap();
        assert!(unsettled.is_empty());
        assert_eq!(local["new.txt"].version.md5, Some(crate::digest::Md5Digest::of(b"new")));
        let again = scan(root, &hashes).unwrap().entries;
        assert_eq!(again["new.txt"].version.md5, Some(crate::digest::Md5Digest::of(b"new")), "from the cache");

        // Two files of the same size and mtime swapped by renames: size and mtime say nothing changed.
        std::fs::rename(root.join("docs/a.txt"), root.join("docs/swap")).unwrap();
        std::fs::rename(root.join("docs/b.txt"), root.join("docs/a.txt")).unwrap();
        std::fs::rename(root.join("docs/swap"), root.join("docs/b.txt")).unwrap();
        let swapped = scan(root, &hashes).unwrap().entries;
        assert_eq!(swapped["docs/a.txt"].version.mtime_ns, again["docs/a.txt"].version.mtime_ns);
        assert_eq!(swapped["docs/a.txt"].version.md5, None, "a swapped-in file is hashed again");
        assert_eq!(swapped["docs/b.txt"].version.md5, None);

        // A rewrite that puts the old mtime back keeps the inode but not the ctime (which moves with the kernel's
        // clock tick: the rewrite is repeated until it has).
        let hashed = again["new.txt"].stamp.unwrap();
        for _ in 0..1000 {
            std::fs::write(root.join("new.txt"), b"NEW").unwrap();
            std::fs::File::options().write(true).open(root.join("new.txt")).unwrap().set_modified(long_ago).unwrap();
            if FileStamp::of(&std::fs::metadata(root.join("new.txt")).unwrap()).ctime_ns != hashed.ctime_ns {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let rewritten = scan(root, &hashes).unwrap().entries;
        assert_eq!((rewritten["new.txt"].version.size, rewritten["new.txt"].version.mtime_ns), (3, hashed.mtime_ns));
        assert_eq!(rewritten["new.txt"].version.md5, None, "a rewrite under a restored mtime is hashed again");
    }

    #[test]
    fn large_files_written_just_now_wait_unless_they_are_the_synced_version() {
        let now = 1_700_000_000_000_000_000;
        let entry = |size: u64, mtime_ns: i64| LocalEntry {
            version: Version { kind: Kind::File, size, mtime_ns, md5: None },
            stamp: Some(FileStamp { size, mtime_ns, ctime_ns: mtime_ns, inode: 1 }),
        };
        let big = 64 * 1024 * 1024;
        let local = HashMap::from([
            ("growing.iso".to_string(), entry(big, now - 50_000_000)),
            ("just synced.iso".to_string(), entry(big, now - 50_000_000)),
            ("settled.iso".to_string(), entry(big, now - 5_000_000_000)),
            ("small.txt".to_string(), entry(10, now)),
        ]);
        let synced = Version { kind: Kind::File, size: big, mtime_ns: now - 50_000_000, md5: None };
        let base = HashMap::from([("just synced.iso".to_string(), synced)]);
        assert_eq!(still_being_written(&local, &base, now), HashSet::from(["growing.iso".to_string()]));
    }
}
