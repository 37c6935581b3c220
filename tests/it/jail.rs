//! The share is a jail: attacks by a client that holds the token, each written as the attack, with the safe
//! outcome asserted. Nothing outside the share is written, read, hashed or listed (a canary folder beside it is
//! hashed before and after, and its files' access times, set far in the past, must not move); no link is a door,
//! not even one that stays inside; setuid bits never travel; a user's file is never mistaken for tandem's.

use std::fs::FileTimes;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tandem::client::Connection;
use tandem::protocol::BulkTrailer;
use tandem::share::{FileStamp, Share};
use tandem::transfer::tcp;

use crate::common::*;

/// A folder outside the share whose files must never be touched. Their access times are set to 2001, so any
/// read moves them (relatime updates an access time older than a day).
pub struct Canary {
    pub dir: CanaryDir,
    before: Vec<(PathBuf, String, i64)>,
}

/// Where a canary lives: a temporary folder of its own, or a folder in one the test owns.
pub struct CanaryDir {
    path: PathBuf,
    _owned: Option<tempfile::TempDir>,
}

impl CanaryDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Canary {
    pub fn new() -> Self {
        let owned = tempfile::tempdir().unwrap();
        Canary::at(CanaryDir { path: owned.path().to_path_buf(), _owned: Some(owned) })
    }

    /// A canary in the folder `path`, made here.
    pub fn in_folder(path: &Path) -> Self {
        std::fs::create_dir_all(path).unwrap();
        Canary::at(CanaryDir { path: path.to_path_buf(), _owned: None })
    }

    fn at(dir: CanaryDir) -> Self {
        write_file(dir.path(), "secret.bin", &pseudo_random(300_001, 77), 1_600_000_000);
        write_file(dir.path(), "private.txt", b"outside original", 1_600_000_000);
        write_file(dir.path(), "sub/deep.txt", b"deep outside", 1_600_000_000);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut before = Vec::new();
        for rel in ["secret.bin", "private.txt", "sub/deep.txt"] {
            let path = dir.path().join(rel);
            let md5 = md5sum(&path);
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_times(FileTimes::new().set_accessed(old)).unwrap();
            drop(file);
            before.push((path.clone(), md5, std::fs::metadata(&path).unwrap().atime()));
        }
        Canary { dir, before }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The MD5 of the secret, which must never come back from the server.
    pub fn secret_md5(&self) -> String {
        self.before[0].1.clone()
    }

    /// Nothing in the canary folder was written, read, added or removed.
    pub fn assert_untouched(&self) {
        let mut names: Vec<String> = walk_names(self.dir.path());
        names.sort();
        assert_eq!(names, ["private.txt", "secret.bin", "sub", "sub/deep.txt"], "the canary folder changed");
        for (path, md5, atime) in &self.before {
            assert_eq!(&md5sum_keeping_atime(path), md5, "{} was written", path.display());
            assert_eq!(std::fs::metadata(path).unwrap().atime(), *atime, "{} was read", path.display());
        }
    }

    /// Proves the access-time check can fail on this filesystem: a read of ours moves it.
    pub fn assert_reads_show(&self) {
        let (path, _, atime) = &self.before[1];
        std::fs::read(path).unwrap();
        assert_ne!(std::fs::metadata(path).unwrap().atime(), *atime, "access times do not move here");
    }
}

/// `md5sum` reads the file, which moves its access time: put it back, so the check itself is not a read.
fn md5sum_keeping_atime(path: &Path) -> String {
    let atime = std::fs::metadata(path).unwrap().accessed().unwrap();
    let md5 = md5sum(path);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_times(FileTimes::new().set_accessed(atime)).unwrap();
    md5
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            names.extend(walk_names(&entry.path()).into_iter().map(|n| format!("{name}/{n}")));
        }
        names.push(name);
    }
    names
}

