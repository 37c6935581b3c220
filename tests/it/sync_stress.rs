//! Sync under load, as issue 15's acceptance asks: a `tandem serve` process and two continuous `tandem sync`
//! clients (real processes, each with its own config folder and so its own identity). 20,000 small files in 200
//! folders are copied into A's folder in one go while B makes changes of its own; then 5,000 of them are deleted
//! in A. A smaller version repeats rounds of edits, deletions and new folders on both sides, for a bounded number
//! of rounds and time. After every step, A, B and the server's share (`.tandem/` aside) must hold exactly the
//! expected tree, by names and MD5, within 60 s of the last change; a failure names the differing paths and shows
//! the end of each client's stderr and `.tandem/sync.log`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::common::{BIN, CACHE_OFF, ServeProcess, pseudo_random};

/// How long after the last change all three trees must be identical.
const SETTLE: Duration = Duration::from_secs(60);
/// How often the trees are compared while waiting.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// A file (with its size and, once read, MD5) or a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File { size: u64, md5: Option<String> },
}

type Tree = BTreeMap<String, Node>;

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file and folder below `root`, except the root's `.tandem`; with MD5s if `hash`. Things that vanish
/// while it looks (a sync moving them) are simply not there.
fn scan(root: &Path, hash: bool) -> Tree {
    let mut found = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if dir == root && entry.file_name() == ".tandem" {
                continue;
            }
            let rel = path.strip_prefix(root).expect("below the root").to_string_lossy().into_owned();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                found.insert(rel, Node::Dir);
                stack.push(path);
            } else if hash {
                let Ok(bytes) = std::fs::read(&path) else { continue };
                found.insert(rel, Node::File { size: bytes.len() as u64, md5: Some(md5_hex(&bytes)) });
            } else {
                found.insert(rel, Node::File { size: meta.len(), md5: None });
            }
        }
    }
    found
}

fn without_md5(tree: &Tree) -> Tree {
    let strip = |node: &Node| match node {
        Node::Dir => Node::Dir,
        Node::File { size, .. } => Node::File { size: *size, md5: None },
    };
    tree.iter().map(|(path, node)| (path.clone(), strip(node))).collect()
}

/// What every tree should hold: kept in step with each change the test makes.
#[derive(Default)]
struct Model(Tree);

impl Model {
    fn file(&mut self, rel: &str, bytes: &[u8]) {
        let mut parent = rel;
        while let Some(cut) = parent.rfind('/') {
            parent = &parent[..cut];
            self.0.insert(parent.to_string(), Node::Dir);
        }
        self.0.insert(rel.to_string(), Node::File { size: bytes.len() as u64, md5: Some(md5_hex(bytes)) });
    }

    /// Removes `rel` and everything below it.
    fn remove(&mut self, rel: &str) {
        let below = format!("{rel}/");
        self.0.retain(|path, _| path != rel && !path.starts_with(&below));
    }

    /// Moves `from`, and everything below it, to `to`.
    fn rename(&mut self, from: &str, to: &str) {
        let below = format!("{from}/");
        let moved: Vec<(String, Node)> = self
            .0
            .iter()
            .filter(|(path, _)| *path == from || path.starts_with(&below))
            .map(|(path, node)| (format!("{to}{}", &path[from.len()..]), node.clone()))
            .collect();
        self.remove(from);
        let mut parent = to;
        while let Some(cut) = parent.rfind('/') {
            parent = &parent[..cut];
            self.0.insert(parent.to_string(), Node::Dir);
        }
        self.0.extend(moved);
    }

    fn files(&self) -> usize {
        self.0.values().filter(|n| matches!(n, Node::File { .. })).count()
    }
}

/// One change to a folder.
enum Op {
    Write(String, Vec<u8>),
    Remove(String),
    RemoveAll(String),
    /// A rename with `mv`: of a file or a whole folder.
    Rename(String, String),
}

fn apply(root: &Path, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Write(rel, bytes) => {
                let path = root.join(rel);
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("create folders");
                std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {rel}: {e}"));
            }
            Op::Remove(rel) => std::fs::remove_file(root.join(rel)).unwrap_or_else(|e| panic!("remove {rel}: {e}")),
            Op::RemoveAll(rel) => {
                std::fs::remove_dir_all(root.join(rel)).unwrap_or_else(|e| panic!("rm -r {rel}: {e}"))
            }
            Op::Rename(from, to) => {
                let to_path = root.join(to);
                std::fs::create_dir_all(to_path.parent().expect("a parent")).expect("create folders");
                std::fs::rename(root.join(from), to_path).unwrap_or_else(|e| panic!("mv {from} {to}: {e}"));
            }
        }
    }
}

