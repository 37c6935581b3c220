//! Memory a client can make the server hold: journal reads of very long paths, queued and never read. Every answer
//! is cut into batches of bounded bytes and journal reads share the listings' caps, so a few sessions asking for
//! everything at once cost the server little, and other clients are answered meanwhile.

use std::time::{Duration, Instant};

use tandem::client::Connection;
use tandem::protocol::{ClientFrame, Request};

use crate::common::*;
use crate::starvation::{control_session, proc_status, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_reads_of_long_paths_that_are_never_read_cost_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    // 2,000 files whose paths are about 3.5 KB long: 14 folders of 240 bytes each, then the file.
    let deep: String = (0..14).map(|level| format!("{level:02}{}/", "d".repeat(238))).collect();
    for file in 0..2000 {
        let path = root.path().join(format!("{deep}{file:04}.txt"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(path).unwrap();
    }
    write_file(root.path(), "quiet/small.txt", b"small", 1_600_000_000);
    let server = ServeProcess::start(root);
    let (pid, addr) = (server.child.id(), server.addr.clone());
    // The server journals its files in the background; wait until it has them all.
    let conn = Connection::connect(&addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while conn.changes_since(0).await.unwrap().0.len() < 2000 + 16 {
        assert!(Instant::now() < deadline, "the journal never held the files");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = proc_status(pid, "VmRSS:");
    // 8 sessions each ask for the whole journal 32 times, and read nothing.
    let attack = tokio::task::spawn_blocking(move || {
        (0..8)
            .map(|_| {
                let mut stream = control_session([127, 0, 0, 5], &addr);
                for id in 0..32 {
                    send(&mut stream, &ClientFrame::Request { id, body: Request::Changes { since: 0 } }).unwrap();
                }
                stream
            })
            .collect::<Vec<_>>()
    });
    let sessions = attack.await.unwrap();
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(proc_status(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let other = tokio::time::timeout(Duration::from_secs(1), conn.list("quiet", Default::default())).await;
    assert!(other.expect("another client is answered within a second").is_ok());
    println!(
        "server RSS: {} MiB before, {} MiB at the peak; another client listed in {:?}",
        before / 1024,
        peak / 1024,
        started.elapsed()
    );
    assert!(peak < before + 256 * 1024, "256 journal reads grew the server from {before} KiB to {peak} KiB");
    drop(sessions);
}
