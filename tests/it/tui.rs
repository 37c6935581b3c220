//! The TUI end to end: the real binary in tmux against a real server. It opens, downloads the file under the
//! cursor with `d`, and the Hash column turns to `=` once the local copy's MD5 matches; `q` exits with status 0.
//! With `s` it syncs the two roots both ways, and files made on either disk appear in the other pane.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// Polls `check` until it holds or `limit` passes; the last screen goes into the failure message.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool, screen: impl Fn() -> String) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}; screen:\n{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Tmux {
    session: String,
}

impl Tmux {
    /// Runs `command` in a new detached tmux session of `width` x `height` (killed on drop).
    fn start(name: &str, (width, height): (u16, u16), command: &str) -> Tmux {
        let session = format!("tandem-{name}-{}", std::process::id());
        let (width, height) = (width.to_string(), height.to_string());
        let started = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", &width, "-y", &height, command])
            .status();
        assert!(started.unwrap().success());
        Tmux { session }
    }

    /// `tandem open` on `local` against `addr`, with its own config and state in `state`; its exit status goes to
    /// the returned file.
    fn open(name: &str, local: &Path, addr: &str, state: &Path) -> (Tmux, std::path::PathBuf) {
        let exit_file = state.join("exit");
        let command = format!(
            "XDG_STATE_HOME={s} XDG_CONFIG_HOME={s} XDG_CACHE_HOME={s} {BIN} open --local {local} --remote {addr}; echo $? > {exit}",
            s = state.display(),
            local = local.display(),
            exit = exit_file.display(),
        );
        (Tmux::start(name, (120, 35), &command), exit_file)
    }

    fn capture(&self) -> String {
        let output = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.session]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux").args(["send-keys", "-t", &self.session]).args(keys).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
    }
}

/// Whether tmux runs here. Without it a test is skipped on a developer's machine, but under CI (`CI` set, as
/// `.ci/run` and CI services do) a missing tmux fails the test: CI must never pass a test it did not run.
fn tmux_available() -> bool {
    let available = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(available || !under_ci, "tmux is not installed, and CI must run the TUI tests (install tmux)");
    available
}

/// The row of a pane (left or right half of the screen) that names `file`.
fn row_with(screen: &str, file: &str, right_pane: bool) -> Option<String> {
    screen.lines().find_map(|line| {
        let chars: Vec<char> = line.chars().collect();
        let half = chars.len() / 2;
        let pane: String = if right_pane { chars[half..].iter().collect() } else { chars[..half].iter().collect() };
        pane.contains(file).then_some(pane)
    })
}

#[test]
fn download_in_the_tui_turns_the_hash_column_to_equal() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed here (under CI=true this fails instead)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "report 2026.pdf", &pseudo_random(3_000_000, 11), 1_700_000_000);
    let server = ServeProcess::start(root);
    let local = tempfile::tempdir().unwrap();
    // The same name locally with other bytes, so the column starts at ≠ and must turn to =.
    std::fs::write(local.path().join("report 2026.pdf"), b"an older draft").unwrap();
    let state = tempfile::tempdir().unwrap();
    let (tmux, exit_file) = Tmux::open("e2e", local.path(), &server.addr, state.path());

    let differs = || row_with(&tmux.capture(), "report 2026.pdf", true).is_some_and(|row| row.contains('≠'));
    wait_for("the remote listing with ≠", Duration::from_secs(20), differs, || tmux.capture());
    tmux.keys(&["d"]);

    let local_copy = local.path().join("report 2026.pdf");
    let expected = md5sum(&server.path("report 2026.pdf"));
    let arrived = || local_copy.exists() && md5sum(&local_copy) == expected;
    wait_for("the verified local copy", Duration::from_secs(20), arrived, || tmux.capture());
    let same = || {
        let screen = tmux.capture();
        [true, false]
            .iter()
            .all(|&right| row_with(&screen, "report 2026.pdf", right).is_some_and(|row| row.contains('=')))
    };
    wait_for("= in both panes", Duration::from_secs(20), same, || tmux.capture());
    assert!(tmux.capture().contains("downloaded report 2026.pdf"), "{}", tmux.capture());
    assert_eq!(names_in(local.path()), ["report 2026.pdf"], "no temporary file left");

    tmux.keys(&["q"]);
    let exited = || std::fs::read_to_string(&exit_file).is_ok_and(|s| !s.is_empty());
    wait_for("the TUI to exit", Duration::from_secs(10), exited, || tmux.capture());
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
    assert!(Path::new(&state.path().join("tandem/tandem.log")).exists(), "the TUI logs to a file, not the screen");
}

