//! Whole-screen snapshots on ratatui's `TestBackend`: the start screen (also at 80×24), a filtered view, the help
//! overlay, a transfer in progress, an error, a locked file with sync in step, and files in the download cache. Times are masked, since they
//! print in the local time zone.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::digest::Md5Digest;
use crate::share::{Entry, EntryKind};
use crate::sync::{SyncEvent, SyncSummary};
use crate::transfer::Progress;
use crate::transfer::Protocol;
use crate::tui::app::App;
use crate::tui::keymap::KeyMap;
use crate::tui::pane::Side;
use crate::tui::worker::{ConnectionState, Event};

fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        size,
        mtime_ns: 1_700_000_000_000_000_000,
        md5: None,
        locked_by: None,
        target: None,
    }
}

/// The demo's first screen: every hash status.
fn start_screen() -> App {
    let mut app = App::new("/home/me/notes".into(), "127.0.0.1:7878".into(), KeyMap::default());
    app.on_event(Event::Connection(ConnectionState::Connected { server: "tandem".into() }));
    let remote = vec![
        entry("photos", EntryKind::Dir, 4096),
        entry("changelog.md", EntryKind::File, 103),
        entry("holiday video.bin", EntryKind::File, 268_435_456),
        entry("readme.txt", EntryKind::File, 207),
        entry("todo.md", EntryKind::File, 90),
    ];
    let local = vec![
        entry("changelog.md", EntryKind::File, 62),
        entry("draft.txt", EntryKind::File, 42),
        entry("readme.txt", EntryKind::File, 207),
        entry("todo.md", EntryKind::File, 90),
    ];
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    app.on_event(Event::Listed { side: Side::Local, dir: String::new(), result: Ok(local) });
    let md5 = |b: &[u8]| Some(Md5Digest::of(b));
    let local_hashes = vec![("changelog.md".into(), md5(b"laptop")), ("readme.txt".into(), md5(b"r"))];
    let remote_hashes = vec![("changelog.md".into(), md5(b"server")), ("readme.txt".into(), md5(b"r"))];
    app.on_event(Event::Hashed { side: Side::Local, dir: String::new(), results: local_hashes });
    app.on_event(Event::Hashed { side: Side::Remote, dir: String::new(), results: remote_hashes });
    app
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| super::draw(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn keys(app: &mut App, typed: &str) {
    for c in typed.chars() {
        app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
}

macro_rules! snapshot {
    ($name:literal, $screen:expr) => {
        insta::with_settings!({filters => vec![(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "YYYY-MM-DD hh:mm")]}, {
            insta::assert_snapshot!($name, $screen);
        });
    };
}

#[test]
fn start_screen_shows_every_hash_status() {
    snapshot!("start_120x35", render(&start_screen(), 120, 35));
}

#[test]
fn start_screen_fits_80x24() {
    snapshot!("start_80x24", render(&start_screen(), 80, 24));
}

#[test]
fn filtered_view_while_typing() {
    let mut app = start_screen();
    keys(&mut app, "/");
    keys(&mut app, "\\.md$");
    snapshot!("filtered", render(&app, 100, 24));
}

#[test]
fn help_overlay_lists_every_binding() {
    let mut app = start_screen();
    keys(&mut app, "?");
    snapshot!("help", render(&app, 100, 40));
}

#[test]
fn transfer_in_progress() {
    let mut app = start_screen();
    let progress = Progress::default();
    progress.set_total(268_435_456);
    let queued = Progress::default();
    queued.set_total(90);
    let name = "holiday video.bin".to_string();
    app.on_event(Event::TransferQueued { id: 1, name, protocol: Protocol::Udp, progress: progress.clone() });
    app.on_event(Event::TransferQueued { id: 2, name: "todo.md".into(), protocol: Protocol::Tcp, progress: queued });
    app.on_event(Event::TransferStarted { id: 1 });
    progress.set(100 * 1024 * 1024);
    snapshot!("transfer", render(&app, 120, 30));
}

#[test]
fn lost_connection_and_an_error() {
    let mut app = start_screen();
    app.on_event(Event::Connection(ConnectionState::Lost {
        reason: "127.0.0.1:7878: Connection refused (os error 111)".into(),
        retry_in: std::time::Duration::from_secs(2),
    }));
    app.on_event(Event::Listed {
        side: Side::Local,
        dir: String::new(),
        result: Err("/home/me/notes: Permission denied (os error 13)".into()),
    });
    snapshot!("error", render(&app, 100, 24));
}

#[test]
fn locked_file_and_sync_in_step() {
    let mut app = start_screen();
    let mut remote: Vec<Entry> = app.remote.entries.clone();
    for e in remote.iter_mut().filter(|e| e.name() == "readme.txt") {
        e.locked_by = Some("alice-laptop".into());
    }
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    keys(&mut app, "jjj");
    keys(&mut app, "s");
    app.on_event(Event::Sync(SyncEvent::Connected { server: "127.0.0.1:7878".into() }));
    app.on_event(Event::Sync(SyncEvent::Syncing));
    let summary = SyncSummary { uploaded: 2, downloaded: 1, ..Default::default() };
    app.on_event(Event::Sync(SyncEvent::Idle { summary, left_out: 0 }));
    snapshot!("locked_in_sync", render(&app, 120, 12));
}

#[test]
fn cached_files_are_marked_in_the_remote_pane() {
    let mut app = start_screen();
    let mut remote: Vec<Entry> = app.remote.entries.clone();
    for e in remote.iter_mut().filter(|e| e.name() == "readme.txt") {
        e.locked_by = Some("alice-laptop".into());
    }
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    // readme.txt (locked too) and todo.md, whose local copy is still being hashed.
    app.on_event(Event::Cached { objects: vec![(Md5Digest::of(b"r"), 207), (Md5Digest::of(b"t"), 90)] });
    let results = vec![("todo.md".into(), Some(Md5Digest::of(b"t")))];
    app.on_event(Event::Hashed { side: Side::Remote, dir: String::new(), results });
    snapshot!("cached", render(&app, 120, 12));
}

#[test]
fn a_link_shows_what_it_points_at() {
    let mut app = start_screen();
    let mut link = entry("docs", EntryKind::Symlink, 7);
    link.target = Some("../docs".into());
    let remote = vec![link, entry("readme.txt", EntryKind::File, 207)];
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    let screen = render(&app, 120, 12);
    assert!(screen.contains("docs@ -> ../docs"), "{screen}");
}
