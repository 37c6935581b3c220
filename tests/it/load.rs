//! Load: 200 clients at once against a `tandem serve` process with its default limits, each on its own control
//! connection, doing 50 listings and 5 verified downloads. Every request must succeed, every listing must hold
//! exactly what is on disk, and every downloaded file must equal its source byte for byte with no temporary file
//! left beside it. And a burst of 200 connections waits in the server's accept queue rather than being dropped.
//! Latency figures come from `cargo bench --bench load`; this file checks outcomes only.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::client::{Connection, DownloadReport, download_tcp};
use tandem::protocol::ListFilter;
use tokio::sync::Barrier;

use crate::common::*;
use crate::load_share::{DOWNLOADS, FILES, LISTED, LISTINGS, Step, session, write};

const CLIENTS: usize = 200;

/// What a listing must hold: each path below the folder, with its size if it is a file.
type Listing = Vec<(String, Option<u64>)>;

/// Walks `root/rel` with std alone, so the expected listings owe nothing to tandem's own walk.
fn expected_listing(root: &Path, rel: &str) -> Listing {
    let mut out = Vec::new();
    let mut folders = vec![rel.to_string()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(root.join(&folder)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if folder.is_empty() && name == ".tandem" {
                continue;
            }
            let path = if folder.is_empty() { name } else { format!("{folder}/{name}") };
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                folders.push(path.clone());
                out.push((path, None));
            } else {
                out.push((path, Some(metadata.len())));
            }
        }
    }
    out.sort();
    out
}

fn as_listing(entries: &[tandem::share::Entry]) -> Listing {
    let mut out: Listing = entries
        .iter()
        .map(|e| (e.path.clone(), (e.kind == tandem::share::EntryKind::File).then_some(e.size)))
        .collect();
    out.sort();
    out
}

/// What one client did: requests that succeeded, what went wrong, and where its downloads are.
struct Outcome {
    ok: usize,
    problems: Vec<String>,
    downloads: Vec<(usize, DownloadReport)>,
    dest: tempfile::TempDir,
}

