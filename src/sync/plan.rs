//! The three-way sync planner: for every path it compares the *base* (what both sides held after the last
//! successful sync), the *local* folder now and the *remote* share now, and says what to do. Pure: no I/O, no
//! clock, no randomness; the same states always give the same plan.
//!
//! A side has *changed* a path when it no longer holds the base's content (files compare by MD5 only, so a file
//! whose MD5 is not known yet counts as changed). If one side changed, its version is copied to the other side,
//! deletions included. If both changed to the same content, only the base is updated. If both changed
//! differently, nothing is lost: a modification beats a deletion; of two different files the older one (the
//! local one on a tie) is renamed to a `.sync-conflict-…` copy on its own side and the newer one takes the path;
//! a file meeting a folder always becomes the conflict copy. A conflict copy is an ordinary new file to the next
//! pass, which copies it across.
//!
//! Folder deletions never take surviving content with them: a folder deleted on one side while something inside
//! it is new or changed (or arrives there in this plan) is re-created on the side that deleted it, and a file
//! that replaced such a folder becomes a conflict copy. When a path changes kind on one side (file to folder or
//! back), this pass only moves the other side's old entry to the trash; the next pass creates the new one, so
//! that no action ever writes over an entry of the other kind.
//!
//! A deletion and a transfer that together move a file (same bytes, new path) become one move ([`super::moves`]).
//!
//! The plan is in execution order: conflict renames, folder creations (parents first), moves, transfers,
//! deletions (children first), then the bookkeeping of paths both sides already agree on.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{Local, TimeZone};

use super::moves::pair_moves;
use crate::digest::Md5Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link whose target stays inside the folder; its `md5` is that of the target text, its content.
    Symlink,
}

impl Kind {
    /// Files and links: entries with content of their own, nothing below them.
    fn is_leaf(self) -> bool {
        self != Kind::Dir
    }
}

/// One side's version of a path. `md5` is Some for files whose bytes are known; a local file not yet hashed
/// has None.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i64,
    pub md5: Option<Md5Digest>,
}

/// The three states of one path (relative, `/`-separated, no leading slash). None = absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub path: String,
    pub base: Option<Version>,
    pub local: Option<Version>,
    pub remote: Option<Version>,
    /// Host name of whoever wrote the remote version, when the server knows it.
    pub remote_author: Option<String>,
}

/// One step of a plan. Deletions move entries to the trash; nothing is destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy the local file to the remote side.
    Upload {
        path: String,
    },
    /// Copy the remote file to the local side.
    Download {
        path: String,
    },
    /// Make the local link at `path` on the remote side.
    LinkRemote {
        path: String,
    },
    /// Make the remote link at `path` on the local side.
    LinkLocal {
        path: String,
    },
    MkdirLocal {
        path: String,
    },
    MkdirRemote {
        path: String,
    },
    DeleteLocal {
        path: String,
        kind: Kind,
    },
    DeleteRemote {
        path: String,
        kind: Kind,
    },
    /// Conflict copy, local side.
    RenameLocal {
        from: String,
        to: String,
    },
    /// Conflict copy, remote side.
    RenameRemote {
        from: String,
        to: String,
    },
    /// The remote file moved to a new path: move the local one the same way (see [`super::moves`]).
    MoveLocal {
        from: String,
        to: String,
    },
    /// The local file moved to a new path: move the remote one the same way.
    MoveRemote {
        from: String,
        to: String,
    },
    /// Both sides already hold this: base := version.
    Record {
        path: String,
        version: Version,
    },
    /// Both sides are gone: drop the base.
    Forget {
        path: String,
    },
}

/// Whether two versions hold the same content: both absent, both folders, or both files with the same known MD5.
pub fn same_content(a: Option<&Version>, b: Option<&Version>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => match (a.kind, b.kind) {
            (Kind::Dir, Kind::Dir) => true,
            (Kind::File, Kind::File) | (Kind::Symlink, Kind::Symlink) => a.md5.is_some() && a.md5 == b.md5,
            _ => false,
        },
        _ => false,
    }
}