/// Sends `bytes` on an upload ticket and returns the server's verdict.
async fn send_on_ticket(conn: &Connection, ticket: tandem::protocol::Ticket, bytes: &[u8]) -> BulkTrailer {
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), bytes).unwrap();
    let stamp = FileStamp::of(&std::fs::metadata(local.path()).unwrap());
    let (mut stream, _) = conn.open_bulk(ticket).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let sent =
            tcp::send_file(&mut stream, local.path(), "payload", "server", stamp, None, &Default::default()).unwrap();
        assert!(matches!(sent.trailer, BulkTrailer::Done { .. }));
        tcp::read_trailer(&mut stream, "server").unwrap()
    })
    .await
    .unwrap()
}

fn failure(trailer: BulkTrailer) -> String {
    match trailer {
        BulkTrailer::Failed(body) => body.message,
        BulkTrailer::Done { .. } => panic!("the server stored the file"),
    }
}

/// Finding 1: a ticket issued for `evil/…` while `evil` did not exist, then a link renamed to `evil`, then the
/// bytes. The write is resolved when it happens, so it meets the link and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_ticket_cannot_be_led_outside_or_into_the_state_folder_by_a_rename() {
    let canary = Canary::new();
    let root = tempfile::tempdir().unwrap();
    symlink(canary.dir.path(), root.path().join("link-out")).unwrap();
    symlink(".tandem", root.path().join("link-state")).unwrap();
    let server = ServeProcess::start(root);
    let conn = Connection::connect(&server.addr).await.unwrap();
    let history_before = std::fs::read(server.path(".tandem/history.log")).unwrap_or_default();
    for (link, name) in [("link-out", "private.txt"), ("link-state", "history.log"), ("link-state", "journal.sqlite")] {
        let evil = format!("evil-{name}");
        let payload = b"written by an attacker";
        let (ticket, _) =
            conn.upload_ticket(&format!("{evil}/{name}"), (payload.len() as u64, 0, 0o644), None).await.unwrap();
        conn.rename(link, &evil).await.unwrap();
        let refused = failure(send_on_ticket(&conn, ticket, payload).await);
        assert_eq!(refused, format!("{evil}/{name}: {evil:?} is a symbolic link, and tandem never follows one"));
        conn.rename(&evil, link).await.unwrap();
    }
    canary.assert_untouched();
    let history = std::fs::read(server.path(".tandem/history.log")).unwrap();
    assert!(history.starts_with(&history_before) && !history.windows(8).any(|w| w == b"attacker"));
    assert_eq!(std::fs::read_dir(server.path(".tandem/tmp")).unwrap().count(), 0, "no temporary file is left");
    canary.assert_reads_show();
}

