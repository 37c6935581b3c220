//! Moves and renames, found in a plan: a file that left one path and arrived, with the same bytes, at a new path on
//! the same side is moved on the other side too, instead of being deleted there and sent again. So renaming a
//! folder costs one small request per file, whatever its size.
//!
//! The planner sees a move as two unrelated actions: a deletion of the old path and a transfer to the new one. This
//! pass pairs them by content (MD5 and size): a deletion of a file that the side doing the deleting still holds as
//! the base version, with a transfer of that same content to a path where the receiving side has nothing. Copies of
//! one file pair in path order, which is as good as any: their bytes are equal. Empty files are left as they are;
//! sending nothing costs nothing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::plan::{Action, Kind, PathState, Version};
use crate::digest::Md5Digest;

/// Replaces each deletion that a transfer of the same bytes elsewhere undoes with one move.
pub(super) fn pair_moves(states: &[&PathState], actions: &mut Vec<Action>) {
    let by_path: HashMap<&str, &PathState> = states.iter().map(|s| (s.path.as_str(), *s)).collect();
    let content = |version: Option<&Version>| -> Option<(Md5Digest, u64)> {
        let version = version.filter(|v| v.kind == Kind::File && v.size > 0)?;
        Some((version.md5?, version.size))
    };
    // What each deletion takes away, when the deleted side held exactly the base there.
    let mut gone_remote: HashMap<(Md5Digest, u64), VecDeque<usize>> = HashMap::new();
    let mut gone_local: HashMap<(Md5Digest, u64), VecDeque<usize>> = HashMap::new();
    for (i, action) in actions.iter().enumerate() {
        let (path, gone) = match action {
            Action::DeleteRemote { path, kind: Kind::File } => (path, &mut gone_remote),
            Action::DeleteLocal { path, kind: Kind::File } => (path, &mut gone_local),
            _ => continue,
        };
        let Some(state) = by_path.get(path.as_str()) else { continue };
        let held = match action {
            Action::DeleteRemote { .. } => state.remote.as_ref(),
            _ => state.local.as_ref(),
        };
        if let Some(key) = content(state.base.as_ref()).filter(|key| content(held) == Some(*key)) {
            gone.entry(key).or_default().push_back(i);
        }
    }
    if gone_remote.is_empty() && gone_local.is_empty() {
        return;
    }

    let mut moves: Vec<(usize, usize, Action)> = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let (to, source, dest, gone) = match action {
            Action::Upload { path } => (path, Side::Local, Side::Remote, &mut gone_remote),
            Action::Download { path } => (path, Side::Remote, Side::Local, &mut gone_local),
            _ => continue,
        };
        let Some(state) = by_path.get(to.as_str()) else { continue };
        if dest.of(state).is_some() {
            continue;
        }
        let Some(key) = content(source.of(state)) else { continue };
        let Some(deletion) = gone.get_mut(&key).and_then(VecDeque::pop_front) else { continue };
        let from = match &actions[deletion] {
            Action::DeleteRemote { path, .. } | Action::DeleteLocal { path, .. } => path.clone(),
            _ => continue,
        };
        let to = to.clone();
        let moved = match dest {
            Side::Remote => Action::MoveRemote { from, to },
            Side::Local => Action::MoveLocal { from, to },
        };
        moves.push((deletion, i, moved));
    }
    let replaced: HashSet<usize> = moves.iter().flat_map(|(deletion, transfer, _)| [*deletion, *transfer]).collect();
    let mut index = 0;
    actions.retain(|_| {
        index += 1;
        !replaced.contains(&(index - 1))
    });
    actions.extend(moves.into_iter().map(|(_, _, moved)| moved));
    fold_folder_moves(&by_path, actions);
}

