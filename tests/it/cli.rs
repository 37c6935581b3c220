//! The index and hash commands through the real binary, checked field by field against the real files.

use std::time::{Duration, UNIX_EPOCH};

use crate::common::*;

/// A small share: nested folders, a space and Unicode in names, a symlink.
fn sample() -> ServeProcess {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "a.txt", b"alpha\n", 1_700_000_000);
    write_file(root.path(), "docs/readme.md", b"# readme\n", 1_700_000_100);
    write_file(root.path(), "docs/deep/naïve notes.txt", &pseudo_random(1400, 3), 1_700_000_200);
    write_file(root.path(), "x/docs.txt", b"not in docs\n", 1_700_000_300);
    std::os::unix::fs::symlink("a.txt", root.path().join("link")).unwrap();
    ServeProcess::start(root)
}

#[test]
fn longlist_json_matches_the_files_field_by_field() {
    let server = sample();
    let listed = json(&server.cli(&["index", "longlist", "--json"]));
    let listed = listed.as_array().unwrap();
    let paths: Vec<&str> = listed.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["a.txt", "docs", "docs/deep", "docs/deep/naïve notes.txt", "docs/readme.md", "link", "x", "x/docs.txt"]
    );
    for entry in listed {
        let path = server.path(entry["path"].as_str().unwrap());
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let kind = if metadata.is_symlink() {
            "symlink"
        } else if metadata.is_dir() {
            "dir"
        } else {
            "file"
        };
        assert_eq!(entry["kind"], kind, "{entry}");
        assert_eq!(entry["size"], metadata.len(), "{entry}");
        assert_eq!(entry["mtime"], rfc3339(metadata.modified().unwrap()), "{entry}");
        assert!(entry.get("md5").is_none());
    }
    assert!(!std::fs::read_to_string(server.path(".tandem/history.log")).unwrap().is_empty());
}

#[test]
fn longlist_table_shows_every_entry_and_a_summary() {
    let server = sample();
    let output = server.cli(&["index", "longlist"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("KIND") && lines[0].ends_with("PATH"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("file") && l.ends_with("docs/deep/naïve notes.txt") && l.contains("1.37 KiB"))
    );
    // A link is listed with what it points at, never followed.
    assert!(lines.iter().any(|l| l.starts_with("symlink") && l.contains("link -> ")), "{text}");
    assert_eq!(*lines.last().unwrap(), "4 files (1.39 KiB), 3 folders, 1 symlink");
}

#[test]
fn checkall_and_verify_agree_with_md5sum() {
    let server = sample();
    let hashed = json(&server.cli(&["hash", "checkall", "--json"]));
    let hashed = hashed.as_array().unwrap();
    assert_eq!(hashed.len(), 4, "files only: {hashed:?}");
    for entry in hashed {
        let path = server.path(entry["path"].as_str().unwrap());
        assert_eq!(entry["md5"], md5sum(&path), "{entry}");
        assert_eq!(entry["kind"], "file");
        assert_eq!(entry["size"], std::fs::metadata(&path).unwrap().len());
        assert_eq!(entry["mtime"], rfc3339(std::fs::metadata(&path).unwrap().modified().unwrap()));
    }

    let one = json(&server.cli(&["hash", "verify", "docs/deep/naïve notes.txt", "--json"]));
    assert_eq!(one["md5"], md5sum(&server.path("docs/deep/naïve notes.txt")));
    assert_eq!(one["size"], 1400);
    assert_eq!(one["mtime"], "2023-11-14T22:16:40.000000000Z");

    let text = stdout(&server.cli(&["hash", "verify", "a.txt"]));
    assert!(text.contains(&format!("md5       {}", md5sum(&server.path("a.txt")))), "{text}");
}

/// Bytes the server process has read with `read` calls so far (files and sockets alike), from `/proc`.
fn bytes_read_by(server: &ServeProcess) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", server.child.id())).unwrap();
    let line = io.lines().find(|line| line.starts_with("rchar:")).unwrap();
    line["rchar:".len()..].trim().parse().unwrap()
}