/// Finding 2: while a file is swapped again and again with a link to an outside secret, `HashAll`, `Hash`,
/// downloads and delta uploads over it never read, hash or copy the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_file_for_a_link_out_never_leaks_or_copies_an_outside_file() {
    let canary = Canary::new();
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "docs/a.bin", &pseudo_random(300_000, 1), 1_600_000_000);
    let server = ServeProcess::start(root);
    let share_root = server.root.path().to_path_buf();
    let secret = canary.path("secret.bin");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, share_root) = (stop.clone(), share_root.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && swaps < 200_000 {
                let _ = std::fs::remove_file(share_root.join("docs/.l"));
                let _ = symlink(&secret, share_root.join("docs/.l"));
                let _ = std::fs::rename(share_root.join("docs/.l"), share_root.join("docs/a.bin"));
                std::fs::write(share_root.join("docs/.f"), pseudo_random(300_000, u64::from(swaps))).unwrap();
                let _ = std::fs::rename(share_root.join("docs/.f"), share_root.join("docs/a.bin"));
                swaps += 1;
            }
            swaps
        })
    };
    let conn = Connection::connect(&server.addr).await.unwrap();
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "a.bin", &pseudo_random(300_000, 999), 1_600_000_000);
    let dest = tempfile::tempdir().unwrap();
    let secret_md5 = canary.secret_md5();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0;
    while Instant::now() < deadline && rounds < 500 {
        for entry in conn.hash_all("", None).await.unwrap_or_default() {
            assert_ne!(entry.size, 300_001, "an outside file's size leaked: {entry:?}");
            assert_ne!(entry.md5.map(|m| m.to_string()), Some(secret_md5.clone()), "an outside file's MD5 leaked");
        }
        if let Ok(entry) = conn.hash("docs/a.bin").await {
            assert_ne!(entry.md5.map(|m| m.to_string()), Some(secret_md5.clone()));
        }
        let _ = tandem::client::download_tcp(&conn, "docs/a.bin", dest.path(), &Default::default()).await;
        let _ = tandem::client::upload_tcp(&conn, &local.path().join("a.bin"), "docs/a.bin", &Default::default()).await;
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(rounds > 5 && swaps > 5, "the race hardly ran: {rounds} rounds, {swaps} swaps");
    // The secret's bytes are nowhere in the share, its trash, or the downloads.
    for folder in [share_root.as_path(), dest.path()] {
        for name in walk_names(folder) {
            let path = folder.join(&name);
            if std::fs::symlink_metadata(&path).unwrap().is_file() {
                assert_ne!(md5sum(&path), secret_md5, "{} holds the outside secret", path.display());
            }
        }
    }
    canary.assert_untouched();
    canary.assert_reads_show();
}

/// Finding 3: links to outside folders, and a link back up the tree, bring nothing into listings or the journal
/// but themselves (with their targets), on a read-only server too, even as files appear behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_and_the_scan_never_follow_a_link_out() {
    let canary = Canary::new();
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "docs/readme.txt", b"inside", 1_600_000_000);
    symlink(canary.dir.path(), root.path().join("ext")).unwrap();
    symlink("../..", root.path().join("docs/up")).unwrap();
    let server = ServeProcess::start_with(root, &["--read-only"]);
    let conn = Connection::connect(&server.addr).await.unwrap();
    // A new file behind the link, then a marker inside: once the marker is journaled (and the startup scan has
    // run), the outside file's events have been seen too.
    std::fs::write(canary.path("new-outside.txt"), b"appeared outside").unwrap();
    std::fs::write(server.path("marker.txt"), b"marker").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let changes = loop {
        let (changes, _) = conn.changes_since(0).await.unwrap();
        if ["marker.txt", "docs/readme.txt"].iter().all(|path| changes.iter().any(|c| c.path == *path)) {
            break changes;
        }
        assert!(Instant::now() < deadline, "the marker never reached the journal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths, ["docs", "docs/readme.txt", "docs/up", "ext", "marker.txt"], "the journal holds only the share");
    let target = |path: &str| changes.iter().rev().find(|c| c.path == path).and_then(|c| c.entry.clone()?.target);
    assert_eq!(
        (target("ext"), target("docs/up")),
        (canary.dir.path().to_str().map(String::from), Some("../..".into()))
    );
    let listed: Vec<String> = conn.list("", Default::default()).await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["docs", "docs/readme.txt", "docs/up", "ext", "marker.txt"]);
    let links = conn.list("ext", Default::default()).await.unwrap();
    assert_eq!(links.len(), 1, "a link lists as itself: {links:?}");
    assert_eq!(links[0].target.as_deref(), canary.dir.path().to_str());
    std::fs::remove_file(canary.path("new-outside.txt")).unwrap();
    canary.assert_untouched();
}