/// Turns the moves of a whole folder's files to the same names in a new folder on the server into one move of the
/// folder: one request, however many files, which matters on a link with a long round trip. Only when the server's
/// folder holds nothing else, and nothing else is planned to be made in the new one before the move.
fn fold_folder_moves(by_path: &HashMap<&str, &PathState>, actions: &mut Vec<Action>) {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, action) in actions.iter().enumerate() {
        if let Action::MoveRemote { from, to } = action
            && let Some(folders) = renamed_folders(from, to)
        {
            groups.entry(folders).or_default().push(i);
        }
    }
    let deleted: HashMap<&str, usize> = (actions.iter().enumerate())
        .filter_map(|(i, a)| match a {
            Action::DeleteRemote { path, kind: Kind::Dir } => Some((path.as_str(), i)),
            _ => None,
        })
        .collect();
    let made: HashMap<&str, usize> = (actions.iter().enumerate())
        .filter_map(|(i, a)| match a {
            Action::MkdirRemote { path } => Some((path.as_str(), i)),
            _ => None,
        })
        .collect();
    let mut replaced: HashSet<usize> = HashSet::new();
    let mut folded = Vec::new();
    for ((from, to), moves) in groups {
        let (Some(&delete), Some(&mkdir)) = (deleted.get(from.as_str()), made.get(to.as_str())) else { continue };
        let moved: HashSet<&str> = moves.iter().filter_map(|&i| moved_from(&actions[i])).collect();
        let mut covered = vec![delete, mkdir];
        // Everything the server holds in the old folder goes along: each file is one of these moves, each folder
        // is deleted there and made anew in the new one.
        let whole = (by_path.iter()).filter(|(path, state)| is_below(path, &from) && state.remote.is_some()).all(
            |(path, state)| match state.remote.as_ref().map(|v| v.kind) {
                Some(Kind::Dir) => {
                    let twin = format!("{to}{}", &path[from.len()..]);
                    match (deleted.get(*path), made.get(twin.as_str())) {
                        (Some(&d), Some(&m)) => {
                            covered.extend([d, m]);
                            true
                        }
                        _ => false,
                    }
                }
                _ => moved.contains(*path),
            },
        );
        // A folder to be made in the new one first would be in the way of the move.
        let in_the_way = made.keys().any(|path| is_below(path, &to) && !covered.contains(&made[path]));
        if whole && !in_the_way {
            replaced.extend(covered.into_iter().chain(moves));
            folded.push(Action::MoveRemote { from, to });
        }
    }
    if folded.is_empty() {
        return;
    }
    let mut index = 0;
    actions.retain(|_| {
        index += 1;
        !replaced.contains(&(index - 1))
    });
    actions.extend(folded);
}

/// The folders a file moved between, when it kept its name and the folders below them: `a/b/c/f` to `d/c/f` is
/// `a/b` renamed to `d`. None for a file that changed its name, or a move to or from the root.
fn renamed_folders(from: &str, to: &str) -> Option<(String, String)> {
    let (mut from_parts, mut to_parts): (Vec<&str>, Vec<&str>) = (from.split('/').collect(), to.split('/').collect());
    if from_parts.last() != to_parts.last() {
        return None;
    }
    while from_parts.len() > 1 && to_parts.len() > 1 && from_parts.last() == to_parts.last() {
        from_parts.pop();
        to_parts.pop();
    }
    let (from_folder, to_folder) = (from_parts.join("/"), to_parts.join("/"));
    // A folder cannot move into itself or out of itself into its parent's place.
    let nested = is_below(&to_folder, &from_folder) || is_below(&from_folder, &to_folder) || from_folder == to_folder;
    (from_parts.len() < from.split('/').count() && !nested).then_some((from_folder, to_folder))
}

fn moved_from(action: &Action) -> Option<&str> {
    match action {
        Action::MoveRemote { from, .. } => Some(from),
        _ => None,
    }
}

fn is_below(path: &str, folder: &str) -> bool {
    path.len() > folder.len() && path.starts_with(folder) && path.as_bytes()[folder.len()] == b'/'
}

#[derive(Clone, Copy)]
enum Side {
    Local,
    Remote,
}