/// One client: connect, wait until every client has, then run its session. A failure is noted and the client
/// carries on.
async fn client(n: usize, addr: String, expected: Arc<BTreeMap<&'static str, Listing>>, all: Arc<Barrier>) -> Outcome {
    let dest = tempfile::tempdir().unwrap();
    let mut outcome = Outcome { ok: 0, problems: Vec::new(), downloads: Vec::new(), dest };
    let connected = Connection::connect(&addr).await;
    // All sessions are open before any request, so the server really holds 200 at once.
    all.wait().await;
    let conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            outcome.problems.push(format!("client {n}: connect: {e}"));
            return outcome;
        }
    };
    for step in session(n) {
        match step {
            Step::List { path, entries: count } => match conn.list(path, ListFilter::default()).await {
                Ok(entries) if entries.len() == count && as_listing(&entries) == expected[path] => outcome.ok += 1,
                Ok(entries) => {
                    outcome.problems.push(format!("client {n}: listing {path:?} gave {:?}", as_listing(&entries)))
                }
                Err(e) => outcome.problems.push(format!("client {n}: list {path:?}: {e}")),
            },
            Step::Download(file) => {
                match download_tcp(&conn, FILES[file].0, outcome.dest.path(), &Default::default()).await {
                    Ok(report) => {
                        outcome.ok += 1;
                        outcome.downloads.push((file, report));
                    }
                    Err(e) => outcome.problems.push(format!("client {n}: download {:?}: {e}", FILES[file].0)),
                }
            }
        }
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_list_and_download_at_once_without_an_error_or_a_lost_byte() {
    let root = tempfile::tempdir().unwrap();
    write(root.path());
    let sources: Vec<Vec<u8>> = FILES.iter().map(|(rel, _)| std::fs::read(root.path().join(rel)).unwrap()).collect();
    let source_md5: Vec<String> = FILES.iter().map(|(rel, _)| md5sum(&root.path().join(rel))).collect();
    let server = ServeProcess::start(root);
    let expected: BTreeMap<&str, Listing> =
        LISTED.iter().map(|&(rel, _)| (rel, expected_listing(server.root.path(), rel))).collect();
    for (rel, entries) in LISTED {
        assert_eq!(expected[rel].len(), *entries, "the share holds what the workload expects in {rel:?}");
    }
    let expected = Arc::new(expected);

    let started = Instant::now();
    let all = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> =
        (0..CLIENTS).map(|n| tokio::spawn(client(n, server.addr.clone(), expected.clone(), all.clone()))).collect();
    // A guard against a hang (a request never answered), not a speed check.
    let outcomes = tokio::time::timeout(Duration::from_secs(600), futures::future::join_all(clients))
        .await
        .expect("every client finishes");
    let elapsed = started.elapsed();

    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.unwrap()).collect();
    let problems: Vec<&String> = outcomes.iter().flat_map(|o| &o.problems).collect();
    let ok: usize = outcomes.iter().map(|o| o.ok).sum();
    println!(
        "load: {CLIENTS} clients, {} requests ({ok} ok), {} errors, {:.1} s",
        CLIENTS * (LISTINGS + DOWNLOADS),
        problems.len(),
        elapsed.as_secs_f64()
    );
    assert!(problems.is_empty(), "{} problems, the first: {:#?}", problems.len(), &problems[..problems.len().min(5)]);
    assert_eq!(ok, CLIENTS * (LISTINGS + DOWNLOADS));

    // Nothing lost: each client's folder holds exactly its five files, each the source's bytes.
    for outcome in &outcomes {
        let mut names: Vec<String> = Vec::new();
        for (file, report) in &outcome.downloads {
            let (rel, size) = FILES[*file];
            assert_eq!((report.size, report.md5.to_string()), (size, source_md5[*file].clone()), "{rel}");
            assert!(
                std::fs::read(&report.dest).unwrap() == sources[*file],
                "{} differs from {rel}",
                report.dest.display()
            );
            names.push(rel.rsplit('/').next().unwrap().to_string());
        }
        names.sort();
        assert_eq!(names_in(outcome.dest.path()), names, "nothing but the downloads, no temporary file");
    }
    // And the share itself is as it was.
    assert_eq!(expected_listing(server.root.path(), ""), expected[""]);
}

/// Stops or resumes a process, and returns once /proc shows it stopped or running.
fn signal(pid: u32, stop: bool) {
    let status = Command::new("kill").args([if stop { "-STOP" } else { "-CONT" }, &pid.to_string()]).status();
    assert!(status.unwrap().success());
    let stopped =
        || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().rsplit(") ").next().unwrap().starts_with('T');
    while stopped() != stop {
        std::thread::yield_now();
    }
}

/// While the server is stopped, the kernel completes every handshake that fits its accept queue and drops the
/// rest, which then wait for their SYN to be resent (1 s, 3 s, 7 s...) and are never accepted while it stays
/// stopped. The server asks for a queue as deep as its connection limit, so all of a 200-connection burst fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_accept_queue_instead_of_being_dropped() {
    let server = ServeProcess::start(tempfile::tempdir().unwrap());
    // The kernel caps every queue at somaxconn (4096 by default since Linux 5.4).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    let burst = CLIENTS.min(somaxconn);
    let pid = server.child.id();
    signal(pid, true);
    let connects = (0..burst).map(|_| tokio::net::TcpStream::connect(&server.addr));
    // A guard against a hang (a dropped handshake), not a speed check.
    let connected = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(connects)).await;
    signal(pid, false);
    let connected = connected.expect("a handshake was dropped: the accept queue is shallower than the burst");
    assert_eq!(connected.into_iter().filter(|c| c.is_ok()).count(), burst);
    // Resumed, the server serves a new client as before.
    let conn = Connection::connect(&server.addr).await.unwrap();
    assert!(conn.list("", ListFilter::default()).await.unwrap().is_empty());
}
