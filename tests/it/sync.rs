//! Sync scenarios: a real server on 127.0.0.1 and two or three clients on temporary folders, each with its own
//! identity, driven pass by pass so every outcome is exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem::client::Connection;
use tandem::digest::Md5Digest;
use tandem::protocol::ClientIdentity;
use tandem::server::{Server, ServerConfig};
use tandem::sync::{Engine, SyncSummary};
use tokio_util::sync::CancellationToken;

/// A running in-process server over a temporary share.
pub struct TestServer {
    pub addr: String,
    pub root: tempfile::TempDir,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<tandem::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let root = tempfile::tempdir().unwrap();
        let (addr, stop, task) = Server::spawn(listen_on(root.path())).await.unwrap();
        TestServer { addr: addr.to_string(), root, stop, task: Some(task) }
    }

    /// Stops the server, runs `meanwhile` on its folder, and starts it again (on a new port).
    pub async fn restart_after(&mut self, meanwhile: impl FnOnce(&Path)) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        meanwhile(self.root.path());
        let (addr, stop, task) = Server::spawn(listen_on(self.root.path())).await.unwrap();
        (self.addr, self.stop, self.task) = (addr.to_string(), stop, Some(task));
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn listen_on(root: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(root);
    config.listen = "127.0.0.1:0".into();
    config
}

pub fn identity(host: &str) -> ClientIdentity {
    ClientIdentity { id: format!("{host}-0123456789"), host: host.into() }
}

/// One sync client: a folder, an identity, and an engine connected to the server.
pub struct Client {
    pub root: tempfile::TempDir,
    pub host: String,
    engine: Engine,
}

impl Client {
    pub async fn new(server: &TestServer, host: &str) -> Client {
        let root = tempfile::tempdir().unwrap();
        let engine = connect(server, root.path(), host).await;
        Client { root, host: host.into(), engine }
    }

    /// Runs passes until quiet; panics on error.
    pub async fn sync(&mut self) -> SyncSummary {
        self.engine.sync_until_quiet().await.unwrap_or_else(|e| panic!("{} failed to sync: {e}", self.host))
    }

    pub async fn try_sync(&mut self) -> tandem::Result<SyncSummary> {
        self.engine.sync_until_quiet().await
    }

    /// Starts over with a new connection and a freshly opened engine, as after a restart.
    pub async fn restart(&mut self, server: &TestServer) {
        self.engine = connect(server, self.root.path(), &self.host).await;
    }

    pub fn remote_seq(&self) -> u64 {
        self.engine.remote_seq()
    }

    /// Compares the mirror of the server's journal with the whole journal; how many paths differed.
    pub async fn verify_mirror(&mut self) -> usize {
        self.engine.verify_mirror().await.unwrap_or_else(|e| panic!("{} failed to verify: {e}", self.host))
    }

    /// What the latest sync left out, by path, with the reason.
    pub fn left_out(&self) -> std::collections::BTreeMap<String, String> {
        self.engine.left_out().clone()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) {
        write(self.root.path(), rel, bytes);
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{}: read {rel}: {e}", self.host))
    }
}

async fn connect(server: &TestServer, root: &Path, host: &str) -> Engine {
    let conn = Connection::connect_as(&server.addr, Some(identity(host))).await.unwrap();
    Engine::open(root, conn, host).unwrap()
}

pub fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

/// Every file (with its MD5), link (with the MD5 of `-> TARGET`) and folder (None) below `root`, outside `.tandem`.
pub fn tree(root: &Path) -> BTreeMap<String, Option<Md5Digest>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_name() == ".tandem" {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                found.insert(rel, None);
                stack.push(path);
            } else if entry.file_type().unwrap().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                found.insert(rel, Some(Md5Digest::of(format!("-> {}", target.display()).as_bytes())));
            } else {
                found.insert(rel, Some(Md5Digest::of(&std::fs::read(&path).unwrap())));
            }
        }
    }
    found
}

