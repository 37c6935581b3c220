//! What sync carries besides files and folders, and what it leaves out, out loud: links that point inside the
//! folder arrive as links with the same target, both ways; a link out of the folder, a FIFO and a hard link are
//! each reported once, not at every pass, and the rest of the tree syncs all the same.

use std::os::unix::fs::symlink;

use super::sync::{Client, TestServer, tree};

fn target_of(path: &std::path::Path) -> String {
    std::fs::read_link(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_string_lossy().into_owned()
}

#[tokio::test]
async fn links_inside_the_folder_sync_as_links_both_ways() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("docs/notes.txt", b"the notes");
    symlink("docs/notes.txt", alice.path("latest")).unwrap();
    symlink("../docs", alice.path("docs/self")).unwrap();
    std::fs::create_dir_all(alice.path("deep/er")).unwrap();
    symlink("../../docs/notes.txt", alice.path("deep/er/up two")).unwrap();
    let first = alice.sync().await;
    assert_eq!(first.uploaded, 4, "{first:?}");
    assert_eq!(target_of(&server.path("latest")), "docs/notes.txt");
    assert_eq!(target_of(&server.path("deep/er/up two")), "../../docs/notes.txt");

    bob.sync().await;
    for (link, target) in
        [("latest", "docs/notes.txt"), ("docs/self", "../docs"), ("deep/er/up two", "../../docs/notes.txt")]
    {
        assert_eq!(target_of(&bob.path(link)), target, "{link}");
    }
    assert_eq!(bob.read("latest"), b"the notes", "the link works on the other side");

    // Re-pointed on bob's side, a file replaced by a link, and a link deleted: each travels back.
    std::fs::remove_file(bob.path("latest")).unwrap();
    symlink("docs/self/notes.txt", bob.path("latest")).unwrap();
    std::fs::remove_file(bob.path("docs/notes.txt")).unwrap();
    bob.write("docs/real.txt", b"real");
    symlink("real.txt", bob.path("docs/notes.txt")).unwrap();
    std::fs::remove_file(bob.path("deep/er/up two")).unwrap();
    bob.sync().await;
    alice.sync().await;
    assert_eq!(target_of(&alice.path("latest")), "docs/self/notes.txt");
    assert_eq!(target_of(&alice.path("docs/notes.txt")), "real.txt");
    assert!(std::fs::symlink_metadata(alice.path("deep/er/up two")).is_err(), "the deleted link is gone");
    assert_eq!(alice.read("latest"), b"real");
    assert_eq!(tree(alice.root.path()), tree(bob.root.path()));
    assert_eq!(tree(alice.root.path()), tree(server.root.path()));
    assert!(alice.left_out().is_empty() && bob.left_out().is_empty());
}

#[tokio::test]
async fn a_link_out_a_fifo_and_a_hard_link_are_reported_once_in_ten_passes() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    alice.write("kept.txt", b"kept");
    symlink("/etc/passwd", alice.path("passwd")).unwrap();
    symlink("../../outside", alice.path("escape")).unwrap();
    let fifo = alice.path("queue.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::fs::hard_link(alice.path("kept.txt"), alice.path("kept again.txt")).unwrap();

    for pass in 0..10 {
        alice.write(&format!("pass {pass}.txt"), b"something new each pass");
        alice.sync().await;
        let left_out = alice.left_out();
        let paths: Vec<&str> = left_out.keys().map(String::as_str).collect();
        assert_eq!(paths, ["escape", "passwd", "queue.fifo"], "pass {pass}");
        assert!(left_out["queue.fifo"].contains("special file"), "{left_out:?}");
        assert!(left_out["passwd"].contains("outside the folder"), "{left_out:?}");
    }
    let log = std::fs::read_to_string(alice.path(".tandem/sync.log")).unwrap();
    for path in ["queue.fifo", "passwd", "escape", "kept.txt", "kept again.txt"] {
        let told = log.lines().filter(|line| line.contains(&format!("note {path}:"))).count();
        assert_eq!(told, 1, "{path} reported {told} times in ten passes:\n{log}");
    }
    // Everything else synced, the hard link as a file of its own.
    assert_eq!(std::fs::read(server.path("kept again.txt")).unwrap(), b"kept");
    assert_eq!(std::fs::read(server.path("pass 9.txt")).unwrap(), b"something new each pass");
    for absent in ["passwd", "escape", "queue.fifo"] {
        assert!(std::fs::symlink_metadata(server.path(absent)).is_err(), "{absent} reached the server");
    }
}