#[test]
fn second_checkall_is_answered_from_the_cache() {
    let server = sample();
    let big = server.path("big.bin");
    std::fs::write(&big, vec![7u8; 8_000_000]).unwrap();
    set_mtime(&big, std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    let first = json(&server.cli(&["hash", "checkall", "--json"]));
    // The second reads no file again: far fewer bytes than the 8 MB file.
    let before = bytes_read_by(&server);
    let second = json(&server.cli(&["hash", "checkall", "--json"]));
    let read = bytes_read_by(&server) - before;
    assert!(read < 1_000_000, "the second checkall read {read} bytes");
    assert_eq!(second, first);

    // Same size, same mtime, same inode, different bytes: the ctime tells, and the file is read again.
    let path = server.path("a.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let hashed = std::fs::metadata(&path).unwrap();
    for _ in 0..1000 {
        std::fs::write(&path, b"ALPHA\n").unwrap();
        set_mtime(&path, mtime);
        let now = std::fs::metadata(&path).unwrap();
        if std::os::unix::fs::MetadataExt::ctime_nsec(&now) != std::os::unix::fs::MetadataExt::ctime_nsec(&hashed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let third = json(&server.cli(&["hash", "verify", "a.txt", "--json"]));
    assert_eq!(third["md5"], md5sum(&path));
    let old = first.as_array().unwrap().iter().find(|e| e["path"] == "a.txt").unwrap();
    assert_ne!(third["md5"], old["md5"]);
}

#[test]
fn shortlist_bounds_are_inclusive() {
    let root = tempfile::tempdir().unwrap();
    for (name, secs) in [("before", 999), ("start", 1000), ("middle", 1500), ("end", 2000), ("after", 2001)] {
        write_file(root.path(), name, name.as_bytes(), secs);
    }
    std::fs::File::options()
        .write(true)
        .open(root.path().join("after"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::new(2000, 1))
        .unwrap();
    let server = ServeProcess::start(root);
    let listed = json(&server.cli(&[
        "index",
        "shortlist",
        "1970-01-01T00:16:40Z",
        "1970-01-01T00:33:20.000000000+00:00",
        "--json",
    ]));
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["end", "middle", "start"]);

    // Typed to the second in local time, the end covers that whole second.
    let local = |secs| {
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let listed = json(&server.cli(&["index", "shortlist", &local(1000), &local(2000), "--json"]));
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["after", "end", "middle", "start"]);
}

#[test]
fn regex_matches_the_name_or_with_path_the_whole_path() {
    let server = sample();
    let by_name = json(&server.cli(&["index", "regex", "^docs", "--json"]));
    let names: Vec<&str> = by_name.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["docs", "x/docs.txt"]);
    let by_path = json(&server.cli(&["index", "regex", "^docs/", "--path", "--json"]));
    let names: Vec<&str> = by_path.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["docs/deep", "docs/deep/naïve notes.txt", "docs/readme.md"]);
}

#[test]
fn bad_values_exit_1_naming_the_value() {
    let server = sample();
    for (args, expected) in [
        (vec!["index", "regex", "a(b"], "error: invalid regex \"a(b\": unclosed group"),
        (vec!["index", "shortlist", "yesterday", "2024-01-01"], "error: invalid time \"yesterday\""),
        (
            vec!["index", "shortlist", "2024-02-01", "2024-01-01"],
            "error: invalid time range: start \"2024-02-01\" is after end \"2024-01-01\"",
        ),
        (vec!["hash", "verify", "missing.txt"], "error: missing.txt: no such file or folder"),
        (vec!["hash", "verify", "docs"], "error: docs: not a regular file"),
    ] {
        let output = server.cli(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(stderr(&output).starts_with(expected), "{args:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_server_exits_1() {
    let output = cli("127.0.0.1:9", &["index", "sideways"]);
    assert_eq!(output.status.code(), Some(2));
    let output = cli("127.0.0.1:9", &["download", "ftp", "a.txt"]);
    assert_eq!(output.status.code(), Some(2));
    let output = cli("127.0.0.1:9", &["index", "longlist"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "error: 127.0.0.1:9: Connection refused (os error 111)\n");
}

#[test]
fn global_flags_are_accepted_anywhere() {
    let server = sample();
    let output = cli("127.0.0.1:9", &["--json", "-r", &server.addr, "hash", "verify", "a.txt"]);
    assert_eq!(json(&output)["md5"], md5sum(&server.path("a.txt")));
}

#[test]
fn demo_runs_end_to_end_in_a_temporary_folder() {
    let cwd = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(BIN)
        .args(["demo", "--tour"])
        .current_dir(cwd.path())
        .env("TANDEM_DEMO_BIG_MIB", "8")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "$ tandem index longlist",
        "$ tandem hash checkall",
        "  ≠  changelog.md                     differs",
        "  +  draft.txt                        only here (local)",
        "  +  holiday video.bin                only on the remote",
        "size      8 MiB (8388608 bytes)",
        "  =  holiday video.bin                same on both sides",
        "\thashall\tpath=\"\"\tok\t",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let demo_root = text.lines().next().unwrap().split(" from ").nth(1).unwrap().split(" on ").next().unwrap();
    assert!(!std::path::Path::new(demo_root).exists(), "demo folder {demo_root} removed");
    assert!(names_in(cwd.path()).is_empty(), "nothing written to the current folder");
}