/// MD5s of every file in the trash below `root/.tandem/trash`.
pub fn trashed(root: &Path) -> Vec<Md5Digest> {
    let trash = root.join(".tandem/trash");
    if !trash.exists() {
        return Vec::new();
    }
    tree(&trash).into_values().flatten().collect()
}

#[tokio::test]
async fn files_and_nested_folders_flow_both_ways() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;

    // Create, on each side.
    alice.write("docs/deep/nested/a b.txt", b"from alice");
    alice.write("empty.bin", b"");
    std::fs::create_dir_all(alice.path("empty folder")).unwrap();
    bob.write("bob/\u{00e9}t\u{00e9} \u{1f600}.md", b"from bob");
    let up = alice.sync().await;
    assert_eq!((up.uploaded, up.bytes_sent), (2, 10));
    let down = bob.sync().await;
    assert_eq!((down.downloaded, down.uploaded, down.bytes_received, down.bytes_sent), (2, 1, 10, 8));
    alice.sync().await;
    assert_eq!(tree(alice.root.path()), tree(bob.root.path()));
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));
    assert_eq!(bob.read("docs/deep/nested/a b.txt"), b"from alice");
    assert_eq!(alice.read("bob/\u{00e9}t\u{00e9} \u{1f600}.md"), b"from bob");
    assert!(bob.path("empty folder").is_dir());

    // Update on bob's side; the replaced version is kept in both trashes.
    bob.write("docs/deep/nested/a b.txt", b"bob's edit");
    bob.sync().await;
    alice.sync().await;
    assert_eq!(alice.read("docs/deep/nested/a b.txt"), b"bob's edit");
    assert!(trashed(alice.root.path()).contains(&Md5Digest::of(b"from alice")));
    assert!(trashed(server.root.path()).contains(&Md5Digest::of(b"from alice")));

    // Rename a folder on alice's side, delete a file on bob's.
    std::fs::rename(alice.path("docs/deep"), alice.path("docs/moved")).unwrap();
    std::fs::remove_file(bob.path("empty.bin")).unwrap();
    alice.sync().await;
    bob.sync().await;
    alice.sync().await;
    assert!(!bob.path("docs/deep").exists());
    assert_eq!(bob.read("docs/moved/nested/a b.txt"), b"bob's edit");
    assert!(!alice.path("empty.bin").exists());
    assert_eq!(tree(alice.root.path()), tree(bob.root.path()));
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));

    // Delete a whole nested folder on bob's side.
    std::fs::remove_dir_all(bob.path("docs")).unwrap();
    bob.sync().await;
    alice.sync().await;
    assert!(!alice.path("docs").exists());
    assert!(trashed(alice.root.path()).contains(&Md5Digest::of(b"bob's edit")));
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));
}

#[tokio::test]
async fn both_edited_while_offline_keeps_both_versions() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("notes/plan.txt", b"v1");
    alice.sync().await;
    bob.sync().await;

    alice.write("notes/plan.txt", b"alice's v2");
    bob.write("notes/plan.txt", b"bob's v2, written later");
    // Make bob's the newer version beyond doubt.
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options().write(true).open(bob.path("notes/plan.txt")).unwrap().set_modified(later).unwrap();
    alice.sync().await;
    let summary = bob.sync().await;
    assert_eq!(summary.conflicts, 1);
    alice.sync().await;

    let files = tree(alice.root.path());
    assert_eq!(files, tree(bob.root.path()));
    assert_eq!(files, tree(server.root.path()));
    assert_eq!(alice.read("notes/plan.txt"), b"bob's v2, written later", "the newer version keeps the name");
    let copies: Vec<&String> = files.keys().filter(|p| p.contains(".sync-conflict-")).collect();
    assert_eq!(copies.len(), 1, "{files:?}");
    let copy = copies[0];
    assert!(copy.starts_with("notes/plan.sync-conflict-") && copy.ends_with("-alice.txt"), "{copy}");
    assert_eq!(alice.read(copy), b"alice's v2");
}