/// Finding 4: setuid, setgid and sticky bits from a client are dropped, and the server never sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setuid_setgid_and_sticky_bits_never_travel() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "tool", b"#!/bin/sh\n", 1_600_000_000);
    std::fs::set_permissions(root.path().join("tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    let server = ServeProcess::start(root);
    let conn = Connection::connect(&server.addr).await.unwrap();
    let payload = b"#!/bin/sh\necho hi\n";
    let (ticket, _) = conn.upload_ticket("uploaded", (payload.len() as u64, 0, 0o7755), None).await.unwrap();
    assert!(matches!(send_on_ticket(&conn, ticket, payload).await, BulkTrailer::Done { .. }));
    assert_eq!(std::fs::metadata(server.path("uploaded")).unwrap().permissions().mode() & 0o7777, 0o755);
    let (_, _, mode) = conn.download_ticket_with_mode("tool").await.unwrap();
    assert_eq!(mode, Some(0o755), "the server announces only rwxrwxrwx");
    let dest = tempfile::tempdir().unwrap();
    let output = server.cli(&["download", "tcp", "tool", "--to", dest.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::metadata(dest.path().join("tool")).unwrap().permissions().mode() & 0o7777, 0o755);
}

/// Finding 12: a lock is on the file, not on one spelling of its path: a link to its folder names nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_locked_files_folder_is_no_way_around_the_lock() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "docs/a.txt", b"locked text", 1_600_000_000);
    symlink("docs", root.path().join("link-in")).unwrap();
    let server = ServeProcess::start(root);
    let identity = |id: &str| Some(tandem::protocol::ClientIdentity { id: id.into(), host: id.into() });
    let owner = Connection::connect_as(&server.addr, identity("owner")).await.unwrap();
    let other = Connection::connect_as(&server.addr, identity("other")).await.unwrap();
    owner.lock("docs/a.txt").await.unwrap();
    let payload = b"overwritten";
    let size = (payload.len() as u64, 0, 0o644);
    let direct = other.upload_ticket("docs/a.txt", size, None).await.unwrap_err().to_string();
    assert_eq!(direct, "docs/a.txt is locked by owner");
    let through_link = other.upload_ticket("link-in/a.txt", size, None).await.unwrap_err().to_string();
    assert_eq!(through_link, "link-in/a.txt: \"link-in\" is a symbolic link, and tandem never follows one");
    let lock_through_link = other.lock("link-in/a.txt").await.unwrap_err().to_string();
    assert!(lock_through_link.contains("is a symbolic link"), "{lock_through_link}");
    assert!(other.rename("link-in/a.txt", "b.txt").await.is_err());
    assert!(other.delete("link-in/a.txt").await.is_err());
    assert_eq!(std::fs::read(server.path("docs/a.txt")).unwrap(), b"locked text");
}

/// Finding 13: files a user named like tandem's temporary files are content: listed, hashed and kept. tandem's own
/// temporary files live in `.tandem/tmp`, and only those are swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_named_like_temporary_files_are_the_users_and_are_never_swept() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), ".notes.tandem-abc.tmp", b"a user's file", 1_500_000_000);
    write_file(root.path(), "sub/.x.tandem-Y.tmp", b"another", 1_500_000_000);
    std::fs::create_dir_all(root.path().join(".tandem/tmp")).unwrap();
    std::fs::write(root.path().join(".tandem/tmp/incoming-00000000000000aa"), b"left by a crash").unwrap();
    let share = Share::open_writable(root.path()).unwrap();
    assert_eq!(share.sweep_temps(Duration::ZERO), 1, "only tandem's own leftover goes");
    assert!(!root.path().join(".tandem/tmp/incoming-00000000000000aa").exists());
    let server = ServeProcess::start(root);
    let listed = json(&server.cli(&["hash", "checkall", "--json"]));
    let paths: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [".notes.tandem-abc.tmp", "sub/.x.tandem-Y.tmp"]);
    assert_eq!(listed[0]["md5"], md5sum(&server.path(".notes.tandem-abc.tmp")));
    assert_eq!(std::fs::read(server.path("sub/.x.tandem-Y.tmp")).unwrap(), b"another");
}

