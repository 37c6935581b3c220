//! The share as a jail. Every filesystem operation on a served folder is made relative to an open handle of its
//! root, one path component at a time, with `O_NOFOLLOW`: no symbolic link is ever followed, wherever it points,
//! and no path is checked first and used later, so a link swapped in by a racing client leads nowhere. A link is
//! an entry like any other (listed with its target, renamed, trashed), never a door.
//!
//! Paths come in clean from [`normalize`](super::normalize). A served share also holds handles of its private
//! folders: `.tandem/tmp`, where an upload is written before it is renamed into place on a filesystem without
//! unnamed files (elsewhere it waits unnamed in its destination's folder), and `.tandem/trash`, where every
//! replaced or deleted entry goes.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::{Meta, STATE_DIR, link_stays_inside};
use crate::error::{Error, Result};

/// How folders are opened: never through a link, never as a controlling terminal or across an exec.
const FOLDER: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);
/// How files are opened for reading. `NONBLOCK` so a fifo cannot hang the opener; it is refused afterwards.
const READ: OFlags = OFlags::RDONLY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC).union(OFlags::NONBLOCK);
/// Trash folders tried per second before giving up (each holds one version of a path).
const TRASH_TRIES: u32 = 1000;

/// A folder opened as a jail: the root of a served share, or a client's local folder.
#[derive(Debug)]
pub struct Share {
    root_path: PathBuf,
    root: OwnedFd,
    /// The private folders of a folder tandem writes in; `None` for a folder that is only read.
    state: Option<State>,
}

#[derive(Debug)]
struct State {
    tmp: OwnedFd,
    trash: OwnedFd,
}

impl Share {
    /// Opens `dir` (an existing folder) for reading.
    pub fn open(dir: &Path) -> Result<Self> {
        let root_path = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let root = rustix::fs::open(&root_path, FOLDER, Mode::empty()).map_err(|e| Error::io(&root_path, e.into()))?;
        Ok(Share { root_path, root, state: None })
    }

    /// Opens `dir` to write in it (a served share, or a sync client's own folder): also makes (if need be) and
    /// opens its `.tandem/tmp` and `.tandem/trash`.
    pub fn open_writable(dir: &Path) -> Result<Self> {
        let mut share = Share::open(dir)?;
        let shown = share.root_path.join(STATE_DIR);
        let state_dir = descend(share.root.as_fd(), &share.root_path, STATE_DIR, true)?;
        let tmp = descend(state_dir.as_fd(), &shown, "tmp", true)?;
        let trash = descend(state_dir.as_fd(), &shown, "trash", true)?;
        share.state = Some(State { tmp, trash });
        Ok(share)
    }

    /// The root's canonical location, for messages, the file watcher and the databases in `.tandem`.
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// The `.tandem` folder of this share.
    pub fn state_dir(&self) -> PathBuf {
        self.root_path.join(STATE_DIR)
    }

    /// Where `rel` is on disk, for messages only: never opened by this name.
    pub fn shown(&self, rel: &str) -> PathBuf {
        if rel.is_empty() { self.root_path.clone() } else { self.root_path.join(rel) }
    }

    fn state(&self) -> Result<&State> {
        self.state.as_ref().ok_or_else(|| Error::Refused {
            what: format!("to write in {}", self.root_path.display()),
            reason: "it was opened only for reading".into(),
        })
    }

    /// Opens the folder `rel` (`""`: the root).
    pub fn open_dir(&self, rel: &str) -> Result<OwnedFd> {
        descend(self.root.as_fd(), &self.root_path, rel, false).map_err(|e| named(e, rel))
    }