#[tokio::test]
async fn an_edit_beats_a_delete_from_either_side() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("kept-by-edit.txt", b"v1");
    alice.write("kept-by-edit-2.txt", b"v1");
    alice.sync().await;
    bob.sync().await;

    // Alice deletes first, bob edits and syncs after.
    std::fs::remove_file(alice.path("kept-by-edit.txt")).unwrap();
    bob.write("kept-by-edit.txt", b"bob's edit");
    alice.sync().await;
    bob.sync().await;
    alice.sync().await;
    assert_eq!(alice.read("kept-by-edit.txt"), b"bob's edit");

    // Bob edits first and syncs; alice, who has not seen it, deletes.
    bob.write("kept-by-edit-2.txt", b"bob's second edit");
    bob.sync().await;
    std::fs::remove_file(alice.path("kept-by-edit-2.txt")).unwrap();
    alice.sync().await;
    assert_eq!(alice.read("kept-by-edit-2.txt"), b"bob's second edit");
    assert_eq!(std::fs::read(server.path("kept-by-edit-2.txt")).unwrap(), b"bob's second edit");
    assert_eq!(tree(alice.root.path()), tree(bob.root.path()));
}

#[tokio::test]
async fn a_lock_refuses_another_clients_write_until_unlocked() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("design.psd", b"v1");
    alice.sync().await;
    bob.sync().await;

    let alice_conn = Connection::connect_as(&server.addr, Some(identity("alice"))).await.unwrap();
    let locked = alice_conn.lock("design.psd").await.unwrap().unwrap();
    assert_eq!(locked.locked_by.as_deref(), Some("alice"));
    let listed = alice_conn.list("", Default::default()).await.unwrap();
    assert_eq!(listed.iter().find(|e| e.path == "design.psd").unwrap().locked_by.as_deref(), Some("alice"));

    bob.write("design.psd", b"bob's edit");
    let summary = bob.sync().await;
    assert_eq!(summary.uploaded, 0, "the lock refused bob's upload");
    assert_eq!(std::fs::read(server.path("design.psd")).unwrap(), b"v1");
    assert_eq!(bob.read("design.psd"), b"bob's edit", "bob's edit is kept locally, not overwritten");
    let log = std::fs::read_to_string(bob.path(".tandem/sync.log")).unwrap();
    assert!(log.contains("design.psd is locked by alice"), "{log}");

    // A direct delete is refused too, with the message people see.
    let bob_conn = Connection::connect_as(&server.addr, Some(identity("bob"))).await.unwrap();
    let refused = bob_conn.delete("design.psd").await.unwrap_err();
    assert_eq!(refused.to_string(), "design.psd is locked by alice");
    assert_eq!(bob_conn.unlock("design.psd", false).await.unwrap_err().to_string(), "design.psd is locked by alice");

    // Once unlocked, bob's next edit goes through.
    alice_conn.unlock("design.psd", false).await.unwrap();
    bob.write("design.psd", b"bob's edit, again");
    bob.sync().await;
    assert_eq!(std::fs::read(server.path("design.psd")).unwrap(), b"bob's edit, again");
}

#[tokio::test]
async fn a_restarted_client_catches_up_from_its_sequence_number() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("a.txt", b"one");
    alice.sync().await;
    bob.sync().await;
    let seen = bob.remote_seq();
    assert!(seen > 0);

    // Bob is away; alice keeps working.
    alice.write("b.txt", b"two");
    alice.write("a.txt", b"one, edited");
    alice.sync().await;
    let latest = Connection::connect(&server.addr).await.unwrap().changes_since(seen).await.unwrap();
    assert_eq!(latest.0.len(), 2, "only the two new changes follow bob's sequence number: {:?}", latest.0);

    bob.restart(&server).await;
    assert_eq!(bob.remote_seq(), seen, "the sequence number survived the restart");
    let summary = bob.sync().await;
    assert_eq!(summary.downloaded, 2);
    assert_eq!(bob.read("a.txt"), b"one, edited");
    assert_eq!(bob.read("b.txt"), b"two");
    assert_eq!(bob.remote_seq(), latest.1);
}