fn record(model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Write(rel, bytes) => model.file(rel, bytes),
            Op::Remove(rel) | Op::RemoveAll(rel) => model.remove(rel),
            Op::Rename(from, to) => model.rename(from, to),
        }
    }
}

/// A running `tandem sync DIR` with its own config folder, stderr kept in a file; killed on drop.
struct SyncProcess {
    name: &'static str,
    folder: tempfile::TempDir,
    home: tempfile::TempDir,
    child: Child,
}

impl SyncProcess {
    fn start(name: &'static str, addr: &str) -> SyncProcess {
        let (home, folder) = (tempfile::tempdir().expect("a config folder"), tempfile::tempdir().expect("a folder"));
        let stderr = File::create(home.path().join("stderr.log")).expect("a stderr file");
        let child = Command::new(BIN)
            .arg("sync")
            .arg(folder.path())
            .env("TANDEM_REMOTE", addr)
            .env("XDG_CONFIG_HOME", home.path())
            .env(CACHE_OFF.0, CACHE_OFF.1)
            .env_remove("TANDEM_TOKEN")
            .env_remove("TANDEM_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tandem sync");
        SyncProcess { name, folder, home, child }
    }

    fn path(&self) -> &Path {
        self.folder.path()
    }

    /// The end of this client's stderr and sync log.
    fn tails(&self) -> String {
        let tail = |path: PathBuf| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(25)..].join("\n")
        };
        format!(
            "--- {} stderr (end) ---\n{}\n--- {} .tandem/sync.log (end) ---\n{}\n",
            self.name,
            tail(self.home.path().join("stderr.log")),
            self.name,
            tail(self.path().join(".tandem/sync.log"))
        )
    }
}

impl Drop for SyncProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server and two running clients, A and B.
struct Setup {
    server: ServeProcess,
    a: SyncProcess,
    b: SyncProcess,
}

impl Setup {
    fn start() -> Setup {
        let server = ServeProcess::start(tempfile::tempdir().expect("a share"));
        let (a, b) = (SyncProcess::start("A", &server.addr), SyncProcess::start("B", &server.addr));
        Setup { server, a, b }
    }

    fn sides(&self) -> [(&str, &Path); 3] {
        [("A", self.a.path()), ("B", self.b.path()), ("server", self.server.root.path())]
    }

    /// Waits until A, B and the server all hold exactly `model`, at most [`SETTLE`] after `last_change`; returns
    /// how long after the last change that was. Panics with the differences and the clients' logs otherwise.
    fn converge(&mut self, model: &Model, last_change: Instant, what: &str) -> Duration {
        let listing = without_md5(&model.0);
        loop {
            for client in [&mut self.a, &mut self.b] {
                if let Ok(Some(status)) = client.child.try_wait() {
                    panic!("{what}: sync client {} exited ({status})\n{}", client.name, client.tails());
                }
            }
            let listed = self.sides().iter().all(|(_, root)| scan(root, false) == listing);
            if listed && self.sides().iter().all(|(_, root)| scan(root, true) == model.0) {
                let took = last_change.elapsed();
                eprintln!("sync_stress: {what}: identical {:.1} s after the last change", took.as_secs_f64());
                return took;
            }
            if last_change.elapsed() > SETTLE {
                panic!("{}", self.report(model, what));
            }
            std::thread::sleep(LOOK_EVERY);
        }
    }

    /// What differs on each side from the model, and the ends of the clients' logs.
    fn report(&self, model: &Model, what: &str) -> String {
        let count = |tree: &Tree| {
            let files = tree.values().filter(|n| matches!(n, Node::File { .. })).count();
            format!("{files} files, {} folders", tree.len() - files)
        };
        let mut text = format!(
            "{what}: A, B and the server were not identical {} s after the last change; expected {}\n",
            SETTLE.as_secs(),
            count(&model.0)
        );
        for (name, root) in self.sides() {
            let tree = scan(root, true);
            let mut differing = Vec::new();
            for (path, node) in &model.0 {
                match tree.get(path) {
                    None => differing.push(format!("  missing {path}")),
                    Some(found) if found != node => {
                        differing.push(format!("  differs {path}: {found:?}, not {node:?}"))
                    }
                    Some(_) => {}
                }
            }
            differing.extend(tree.keys().filter(|p| !model.0.contains_key(*p)).map(|p| format!("  extra {p}")));
            text += &format!("{name}: {}; {} paths differ, the first:\n", count(&tree), differing.len());
            for line in differing.iter().take(20) {
                text += line;
                text += "\n";
            }
        }
        text + &self.a.tails() + &self.b.tails()
    }
}