/// Finding 14: names that Windows or macOS cannot hold are refused with the reason, unless the server allows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_other_systems_cannot_hold_are_refused_unless_allowed() {
    let strict = ServeProcess::start(tempfile::tempdir().unwrap());
    let conn = Connection::connect(&strict.addr).await.unwrap();
    write_file(strict.root.path(), "ok.txt", b"fine", 1_600_000_000);
    for name in ["CON", "docs/nul.txt", "a\nb", "..\\..\\x", "a:b", "trailing.", "trailing ", "what?"] {
        let refused = conn.upload_ticket(name, (1, 0, 0o644), None).await.unwrap_err().to_string();
        assert!(refused.starts_with(&format!("invalid path {name:?}: ")), "{refused}");
        assert!(conn.mkdir(name).await.unwrap_err().to_string().starts_with("invalid path "));
        assert!(conn.rename("ok.txt", name).await.unwrap_err().to_string().starts_with("invalid path "));
    }
    assert_eq!(names_in(strict.root.path()), [".tandem", "ok.txt"]);
    // Names that differ only by case are one file on Windows and macOS.
    let twin = conn.upload_ticket("OK.TXT", (1, 0, 0o644), None).await.unwrap_err().to_string();
    assert_eq!(
        twin,
        "OK.TXT: \"ok.txt\" is already in that folder, and Windows and macOS cannot tell the two names apart"
    );
    conn.mkdir("docs/inner").await.unwrap();
    let twin = conn.mkdir("Docs/other").await.unwrap_err().to_string();
    assert!(twin.starts_with("Docs: \"docs\" is already in that folder"), "{twin}");
    let items = |names: &[&str]| tandem::protocol::Request::UploadBatch {
        files: names
            .iter()
            .map(|n| tandem::protocol::UploadItem {
                path: n.to_string(),
                size: 1,
                mtime_ns: 0,
                mode: 0o644,
                expect: None,
            })
            .collect(),
    };
    let (_, answers) = conn.batch_ticket(items(&["docs/new.txt", "docs/NEW.txt"])).await.unwrap();
    assert!(matches!(answers[0], tandem::protocol::BatchItem::Ready { .. }), "{answers:?}");
    match &answers[1] {
        tandem::protocol::BatchItem::Refused(body) => {
            assert!(body.message.contains("\"new.txt\" is already"), "{body:?}")
        }
        other => panic!("a twin within one batch must be refused: {other:?}"),
    }
    // Two uploads in flight at once, each fine when its ticket was issued: the second to land is refused.
    let (first, _) = conn.upload_ticket("Twin.txt", (1, 0, 0o644), None).await.unwrap();
    let (second, _) = conn.upload_ticket("twin.txt", (1, 0, 0o644), None).await.unwrap();
    assert!(matches!(send_on_ticket(&conn, first, b"1").await, BulkTrailer::Done { .. }));
    let refused = failure(send_on_ticket(&conn, second, b"2").await);
    assert!(refused.starts_with("twin.txt: \"Twin.txt\" is already in that folder"), "{refused}");
    conn.delete("Twin.txt").await.unwrap();
    // Changing only the case of a name is a rename every system can do.
    conn.rename("ok.txt", "OK.txt").await.unwrap();
    assert_eq!(names_in(strict.root.path()), [".tandem", "OK.txt", "docs"]);
    let lenient = ServeProcess::start_with(tempfile::tempdir().unwrap(), &["--allow-unportable-names"]);
    let conn = Connection::connect(&lenient.addr).await.unwrap();
    conn.mkdir("AUX").await.unwrap();
    conn.mkdir("docs").await.unwrap();
    conn.mkdir("DOCS").await.unwrap();
    let (ticket, _) = conn.upload_ticket("docs/x:y?", (4, 0, 0o644), None).await.unwrap();
    assert!(matches!(send_on_ticket(&conn, ticket, b"data").await, BulkTrailer::Done { .. }));
    assert_eq!(std::fs::read(lenient.path("docs/x:y?")).unwrap(), b"data");
}

