//! The "growing file" figure: a 300 MB file written into a synced folder in 60 pieces, one every 100 ms, as a
//! download or a recording would write it, with `tandem serve` and a continuous `tandem sync` running as separate
//! processes. It prints the CPU time each process spent from the first write until the server holds the whole
//! file (checked by MD5), next to one MD5 pass over the file, the least each end must spend; and how long after
//! the last write the file arrived. A sync that read the file again at every write would spend many MD5 passes.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tandem::digest::{Md5Stream, md5_file};
use tandem::pseudo_random::pseudo_random;

use super::processes::{Child, cpu_time, tandem};
use super::serve::start_serve;

const PIECES: usize = 60;
const PIECE: usize = 5_000_000;
const EVERY: Duration = Duration::from_millis(100);

pub fn growing_file() {
    let (config, share, folder) = (tempdir(), tempdir(), tempdir());
    let mut serve = tandem(config.path());
    serve.arg("serve").arg(share.path()).args(["--listen", "127.0.0.1:0"]);
    let (server, addr) = start_serve(serve);
    let server = Child(server);
    let mut sync = tandem(config.path());
    sync.args(["-r", &addr, "sync"]).arg(folder.path()).env("TANDEM_CACHE_LIMIT", "0");
    let client = Child(sync.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start tandem sync"));
    // The first pass of an empty folder leaves a sync state behind; after that, the sync is idle.
    let state = folder.path().join(".tandem/sync.sqlite");
    wait_until(Duration::from_secs(30), || state.exists()).expect("the sync never started");

    let cpu = || (cpu_time(server.0.id()).unwrap_or_default(), cpu_time(client.0.id()).unwrap_or_default());
    let before = cpu();
    let path = folder.path().join("recording.bin");
    let mut file = std::fs::File::create(&path).expect("create the growing file");
    let mut hasher = Md5Stream::new();
    for i in 0..PIECES {
        let piece = pseudo_random(PIECE, 2 * i as u64 + 1);
        file.write_all(&piece).expect("write a piece");
        hasher.update(&piece);
        std::thread::sleep(EVERY);
    }
    drop(file);
    let last_write = Instant::now();
    let expected = hasher.finish();
    let arrived = share.path().join("recording.bin");
    // The server renames a whole, checked file into place, so the right size is worth one MD5.
    let whole = || {
        std::fs::metadata(&arrived).is_ok_and(|m| m.len() == (PIECES * PIECE) as u64)
            && md5_file(&arrived).is_ok_and(|md5| md5 == expected)
    };
    let arrival = wait_until(Duration::from_secs(120), whole)
        .map(|_| last_write.elapsed())
        .expect("the file never reached the server whole");
    let after = cpu();
    let md5_started = Instant::now();
    md5_file(&path).expect("MD5 of the written file");
    let one_md5 = md5_started.elapsed();
    println!("a 300 MB file written into a synced folder over {:.1} s", (EVERY * PIECES as u32).as_secs_f64());
    println!("  arrived whole on the server     {:>8.2} s after the last write", arrival.as_secs_f64());
    println!("  cpu of tandem sync (client)     {:>8.2} s", (after.1 - before.1).as_secs_f64());
    println!("  cpu of tandem serve             {:>8.2} s", (after.0 - before.0).as_secs_f64());
    println!("  baseline: one MD5 pass          {:>8.2} s (each end must read the file once)", one_md5.as_secs_f64());
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

/// Checks `done` every 50 ms until it holds or `limit` has passed; the wait it took.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