impl Side {
    fn of(self, state: &PathState) -> Option<&Version> {
        match self {
            Side::Local => state.local.as_ref(),
            Side::Remote => state.remote.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::plan;
    use super::*;

    fn file(content: &str) -> Option<Version> {
        let md5 = Some(Md5Digest::of(content.as_bytes()));
        Some(Version { kind: Kind::File, size: content.len() as u64, mtime_ns: 7, md5 })
    }

    fn dir() -> Option<Version> {
        Some(Version { kind: Kind::Dir, size: 0, mtime_ns: 0, md5: None })
    }

    fn state(path: &str, base: Option<Version>, local: Option<Version>, remote: Option<Version>) -> PathState {
        PathState { path: path.to_string(), base, local, remote, remote_author: None }
    }

    fn mv(from: &str, to: &str, remote: bool) -> Action {
        let (from, to) = (from.to_string(), to.to_string());
        if remote { Action::MoveRemote { from, to } } else { Action::MoveLocal { from, to } }
    }

    #[test]
    fn a_folder_renamed_here_is_moved_on_the_server_in_one_request() {
        let states = [
            state("old", dir(), None, dir()),
            state("old/a.bin", file("alpha"), None, file("alpha")),
            state("old/b.bin", file("bravo"), None, file("bravo")),
            state("new", None, dir(), None),
            state("new/a.bin", None, file("alpha"), None),
            state("new/b.bin", None, file("bravo"), None),
        ];
        assert_eq!(plan(&states, "me"), [mv("old", "new", true)]);

        // Nested folders go along; a new file in the renamed folder follows the move.
        let mut nested = states.to_vec();
        nested.extend([
            state("old/sub", dir(), None, dir()),
            state("old/sub/c.bin", file("charlie"), None, file("charlie")),
            state("new/sub", None, dir(), None),
            state("new/sub/c.bin", None, file("charlie"), None),
            state("new/added.txt", None, file("added"), None),
        ]);
        let actions = plan(&nested, "me");
        assert_eq!(actions, [mv("old", "new", true), Action::Upload { path: "new/added.txt".into() }]);

        // A file another client put in the old folder meanwhile keeps it there: the files move one by one.
        let mut busy = states.to_vec();
        busy.push(state("old/theirs.txt", None, None, file("theirs")));
        let actions = plan(&busy, "me");
        assert!(actions.contains(&mv("old/a.bin", "new/a.bin", true)), "{actions:?}");
        assert!(actions.contains(&Action::Download { path: "old/theirs.txt".into() }), "{actions:?}");
        assert!(!actions.contains(&mv("old", "new", true)), "{actions:?}");
    }

    #[test]
    fn only_a_rename_of_folders_with_the_same_names_below_them_folds() {
        assert_eq!(renamed_folders("a/b/c/f", "d/c/f"), Some(("a/b".into(), "d".into())));
        assert_eq!(renamed_folders("old/a.bin", "new/a.bin"), Some(("old".into(), "new".into())));
        assert_eq!(renamed_folders("a/f", "a/g"), None, "a renamed file");
        assert_eq!(renamed_folders("x/f", "f"), None, "out to the root");
        assert_eq!(renamed_folders("a/f", "a/b/f"), None, "into a folder of its own");
        assert_eq!(renamed_folders("a/b/f", "a/f"), None);
    }

    #[test]
    fn a_file_moved_on_the_server_is_moved_here_and_copies_pair_in_path_order() {
        let states = [
            state("a.txt", file("same"), file("same"), None),
            state("b.txt", file("same"), file("same"), None),
            state("docs/x.txt", None, None, file("same")),
            state("docs/y.txt", None, None, file("same")),
            state("docs", None, None, dir()),
        ];
        let actions = plan(&states, "me");
        assert_eq!(
            actions,
            [
                Action::MkdirLocal { path: "docs".into() },
                mv("a.txt", "docs/x.txt", false),
                mv("b.txt", "docs/y.txt", false),
            ]
        );
    }

    #[test]
    fn no_move_where_the_bytes_differ_the_deleted_side_had_moved_on_or_the_target_is_taken() {
        // Renamed here and edited: the new bytes travel.
        let edited = [state("a.txt", file("old"), None, file("old")), state("b.txt", None, file("new"), None)];
        assert!(!plan(&edited, "me").iter().any(|a| matches!(a, Action::MoveRemote { .. })));
        // Renamed here while the server's copy was edited: the edit wins at the old path, the rename uploads.
        let changed = [state("a.txt", file("old"), None, file("edit")), state("b.txt", None, file("old"), None)];
        let actions = plan(&changed, "me");
        assert!(actions.contains(&Action::Download { path: "a.txt".into() }), "{actions:?}");
        assert!(actions.contains(&Action::Upload { path: "b.txt".into() }), "{actions:?}");
        // Renamed onto a path the server already holds: a replacement, not a move.
        let taken = [state("a.txt", file("old"), None, file("old")), state("b.txt", None, file("old"), file("x"))];
        assert!(!plan(&taken, "me").iter().any(|a| matches!(a, Action::MoveRemote { .. })));
        // Empty files are simply sent: nothing to save.
        let empty = [state("a", file(""), None, file("")), state("b", None, file(""), None)];
        assert!(!plan(&empty, "me").iter().any(|a| matches!(a, Action::MoveRemote { .. })));
    }
}
