//! `tandem sync`, `tandem lock` and `tandem unlock` as a person runs them: real processes, each client with its
//! own config folder (and so its own identity), against a `tandem serve` process.

use std::time::{Duration, Instant};

use super::common::{BIN, ServeProcess, cli_as, json, stderr, stdout, write_file};
use super::sync::{identity, tree};
use tandem::sync::{SyncConfig, SyncEvent};

#[test]
fn sync_once_reports_what_it_did_in_json_and_a_second_run_does_nothing() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let (home, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_file(folder.path(), "docs/a b.txt", b"hello", 1_600_000_000);
    write_file(folder.path(), "empty", b"", 1_600_000_000);
    write_file(server.root.path(), "from server/\u{00fc}ber.bin", &[7u8; 1401], 1_600_000_000);
    let dir = folder.path().to_str().unwrap();

    // The server journals its own files in the background; until then, they are simply not there yet.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut totals = (0, 0);
    while !folder.path().join("from server/\u{00fc}ber.bin").exists() {
        assert!(Instant::now() < deadline, "the server's file never arrived");
        let summary = json(&cli_as(&server.addr, home.path(), &["sync", dir, "--once", "--json"]));
        let fields: Vec<&str> = summary.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            ["uploaded", "downloaded", "moved", "deleted", "conflicts", "bytes_sent", "bytes_received", "left_out"]
        );
        totals.0 += summary["uploaded"].as_u64().unwrap();
        totals.1 += summary["bytes_received"].as_u64().unwrap();
    }
    assert_eq!(totals, (2, 1401));
    assert_eq!(std::fs::read(server.path("docs/a b.txt")).unwrap(), b"hello");
    assert_eq!(tree(folder.path()), tree(server.root.path()));

    let again = json(&cli_as(&server.addr, home.path(), &["sync", dir, "--once", "--json"]));
    assert_eq!(
        again,
        serde_json::json!({"uploaded": 0, "downloaded": 0, "moved": 0, "deleted": 0, "conflicts": 0, "bytes_sent": 0, "bytes_received": 0, "left_out": []})
    );
    let log = std::fs::read_to_string(folder.path().join(".tandem/sync.log")).unwrap();
    assert!(log.contains("upload docs/a b.txt") && log.contains("download from server/\u{00fc}ber.bin"), "{log}");
}

#[test]
fn sync_once_waits_for_a_file_still_being_written_and_sends_it_whole() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let (home, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    let file = folder.path().join("recording.wav");
    std::fs::write(&file, &bytes).unwrap();
    // Modified "just now" for the next second or so, as a file a program is still writing would be.
    let soon = std::time::SystemTime::now() + Duration::from_millis(900);
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(soon).unwrap();

    let dir = folder.path().to_str().unwrap();
    let output = cli_as(&server.addr, home.path(), &["sync", dir, "--once", "--json"]);
    let summary = json(&output);
    assert_eq!((summary["uploaded"].as_u64(), summary["bytes_sent"].as_u64()), (Some(1), Some(6_000_000)));
    assert_eq!(std::fs::read(server.path("recording.wav")).unwrap(), bytes);
    // Each action is told on stderr as a person reads it: the local time, then what was done.
    let told = regex::Regex::new(r"(?m)^\d\d:\d\d:\d\d upload recording\.wav$").unwrap();
    assert!(told.is_match(&stderr(&output)), "{}", stderr(&output));
}

#[test]
fn sync_refuses_a_missing_folder_with_exit_status_1() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("Sync");
    let output = cli_as(&server.addr, home.path(), &["sync", missing.to_str().unwrap(), "--once"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.starts_with("error: ") && message.contains("Sync: does not exist; refusing to sync"), "{message}");
}