/// The client side: a link in a sync client's own folder is not a door either. The server names `docs/a.txt`;
/// the client's `docs` is a link out, so sync refuses that path by name and syncs the rest.
#[test]
fn sync_never_writes_through_a_link_in_the_clients_folder() {
    let canary = Canary::new();
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    write_file(server.root.path(), "docs/a.txt", b"from the server", 1_600_000_000);
    write_file(server.root.path(), "other.txt", b"fine", 1_600_000_000);
    let (home, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    symlink(canary.dir.path(), folder.path().join("docs")).unwrap();
    let dir = folder.path().to_str().unwrap();
    // The server journals its files in the background; sync until the rest has arrived.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut said = String::new();
    while !folder.path().join("other.txt").exists() || !said.contains("docs") {
        assert!(Instant::now() < deadline, "sync never finished: {said}");
        said += &stderr(&cli_as(&server.addr, home.path(), &["sync", dir, "--once"]));
    }
    assert!(said.contains("note docs: a symbolic link that points outside the folder"), "{said}");
    assert_eq!(std::fs::read(folder.path().join("other.txt")).unwrap(), b"fine");
    assert!(std::fs::symlink_metadata(folder.path().join("docs")).unwrap().is_symlink(), "the link is left alone");
    canary.assert_untouched();
}

/// A client may make links (sync carries those inside the folder), but only ones whose target stays inside the
/// share and out of `.tandem`, never one placed through a link, and never on a read-only server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_makes_only_links_that_point_inside_and_never_through_one() {
    let canary = Canary::new();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("docs")).unwrap();
    symlink(canary.dir.path(), root.path().join("link-out")).unwrap();
    let server = ServeProcess::start(root);
    let conn = Connection::connect(&server.addr).await.unwrap();
    for (path, target, refused) in [
        ("x", "/etc/passwd", "\"x -> /etc/passwd\": the link's target leaves the share"),
        ("docs/x", "../../outside", "\"docs/x -> ../../outside\": the link's target leaves the share"),
        ("x", ".tandem/journal.sqlite", "\"x -> .tandem/journal.sqlite\": the link's target leaves the share"),
        ("link-out/x", "../y", "link-out/x: \"link-out\" is a symbolic link, and tandem never follows one"),
    ] {
        let error = conn.symlink(path, target, None).await.unwrap_err().to_string();
        assert!(error.contains(refused), "{path} -> {target}: {error}");
    }
    conn.symlink("docs/up", "../docs", None).await.unwrap();
    assert_eq!(std::fs::read_link(server.path("docs/up")).unwrap(), Path::new("../docs"));
    // Made again over itself with a stale expectation: refused; with the right one, replaced (into the trash).
    let wrong = tandem::protocol::Expect::Link { md5: tandem::digest::Md5Digest::of(b"elsewhere") };
    let stale = conn.symlink("docs/up", "..", Some(wrong)).await.unwrap_err().to_string();
    assert!(stale.contains("the link points elsewhere now"), "{stale}");
    let right = tandem::protocol::Expect::Link { md5: tandem::digest::Md5Digest::of(b"../docs") };
    conn.symlink("docs/up", "..", Some(right)).await.unwrap();
    assert_eq!(std::fs::read_link(server.path("docs/up")).unwrap(), Path::new(".."));
    assert_eq!(std::fs::read_dir(server.path(".tandem/tmp")).unwrap().count(), 0, "no temporary link is left");
    canary.assert_untouched();

    let read_only = ServeProcess::start_with(tempfile::tempdir().unwrap(), &["--read-only"]);
    let conn = Connection::connect(&read_only.addr).await.unwrap();
    assert!(conn.symlink("x", "y", None).await.is_err(), "a read-only share makes no link");
    assert!(std::fs::symlink_metadata(read_only.path("x")).is_err());
}
