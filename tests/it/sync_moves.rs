//! Sync sees what size and mtime alone would miss, and moves what was moved: two files swapped by renames travel
//! as the change they are, and a renamed folder is renamed on the other side instead of being sent again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::common::{ServeProcess, cli_as, json, md5sum, set_mtime};
use super::sync::{Client, TestServer, tree};

fn long_ago() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_600_000_000)
}

/// `mv a tmp; mv b a; mv tmp b` for two files of the same size and mtime changes nothing that size and mtime show;
/// the swap still reaches the other client, and a later edit there is an edit of the swapped file, not a conflict.
#[tokio::test]
async fn two_files_swapped_by_renames_are_synced_as_swapped() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("a.txt", b"first file");
    alice.write("b.txt", b"other file");
    for name in ["a.txt", "b.txt"] {
        set_mtime(&alice.path(name), long_ago());
    }
    assert_eq!(alice.sync().await.uploaded, 2);
    assert_eq!(bob.sync().await.downloaded, 2);

    std::fs::rename(alice.path("a.txt"), alice.path("swap.tmp")).unwrap();
    std::fs::rename(alice.path("b.txt"), alice.path("a.txt")).unwrap();
    std::fs::rename(alice.path("swap.tmp"), alice.path("b.txt")).unwrap();
    let swapped = alice.sync().await;
    assert_eq!((swapped.uploaded, swapped.conflicts), (2, 0), "{swapped:?}");
    assert_eq!(std::fs::read(server.path("a.txt")).unwrap(), b"other file");
    assert_eq!(bob.sync().await.downloaded, 2);
    assert_eq!((bob.read("a.txt"), bob.read("b.txt")), (b"other file".to_vec(), b"first file".to_vec()));

    bob.write("a.txt", b"bob edits the swapped file");
    bob.sync().await;
    let after = alice.sync().await;
    assert_eq!((after.downloaded, after.conflicts), (1, 0), "{after:?}");
    assert_eq!(alice.read("a.txt"), b"bob edits the swapped file");
    assert_eq!(tree(alice.root.path()), tree(bob.root.path()));
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));
}

/// A file rewritten in place with the same size and its old mtime put back (`touch -r`) is seen by its ctime.
#[tokio::test]
async fn a_rewrite_under_a_restored_mtime_is_synced() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("notes.txt", b"version one");
    set_mtime(&alice.path("notes.txt"), long_ago());
    alice.sync().await;
    bob.sync().await;
    let hashed = std::fs::metadata(alice.path("notes.txt")).unwrap();
    // The ctime moves with the kernel's clock tick: the rewrite is repeated until it has.
    for _ in 0..1000 {
        alice.write("notes.txt", b"version two");
        set_mtime(&alice.path("notes.txt"), long_ago());
        let now = std::fs::metadata(alice.path("notes.txt")).unwrap();
        if std::os::unix::fs::MetadataExt::ctime_nsec(&now) != std::os::unix::fs::MetadataExt::ctime_nsec(&hashed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(alice.sync().await.uploaded, 1);
    assert_eq!(bob.sync().await.downloaded, 1);
    assert_eq!(bob.read("notes.txt"), b"version two");
}

/// Renaming a folder of 50 MB on one client costs the wire well under 1% of its bytes, on both clients, from the
/// byte counts `sync --once --json` reports (one rename request for the whole folder); every file arrives under
/// the new name with the same MD5.
#[test]
fn a_renamed_folder_of_50_mb_is_moved_not_sent_again() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = ["one.bin", "two.bin", "deeper/three.bin", "deeper/four and \u{00e9}.bin", "five.bin"];
    let mut seed = 0x2545_f491_u32;
    for name in files {
        let bytes: Vec<u8> = (0..10_000_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let path = a.path().join("photos 2026").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        set_mtime(&path, long_ago());
    }
    let sync = |home: &std::path::Path, dir: &std::path::Path| {
        let output = cli_as(&server.addr, home, &["sync", dir.to_str().unwrap(), "--once", "--json"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        json(&output)
    };
    assert_eq!(sync(home_a.path(), a.path())["uploaded"], 5);
    assert_eq!(sync(home_b.path(), b.path())["downloaded"], 5);
    // What was uploaded or downloaded is not read again by the next scan.
    assert_cached(a.path(), "photos 2026", &files);
    assert_cached(b.path(), "photos 2026", &files);

    std::fs::create_dir(a.path().join("Photos")).unwrap();
    std::fs::rename(a.path().join("photos 2026"), a.path().join("Photos/2026 trip")).unwrap();
    let moved_here = sync(home_a.path(), a.path());
    let moved_there = sync(home_b.path(), b.path());
    let limit = 50_000_000 / 100;
    for (who, summary) in [("the renaming client", &moved_here), ("the other client", &moved_there)] {
        let wire = summary["bytes_sent"].as_u64().unwrap() + summary["bytes_received"].as_u64().unwrap();
        assert!(wire < limit, "{who} moved {wire} bytes for a rename: {summary}");
        assert_eq!((summary["moved"].as_u64(), summary["uploaded"].as_u64()), (Some(5), Some(0)), "{who}: {summary}");
        assert_eq!(summary["downloaded"], 0, "{who}: {summary}");
    }
    // One request moved the whole folder on the server; the other client moved its files one by one, locally.
    let log = std::fs::read_to_string(a.path().join(".tandem/sync.log")).unwrap();
    assert!(log.contains("move on server photos 2026 -> Photos/2026 trip"), "{log}");
    assert_eq!(log.matches("move on server").count(), 1, "{log}");
    for name in files {
        let (here, there) =
            (a.path().join("Photos/2026 trip").join(name), b.path().join("Photos/2026 trip").join(name));
        assert_eq!(md5sum(&there), md5sum(&here), "{name}");
        assert_eq!(md5sum(&server.path(&format!("Photos/2026 trip/{name}"))), md5sum(&here), "{name}");
    }
    assert!(!b.path().join("photos 2026").exists(), "the old folder is gone on the other client");
    assert!(!server.path("photos 2026").exists(), "and on the server");
    // Neither client reads the moved files again: each is in its hash cache under the stamp it has now.
    for root in [a.path(), b.path()] {
        assert_cached(root, "Photos/2026 trip", &files);
    }
}

/// Each of `files` in `folder` below `root` is in the sync's hash cache under the stamp it has now, so the next
/// scan does not read it.
fn assert_cached(root: &std::path::Path, folder: &str, files: &[&str]) {
    let cache = tandem::digest::HashCache::open(&root.join(".tandem/hashes.sqlite")).unwrap();
    for name in files {
        let rel = format!("{folder}/{name}");
        let stamp = tandem::share::FileStamp::of(&std::fs::metadata(root.join(&rel)).unwrap());
        let cached = cache.get(&rel, stamp).map(|md5| md5.to_string());
        assert_eq!(cached, Some(md5sum(&root.join(&rel))), "{}: {rel}", root.display());
    }
}