/// The name of a conflict copy of `path`, next to it: `dir/name.sync-conflict-YYYYMMDD-HHMMSS-HOST.ext`, the time
/// being `mtime_ns` in local time. Adds `-2`, `-3`, … before the extension while `taken` says a name is in use.
pub fn conflict_name(path: &str, mtime_ns: i64, host: &str, taken: &impl Fn(&str) -> bool) -> String {
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(dir, name)| (&path[..=dir.len()], name));
    // A leading dot marks a hidden file, not an extension: `.bashrc` has none.
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    let stamp = Local.timestamp_nanos(mtime_ns).format("%Y%m%d-%H%M%S");
    let mut host: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if host.is_empty() {
        host = "unknown".to_string();
    }
    let mut n = 1u64;
    loop {
        let suffix = if n == 1 { String::new() } else { format!("-{n}") };
        let candidate = format!("{dir}{stem}.sync-conflict-{stamp}-{host}{suffix}{ext}");
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// Plans one sync pass over `states` (unique paths, in any order). `host` is this client's host name, used to
/// name conflict copies of local files.
pub fn plan(states: &[PathState], host: &str) -> Vec<Action> {
    let mut states: Vec<&PathState> = states.iter().collect();
    states.sort_by(|a, b| path_order(&a.path, &b.path));
    let mut decisions: Vec<Decision> = states.iter().map(|state| decide(state)).collect();
    keep_survivors(&states, &mut decisions);
    let mut actions = emit(&states, &decisions, host);
    pair_moves(&states, &mut actions);
    actions.sort_by(|a, b| {
        let (phase_a, path_a) = phase(a);
        let (phase_b, path_b) = phase(b);
        let by_path = path_order(path_a, path_b);
        // Deletions run children first, everything else parents first.
        phase_a.cmp(&phase_b).then(if phase_a == DELETE_PHASE { by_path.reverse() } else { by_path })
    });
    actions
}

/// What happens to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Neither side changed.
    Keep,
    /// Make the remote side like the local one.
    Push,
    /// Make the local side like the remote one.
    Pull,
    /// Both changed to the same content: only the base moves.
    Agree,
    /// The local file becomes a conflict copy; the remote version takes the path.
    LocalLoses,
    /// The remote file becomes a conflict copy; the local version takes the path.
    RemoteLoses,
}

fn decide(state: &PathState) -> Decision {
    let (base, local, remote) = (state.base.as_ref(), state.local.as_ref(), state.remote.as_ref());
    let local_changed = !same_content(base, local);
    let remote_changed = !same_content(base, remote);
    match (local_changed, remote_changed) {
        (false, false) => Decision::Keep,
        (true, false) => Decision::Push,
        (false, true) => Decision::Pull,
        (true, true) => match (local, remote) {
            _ if same_content(local, remote) => Decision::Agree,
            // A modification beats a deletion.
            (None, _) => Decision::Pull,
            (_, None) => Decision::Push,
            (Some(l), Some(r)) => match (l.kind, r.kind) {
                // The older file loses; on a tie, the local one.
                (l_kind, r_kind) if l_kind.is_leaf() && r_kind.is_leaf() && l.mtime_ns <= r.mtime_ns => {
                    Decision::LocalLoses
                }
                (l_kind, r_kind) if l_kind.is_leaf() && r_kind.is_leaf() => Decision::RemoteLoses,
                // A folder always beats a file: the file is one entry, easily set aside.
                (_, Kind::Dir) => Decision::LocalLoses,
                _ => Decision::RemoteLoses,
            },
        },
    }
}

/// What the path will be on both sides once the sync has settled.
fn target(state: &PathState, decision: Decision) -> Option<Kind> {
    match decision {
        Decision::Keep | Decision::Push | Decision::Agree | Decision::RemoteLoses => state.local.as_ref(),
        Decision::Pull | Decision::LocalLoses => state.remote.as_ref(),
    }
    .map(|v| v.kind)
}

