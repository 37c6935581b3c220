//! The download cache through the real binary: a second download of the same bytes comes from the cache and
//! sends no file bytes (the server's history shows no transfer), the least recently used entry goes first when
//! the limit is reached, a damaged entry is caught by its MD5 and downloaded again, and `cache show` and
//! `cache clear` say what is there. Each test has a cache folder of its own (`XDG_CACHE_HOME`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use crate::common::*;

/// A client whose download cache lives in a temporary folder, with an optional `TANDEM_CACHE_LIMIT`.
struct Client {
    home: tempfile::TempDir,
    limit: Option<&'static str>,
}

impl Client {
    fn new(limit: Option<&'static str>) -> Client {
        Client { home: tempfile::tempdir().unwrap(), limit }
    }

    fn run(&self, addr: &str, args: &[&str]) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("TANDEM_REMOTE", addr)
            .env("XDG_CACHE_HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path())
            .env_remove("TANDEM_TOKEN")
            .env_remove("TANDEM_CACHE_LIMIT");
        if let Some(limit) = self.limit {
            command.env("TANDEM_CACHE_LIMIT", limit);
        }
        command.output().expect("run tandem")
    }

    /// `download tcp PATH --to DEST --json`.
    fn download(&self, server: &ServeProcess, path: &str, dest: &Path) -> serde_json::Value {
        json(&self.run(&server.addr, &["download", "tcp", path, "--to", dest.to_str().unwrap(), "--json"]))
    }

    fn show(&self) -> serde_json::Value {
        json(&self.run("127.0.0.1:9", &["cache", "show", "--json"]))
    }

    fn object(&self, md5: &str) -> PathBuf {
        self.home.path().join("tandem/objects").join(&md5[..2]).join(md5)
    }
}

/// History lines of bulk transfers of `path`: one per time its bytes were sent.
fn transfers_of(server: &ServeProcess, path: &str) -> usize {
    let history = std::fs::read_to_string(server.path(".tandem/history.log")).unwrap();
    let quoted = format!("path={path:?}");
    history.lines().filter(|l| l.split('\t').nth(2) == Some("transfer") && l.contains(&quoted)).count()
}

fn names(shown: &serde_json::Value) -> Vec<&str> {
    shown.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect()
}

