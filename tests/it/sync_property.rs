//! The randomized sync property: clients make random changes (creating, editing, deleting and renaming files and
//! folders) and sync at random moments, so their changes cross and conflict; once everyone has synced until
//! quiet, every tree must be identical (conflict copies included), and every version any client ever wrote and
//! offered to a sync must still exist, as a file somewhere or in a trash. Seeded: a failure prints the seed that reproduces it
//! (`TANDEM_SYNC_SEED=… TANDEM_SYNC_RUNS=1 cargo test sync_property`).

use std::collections::HashSet;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tandem::digest::Md5Digest;

use super::sync::{Client, TestServer, trashed, tree};

const FOLDERS: [&str; 4] = ["", "d", "d/e", "f"];
/// `f` is also a file name, so a file on one client can meet a folder on another.
const NAMES: [&str; 4] = ["x.txt", "y", "z.md", "f"];
const OPS_PER_RUN: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_on_several_clients_converge_without_losing_a_version() {
    let runs: u64 = std::env::var("TANDEM_SYNC_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let first_seed: u64 = std::env::var("TANDEM_SYNC_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    for seed in first_seed..first_seed + runs {
        one_run(seed).await;
    }
}

async fn one_run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let server = TestServer::start().await;
    let count = rng.random_range(2..=3);
    let mut clients = Vec::new();
    for i in 0..count {
        clients.push(Client::new(&server, &format!("host{i}")).await);
    }
    // Emptying a whole folder or share is refused by design (it reads as an unmounted disk), so every tree keeps
    // one file that no random operation touches.
    clients[0].write("anchor", b"never touched");
    for client in clients.iter_mut() {
        client.sync().await;
    }
    let mut written: Vec<(Md5Digest, String)> = Vec::new();
    let mut history = Vec::new();
    for op in 0..OPS_PER_RUN {
        let who = rng.random_range(0..clients.len());
        let client = &mut clients[who];
        let root = client.root.path().to_path_buf();
        let choice = rng.random_range(0..10);
        let step = match choice {
            0..=3 => {
                let rel = random_file(&mut rng);
                let bytes = format!("seed {seed} op {op} by {} at {rel}", client.host).into_bytes();
                if write_if_possible(&root, &rel, &bytes) {
                    format!("{} writes {rel}", client.host)
                } else {
                    continue;
                }
            }
            4 => match pick_existing(&mut rng, &root, false) {
                Some(rel) => {
                    std::fs::remove_file(root.join(&rel)).unwrap();
                    format!("{} deletes file {rel}", client.host)
                }
                None => continue,
            },
            5 => match pick_existing(&mut rng, &root, true) {
                Some(rel) => {
                    std::fs::remove_dir_all(root.join(&rel)).unwrap();
                    format!("{} deletes folder {rel}", client.host)
                }
                None => continue,
            },
            6 => match pick_existing(&mut rng, &root, false) {
                Some(from) => {
                    let to = random_file(&mut rng);
                    let target = root.join(&to);
                    let parent_ok = target.parent().is_some_and(|p| !p.is_file());
                    if target.exists() || !parent_ok || to.starts_with(&format!("{from}/")) {
                        continue;
                    }
                    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::fs::rename(root.join(&from), &target).unwrap();
                    format!("{} renames {from} to {to}", client.host)
                }
                None => continue,
            },
            _ => {
                offered(&mut written, client.root.path());
                let summary = client.try_sync().await;
                match summary {
                    Ok(_) => format!("{} syncs", client.host),
                    Err(e) => format!("{} sync refused: {e}", client.host),
                }
            }
        };
        history.push(step);
    }

    // Quiescence: everyone syncs until a whole round changes no tree (the server's included).
    let snapshot = |clients: &[Client]| {
        let mut trees: Vec<_> = clients.iter().map(|c| tree(c.root.path())).collect();
        trees.push(tree(server.root.path()));
        trees
    };
    let mut quiet = false;
    for _ in 0..12 {
        let before = snapshot(&clients);
        for client in clients.iter_mut() {
            offered(&mut written, client.root.path());
            client
                .try_sync()
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {} failed: {e}\nhistory: {history:#?}", client.host));
        }
        if snapshot(&clients) == before {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "seed {seed}: never went quiet\nhistory: {history:#?}");

    let expected = tree(server.root.path());
    for client in &clients {
        assert_eq!(
            tree(client.root.path()),
            expected,
            "seed {seed}: {} differs from the server\nhistory: {history:#?}\n{}",
            client.host,
            logs(&clients)
        );
    }
    let mut kept: HashSet<Md5Digest> = expected.values().flatten().copied().collect();
    kept.extend(trashed(server.root.path()));
    for client in &clients {
        kept.extend(trashed(client.root.path()));
    }
    for (version, text) in &written {
        assert!(
            kept.contains(version),
            "seed {seed}: lost the version {text:?}\nhistory: {history:#?}\n{}",
            logs(&clients)
        );
    }
}

fn random_file(rng: &mut StdRng) -> String {
    let folder = FOLDERS[rng.random_range(0..FOLDERS.len())];
    let name = NAMES[rng.random_range(0..NAMES.len())];
    if folder.is_empty() { name.to_string() } else { format!("{folder}/{name}") }
}

/// Writes unless a folder stands where the file would go, or a file where a folder must be.
fn write_if_possible(root: &Path, rel: &str, bytes: &[u8]) -> bool {
    let path = root.join(rel);
    if path.is_dir() {
        return false;
    }
    let mut ancestor = path.parent();
    while let Some(dir) = ancestor.filter(|d| d.starts_with(root) && *d != root) {
        if dir.is_file() {
            return false;
        }
        ancestor = dir.parent();
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    true
}

fn pick_existing(rng: &mut StdRng, root: &Path, folders: bool) -> Option<String> {
    let candidates: Vec<String> = tree(root)
        .into_iter()
        .filter(|(path, md5)| md5.is_none() == folders && path != "anchor")
        .map(|(path, _)| path)
        .collect();
    (!candidates.is_empty()).then(|| candidates[rng.random_range(0..candidates.len())].clone())
}

/// Records the file versions in a client's folder as a sync starts: from then on, tandem has seen them and must
/// never lose them. (A version overwritten before its client ever synced never reached tandem.)
fn offered(versions: &mut Vec<(Md5Digest, String)>, root: &Path) {
    for (path, md5) in tree(root) {
        if let Some(md5) = md5
            && !versions.iter().any(|(known, _)| *known == md5)
        {
            let text = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            versions.push((md5, text));
        }
    }
}

/// Every client's sync log, for a failure message.
fn logs(clients: &[Client]) -> String {
    let mut out = String::new();
    for client in clients {
        let log = std::fs::read_to_string(client.path(".tandem/sync.log")).unwrap_or_default();
        out.push_str(&format!("--- {} ---\n{log}", client.host));
    }
    out
}