/// Walks bottom-up and turns every path that would end up absent or a file while something below it survives
/// into a folder, taken from the side that still has one.
fn keep_survivors(states: &[&PathState], decisions: &mut [Decision]) {
    let mut holds_survivor: HashSet<&str> = HashSet::new();
    // Sorted parents first, so in reverse every descendant is settled before its ancestors.
    for (state, decision) in states.iter().zip(decisions.iter_mut()).rev() {
        let path = state.path.as_str();
        if holds_survivor.contains(path) && target(state, *decision) != Some(Kind::Dir) {
            let kind = |v: &Option<Version>| v.as_ref().map(|v| v.kind);
            *decision = match (kind(&state.local), kind(&state.remote)) {
                (Some(Kind::Dir), Some(remote)) if remote.is_leaf() => Decision::RemoteLoses,
                (Some(Kind::Dir), _) => Decision::Push,
                (Some(local), Some(Kind::Dir)) if local.is_leaf() => Decision::LocalLoses,
                (_, Some(Kind::Dir)) => Decision::Pull,
                // Neither side has a folder here (inconsistent input): transfers below create their parents.
                _ => *decision,
            };
        }
        if target(state, *decision).is_some() {
            holds_survivor.extend(path.match_indices('/').map(|(slash, _)| &path[..slash]));
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Local,
    Remote,
}

fn emit(states: &[&PathState], decisions: &[Decision], host: &str) -> Vec<Action> {
    let mut taken: HashSet<String> = states.iter().map(|state| state.path.clone()).collect();
    // Folders replacing a file on the other side: their contents wait for the next pass.
    let mut waiting: Vec<&str> = Vec::new();
    let mut actions = Vec::new();
    for (state, &decision) in states.iter().zip(decisions) {
        let path = state.path.as_str();
        if waiting.iter().any(|folder| is_under(path, folder)) {
            continue;
        }
        let (local, remote) = (state.local.as_ref(), state.remote.as_ref());
        let waits = match decision {
            Decision::Keep => false,
            Decision::Agree => {
                if let Some(version) = local {
                    actions.push(Action::Record { path: path.to_string(), version: version.clone() });
                } else if state.base.is_some() {
                    actions.push(Action::Forget { path: path.to_string() });
                }
                false
            }
            Decision::Push => copy(Side::Remote, path, local, remote, &mut actions),
            Decision::Pull => copy(Side::Local, path, remote, local, &mut actions),
            Decision::LocalLoses | Decision::RemoteLoses => {
                let local_loses = decision == Decision::LocalLoses;
                let (loser, author) = if local_loses {
                    (local, host)
                } else {
                    (remote, state.remote_author.as_deref().unwrap_or("server"))
                };
                let mtime = loser.map_or(0, |v| v.mtime_ns);
                let to = conflict_name(path, mtime, author, &|name| taken.contains(name));
                taken.insert(to.clone());
                let from = path.to_string();
                if local_loses {
                    actions.push(Action::RenameLocal { from, to });
                    copy(Side::Local, path, remote, None, &mut actions)
                } else {
                    actions.push(Action::RenameRemote { from, to });
                    copy(Side::Remote, path, local, None, &mut actions)
                }
            }
        };
        if waits {
            waiting.push(path);
        }
    }
    actions
}

/// Makes side `to` hold `source` at `path`, where it now holds `dest`. Returns true when a folder must wait for
/// the next pass because a file is in its way.
fn copy(to: Side, path: &str, source: Option<&Version>, dest: Option<&Version>, actions: &mut Vec<Action>) -> bool {
    let path = path.to_string();
    let delete = |kind| match to {
        Side::Local => Action::DeleteLocal { path: path.clone(), kind },
        Side::Remote => Action::DeleteRemote { path: path.clone(), kind },
    };
    let (action, waits) = match (source.map(|v| v.kind), dest.map(|v| v.kind)) {
        (None, None) | (Some(Kind::Dir), Some(Kind::Dir)) => return false,
        (None, Some(kind)) => (delete(kind), false),
        // A kind change: clear the old entry now, create the new one next pass (deletions run last).
        (Some(Kind::Dir), Some(leaf)) => (delete(leaf), true),
        (Some(_), Some(Kind::Dir)) => (delete(Kind::Dir), false),
        (Some(Kind::Dir), None) => match to {
            Side::Local => (Action::MkdirLocal { path }, false),
            Side::Remote => (Action::MkdirRemote { path }, false),
        },
        (Some(Kind::File), _) => match to {
            Side::Local => (Action::Download { path }, false),
            Side::Remote => (Action::Upload { path }, false),
        },
        (Some(Kind::Symlink), _) => match to {
            Side::Local => (Action::LinkLocal { path }, false),
            Side::Remote => (Action::LinkRemote { path }, false),
        },
    };
    actions.push(action);
    waits
}

const DELETE_PHASE: u8 = 4;

/// Where an action runs in the plan, and the path that orders it within its phase.
fn phase(action: &Action) -> (u8, &str) {
    match action {
        Action::RenameLocal { from, .. } | Action::RenameRemote { from, .. } => (0, from),
        Action::MkdirLocal { path } | Action::MkdirRemote { path } => (1, path),
        Action::MoveLocal { to, .. } | Action::MoveRemote { to, .. } => (2, to),
        Action::Upload { path } | Action::Download { path } => (3, path),
        Action::LinkLocal { path } | Action::LinkRemote { path } => (3, path),
        Action::DeleteLocal { path, .. } | Action::DeleteRemote { path, .. } => (DELETE_PHASE, path),
        Action::Record { path, .. } | Action::Forget { path } => (5, path),
    }
}

/// Compares paths component by component, so every folder sorts before everything inside it.
fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

fn is_under(path: &str, folder: &str) -> bool {
    path.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_property_tests.rs"]
mod property_tests;