#[test]
fn a_lock_refuses_others_survives_a_server_restart_and_can_be_forced_open() {
    let mut server = ServeProcess::start(tempfile::tempdir().unwrap());
    write_file(server.root.path(), "plans/site.dwg", b"v1", 1_600_000_000);
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let upload_source = bob.path().join("site.dwg");
    std::fs::write(&upload_source, b"bob's version").unwrap();

    let locked = cli_as(&server.addr, alice.path(), &["lock", "plans/site.dwg"]);
    assert!(locked.status.success(), "{}", stderr(&locked));
    assert!(stdout(&locked).starts_with("locked plans/site.dwg (held by "), "{}", stdout(&locked));

    server.restart();
    let refused = cli_as(&server.addr, bob.path(), &["upload", upload_source.to_str().unwrap(), "plans/site.dwg"]);
    assert_eq!(refused.status.code(), Some(1));
    let host = tandem::client::identity::host_name(None);
    assert_eq!(stderr(&refused).trim(), format!("error: plans/site.dwg is locked by {host}"));
    assert_eq!(std::fs::read(server.path("plans/site.dwg")).unwrap(), b"v1");

    // `index` shows the lock, for people and for scripts.
    let listing = cli_as(&server.addr, bob.path(), &["index", "longlist"]);
    assert!(stdout(&listing).contains(&format!("plans/site.dwg  [locked by {host}]")), "{}", stdout(&listing));
    let entries = json(&cli_as(&server.addr, bob.path(), &["index", "longlist", "--json"]));
    let entry = entries.as_array().unwrap().iter().find(|e| e["path"] == "plans/site.dwg").unwrap().clone();
    assert_eq!(entry["locked_by"], host.as_str());

    let not_yours = cli_as(&server.addr, bob.path(), &["unlock", "plans/site.dwg"]);
    assert_eq!(stderr(&not_yours).trim(), format!("error: plans/site.dwg is locked by {host}"));
    let forced = cli_as(&server.addr, bob.path(), &["unlock", "--force", "plans/site.dwg"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let uploaded = cli_as(&server.addr, bob.path(), &["upload", upload_source.to_str().unwrap(), "plans/site.dwg"]);
    assert!(uploaded.status.success(), "{}", stderr(&uploaded));
    assert_eq!(std::fs::read(server.path("plans/site.dwg")).unwrap(), b"bob's version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sync_pushes_a_saved_file_to_another_running_client() {
    let server = super::sync::TestServer::start().await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut ready = Vec::new();
    for (root, host) in [(a.path(), "alice"), (b.path(), "bob")] {
        let config = SyncConfig {
            root: root.to_path_buf(),
            remote: tandem::client::Remote::new(&server.addr),
            client: identity(host),
            interval: Duration::from_secs(600),
        };
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(tandem::sync::run(config, events_tx, stop.clone()));
        // Wait for the first pass, so the change below is a change, not part of the initial sync.
        ready.push(async move {
            while let Some(event) = events.recv().await {
                if matches!(event, SyncEvent::Idle { .. }) {
                    break;
                }
            }
            events
        });
    }
    let mut streams = Vec::new();
    for wait in ready {
        streams.push(tokio::time::timeout(Duration::from_secs(30), wait).await.expect("first pass"));
    }

    // The interval is ten minutes: only the watcher and the server's push can carry this across.
    std::fs::write(a.path().join("saved.txt"), b"saved in alice's folder").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(b.path().join("saved.txt")).ok().as_deref() != Some(b"saved in alice's folder".as_slice()) {
        assert!(Instant::now() < deadline, "the saved file never reached bob's folder");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
}

/// Makes `path` and everything below it belong to the unprivileged user `nobody`.
fn give_to_nobody(path: &std::path::Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            give_to_nobody(&entry.unwrap().path());
        }
    }
}

const NOBODY: u32 = 65534;

/// One folder the sync client cannot read (mode 000, and the client is not root) is left out and reported, with
/// the reason, while the rest of the tree syncs; `sync --once` exits 1 and lists it in its JSON; nothing in it is
/// taken for deleted.
#[test]
fn an_unreadable_folder_is_left_out_and_reported_while_the_rest_syncs() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    write_file(server.root.path(), "locked/on the server.txt", b"kept", 1_600_000_000);
    let (home, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_file(folder.path(), "locked/secret.txt", b"unreadable", 1_600_000_000);
    write_file(folder.path(), "open/fine.txt", b"fine", 1_600_000_000);
    // The client runs as `nobody`, from a copy of the binary it may run wherever the suite was built.
    let bin = home.path().join("tandem-client");
    std::fs::copy(BIN, &bin).unwrap();
    for owned in [home.path(), folder.path()] {
        give_to_nobody(owned);
    }
    std::fs::set_permissions(folder.path().join("locked"), std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .unwrap();
    let run = || {
        let ids = format!("{NOBODY}");
        std::process::Command::new("setpriv")
            .args(["--reuid", &ids, "--regid", &ids, "--clear-groups", "--inh-caps=-all"])
            .arg(&bin)
            .args(["sync", folder.path().to_str().unwrap(), "--once", "--json"])
            .env("TANDEM_REMOTE", &server.addr)
            .env("XDG_CONFIG_HOME", home.path())
            .env("TANDEM_CACHE_LIMIT", "0")
            .env_remove("TANDEM_TOKEN")
            .output()
            .expect("run tandem as nobody with setpriv (util-linux)")
    };
    // The server journals its own file in the background; sync until the open folder has gone up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let output = loop {
        let output = run();
        if server.path("open/fine.txt").exists() {
            break output;
        }
        assert!(Instant::now() < deadline, "the readable folder never synced: {}", stderr(&output));
    };
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(said.contains("note locked: the folder cannot be read: Permission denied"), "{said}");
    assert!(said.contains("error: 1 path was left out of this sync"), "{said}");
    // `--json` still prints its one document, failure or not.
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["left_out"][0]["path"], "locked", "{summary}");
    assert!(summary["left_out"][0]["reason"].as_str().unwrap().contains("Permission denied"), "{summary}");
    assert_eq!(std::fs::read(server.path("open/fine.txt")).unwrap(), b"fine");
    // Unknown is not deleted: the server's file in that folder stays, and nothing of the client's went up.
    let again = run();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(std::fs::read(server.path("locked/on the server.txt")).unwrap(), b"kept");
    assert!(!server.path("locked/secret.txt").exists());
    assert_eq!(stdout(&again).matches("cannot be read").count(), 1, "{}", stdout(&again));
}

/// A download cut off by a crash leaves its bytes in `.tandem/tmp`; the next sync of the folder removes them.
#[test]
fn leftovers_of_a_crashed_sync_are_swept_when_sync_starts() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    let (home, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_file(folder.path(), ".tandem/tmp/incoming-00000000000000aa", b"half a download", 1_600_000_000);
    write_file(folder.path(), "kept.txt", b"a user's file", 1_600_000_000);
    let output = cli_as(&server.addr, home.path(), &["sync", folder.path().to_str().unwrap(), "--once"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!folder.path().join(".tandem/tmp/incoming-00000000000000aa").exists());
    assert_eq!(std::fs::read(server.path("kept.txt")).unwrap(), b"a user's file");
}
