//! The jail as a property: random sequences of changes on disk (files, folders, links out of the share, into its
//! state folder and within it, renames, removals), made as another program would make them, interleaved with
//! random requests from a client that holds the token, while a second thread keeps swapping a folder for a link
//! out. Whatever happens, no byte outside the share is read or written: a canary folder beside the share keeps
//! its bytes and its access times, nothing appears next to the share, and no answer carries an outside file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tandem::client::Connection;

use crate::common::*;
use crate::jail::Canary;

const PATHS: [&str; 9] = ["a", "b", "c", "a/x", "a/y", "b/x", "c/x", "a/x/z", "b/x/z"];

#[derive(Debug, Clone)]
enum Op {
    // The disk, as another program changes it.
    MakeFile(usize),
    MakeDir(usize),
    LinkOut(usize, bool),
    LinkInside(usize, usize),
    LinkToState(usize),
    Move(usize, usize),
    Remove(usize),
    // Requests.
    List(usize),
    Hash(usize),
    HashAll(usize),
    Download(usize),
    Upload(usize),
    Mkdir(usize),
    Rename(usize, usize),
    Delete(usize),
    Lock(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        p.clone().prop_map(Op::MakeFile),
        p.clone().prop_map(Op::MakeDir),
        (p.clone(), any::<bool>()).prop_map(|(p, deep)| Op::LinkOut(p, deep)),
        (p.clone(), p.clone()).prop_map(|(p, q)| Op::LinkInside(p, q)),
        p.clone().prop_map(Op::LinkToState),
        (p.clone(), p.clone()).prop_map(|(p, q)| Op::Move(p, q)),
        p.clone().prop_map(Op::Remove),
        p.clone().prop_map(Op::List),
        p.clone().prop_map(Op::Hash),
        p.clone().prop_map(Op::HashAll),
        p.clone().prop_map(Op::Download),
        p.clone().prop_map(Op::Upload),
        p.clone().prop_map(Op::Mkdir),
        (p.clone(), p.clone()).prop_map(|(p, q)| Op::Rename(p, q)),
        p.clone().prop_map(Op::Delete),
        p.prop_map(Op::Lock),
    ]
}

/// Removes whatever is at `path` (a link, a file or a folder with everything in it), never following a link.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => drop(std::fs::remove_dir_all(path)),
        Ok(_) => drop(std::fs::remove_file(path)),
        Err(_) => {}
    }
}

/// Whether the program changing the disk may touch `PATHS[i]` without itself going through a link (it is the
/// server that is on trial, not this test): nothing below `c`, which the swapper owns, and no link above it.
fn own_ground(share: &Path, i: usize) -> bool {
    let rel = Path::new(PATHS[i]);
    !rel.starts_with("c")
        && rel
            .ancestors()
            .skip(1)
            .filter(|above| !above.as_os_str().is_empty())
            .all(|above| std::fs::symlink_metadata(share.join(above)).map_or(true, |m| m.is_dir()))
}

/// Applies one change to the disk, as another program would; failures (a missing parent) are part of the game.
fn change_disk(share: &Path, canary: &Path, op: &Op) {
    let at = |i: usize| share.join(PATHS[i]);
    let paths = match op {
        Op::MakeFile(p) | Op::MakeDir(p) | Op::LinkOut(p, _) | Op::LinkToState(p) | Op::Remove(p) => vec![*p],
        Op::LinkInside(p, q) | Op::Move(p, q) => vec![*p, *q],
        _ => return,
    };
    if !paths.iter().all(|p| own_ground(share, *p)) {
        return;
    }
    let _ = match op {
        Op::MakeFile(p) => {
            // Replacing a link, not writing through it.
            if std::fs::symlink_metadata(at(*p)).is_ok_and(|m| m.is_symlink()) {
                remove(&at(*p));
            }
            std::fs::write(at(*p), pseudo_random(1_000 + *p * 300_000 / 9, *p as u64))
        }
        Op::MakeDir(p) => std::fs::create_dir_all(at(*p)),
        Op::LinkOut(p, deep) => {
            remove(&at(*p));
            std::os::unix::fs::symlink(if *deep { canary.join("secret.bin") } else { canary.to_path_buf() }, at(*p))
        }
        Op::LinkInside(p, q) => {
            remove(&at(*p));
            std::os::unix::fs::symlink(share.join(PATHS[*q]), at(*p))
        }
        Op::LinkToState(p) => {
            remove(&at(*p));
            std::os::unix::fs::symlink(share.join(".tandem"), at(*p))
        }
        Op::Move(p, q) => std::fs::rename(at(*p), at(*q)),
        Op::Remove(p) => {
            remove(&at(*p));
            Ok(())
        }
        _ => Ok(()),
    };
}