#[test]
fn open_with_listen_serves_the_local_folder_to_peers() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed here (under CI=true this fails instead)");
        return;
    }
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "shared from the laptop.txt", b"both boxes serve", 1_700_000_000);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let command = format!(
        "XDG_STATE_HOME={s} XDG_CONFIG_HOME={s} XDG_CACHE_HOME={s} {BIN} open --local {local} --listen {listen} --remote 127.0.0.1:9",
        s = state.path().display(),
        local = local.path().display(),
    );
    let tmux = Tmux::start("listen", (100, 30), &command);
    let listed = || {
        let output = cli(&listen, &["index", "longlist", "--json"]);
        output.status.success() && stdout(&output).contains("shared from the laptop.txt")
    };
    wait_for("the TUI's own server to answer", Duration::from_secs(20), listed, || tmux.capture());
    // Its remote pane, pointed at a closed port, shows the banner instead of hanging.
    let banner = || tmux.capture().contains("connection lost: 127.0.0.1:9");
    wait_for("the connection banner", Duration::from_secs(20), banner, || tmux.capture());
}

#[test]
fn s_syncs_both_roots_and_new_files_appear_in_the_other_pane() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed here (under CI=true this fails instead)");
        return;
    }
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "server.txt", b"made on the server", 1_700_000_000);
    let server = ServeProcess::start(share);
    let local = tempfile::tempdir().unwrap();
    write_file(local.path(), "laptop.txt", b"made on the laptop", 1_700_000_000);
    let state = tempfile::tempdir().unwrap();
    let (tmux, exit_file) = Tmux::open("sync", local.path(), &server.addr, state.path());
    let title = || tmux.capture().lines().next().unwrap_or_default().to_string();
    let shows = |file: &str, right: bool| row_with(&tmux.capture(), file, right).is_some();

    wait_for("the remote listing", Duration::from_secs(20), || shows("server.txt", true), || tmux.capture());
    assert!(title().contains("sync: off"), "{}", title());
    tmux.keys(&["s"]);
    // The first pass copies each side's file to the other, and both panes relist by themselves.
    let first_pass = || {
        local.path().join("server.txt").exists()
            && server.path("laptop.txt").exists()
            && title().contains("sync: in sync")
            && shows("server.txt", false)
            && shows("laptop.txt", true)
    };
    wait_for("the first pass in both panes", Duration::from_secs(20), first_pass, || tmux.capture());
    assert_eq!(std::fs::read(server.path("laptop.txt")).unwrap(), b"made on the laptop");

    // Later changes on either disk follow without a key press.
    write_file(server.root.path(), "server-2.txt", b"dropped on the server", 1_700_000_100);
    let pulled = || local.path().join("server-2.txt").exists() && shows("server-2.txt", false);
    wait_for("the server's new file in the local pane", Duration::from_secs(20), pulled, || tmux.capture());
    write_file(local.path(), "laptop-2.txt", b"written on the laptop", 1_700_000_200);
    let pushed = || server.path("laptop-2.txt").exists() && shows("laptop-2.txt", true);
    wait_for("the laptop's new file in the remote pane", Duration::from_secs(20), pushed, || tmux.capture());
    assert_eq!(std::fs::read(local.path().join("server-2.txt")).unwrap(), b"dropped on the server");

    tmux.keys(&["s"]);
    wait_for("sync to stop", Duration::from_secs(20), || title().contains("sync: off"), || tmux.capture());
    tmux.keys(&["q"]);
    let exited = || std::fs::read_to_string(&exit_file).is_ok_and(|s| !s.is_empty());
    wait_for("the TUI to exit", Duration::from_secs(10), exited, || tmux.capture());
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
}

#[test]
fn a_lost_server_puts_up_a_banner_and_the_tui_recovers_when_it_is_back() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed here (under CI=true this fails instead)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "notes.txt", b"kept on the server", 1_700_000_000);
    let mut server = ServeProcess::start(root);
    let (local, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (tmux, _) = Tmux::open("banner", local.path(), &server.addr, state.path());
    let listed = || row_with(&tmux.capture(), "notes.txt", true).is_some();
    wait_for("the remote listing", Duration::from_secs(20), listed, || tmux.capture());

    server.kill();
    let banner = || tmux.capture().contains("connection lost:");
    wait_for("the connection-lost banner", Duration::from_secs(20), banner, || tmux.capture());
    assert!(tmux.capture().contains("disconnected"), "{}", tmux.capture());

    // The same server comes back on the same port: the TUI reconnects by itself and the banner goes.
    server.restart_on_same_port();
    write_file(server.root.path(), "after restart.txt", b"new", 1_700_000_000);
    let recovered = || {
        let screen = tmux.capture();
        screen.contains("connection restored") && !screen.contains("next try in") && !screen.contains("disconnected")
    };
    wait_for("the banner to clear", Duration::from_secs(30), recovered, || tmux.capture());
    let relisted = || row_with(&tmux.capture(), "after restart.txt", true).is_some();
    wait_for("the remote pane to list again", Duration::from_secs(20), relisted, || tmux.capture());
}