#[test]
fn a_cache_hit_sends_no_file_bytes() {
    let root = tempfile::tempdir().unwrap();
    let size = 3_000_000;
    write_file(root.path(), "data/video.bin", &pseudo_random(size, 7), 1_600_000_000);
    std::fs::set_permissions(root.path().join("data/video.bin"), std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .unwrap();
    let server = ServeProcess::start(root);
    let client = Client::new(None);
    let (first_dest, second_dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let first = client.download(&server, "data/video.bin", first_dest.path());
    assert_eq!((first["from_cache"].as_bool(), first["bytes_received"].as_u64()), (Some(false), Some(size as u64)));
    assert_eq!(transfers_of(&server, "data/video.bin"), 1);

    let second = client.download(&server, "data/video.bin", second_dest.path());
    assert_eq!(second["from_cache"], true);
    assert_eq!(second["bytes_received"], 0);
    assert_eq!(second["size"], size as u64);
    assert_eq!(second["md5"], md5sum(&server.path("data/video.bin")));
    assert_eq!(second["mtime"], first["mtime"]);
    // Independent of the report: the server sent the file once, for the first download only.
    assert_eq!(transfers_of(&server, "data/video.bin"), 1, "a hit opened a bulk transfer");

    let copy = second_dest.path().join("video.bin");
    assert_eq!(md5sum(&copy), md5sum(&server.path("data/video.bin")));
    let metadata = std::fs::metadata(&copy).unwrap();
    assert_eq!(
        metadata.modified().unwrap(),
        std::fs::metadata(server.path("data/video.bin")).unwrap().modified().unwrap()
    );
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777, 0o640);
    assert_eq!(names_in(second_dest.path()), ["video.bin"], "no temporary file left");

    // People see where it came from.
    let third_dest = tempfile::tempdir().unwrap();
    let text =
        client.run(&server.addr, &["download", "tcp", "data/video.bin", "--to", third_dest.path().to_str().unwrap()]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(stdout(&text).contains("source    download cache, no bytes over the network"), "{}", stdout(&text));
    assert_eq!(transfers_of(&server, "data/video.bin"), 1);
}

#[test]
fn eviction_keeps_the_total_under_the_limit_least_recently_used_first() {
    let root = tempfile::tempdir().unwrap();
    for (i, name) in ["a.bin", "b.bin", "c.bin"].iter().enumerate() {
        write_file(root.path(), name, &pseudo_random(100_000, 10 * i as u64 + 10), 1_600_000_000);
    }
    let server = ServeProcess::start(root);
    let client = Client::new(Some("250K"));
    let dest = tempfile::tempdir().unwrap();
    client.download(&server, "a.bin", dest.path());
    client.download(&server, "b.bin", dest.path());
    // Using a again makes b the least recently used, though b was stored later.
    assert_eq!(client.download(&server, "a.bin", dest.path())["from_cache"], true);
    client.download(&server, "c.bin", dest.path());

    let shown = client.show();
    assert_eq!(names(&shown), ["c.bin", "a.bin"], "most recently used first, b evicted");
    let total: u64 = shown.as_array().unwrap().iter().map(|e| e["size"].as_u64().unwrap()).sum();
    assert!(total <= 250 * 1024, "total {total} over the limit");
    assert!(!client.object(&md5sum(&server.path("b.bin"))).exists(), "b's object file is gone");
    assert!(client.object(&md5sum(&server.path("a.bin"))).exists());

    let again = client.download(&server, "b.bin", dest.path());
    assert_eq!((again["from_cache"].as_bool(), again["bytes_received"].as_u64()), (Some(false), Some(100_000)));
    // Storing b again pushed out a, now the least recently used.
    assert_eq!(names(&client.show()), ["b.bin", "c.bin"]);
}

#[test]
fn a_limit_from_config_and_a_bad_limit_named_in_the_error() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", &pseudo_random(50_000, 3), 1_600_000_000);
    let server = ServeProcess::start(root);
    let client = Client::new(None);
    std::fs::create_dir_all(client.home.path().join("tandem")).unwrap();
    std::fs::write(client.home.path().join("tandem/config.toml"), "cache_limit = \"40 KiB\"\n").unwrap();
    let dest = tempfile::tempdir().unwrap();
    client.download(&server, "big.bin", dest.path());
    assert!(client.show().as_array().unwrap().is_empty(), "a file over the limit is not kept");
    let text = stdout(&client.run("127.0.0.1:9", &["cache", "show"]));
    assert!(
        text.ends_with(
            "0 files, 0 B of 40 KiB limit (0%), in {}\n"
                .replace("{}", &client.home.path().join("tandem").display().to_string())
                .as_str()
        ),
        "{text}"
    );

    let bad = Client::new(Some("12 parsecs"));
    let output = bad.run(&server.addr, &["download", "tcp", "big.bin", "--to", dest.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(
        said.starts_with("error: ") && said.contains("\"12 parsecs\"") && said.contains("TANDEM_CACHE_LIMIT"),
        "{said}"
    );
}

#[test]
fn a_damaged_entry_is_caught_by_its_md5_and_downloaded_again() {
    let root = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(1_000_000, 11);
    write_file(root.path(), "doc.pdf", &bytes, 1_600_000_000);
    let server = ServeProcess::start(root);
    let client = Client::new(None);
    let dest = tempfile::tempdir().unwrap();
    client.download(&server, "doc.pdf", dest.path());
    let md5 = md5sum(&server.path("doc.pdf"));
    let object = client.object(&md5);
    // Same size, one byte flipped: only the MD5 can tell.
    let mut damaged = std::fs::read(&object).unwrap();
    damaged[500_000] ^= 0xff;
    std::fs::write(&object, &damaged).unwrap();

    // Into a fresh folder, so the whole file crosses (over an existing copy it would come as a tiny delta).
    let dest = tempfile::tempdir().unwrap();
    let output =
        client.run(&server.addr, &["cache", "verify", "doc.pdf", "--to", dest.path().to_str().unwrap(), "--json"]);
    let report = json(&output);
    assert_eq!(report["cache"], "repaired");
    assert_eq!(report["from_cache"], false);
    assert_eq!(report["bytes_received"], bytes.len() as u64);
    assert!(stderr(&output).contains("damaged"), "the person is told: {}", stderr(&output));
    assert_eq!(std::fs::read(dest.path().join("doc.pdf")).unwrap(), bytes);
    assert_eq!(md5sum(&object), md5, "the entry is repaired");
    assert_eq!(transfers_of(&server, "doc.pdf"), 2);

    let verified = json(
        &client.run(&server.addr, &["cache", "verify", "doc.pdf", "--to", dest.path().to_str().unwrap(), "--json"]),
    );
    assert_eq!((verified["cache"].as_str(), verified["from_cache"].as_bool()), (Some("hit"), Some(true)));
    assert_eq!(verified["bytes_received"], 0);
    assert_eq!(transfers_of(&server, "doc.pdf"), 2);
    assert_eq!(names_in(dest.path()), ["doc.pdf"]);
}

#[test]
fn cache_show_field_by_field_then_clear() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "notes/one.txt", &pseudo_random(1536, 1), 1_600_000_000);
    write_file(root.path(), "two words.bin", &pseudo_random(2 << 20, 2), 1_600_000_000);
    let server = ServeProcess::start(root);
    let client = Client::new(Some("1 GiB"));
    let dest = tempfile::tempdir().unwrap();
    let before = SystemTime::now();
    client.download(&server, "notes/one.txt", dest.path());
    client.download(&server, "two words.bin", dest.path());
    let after = SystemTime::now();

    let shown = client.show();
    let entries = shown.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for (entry, (name, rel, size)) in
        entries.iter().zip([("two words.bin", "two words.bin", 2u64 << 20), ("one.txt", "notes/one.txt", 1536)])
    {
        let keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "size", "md5", "last_used"]);
        assert_eq!(entry["name"], name);
        assert_eq!(entry["size"], size);
        assert_eq!(entry["md5"], md5sum(&server.path(rel)));
        let used = chrono::DateTime::parse_from_rfc3339(entry["last_used"].as_str().unwrap()).unwrap();
        let used = SystemTime::from(used);
        assert!(before <= used && used <= after, "last used {used:?} outside the test");
    }

    let text = stdout(&client.run("127.0.0.1:9", &["cache", "show"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header: Vec<&str> = lines[0].split("  ").filter(|s| !s.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["NAME", "SIZE", "MD5", "LAST USED"]);
    for (line, (name, size, rel)) in
        lines[1..3].iter().zip([("two words.bin", "2 MiB", "two words.bin"), ("one.txt", "1.50 KiB", "notes/one.txt")])
    {
        let fields: Vec<&str> = line.split("  ").filter(|s| !s.is_empty()).map(str::trim).collect();
        assert_eq!(fields[..3], [name, size, md5sum(&server.path(rel)).as_str()], "{line}");
        assert!(chrono::NaiveDateTime::parse_from_str(fields[3], "%Y-%m-%d %H:%M:%S").is_ok(), "{line}");
        assert_eq!(line.find(fields[2]), lines[0].find("MD5"), "columns line up: {text}");
    }
    let dir = client.home.path().join("tandem");
    let total = humansize::format_size((2u64 << 20) + 1536, humansize::BINARY);
    assert_eq!(lines[3], format!("2 files, {total} of 1 GiB limit (0%), in {}", dir.display()));

    let cleared = json(&client.run("127.0.0.1:9", &["cache", "clear", "--json"]));
    assert_eq!(cleared, serde_json::json!({ "removed": 2, "bytes": (2u64 << 20) + 1536 }));
    assert!(client.show().as_array().unwrap().is_empty());
    assert!(names_in(&dir.join("objects")).is_empty());
    let again = client.download(&server, "notes/one.txt", dest.path());
    assert_eq!(again["from_cache"], false, "a cleared cache serves nothing");
}

#[test]
fn concurrent_downloads_share_one_cache() {
    let root = tempfile::tempdir().unwrap();
    let files = ["p.bin", "q.bin", "r.bin"];
    for (i, name) in files.iter().enumerate() {
        write_file(root.path(), name, &pseudo_random(400_000, 100 * i as u64 + 100), 1_600_000_000);
    }
    let server = ServeProcess::start(root);
    let client = Client::new(None);
    let dests: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    // Two processes per file at once: each stores or serves its copy, and none sees half an object.
    std::thread::scope(|scope| {
        for (i, dest) in dests.iter().enumerate() {
            let (client, server, name) = (&client, &server, files[i % 3]);
            scope.spawn(move || {
                let report = client.download(server, name, dest.path());
                assert_eq!(report["md5"], md5sum(&server.path(name)));
            });
        }
    });
    let shown = client.show();
    let mut listed = names(&shown);
    listed.sort();
    assert_eq!(listed, files);
    for name in files {
        let md5 = md5sum(&server.path(name));
        assert_eq!(md5sum(&client.object(&md5)), md5);
    }
    let objects = client.home.path().join("tandem/objects");
    let leftovers: Vec<String> = std::fs::read_dir(&objects)
        .unwrap()
        .flat_map(|d| names_in(&d.unwrap().path()))
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