    /// Opens the folder that holds `rel`, making the missing ones with `create`; returns it and `rel`'s name.
    fn parent<'a>(&self, rel: &'a str, create: bool) -> Result<(OwnedFd, &'a str)> {
        let (folder, name) = split(rel);
        if name.is_empty() {
            return Err(Error::InvalidPath { path: rel.to_string(), reason: "names the share itself" });
        }
        let dir = descend(self.root.as_fd(), &self.root_path, folder, create).map_err(|e| named(e, rel))?;
        Ok((dir, name))
    }

    /// What `rel` is (a link is reported as a link); `None` if nothing is there.
    pub fn meta(&self, rel: &str) -> Result<Option<Meta>> {
        if rel.is_empty() {
            let stat = rustix::fs::fstat(&self.root).map_err(|e| Error::io(&self.root_path, e.into()))?;
            return Ok(Some(Meta::from_stat(&stat)));
        }
        let (dir, name) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        stat_at(dir.as_fd(), name).map_err(|e| Error::io(self.shown(rel), e))
    }

    /// Opens the regular file `rel` for reading, with what it is.
    pub fn open_file(&self, rel: &str) -> Result<(File, Meta)> {
        let (dir, name) = self.parent(rel, false)?;
        let fd = match rustix::fs::openat(&dir, name, READ, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(Error::NotFound { path: rel.to_string() }),
            Err(Errno::LOOP) => return Err(Error::Symlink { path: rel.to_string(), link: rel.to_string() }),
            Err(e) => return Err(Error::io(self.shown(rel), e.into())),
        };
        let file = File::from(fd);
        let metadata = file.metadata().map_err(|e| Error::io(self.shown(rel), e))?;
        // A folder, fifo, socket or device opened by this name is not a file to read.
        if !metadata.file_type().is_file() {
            return Err(Error::NotAFile { path: rel.to_string() });
        }
        Ok((file, Meta::from_std(&metadata)))
    }

    /// The target text of the link `rel`.
    pub fn read_link(&self, rel: &str) -> Result<String> {
        let (dir, name) = self.parent(rel, false)?;
        read_link_at(dir.as_fd(), name).map_err(|e| Error::io(self.shown(rel), e))
    }

    /// Makes the folder `rel` and any missing folders above it (`mkdir -p`); a file or link in the way is refused.
    pub fn create_dirs(&self, rel: &str) -> Result<Meta> {
        let dir = descend(self.root.as_fd(), &self.root_path, rel, true).map_err(|e| named(e, rel))?;
        let stat = rustix::fs::fstat(&dir).map_err(|e| Error::io(self.shown(rel), e.into()))?;
        Ok(Meta::from_stat(&stat))
    }

    /// The names in the folder `rel`, unsorted.
    pub fn names(&self, rel: &str) -> Result<Vec<String>> {
        let dir = self.open_dir(rel)?;
        list_names(dir.as_fd()).map_err(|e| Error::io(self.shown(rel), e))
    }

    /// Whether the folder `rel` holds nothing.
    pub fn is_empty_dir(&self, rel: &str) -> Result<bool> {
        let dir = self.open_dir(rel)?;
        Ok(list_names(dir.as_fd()).map_err(|e| Error::io(self.shown(rel), e))?.is_empty())
    }

    /// Removes `rel` if it is an empty folder; `false` if it is anything else.
    pub fn remove_empty_dir(&self, rel: &str) -> Result<bool> {
        let (dir, name) = self.parent(rel, false)?;
        Ok(rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR).is_ok())
    }

    /// Moves the entry `from` to `to`, making `to`'s folders; never replaces an existing entry.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (source, from_name) = self.parent(from, false)?;
        let (target, to_name) = self.parent(to, true)?;
        match rustix::fs::renameat_with(&source, from_name, &target, to_name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(Error::NotFound { path: from.to_string() }),
            Err(Errno::EXIST) => Err(Error::Exists { path: to.to_string() }),
            Err(e) => Err(Error::io(self.shown(from), e.into())),
        }
    }

    /// Moves the entry `rel` into `.tandem/trash/<time>/rel`; returns where it went, relative to the trash.
    pub fn trash(&self, rel: &str) -> Result<String> {
        let (dir, name) = self.parent(rel, false)?;
        self.trash_at(dir.as_fd(), name, rel)
    }

    /// [`Share::trash`] for the entry `name` of the open folder `dir`, which is `rel`'s.
    fn trash_at(&self, dir: BorrowedFd<'_>, name: &str, rel: &str) -> Result<String> {
        let state = self.state()?;
        let trash_shown = self.state_dir().join("trash");
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        let (folder, _) = split(rel);
        for n in 1..=TRASH_TRIES {
            let slot = if n == 1 { stamp.clone() } else { format!("{stamp}-{n}") };
            let place = if folder.is_empty() { slot } else { format!("{slot}/{folder}") };
            // A file of the same name as one of this path's folders, trashed earlier: try the next slot.
            let into = match descend(state.trash.as_fd(), &trash_shown, &place, true) {
                Ok(into) => into,
                Err(Error::NotAFolder { .. } | Error::Symlink { .. }) => continue,
                Err(e) => return Err(e),
            };
            match rustix::fs::renameat_with(dir, name, &into, name, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(format!("{place}/{name}")),
                Err(Errno::EXIST) => continue,
                Err(Errno::NOENT) => return Err(Error::NotFound { path: rel.to_string() }),
                Err(e) => return Err(Error::io(self.shown(rel), e.into())),
            }
        }
        // Nothing goes without a copy in the trash.
        Err(Error::Refused {
            what: format!("to delete {rel}"),
            reason: format!("no free trash folder for it in {} this second; try again", trash_shown.display()),
        })
    }

    /// A new, empty file in `.tandem/tmp`, readable by the server alone until it is placed; with its name there.
    pub fn temp_file(&self) -> Result<(File, String)> {
        let state = self.state()?;
        let create = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        loop {
            let name = format!("incoming-{:016x}", rand::random::<u64>());
            match rustix::fs::openat(&state.tmp, name.as_str(), create, Mode::from_raw_mode(0o600)) {
                Ok(fd) => return Ok((File::from(fd), name)),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(Error::io(self.temp_shown(&name), e.into())),
            }
        }
    }

    /// A new, empty file to be placed at `rel`, readable by the owner alone. Where the system allows, it is an
    /// unnamed file in `rel`'s folder (`O_TMPFILE`): made near where it will live (a filesystem allocates a
    /// folder's files together, where thousands of files made in one `.tandem/tmp` crowd one spot), never seen
    /// by anyone, and gone by itself after a crash. Elsewhere it is a named file in `.tandem/tmp`.
    pub fn temp_file_for(&self, rel: &str) -> Result<(File, TempName)> {
        if unnamed_files_can_be_linked() {
            let (folder, _) = split(rel);
            let dir = descend(self.root.as_fd(), &self.root_path, folder, false).ok();
            let dir = dir.as_ref().map_or(self.root.as_fd(), |dir| dir.as_fd());
            let unnamed = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
            // A filesystem without O_TMPFILE says so here: the named file below does the same job.
            if let Ok(fd) = rustix::fs::openat(dir, ".", unnamed, Mode::from_raw_mode(0o600)) {
                return Ok((File::from(fd), TempName::Unnamed));
            }
        }
        let (file, name) = self.temp_file()?;
        Ok((file, TempName::Named(name)))
    }

    /// Where a temporary file is, for messages.
    pub fn temp_shown(&self, name: &str) -> PathBuf {
        self.state_dir().join("tmp").join(name)
    }

    /// Gives the temporary `file` the name `rel` (see [`Share::place`]).
    pub fn place_file(&self, file: &File, temp: &TempName, rel: &str) -> Result<OwnedFd> {
        match temp {
            TempName::Named(name) => self.place(name, rel),
            TempName::Unnamed => {
                use std::os::fd::AsRawFd;
                let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
                self.place_by(rel, |dir, name| {
                    rustix::fs::linkat(rustix::fs::CWD, fd_path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
                })
            }
        }
    }

    /// Renames the temporary file `temp` to `rel`, making `rel`'s folders; an entry already there goes to the
    /// trash first. Returns the folder it went into, for its fsync.
    pub fn place(&self, temp: &str, rel: &str) -> Result<OwnedFd> {
        let state = self.state()?;
        self.place_by(rel, |dir, name| rustix::fs::renameat_with(&state.tmp, temp, dir, name, RenameFlags::NOREPLACE))
    }

    /// Gives a new file the name `rel` by `name_it` (which must never replace anything), making `rel`'s folders; an
    /// entry already there goes to the trash first.
    fn place_by(
        &self,
        rel: &str,
        name_it: impl FnOnce(BorrowedFd<'_>, &str) -> rustix::io::Result<()>,
    ) -> Result<OwnedFd> {
        let (dir, name) = self.parent(rel, true)?;
        match stat_at(dir.as_fd(), name).map_err(|e| Error::io(self.shown(rel), e))? {
            Some(meta) if meta.kind == super::EntryKind::Dir => return Err(Error::NotAFile { path: rel.to_string() }),
            Some(_) => {
                self.trash_at(dir.as_fd(), name, rel)?;
            }
            None => {}
        }
        match name_it(dir.as_fd(), name) {
            Ok(()) => Ok(dir),
            Err(Errno::EXIST) => {
                Err(Error::Stale { path: rel.to_string(), found: "another program wrote it meanwhile".into() })
            }
            Err(Errno::XDEV) => Err(Error::NotSupported(format!(
                "{}: on another filesystem than the share's root; tandem cannot write there",
                self.shown(rel).display()
            ))),
            Err(e) => Err(Error::io(self.shown(rel), e.into())),
        }
    }

    /// Makes a symbolic link to `target` at `rel`, as [`Share::place`] places a file: made under a temporary name
    /// in `.tandem/tmp`, then renamed into place, what was there going to the trash. A target that leaves the
    /// folder is refused (see [`link_stays_inside`]).
    pub fn place_symlink(&self, rel: &str, target: &str) -> Result<()> {
        if !link_stays_inside(rel, target) {
            return Err(Error::InvalidPath {
                path: format!("{rel} -> {target}"),
                reason: "the link's target leaves the folder; only links that point inside it are synced",
            });
        }
        let state = self.state()?;
        let name = loop {
            let name = format!("incoming-{:016x}", rand::random::<u64>());
            match rustix::fs::symlinkat(target, &state.tmp, name.as_str()) {
                Ok(()) => break name,
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(Error::io(self.temp_shown(&name), e.into())),
            }
        };
        let placed = self.place(&name, rel);
        if placed.is_err() {
            self.remove_temp(&name);
        }
        placed.map(drop)
    }

    /// Removes the temporary file `name`, if it is still there.
    pub fn remove_temp(&self, name: &str) {
        if let Ok(state) = self.state() {
            let _ = rustix::fs::unlinkat(&state.tmp, name, AtFlags::empty());
        }
    }

    /// Removes temporary files whose inode has not changed for `age`: what writes cut off by a crash left. A write
    /// in progress touches its file all the time. Returns how many went.
    pub fn sweep_temps(&self, age: Duration) -> usize {
        let Ok(state) = self.state() else { return 0 };
        let Ok(names) = list_names(state.tmp.as_fd()) else { return 0 };
        let now = super::system_time_to_ns(SystemTime::now());
        let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
        let mut removed = 0;
        for name in names {
            let Ok(stat) = rustix::fs::statat(&state.tmp, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else { continue };
            #[allow(clippy::unnecessary_cast)] // the fields' types differ between targets
            let changed =
                (stat.st_ctime as i64).saturating_mul(1_000_000_000).saturating_add(stat.st_ctime_nsec as i64);
            if now.saturating_sub(changed) >= age
                && rustix::fs::unlinkat(&state.tmp, name.as_str(), AtFlags::empty()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// Where a temporary file is: unnamed, in its destination's folder, or named in `.tandem/tmp`.
#[derive(Debug)]
pub enum TempName {
    Unnamed,
    Named(String),
}

/// Whether an unnamed file can be given a name later: `O_TMPFILE` and `/proc/self/fd`, which `linkat` names it
/// through (the other way needs a privilege).
fn unnamed_files_can_be_linked() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| cfg!(target_os = "linux") && Path::new("/proc/self/fd").is_dir())
}

/// Splits a clean relative path into its folder (`""` for the root) and its last name.
fn split(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(cut) => (&rel[..cut], &rel[cut + 1..]),
        None => ("", rel),
    }
}

/// An error about a part of `rel` restated as one about `rel`, the path the client named.
fn named(error: Error, rel: &str) -> Error {
    match error {
        Error::NotFound { .. } => Error::NotFound { path: rel.to_string() },
        Error::Symlink { link, .. } => Error::Symlink { path: rel.to_string(), link },
        Error::NotAFolder { part, .. } => Error::NotAFolder { path: rel.to_string(), part },
        other => other,
    }
}

/// Opens the folder `rel` below `base` (shown as `base_shown`), one name at a time, never through a link; with
/// `create`, missing folders are made on the way.
pub(super) fn descend(base: BorrowedFd<'_>, base_shown: &Path, rel: &str, create: bool) -> Result<OwnedFd> {
    let mut dir = rustix::fs::openat(base, c".", FOLDER, Mode::empty()).map_err(|e| Error::io(base_shown, e.into()))?;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        // The path up to and including this part, for messages: `part` is a slice of `rel`.
        let so_far = &rel[..part.as_ptr() as usize - rel.as_ptr() as usize + part.len()];
        let opened = match rustix::fs::openat(&dir, part, FOLDER, Mode::empty()) {
            Err(Errno::NOENT) if create => match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => rustix::fs::openat(&dir, part, FOLDER, Mode::empty()),
                Err(e) => Err(e),
            },
            opened => opened,
        };
        dir = match opened {
            Ok(next) => next,
            Err(Errno::NOENT) => return Err(Error::NotFound { path: so_far.to_string() }),
            Err(Errno::NOTDIR | Errno::LOOP) => {
                let what = stat_at(dir.as_fd(), part).ok().flatten().map(|m| m.kind);
                return Err(match what {
                    Some(super::EntryKind::Symlink) => Error::Symlink { path: rel.into(), link: so_far.into() },
                    _ => Error::NotAFolder { path: rel.into(), part: so_far.into() },
                });
            }
            Err(e) => return Err(Error::io(base_shown.join(so_far), e.into())),
        };
    }
    Ok(dir)
}

/// What the entry `name` of the folder `dir` is, without following it; `None` if it is not there.
pub(super) fn stat_at(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<Option<Meta>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(Meta::from_stat(&stat))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The target of the link `name` in `dir`, as text (a target that is not UTF-8 is shown lossily).
pub(super) fn read_link_at(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<String> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(target.to_string_lossy().into_owned())
}

/// The names in the folder `dir`, without `.` and `..`; names that are not UTF-8 are left out with a warning.
pub(super) fn list_names(dir: BorrowedFd<'_>) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        match name.to_str() {
            Ok(name) => names.push(name.to_string()),
            Err(_) => tracing::warn!(name = %name.to_string_lossy(), "skipping a name that is not valid UTF-8"),
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    fn served() -> (tempfile::TempDir, tempfile::TempDir, Share) {
        let base = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("docs")).unwrap();
        std::fs::write(base.path().join("docs/a.txt"), b"inside").unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"outside").unwrap();
        symlink(outside.path(), base.path().join("out")).unwrap();
        symlink("docs", base.path().join("in")).unwrap();
        let share = Share::open_writable(base.path()).unwrap();
        (base, outside, share)
    }

    #[test]
    fn no_link_is_followed_for_reading_wherever_it_points() {
        let (_base, _outside, share) = served();
        let link = |path: &str, link: &str| Error::Symlink { path: path.into(), link: link.into() }.to_string();
        assert_eq!(share.open_file("out/secret.txt").unwrap_err().to_string(), link("out/secret.txt", "out"));
        assert_eq!(share.open_file("in/a.txt").unwrap_err().to_string(), link("in/a.txt", "in"));
        assert_eq!(share.open_file("in").unwrap_err().to_string(), link("in", "in"));
        assert_eq!(share.open_dir("out").unwrap_err().to_string(), link("out", "out"));
        assert_eq!(share.meta("out/secret.txt").unwrap_err().to_string(), link("out/secret.txt", "out"));
        assert_eq!(share.meta("out").unwrap().unwrap().kind, super::super::EntryKind::Symlink);
        assert_eq!(share.read_link("in").unwrap(), "docs");
        let (mut file, meta) = share.open_file("docs/a.txt").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!((text.as_str(), meta.size), ("inside", 6));
        assert!(share.meta("docs/missing").unwrap().is_none());
        assert!(share.meta("missing/deeper").unwrap().is_none());
        let not_folder = share.open_file("docs/a.txt/x").unwrap_err().to_string();
        assert_eq!(not_folder, "docs/a.txt/x: \"docs/a.txt\" is not a folder");
    }

    #[test]
    fn writes_never_pass_a_link_and_replaced_entries_go_to_the_trash() {
        let (base, outside, share) = served();
        let write = |rel: &str, bytes: &[u8]| -> Result<()> {
            let (mut file, name) = share.temp_file()?;
            file.write_all(bytes).unwrap();
            let placed = share.place(&name, rel).map(drop);
            share.remove_temp(&name);
            placed
        };
        assert!(matches!(write("out/secret.txt", b"x"), Err(Error::Symlink { .. })));
        assert!(matches!(write("out/new.txt", b"x"), Err(Error::Symlink { .. })));
        assert!(matches!(write("in/a.txt", b"x"), Err(Error::Symlink { .. })));
        assert!(matches!(share.create_dirs("out/sub"), Err(Error::Symlink { .. })));
        assert!(matches!(share.rename("docs/a.txt", "out/a.txt"), Err(Error::Symlink { .. })));
        assert_eq!(std::fs::read(outside.path().join("secret.txt")).unwrap(), b"outside");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);

        // Replacing a link replaces the link itself; what it pointed at is untouched.
        write("out", b"now a file").unwrap();
        assert_eq!(std::fs::read(base.path().join("out")).unwrap(), b"now a file");
        write("docs/a.txt", b"second").unwrap();
        write("new/deep/b.txt", b"b").unwrap();
        assert_eq!(std::fs::read(base.path().join("new/deep/b.txt")).unwrap(), b"b");
        let trash = base.path().join(".tandem/trash");
        let kept: Vec<_> = walk_files(&trash);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept.iter().any(|p| p.ends_with("docs/a.txt") && std::fs::read(p).unwrap() == b"inside"));
        assert!(kept.iter().any(|p| p.ends_with("out") && std::fs::symlink_metadata(p).unwrap().is_symlink()));
        assert_eq!(std::fs::read_dir(base.path().join(".tandem/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn rename_never_replaces_and_trash_keeps_each_version() {
        let (base, _outside, share) = served();
        std::fs::write(base.path().join("b.txt"), b"b").unwrap();
        assert!(matches!(share.rename("docs/a.txt", "b.txt"), Err(Error::Exists { .. })));
        share.rename("docs/a.txt", "moved/a.txt").unwrap();
        assert_eq!(std::fs::read(base.path().join("moved/a.txt")).unwrap(), b"inside");
        for round in 0..3 {
            std::fs::write(base.path().join("b.txt"), format!("v{round}")).unwrap();
            share.trash("b.txt").unwrap();
        }
        std::fs::create_dir(base.path().join("b.txt")).unwrap();
        std::fs::write(base.path().join("b.txt/c"), b"c").unwrap();
        share.trash("b.txt/c").unwrap();
        let mut kept: Vec<Vec<u8>> =
            walk_files(&base.path().join(".tandem/trash")).iter().map(|p| std::fs::read(p).unwrap()).collect();
        kept.sort();
        assert_eq!(kept, [b"c".to_vec(), b"v0".to_vec(), b"v1".to_vec(), b"v2".to_vec()]);
    }

    fn walk_files(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                found.extend(walk_files(&entry.path()));
            } else {
                found.push(entry.path());
            }
        }
        found
    }
}
