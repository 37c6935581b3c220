//! The safety net behind the change cursor: a client whose copy of the server's journal lost a change (here
//! forced by moving its cursor past a change it never read, as a bug would) has it repaired by the periodic full
//! comparison, which says so in the folder's log, and the next pass syncs what was missed. A journal that went
//! back behind a client's cursor is compared in full at once.

use super::sync::{Client, TestServer, tree};

/// Points `client`'s stored cursor at `seq`, as a bug that skipped changes would have left it.
fn force_cursor(client: &Client, seq: u64) {
    let db = rusqlite::Connection::open(client.path(".tandem/sync.sqlite")).unwrap();
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('remote_seq', ?)", [seq.to_string()]).unwrap();
}

#[tokio::test]
async fn a_change_the_cursor_skipped_is_found_reported_and_synced() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    alice.write("before.txt", b"seen by both");
    alice.sync().await;
    bob.sync().await;
    assert_eq!(bob.verify_mirror().await, 0, "nothing differs while the cursor is exact");

    alice.write("missed/file.txt", b"bob's cursor skips this");
    alice.sync().await;
    force_cursor(&bob, alice.remote_seq());
    bob.restart(&server).await;
    let skipped = bob.sync().await;
    assert_eq!(skipped.downloaded, 0, "the skipped change is invisible to the cursor");
    assert!(!bob.path("missed/file.txt").exists());

    assert_eq!(bob.verify_mirror().await, 2, "the folder and the file");
    let log = std::fs::read_to_string(bob.path(".tandem/sync.log")).unwrap();
    assert!(log.contains("note missed, missed/file.txt: this folder's copy of the server's journal differed from it at 2 paths; repaired"), "{log}");
    assert_eq!(bob.sync().await.downloaded, 1);
    assert_eq!(bob.read("missed/file.txt"), b"bob's cursor skips this");
    assert_eq!(tree(bob.root.path()), tree(server.root.path()));
}

#[tokio::test]
async fn a_journal_behind_the_cursor_is_compared_in_full() {
    let server = TestServer::start().await;
    let mut alice = Client::new(&server, "alice").await;
    let mut bob = Client::new(&server, "bob").await;
    bob.sync().await;
    alice.write("new.txt", b"written while bob's cursor was ahead");
    alice.sync().await;
    // A cursor far ahead of the journal: as if the server's journal had been restored from an older backup.
    force_cursor(&bob, alice.remote_seq() + 1_000_000);
    bob.restart(&server).await;
    assert_eq!(bob.sync().await.downloaded, 1);
    assert_eq!(bob.read("new.txt"), b"written while bob's cursor was ahead");
    let log = std::fs::read_to_string(bob.path(".tandem/sync.log")).unwrap();
    assert!(log.contains("behind this folder's") && log.contains("comparing everything"), "{log}");
    assert!(bob.remote_seq() <= alice.remote_seq() + 1, "the cursor is the journal's again: {}", bob.remote_seq());
}
