//! tandem over an emulated long, lossy link (linkem: two network namespaces joined by a userspace wire with delay,
//! a rate limit and loss): the real `tandem serve` in one namespace, the real client in the other. Downloads over
//! TCP and UDP at 50 ms and 5% loss each way arrive byte-identical; a download whose link is cut for 10 s in the
//! middle either finishes once the link is back, or fails with a clear error and a rerun resumes it. Needs root
//! and /dev/net/tun, which CI has; elsewhere the tests say why and skip, and under `CI=true` they fail instead.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use linkem::{Link, Profile};

use crate::common::*;

const TOKEN: &str = "wan-test-token-0123456789";
const PORT: u16 = 7000;

/// `tandem serve` in namespace B over `share`.
struct Server(Child);

impl Server {
    fn start(link: &Link, share: &Path) -> Server {
        let listen = format!("{}:{PORT}", link.addr_b());
        let mut child = link
            .command_b(BIN)
            .args(["serve", share.to_str().unwrap(), "--listen", &listen])
            .env("TANDEM_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tandem serve in namespace B");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert!(line.starts_with("serving"), "tandem serve said {line:?}");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tandem download PROTOCOL big.bin --to TO --json` in namespace A.
fn download(link: &Link, home: &Path, protocol: &str, to: &Path) -> Command {
    let mut command = link.command_a(BIN);
    command
        .args(["--remote", &format!("{}:{PORT}", link.addr_b()), "--json", "download", protocol, "big.bin"])
        .arg("--to")
        .arg(to)
        .env("TANDEM_TOKEN", TOKEN)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_CACHE_HOME", home)
        .env("TANDEM_CACHE_LIMIT", "0");
    command
}

fn lossy_link(loss: f64) -> Link {
    let mut profile = Profile::shaped("lossy", 20_000_000, Duration::from_millis(50));
    profile.loss = loss;
    Link::start(profile.with_seed(17)).expect("start the emulated link")
}

#[test]
fn downloads_over_a_long_lossy_link_arrive_identical() {
    if !linkem::available_or_skip("downloads_over_a_long_lossy_link_arrive_identical") {
        return;
    }
    let share = tempfile::tempdir().unwrap();
    let payload = pseudo_random(3_000_000, 23);
    write_file(share.path(), "big.bin", &payload, 1_700_000_000);
    let link = lossy_link(0.05);
    let _server = Server::start(&link, share.path());
    let home = tempfile::tempdir().unwrap();
    for protocol in ["tcp", "udp"] {
        let to = tempfile::tempdir().unwrap();
        let output = download(&link, home.path(), protocol, to.path()).output().unwrap();
        assert!(output.status.success(), "{protocol}: {}", String::from_utf8_lossy(&output.stderr));
        let arrived = std::fs::read(to.path().join("big.bin")).unwrap();
        assert!(arrived == payload, "{protocol}: the bytes differ ({} of {} bytes)", arrived.len(), payload.len());
    }
    let stats = link.close().unwrap();
    assert!(stats.b_to_a.lost > 50, "the link lost too little to test anything: {stats}");
}

#[test]
fn a_download_cut_off_for_ten_seconds_finishes_or_fails_cleanly_and_resumes() {
    if !linkem::available_or_skip("a_download_cut_off_for_ten_seconds_finishes_or_fails_cleanly_and_resumes") {
        return;
    }
    let share = tempfile::tempdir().unwrap();
    // 20 MB at 20 Mbit/s: 8 s, so the cut lands in the middle.
    let payload = pseudo_random(20_000_000, 29);
    write_file(share.path(), "big.bin", &payload, 1_700_000_000);
    let link = lossy_link(0.0);
    let _server = Server::start(&link, share.path());
    let home = tempfile::tempdir().unwrap();
    for protocol in ["tcp", "udp"] {
        let to = tempfile::tempdir().unwrap();
        let started = link.stats().b_to_a.forwarded_bytes;
        let mut command = download(&link, home.path(), protocol, to.path());
        let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        link.wait_for("3 MB of the download", Duration::from_secs(60), |s| {
            s.b_to_a.forwarded_bytes > started + 3_000_000
        })
        .unwrap();
        link.cut(Duration::from_secs(10));
        let first = wait_with_limit(child, Duration::from_secs(90), protocol);
        if first.status.success() {
            let arrived = std::fs::read(to.path().join("big.bin")).unwrap();
            assert!(arrived == payload, "{protocol}: finished after the cut, but the bytes differ");
            continue;
        }
        // A clean failure: it says what went wrong, and no file stands where the download would be.
        let said = String::from_utf8_lossy(&first.stderr).to_string();
        assert!(said.starts_with("error: ") && said.len() > 10, "{protocol}: {said}");
        assert!(!to.path().join("big.bin").exists(), "{protocol}: a failed download left big.bin");
        // The link is back once the cut ends; the rerun resumes from what arrived.
        link.wait_for("the end of the cut", Duration::from_secs(20), |_| !link.is_cut()).unwrap();
        let rerun = download(&link, home.path(), protocol, to.path()).output().unwrap();
        assert!(rerun.status.success(), "{protocol} rerun: {}", String::from_utf8_lossy(&rerun.stderr));
        let json: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
        assert!(json["resumed_from"].as_u64().unwrap_or(0) > 1_000_000, "{protocol}: the rerun did not resume: {json}");
        let arrived = std::fs::read(to.path().join("big.bin")).unwrap();
        assert!(arrived == payload, "{protocol}: the resumed download's bytes differ");
    }
}

/// Waits for `child` to end, at most `limit`; a child still running then fails the test.
fn wait_with_limit(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: the download neither finished nor failed within {limit:?} of a 10 s cut");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
