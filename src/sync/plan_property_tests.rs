//! The planner's property test: random three-way trees run through an in-memory simulator of both sides until
//! they agree, checking that both converge, that nothing is lost, that nothing is planned when nothing changed, and
//! that plans do not depend on input order.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const HOST: &str = "me";

fn file(content: &str, mtime_s: i64) -> Version {
    Version {
        kind: Kind::File,
        size: content.len() as u64,
        mtime_ns: mtime_s * 1_000_000_000,
        md5: Some(Md5Digest::of(content.as_bytes())),
    }
}

fn dir() -> Version {
    Version { kind: Kind::Dir, size: 0, mtime_ns: 0, md5: None }
}

/// One side of the simulation: its tree and everything moved to its trash.
#[derive(Debug, Default)]
struct Sim {
    tree: BTreeMap<String, Version>,
    trash: Vec<Version>,
}

impl Sim {
    fn make_parents(&mut self, path: &str) {
        for (slash, _) in path.match_indices('/') {
            let parent = &path[..slash];
            match self.tree.get(parent) {
                Some(v) => assert_eq!(v.kind, Kind::Dir, "{parent} must be a folder to hold {path}"),
                None => {
                    self.tree.insert(parent.to_string(), dir());
                }
            }
        }
    }

    fn write(&mut self, path: &str, version: Version) {
        assert_ne!(version.kind, Kind::Dir, "only files and links are transferred: {path}");
        if let Some(old) = self.tree.remove(path) {
            assert_ne!(old.kind, Kind::Dir, "a transfer must not write over the folder {path}");
            self.trash.push(old);
        }
        self.make_parents(path);
        self.tree.insert(path.to_string(), version);
    }

    fn mkdir(&mut self, path: &str) {
        match self.tree.get(path) {
            Some(v) => assert_eq!(v.kind, Kind::Dir, "mkdir over the file {path}"),
            None => {
                self.make_parents(path);
                self.tree.insert(path.to_string(), dir());
            }
        }
    }

    fn delete(&mut self, path: &str, kind: Kind) {
        let old = self.tree.remove(path).unwrap_or_else(|| panic!("deletes {path}, which is not there"));
        assert_eq!(old.kind, kind, "delete of {path} names the wrong kind");
        self.trash.push(old);
        let inside: Vec<String> = self.tree.keys().filter(|p| is_under(p, path)).cloned().collect();
        for p in inside {
            let v = self.tree.remove(&p).unwrap();
            self.trash.push(v);
        }
    }

    fn rename(&mut self, from: &str, to: &str) {
        let v = self.tree.remove(from).unwrap_or_else(|| panic!("renames {from}, which is not there"));
        assert!(!self.tree.contains_key(to), "rename onto the existing {to}");
        self.make_parents(to);
        self.tree.insert(to.to_string(), v);
        // A folder takes everything in it along.
        let inside: Vec<String> = self.tree.keys().filter(|p| is_under(p, from)).cloned().collect();
        for p in inside {
            let v = self.tree.remove(&p).unwrap();
            self.tree.insert(format!("{to}{}", &p[from.len()..]), v);
        }
    }

    fn leaf(&self, path: &str, kind: Kind) -> Version {
        let v = self.tree.get(path).unwrap_or_else(|| panic!("copies {path}, which is not there")).clone();
        assert_eq!(v.kind, kind, "copies {path} as the wrong kind");
        v
    }
}

fn apply(actions: &[Action], local: &mut Sim, remote: &mut Sim) {
    for action in actions {
        match action {
            Action::Upload { path } => remote.write(path, local.leaf(path, Kind::File)),
            Action::Download { path } => local.write(path, remote.leaf(path, Kind::File)),
            Action::LinkRemote { path } => remote.write(path, local.leaf(path, Kind::Symlink)),
            Action::LinkLocal { path } => local.write(path, remote.leaf(path, Kind::Symlink)),
            Action::MkdirLocal { path } => local.mkdir(path),
            Action::MkdirRemote { path } => remote.mkdir(path),
            Action::DeleteLocal { path, kind } => local.delete(path, *kind),
            Action::DeleteRemote { path, kind } => remote.delete(path, *kind),
            Action::RenameLocal { from, to } => local.rename(from, to),
            Action::RenameRemote { from, to } => remote.rename(from, to),
            Action::MoveLocal { from, to } => local.rename(from, to),
            Action::MoveRemote { from, to } => remote.rename(from, to),
            Action::Record { .. } | Action::Forget { .. } => {}
        }
    }
}

fn states_of(base: &BTreeMap<String, Version>, local: &Sim, remote: &Sim) -> Vec<PathState> {
    let paths: BTreeSet<&String> = base.keys().chain(local.tree.keys()).chain(remote.tree.keys()).collect();
    paths
        .into_iter()
        .map(|path| PathState {
            path: path.clone(),
            base: base.get(path).cloned(),
            local: local.tree.get(path).cloned(),
            remote: remote.tree.get(path).cloned(),
            remote_author: Some("bob".to_string()),
        })
        .collect()
}