#[tokio::test]
async fn an_emptied_or_missing_root_is_refused_and_deletes_nothing() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    alice.write("precious/one.txt", b"1");
    alice.write("two.txt", b"2");
    alice.sync().await;

    // As if the disk were not mounted: the folder is there but empty.
    for entry in std::fs::read_dir(alice.root.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != ".tandem" {
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }.unwrap();
        }
    }
    let refused = alice.try_sync().await.unwrap_err().to_string();
    assert!(refused.contains("is empty, but 3 files and folders were synced"), "{refused}");
    assert_eq!(std::fs::read(server.path("precious/one.txt")).unwrap(), b"1");

    let missing = alice.root.path().join("not here");
    let conn = Connection::connect(&server.addr).await.unwrap();
    let error = Engine::open(&missing, conn, "alice").err().unwrap().to_string();
    assert!(error.contains("not here") && error.contains("does not exist; refusing to sync"), "{error}");
}

#[tokio::test]
async fn changes_made_on_the_server_disk_reach_clients() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    write(server.root.path(), "dropped in/by hand.txt", b"made on the server");
    // The server's watcher journals the file shortly; sync until it arrives (or give up after 20 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !alice.path("dropped in/by hand.txt").exists() {
        assert!(std::time::Instant::now() < deadline, "the change never reached the client");
        alice.sync().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(alice.read("dropped in/by hand.txt"), b"made on the server");
}

#[cfg(unix)]
#[tokio::test]
async fn mtime_and_permission_bits_travel_so_nothing_ping_pongs() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("bin/run.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(alice.path("bin/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_123);
    std::fs::File::options().write(true).open(alice.path("bin/run.sh")).unwrap().set_modified(mtime).unwrap();
    alice.sync().await;
    bob.sync().await;
    let synced = std::fs::metadata(bob.path("bin/run.sh")).unwrap();
    assert_eq!(synced.permissions().mode() & 0o777, 0o750);
    assert_eq!(synced.modified().unwrap(), mtime);
    // A second round finds nothing to do on either side.
    assert!(alice.sync().await.is_empty() && bob.sync().await.is_empty());
}

#[tokio::test]
async fn a_share_whose_journal_was_wiped_is_merged_without_deleting_anything() {
    let mut server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    alice.write("a.txt", b"kept");
    alice.write("b.txt", b"kept too");
    alice.sync().await;
    // Someone removes the server's state (and a file) while it is down.
    server
        .restart_after(|root| {
            std::fs::remove_dir_all(root.join(".tandem")).unwrap();
            std::fs::remove_file(root.join("b.txt")).unwrap();
        })
        .await;
    alice.restart(&server).await;
    assert_eq!(alice.remote_seq(), 0, "a new journal means starting from its beginning");
    // The server journals its folder in the background; sync until it has (or give up after 20 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.path("b.txt").exists() {
        assert!(std::time::Instant::now() < deadline, "b.txt never came back to the server");
        alice.sync().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(alice.read("b.txt"), b"kept too", "without a base, a missing file is new on the other side");
    assert_eq!(std::fs::read(server.path("b.txt")).unwrap(), b"kept too");
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));
}

/// A name of 255 bytes, the longest a filesystem holds, syncs both ways: tandem's temporary files are short names
/// in `.tandem/tmp`, never the name with something added.
#[tokio::test]
async fn a_name_of_255_bytes_syncs_both_ways() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    let long = format!("docs/{}.txt", "n".repeat(251));
    let long_back = format!("{}.md", "\u{e9}".repeat(126)); // 252 bytes of two-byte letters, then `.md`
    assert_eq!((long.len() - 5, long_back.len()), (255, 255));
    alice.write(&long, b"from alice");
    assert_eq!(alice.sync().await.uploaded, 1);
    assert_eq!(bob.sync().await.downloaded, 1);
    assert_eq!(bob.read(&long), b"from alice");
    bob.write(&long_back, b"from bob");
    bob.write(&long, b"bob's edit");
    bob.sync().await;
    alice.sync().await;
    assert_eq!(alice.read(&long_back), b"from bob");
    assert_eq!(alice.read(&long), b"bob's edit");
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));
    assert_eq!(tree(bob.root.path()), tree(server.root.path()));
}