/// Content of a small test file: sizes cycle through 0, 1 and a spread up to about 3 KB.
fn small_content(seed: u64) -> Vec<u8> {
    let size = match seed % 9 {
        0 => 0,
        1 => 1,
        n => ((n * 397 + seed * 13) % 3_000) as usize,
    };
    pseudo_random(size, seed + 1)
}

/// The name of file `j` in a generated folder: plain, with spaces, or with non-ASCII letters.
fn file_name(j: usize) -> String {
    match j % 10 {
        3 => format!("note {j}.txt"),
        7 => format!("r\u{e9}sum\u{e9} \u{fc}ber {j}.md"),
        9 => format!("\u{65e5}\u{672c} {j}.dat"),
        _ => format!("f{j:03}.bin"),
    }
}

fn folder_name(i: usize) -> String {
    if i % 25 == 5 { format!("dossier {i:03} \u{e9}t\u{e9}") } else { format!("d{i:03}") }
}

/// Copies what is in `from` into `to` as `cp -a` does, in one go.
fn copy_in(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(format!("{}/.", from.display())).arg(to).status().expect("run cp");
    assert!(status.success(), "cp -a failed");
}

const FOLDERS: usize = 200;
const PER_FOLDER: usize = 100;

#[test]
fn twenty_thousand_files_copied_in_then_five_thousand_deleted_reach_every_side() {
    let started = Instant::now();
    let mut setup = Setup::start();
    let mut model = Model::default();

    // Both clients are running and in step once a first small set has gone round: files B edits later.
    let seeds: Vec<Op> =
        (0..100).map(|i| Op::Write(format!("seed/e{i}.txt"), format!("seed {i}").into_bytes())).collect();
    apply(setup.a.path(), &seeds);
    record(&mut model, &seeds);
    setup.converge(&model, Instant::now(), "seed");

    // 20,000 files in 200 folders, written aside and then copied into A in one go.
    let staging = tempfile::tempdir().expect("a staging folder");
    let mut copied = Vec::new();
    for i in 0..FOLDERS {
        for j in 0..PER_FOLDER {
            copied
                .push(Op::Write(format!("{}/{}", folder_name(i), file_name(j)), small_content((i * 1000 + j) as u64)));
        }
    }
    apply(staging.path(), &copied);
    // Meanwhile B edits the seed files and adds files of its own, some in folders A's copy also brings.
    let mut b_changes: Vec<Op> = (0..100)
        .map(|i| Op::Write(format!("seed/e{i}.txt"), format!("edited by B, {i}").repeat(i % 4).into_bytes()))
        .collect();
    for k in 0..100 {
        b_changes.push(Op::Write(format!("from b/\u{fc} {k}.txt"), small_content(900_000 + k as u64)));
        b_changes.push(Op::Write(format!("{}/b-own {k}.txt", folder_name(k * 2)), small_content(800_000 + k as u64)));
    }
    let copy_started = Instant::now();
    std::thread::scope(|s| {
        let b_root = setup.b.path();
        s.spawn(|| {
            // Spread over the copy, twenty changes at a time.
            for chunk in b_changes.chunks(20) {
                apply(b_root, chunk);
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        copy_in(staging.path(), setup.a.path());
    });
    let last_change = Instant::now();
    eprintln!("sync_stress: copied 20,000 files into A in {:.1} s", copy_started.elapsed().as_secs_f64());
    record(&mut model, &copied);
    record(&mut model, &b_changes);
    assert_eq!(model.files(), 100 + 20_000 + 200);
    setup.converge(&model, last_change, "20,000 files copied into A while B changed 300");

    // 5,000 of them deleted in A: 30 whole folders (3,000 files, and B's files in some of them), and every fifth
    // file of 100 others (2,000).
    let mut deletions: Vec<Op> = (170..FOLDERS).map(|i| Op::RemoveAll(folder_name(i))).collect();
    for i in 0..100 {
        deletions
            .extend((0..PER_FOLDER).step_by(5).map(|j| Op::Remove(format!("{}/{}", folder_name(i), file_name(j)))));
    }
    apply(setup.a.path(), &deletions);
    let last_change = Instant::now();
    record(&mut model, &deletions);
    assert_eq!(model.files(), 100 + 15_000 + 200 - 15, "B's files in the 15 even folders among 170..200 go too");
    setup.converge(&model, last_change, "5,000 files deleted in A");
    eprintln!("sync_stress: the 20,000-file run took {:.1} s", started.elapsed().as_secs_f64());
}

/// At most this many rounds in the smaller, repeated version...
const ROUNDS: usize = 5;
/// ...and no new round once this long has passed.
const ROUNDS_BUDGET: Duration = Duration::from_secs(60);
/// Time between one side's bursts of changes in a round: about as long as a sync of the burst before takes.
const BURST_GAP: Duration = Duration::from_millis(300);

/// One side's changes in a round, in three bursts: edits, deletions and renames of files it owns, and new
/// files, some of them edited or deleted again by a later burst, and (after the first round) its folder of the
/// round before renamed, files and all.
fn changes_of(side: usize, round: usize, owned: &mut Vec<String>, rng: &mut StdRng) -> [Vec<Op>; 3] {
    let tag = ["a", "b"][side];
    let content = |rng: &mut StdRng| small_content(rng.random_range(0..1_000_000));
    let mut bursts: [Vec<Op>; 3] = Default::default();
    owned.shuffle(rng);
    for (i, rel) in owned[..30].iter().enumerate() {
        bursts[i % 3].push(Op::Write(rel.clone(), content(rng)));
    }
    for (i, rel) in owned.drain(30..45).enumerate() {
        bursts[i % 3].push(Op::Remove(rel));
    }
    for (i, from) in owned.drain(30..35).collect::<Vec<_>>().into_iter().enumerate() {
        let to = format!("{from} renamed in r{round}");
        bursts[i % 3].push(Op::Rename(from, to.clone()));
        owned.push(to);
    }
    for k in 0..20 {
        let rel = match k % 2 {
            0 => format!("g{:02}/{tag} r{round} {k}.txt", rng.random_range(0..20)),
            _ => format!("{tag}{round}/sub/x {k}.txt"),
        };
        bursts[0].push(Op::Write(rel.clone(), content(rng)));
        // Some new files change again a moment later, perhaps while their upload is under way.
        match k % 5 {
            0 => bursts[1].push(Op::Write(rel.clone(), content(rng))),
            1 => {
                bursts[2].push(Op::Remove(rel));
                continue;
            }
            _ => {}
        }
        owned.push(rel);
    }
    if round > 0 {
        let (from, to) = (format!("{tag}{}", round - 1), format!("{tag}{} moved", round - 1));
        for rel in owned.iter_mut().filter(|rel| rel.starts_with(&format!("{from}/"))) {
            *rel = format!("{to}{}", &rel[from.len()..]);
        }
        bursts[2].push(Op::Rename(from, to));
    }
    bursts
}

/// Applies each burst, [`BURST_GAP`] after the one before.
fn in_bursts(root: &Path, bursts: &[Vec<Op>]) {
    for (i, burst) in bursts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(BURST_GAP);
        }
        apply(root, burst);
    }
}

#[test]
fn rounds_of_edits_and_deletions_on_both_sides_converge_every_time() {
    let started = Instant::now();
    let mut setup = Setup::start();
    let mut model = Model::default();
    let mut rng = StdRng::seed_from_u64(15);

    // 1,000 files in 20 folders, copied into A in one go; A then owns the even ones and B the odd ones.
    let staging = tempfile::tempdir().expect("a staging folder");
    let mut owned: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut seeded = Vec::new();
    for i in 0..20 {
        for j in 0..50 {
            let rel = format!("g{i:02}/{}", file_name(j));
            owned[j % 2].push(rel.clone());
            seeded.push(Op::Write(rel, small_content((i * 100 + j) as u64)));
        }
    }
    apply(staging.path(), &seeded);
    copy_in(staging.path(), setup.a.path());
    record(&mut model, &seeded);
    setup.converge(&model, Instant::now(), "1,000 files copied into A");

    let rounds_started = Instant::now();
    let mut round = 0;
    while round < ROUNDS && rounds_started.elapsed() < ROUNDS_BUDGET {
        let mut a_ops = changes_of(0, round, &mut owned[0], &mut rng);
        let mut b_ops = changes_of(1, round, &mut owned[1], &mut rng);
        // B makes a nested folder in even rounds; A deletes it, folders and all, in odd ones.
        if round % 2 == 0 {
            b_ops[2].push(Op::Write("newdir/inner/n.txt".into(), format!("made by B in round {round}").into_bytes()));
        } else {
            a_ops[0].push(Op::RemoveAll("newdir".into()));
        }
        // Both sides at once; each burst lands while the one before it is most likely still syncing.
        std::thread::scope(|s| {
            let (a_root, b_root) = (setup.a.path(), setup.b.path());
            s.spawn(|| {
                in_bursts(a_root, &a_ops);
            });
            in_bursts(b_root, &b_ops);
        });
        let last_change = Instant::now();
        for ops in a_ops.iter().chain(&b_ops) {
            record(&mut model, ops);
        }
        setup.converge(&model, last_change, &format!("round {round}"));
        round += 1;
    }
    assert!(round >= 2, "only {round} rounds ran in {ROUNDS_BUDGET:?}");
    eprintln!("sync_stress: {round} rounds; the run took {:.1} s", started.elapsed().as_secs_f64());
}