/// Sends one request; whatever the answer, it must not carry an outside file.
async fn request(conn: &Connection, op: &Op, local: &Path, dest: &Path, secret_md5: &str) {
    let leaked = |entry: &tandem::share::Entry| {
        entry.size == 300_001 || entry.md5.is_some_and(|md5| md5.to_string() == secret_md5)
    };
    match op {
        Op::List(p) => {
            for entry in conn.list(PATHS[*p], Default::default()).await.unwrap_or_default() {
                assert!(!leaked(&entry) && !entry.path.contains("secret"), "listed {entry:?}");
            }
        }
        Op::Hash(p) => {
            if let Ok(entry) = conn.hash(PATHS[*p]).await {
                assert!(!leaked(&entry), "hashed {entry:?}");
            }
        }
        Op::HashAll(p) => {
            for entry in conn.hash_all(PATHS[*p], None).await.unwrap_or_default() {
                assert!(!leaked(&entry), "hashed {entry:?}");
            }
        }
        Op::Download(p) => {
            let _ = tandem::client::download_tcp(conn, PATHS[*p], dest, &Default::default()).await;
        }
        Op::Upload(p) => {
            let _ = tandem::client::upload_tcp(conn, &local.join("payload.bin"), PATHS[*p], &Default::default()).await;
        }
        Op::Mkdir(p) => drop(conn.mkdir(PATHS[*p]).await),
        Op::Rename(p, q) => drop(conn.rename(PATHS[*p], PATHS[*q]).await),
        Op::Delete(p) => drop(conn.delete(PATHS[*p]).await),
        Op::Lock(p) => drop(conn.lock(PATHS[*p]).await),
        _ => {}
    }
}

fn run_case(ops: &[Op]) {
    let parent = tempfile::tempdir().unwrap();
    let share = parent.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let canary = Canary::in_folder(&parent.path().join("canary"));
    let secret_md5 = canary.secret_md5();
    let local = tempfile::tempdir().unwrap();
    // Close in size to the secret, so a delta over a file swapped for it would be tried.
    write_file(local.path(), "payload.bin", &pseudo_random(300_000, 5), 1_600_000_000);
    let dest = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (addr, shutdown) = in_process(&share).await;
        let conn = Connection::connect(&addr).await.unwrap();
        // A second program keeps swapping `c` between a folder and a link out, racing every request.
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, share, canary) = (stop.clone(), share.clone(), canary.dir.path().to_path_buf());
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    remove(&share.join("c.swap"));
                    let _ = std::os::unix::fs::symlink(&canary, share.join("c.swap"));
                    let _ = std::fs::rename(share.join("c.swap"), share.join("c"));
                    let _ = std::fs::create_dir_all(share.join("c.real/x"));
                    let _ = std::fs::rename(share.join("c.real"), share.join("c"));
                }
            })
        };
        for op in ops {
            change_disk(&share, canary.dir.path(), op);
            request(&conn, op, local.path(), dest.path(), &secret_md5).await;
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        shutdown.cancel();
    });
    canary.assert_untouched();
    assert_eq!(names_in(parent.path()), ["canary", "share"], "something was written beside the share");
    for name in names_in(dest.path()) {
        let path = dest.path().join(&name);
        if std::fs::symlink_metadata(&path).unwrap().is_file() {
            assert_ne!(md5sum(&path), secret_md5, "a download brought the outside secret");
        }
    }
}

#[test]
fn no_sequence_of_changes_and_requests_reaches_outside_the_share() {
    let mut runner = TestRunner::new(Config::with_cases(24));
    runner
        .run(&prop::collection::vec(op(), 8..40), |ops| {
            run_case(&ops);
            Ok(())
        })
        .unwrap();
    // And the access-time check is one that can fail here.
    Canary::new().assert_reads_show();
}
