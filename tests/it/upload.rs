//! `upload` and the structural writes: byte-identical uploads that keep mtime and permission bits, replaced and
//! deleted files kept in the trash, `--read-only` refusing every write, hostile target paths refused, and an
//! upload cut off halfway leaving nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use tandem::client::Connection;
use tandem::protocol::ErrorCode;

use crate::common::*;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Files in the share's trash, with their contents.
fn trashed(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let trash = root.join(".tandem/trash");
    let mut found = Vec::new();
    let mut stack = vec![trash.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&trash).unwrap().to_string_lossy().into_owned();
                found.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

#[test]
fn uploads_are_byte_identical_keep_mtime_and_mode_and_trash_what_they_replace() {
    let local = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    write_file(server.root.path(), "docs/report.txt", b"the server's older version", 1_600_000_000);
    for (i, (name, size, mode)) in [
        ("empty.bin", 0usize, 0o600),
        ("one.bin", 1, 0o644),
        ("edge.bin", 1400, 0o640),
        ("big file ü.bin", 5_000_000, 0o755),
    ]
    .into_iter()
    .enumerate()
    {
        let path = local.path().join(name);
        write_file(local.path(), name, &pseudo_random(size, i as u64 + 60), 1_650_000_000 + i as u64);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let remote = format!("in/nested/{name}");
        let report = json(&server.cli(&["upload", path.to_str().unwrap(), &remote, "--json"]));
        let stored = server.path(&remote);
        assert_eq!(std::fs::read(&stored).unwrap(), std::fs::read(&path).unwrap(), "{name}");
        assert_eq!(md5sum(&stored), md5sum(&path));
        assert_eq!(report["md5"], md5sum(&path));
        assert_eq!(report["path"], remote);
        assert_eq!(report["size"], size as u64);
        assert_eq!(report["mode"], format!("{mode:o}"));
        assert_eq!(mode_of(&stored), mode, "{name}");
        assert_eq!(
            std::fs::metadata(&stored).unwrap().modified().unwrap(),
            std::fs::metadata(&path).unwrap().modified().unwrap()
        );
    }
    // Replacing a file keeps the old version in the trash, under its own path.
    write_file(local.path(), "report.txt", b"the laptop's new version", 1_700_000_000);
    let output = server.cli(&["upload", local.path().join("report.txt").to_str().unwrap(), "docs/report.txt"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("verified by the server"));
    assert_eq!(std::fs::read(server.path("docs/report.txt")).unwrap(), b"the laptop's new version");
    let kept = trashed(server.root.path());
    assert_eq!(kept.len(), 1);
    assert!(kept[0].0.ends_with("/docs/report.txt"), "{kept:?}");
    assert_eq!(kept[0].1, b"the server's older version");
    // No temporary files anywhere in the share.
    let listed = json(&server.cli(&["index", "longlist", "--json"]));
    assert!(listed.as_array().unwrap().iter().all(|e| !e["path"].as_str().unwrap().contains(".tandem-")), "{listed}");
}

#[test]
fn default_remote_path_is_the_file_name_and_bad_targets_are_refused() {
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "notes.md", b"# notes", 1);
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let source = local.path().join("notes.md");
    assert!(server.cli(&["upload", source.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(server.path("notes.md")).unwrap(), b"# notes");
    let outside = server.root.path().parent().unwrap().join(format!("upload-outside-{}", std::process::id()));
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, server.path("escape")).unwrap();
    for (target, expected) in [
        ("../x.md", "invalid path \"../x.md\": `..` leads outside the share"),
        ("/tmp/x.md", "invalid path \"/tmp/x.md\": absolute paths are not allowed"),
        (".tandem/x.md", "invalid path \".tandem/x.md\": tandem's state folder is private"),
        ("escape/x.md", "escape/x.md: \"escape\" is a symbolic link, and tandem never follows one"),
    ] {
        let output = server.cli(&["upload", source.to_str().unwrap(), target]);
        assert_eq!(output.status.code(), Some(1), "{target}");
        assert!(stderr(&output).starts_with(&format!("error: {expected}")), "{}", stderr(&output));
    }
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "nothing written outside");
    let missing = server.cli(&["upload", "/nonexistent/file.txt"]);
    assert_eq!(stderr(&missing), "error: /nonexistent/file.txt: No such file or directory (os error 2)\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_every_write_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "keep.txt", b"untouched", 1);
    let server = ServeProcess::start_with(root, &["--read-only"]);
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "new.txt", b"new", 1);
    let source = local.path().join("new.txt");
    let output = tokio::task::spawn_blocking({
        let (addr, source) = (server.addr.clone(), source.clone());
        move || cli(&addr, &["upload", source.to_str().unwrap(), "keep.txt"])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "error: keep.txt: the server is read-only\n");
    let conn = Connection::connect(&server.addr).await.unwrap();
    let refusals = [
        conn.mkdir("folder").await.map(|_| ()),
        conn.delete("keep.txt").await,
        conn.rename("keep.txt", "moved.txt").await.map(|_| ()),
    ];
    for refusal in refusals {
        match refusal {
            Err(tandem::Error::Remote(body)) => assert_eq!(body.code, ErrorCode::ReadOnly),
            other => panic!("expected a read-only refusal, got {other:?}"),
        }
    }
    assert_eq!(names_in(server.root.path()), [".tandem", "keep.txt"]);
    assert_eq!(std::fs::read(server.path("keep.txt")).unwrap(), b"untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mkdir_delete_and_rename_keep_everything_recoverable() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "a/b.txt", b"bee", 1);
    write_file(root.path(), "c.txt", b"sea", 1);
    let (addr, shutdown) = in_process(root.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    let made = conn.mkdir("new/deep/folder").await.unwrap().unwrap();
    assert_eq!(made.path, "new/deep/folder");
    assert!(root.path().join("new/deep/folder").is_dir());
    let moved = conn.rename("a/b.txt", "new/b renamed.txt").await.unwrap().unwrap();
    assert_eq!(moved.path, "new/b renamed.txt");
    assert_eq!(std::fs::read(root.path().join("new/b renamed.txt")).unwrap(), b"bee");
    match conn.rename("c.txt", "new/b renamed.txt").await {
        Err(tandem::Error::Remote(body)) => {
            assert_eq!(body.code, ErrorCode::Exists);
            assert_eq!(body.message, "new/b renamed.txt: already exists");
        }
        other => panic!("rename over an existing file must be refused: {other:?}"),
    }
    match conn.rename("new", "new/inside").await {
        Err(tandem::Error::Remote(body)) => assert!(body.message.contains("a folder cannot move into itself")),
        other => panic!("{other:?}"),
    }
    conn.delete("c.txt").await.unwrap();
    conn.delete("new").await.unwrap();
    assert!(!root.path().join("c.txt").exists() && !root.path().join("new").exists());
    let mut kept: Vec<String> =
        trashed(root.path()).into_iter().map(|(p, _)| p.split_once('/').unwrap().1.to_string()).collect();
    kept.sort();
    assert_eq!(kept, ["c.txt", "new/b renamed.txt"]);
    match conn.delete("c.txt").await {
        Err(tandem::Error::Remote(body)) => assert_eq!(body.message, "c.txt: no such file or folder"),
        other => panic!("{other:?}"),
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_halfway_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "target.bin", b"the version to keep", 1);
    let (addr, shutdown) = in_process(root.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    let (ticket, _) = conn.upload_ticket("target.bin", (1_000_000, 0, 0o644), None).await.unwrap();
    let (mut stream, _) = conn.open_bulk_channel(ticket).await.unwrap();
    // Half a file's worth of one chunk, then the connection drops.
    use tokio::io::AsyncWriteExt;
    stream.write_all(&1_000_000u32.to_be_bytes()).await.unwrap();
    stream.write_all(&pseudo_random(500_000, 3)).await.unwrap();
    drop(stream);
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(root.path().join(".tandem/history.log")).unwrap_or_default();
        if log.contains("\treceive\t") {
            assert!(log.lines().any(|l| l.contains("\treceive\t") && l.contains("error: ")), "{log}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the server never finished the cut-off upload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(names_in(root.path()), [".tandem", "target.bin"], "no temporary file left");
    assert_eq!(std::fs::read(root.path().join("target.bin")).unwrap(), b"the version to keep");
    shutdown.cancel();
}
