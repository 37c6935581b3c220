//! TUI figures, each beside its target:
//!
//! - key press to finished frame with 100,000 entries in the remote pane (in-process, on ratatui's `TestBackend`
//!   at 120×35): moving, paging, jumping to the end, and a live regex filter keystroke over all 100,000 names;
//! - the real binary in tmux: start to the first full frame (both panes listed) on a small share, and on a share
//!   with 100,000 entries in one folder, with the process's peak memory.
//!
//! Run with `cargo bench --bench tui`. The tmux part is skipped, with a message, where tmux is missing.

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tandem::share::{Entry, EntryKind};
use tandem::tui::App;
use tandem::tui::keymap::KeyMap;
use tandem::tui::pane::Side;
use tandem::tui::worker::{ConnectionState, Event};

const ENTRIES: usize = 100_000;

fn main() {
    println!("tandem TUI benchmark\n");
    key_to_frame();
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => real_binary(),
        _ => println!("real binary in tmux: SKIPPED (tmux is not installed)"),
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn key_to_frame() {
    let mut app = App::new("/home/me".into(), "server:7878".into(), KeyMap::default());
    app.on_event(Event::Connection(ConnectionState::Connected { server: "tandem".into() }));
    let entries: Vec<Entry> = (0..ENTRIES)
        .map(|i| Entry {
            path: format!("file {i:06}.dat"),
            kind: EntryKind::File,
            size: i as u64 * 37,
            mtime_ns: 1_700_000_000_000_000_000 + i as i64,
            md5: None,
            locked_by: None,
            target: None,
        })
        .collect();
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(entries) });
    app.on_event(Event::Listed { side: Side::Local, dir: String::new(), result: Ok(Vec::new()) });
    let mut terminal = Terminal::new(TestBackend::new(120, 35)).expect("terminal");
    terminal.draw(|f| tandem::tui::view::draw(f, &app)).expect("draw");

    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    println!("key press to frame, {ENTRIES} entries in the remote pane, 120x35");
    let t = &mut terminal;
    measure(&mut app, t, "j (down)", &[key(KeyCode::Char('j'))], 2000);
    measure(&mut app, t, "PgDn / PgUp", &[key(KeyCode::PageDown), key(KeyCode::PageUp)], 2000);
    measure(&mut app, t, "G / g (end, home)", &[key(KeyCode::Char('G')), key(KeyCode::Char('g'))], 2000);
    app.on_key(key(KeyCode::Char('/')));
    // Each press narrows or widens a live filter over all 100,000 names.
    measure(&mut app, t, "live regex filter keystroke", &[key(KeyCode::Char('9')), key(KeyCode::Backspace)], 200);
    app.on_key(key(KeyCode::Esc));
    println!();
}

/// Presses keys in turn, timing each from the key to the finished frame.
fn measure(app: &mut App, terminal: &mut Terminal<TestBackend>, label: &str, presses: &[KeyEvent], runs: usize) {
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let started = Instant::now();
        app.on_key(presses[run % presses.len()]);
        terminal.draw(|f| tandem::tui::view::draw(f, app)).expect("draw");
        samples.push(started.elapsed());
    }
    let median = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "  {label:<34} median {:>7.3} ms   p99 {:>7.3} ms   (target < 16 ms)",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

fn real_binary() {
    let bin = env!("CARGO_BIN_EXE_tandem");
    for (label, entries) in [("small share (demo-sized)", 6), ("100,000 entries in one folder", ENTRIES)] {
        let share = tempfile::tempdir().expect("share");
        for i in 0..entries {
            std::fs::File::create(share.path().join(format!("file {i:06}.dat"))).expect("create");
        }
        let local = tempfile::tempdir().expect("local");
        std::fs::write(local.path().join("file 000001.dat"), b"").expect("write");
        let mut server = Command::new(bin)
            .arg("serve")
            .arg(share.path())
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("serve");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().expect("stdout")), &mut line)
            .expect("serving line");
        let addr = line.trim().rsplit(" on ").next().expect("address").to_string();
        let state = tempfile::tempdir().expect("state");
        let session = format!("tandem-bench-{}", std::process::id());
        let command = format!(
            "XDG_STATE_HOME={s} XDG_CONFIG_HOME={s} exec {bin} open --local {local} --remote {addr}",
            s = state.path().display(),
            local = local.path().display()
        );
        let expected = format!("{entries} entries");
        let started = Instant::now();
        let pid = Command::new("tmux")
            .args(["new-session", "-d", "-P", "-F", "#{pane_pid}", "-s", &session, "-x", "120", "-y", "35", &command])
            .output()
            .expect("tmux");
        let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
        // Both panes are listed once the remote pane's footer counts every entry and the local one shows its file.
        let first_full_frame = loop {
            let screen = Command::new("tmux").args(["capture-pane", "-p", "-t", &session]).output().expect("capture");
            let screen = String::from_utf8_lossy(&screen.stdout);
            if screen.contains(&expected) && screen.contains("1 entry") {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(30) {
                panic!("no full frame after 30 s:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let peak = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|status| {
            status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
        });
        let _ = Command::new("tmux").args(["kill-session", "-t", &session]).status();
        let _ = server.kill();
        let _ = server.wait();
        println!("real binary in tmux, {label}");
        println!(
            "  start to first full frame        {:>8.1} ms   (target < 150 ms; includes tmux start and 2 ms polling)",
            first_full_frame.as_secs_f64() * 1e3
        );
        if let Some(kib) = peak {
            println!("  TUI peak memory (VmHWM)          {:>8.1} MB   (target < 150 MB)", kib as f64 / 1024.0);
        }
    }
}