/// What both sides must agree on at the end: kinds and file contents.
fn content(sim: &Sim) -> BTreeMap<String, (Kind, Option<Md5Digest>)> {
    sim.tree.iter().map(|(p, v)| (p.clone(), (v.kind, v.md5))).collect()
}

#[derive(Debug, Clone)]
enum Node {
    Absent,
    File(usize, i64),
    Link(usize, i64),
    Dir,
}

const NAMES: [&str; 3] = ["a", "b", "c.txt"];
const CONTENTS: [&str; 3] = ["x", "yy", "zzz"];

/// Every path of the universe, parents before children.
fn universe() -> Vec<String> {
    let top = NAMES.iter().map(|n| n.to_string());
    let nested = NAMES.iter().flat_map(|p| NAMES.iter().map(move |n| format!("{p}/{n}")));
    top.chain(nested).collect()
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::Absent),
        (0..CONTENTS.len(), 0..4i64).prop_map(|(c, t)| Node::File(c, t)),
        (0..CONTENTS.len(), 0..4i64).prop_map(|(c, t)| Node::Link(c, t)),
        Just(Node::Dir)
    ]
}

/// A consistent tree: `pick` says what each path holds (None: the same as in `base`); children of anything but
/// a folder are dropped.
fn tree(pick: &[Option<Node>], base: &BTreeMap<String, Version>) -> BTreeMap<String, Version> {
    let mut tree: BTreeMap<String, Version> = BTreeMap::new();
    for (path, pick) in universe().into_iter().zip(pick) {
        if let Some((parent, _)) = path.rsplit_once('/')
            && tree.get(parent).is_none_or(|v| v.kind != Kind::Dir)
        {
            continue;
        }
        let version = match pick {
            None => base.get(&path).cloned(),
            Some(Node::Absent) => None,
            Some(Node::File(c, t)) => Some(file(CONTENTS[*c], *t)),
            Some(Node::Link(c, t)) => Some(Version { kind: Kind::Symlink, ..file(CONTENTS[*c], *t) }),
            Some(Node::Dir) => Some(dir()),
        };
        if let Some(v) = version {
            tree.insert(path, v);
        }
    }
    tree
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_trees_converge_without_losing_a_version(
        base_pick in proptest::collection::vec(node(), 12),
        local_pick in proptest::collection::vec(proptest::option::weighted(0.5, node()), 12),
        remote_pick in proptest::collection::vec(proptest::option::weighted(0.5, node()), 12),
        seed in any::<u64>(),
    ) {
        let base_pick: Vec<Option<Node>> = base_pick.into_iter().map(Some).collect();
        let mut base = tree(&base_pick, &BTreeMap::new());
        let mut local = Sim { tree: tree(&local_pick, &base), ..Sim::default() };
        let mut remote = Sim { tree: tree(&remote_pick, &base), ..Sim::default() };

        // Property 3: when nothing changed, nothing is planned.
        let still = Sim { tree: base.clone(), ..Sim::default() };
        prop_assert_eq!(plan(&states_of(&base, &still, &still), HOST), vec![]);

        // Every file version at the start; versions a side changed must stay live, unchanged ones may be trashed.
        let mut initial = Vec::new();
        for sim in [&local, &remote] {
            for (path, v) in sim.tree.iter().filter(|(_, v)| v.kind != Kind::Dir) {
                initial.push((path.clone(), v.clone(), !same_content(base.get(path), Some(v))));
            }
        }

        let mut rounds = 0;
        loop {
            let states = states_of(&base, &local, &remote);
            let actions = plan(&states, HOST);
            // Property 4: the plan does not depend on the order of its input.
            let mut shuffled = states.clone();
            shuffle(&mut shuffled, seed | 1);
            prop_assert_eq!(&plan(&shuffled, HOST), &actions);
            if actions.iter().all(|a| matches!(a, Action::Record { .. } | Action::Forget { .. })) {
                break;
            }
            rounds += 1;
            // The brief allows three rounds; two suffice: the second only copies conflict copies across and
            // creates what replaced an entry of the other kind.
            prop_assert!(rounds <= 2, "still planning {:?} after 2 rounds", actions);
            apply(&actions, &mut local, &mut remote);
            // The sync engine's bookkeeping, simplified: whatever both sides agree on becomes the base.
            for state in &states_of(&base, &local, &remote) {
                if same_content(state.local.as_ref(), state.remote.as_ref()) {
                    match &state.local {
                        Some(v) => base.insert(state.path.clone(), v.clone()),
                        None => base.remove(&state.path),
                    };
                }
            }
        }

        // Property 1: both sides converged.
        prop_assert_eq!(content(&local), content(&remote));

        // Property 2: no version is lost.
        let live: Vec<&Version> = local.tree.values().chain(remote.tree.values()).collect();
        for (path, version, changed) in initial {
            let in_trash = local.trash.iter().chain(&remote.trash).any(|v| *v == version);
            let is_live = live.iter().any(|v| **v == version);
            prop_assert!(is_live || (!changed && in_trash), "lost {:?} of {}", version, path);
        }
    }
}
