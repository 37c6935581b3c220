//! `App` from key to action to state: every behaviour driven by key presses and background events, checked on
//! the resulting state and on the jobs it asks for.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Mode};
use super::keymap::KeyMap;
use super::pane::{HashState, Side, hash_mark};
use super::sync::SyncPhase;
use super::worker::{ConnectionState, Event, Job};
use crate::digest::Md5Digest;
use crate::share::{Entry, EntryKind};
use crate::sync::{SyncEvent, SyncSummary};
use crate::transfer::Protocol;

fn entry(path: &str, kind: EntryKind, mtime_secs: i64) -> Entry {
    Entry {
        path: path.into(),
        kind,
        size: 10,
        mtime_ns: mtime_secs * 1_000_000_000,
        md5: None,
        locked_by: None,
        target: None,
    }
}

fn file(path: &str) -> Entry {
    entry(path, EntryKind::File, 1_700_000_000)
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) -> Vec<Job> {
    keys.chars().flat_map(|c| app.on_key(key(KeyCode::Char(c)))).collect()
}

/// An app with both panes listed: remote `docs/ a.txt b.txt c.txt`, local `a.txt b.txt mine.txt`.
fn listed() -> App {
    let mut app = App::new("/home/me".into(), "server:7878".into(), KeyMap::default());
    app.start();
    app.on_event(Event::Connection(ConnectionState::Connected { server: "tandem".into() }));
    let remote = vec![entry("docs", EntryKind::Dir, 1), file("a.txt"), file("b.txt"), file("c.txt")];
    let local = vec![file("a.txt"), file("b.txt"), file("mine.txt")];
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    app.on_event(Event::Listed { side: Side::Local, dir: String::new(), result: Ok(local) });
    app
}

fn current_name(app: &App, side: Side) -> String {
    app.pane(side).current().map(|e| e.name().to_string()).unwrap_or_default()
}

#[test]
fn connecting_lists_the_remote_root_and_listings_start_hashing_common_files() {
    let mut app = App::new("/l".into(), "r".into(), KeyMap::default());
    assert_eq!(app.start(), vec![Job::List { side: Side::Local, dir: String::new() }]);
    let jobs = app.on_event(Event::Connection(ConnectionState::Connected { server: "t".into() }));
    assert_eq!(jobs, vec![Job::List { side: Side::Remote, dir: String::new() }]);
    app.on_event(Event::Listed {
        side: Side::Remote,
        dir: String::new(),
        result: Ok(vec![file("a"), file("only-remote")]),
    });
    let jobs = app.on_event(Event::Listed { side: Side::Local, dir: String::new(), result: Ok(vec![file("a")]) });
    assert_eq!(
        jobs,
        vec![
            Job::Hash { side: Side::Local, dir: String::new(), names: vec!["a".into()] },
            Job::Hash { side: Side::Remote, dir: String::new(), names: vec!["a".into()] },
        ]
    );
    assert_eq!(app.local.hashes.get("a"), Some(&HashState::Pending));
}

#[test]
fn hash_column_shows_same_differs_only_here_and_pending() {
    let mut app = listed();
    let md5 = |s: &[u8]| Some(Md5Digest::of(s));
    let pending = app.local.entry("a.txt").unwrap().clone();
    assert_eq!(hash_mark(&app.local, &app.remote, &pending), "…");
    app.on_event(Event::Hashed {
        side: Side::Local,
        dir: String::new(),
        results: vec![("a.txt".into(), md5(b"x")), ("b.txt".into(), md5(b"x"))],
    });
    app.on_event(Event::Hashed {
        side: Side::Remote,
        dir: String::new(),
        results: vec![("a.txt".into(), md5(b"x")), ("b.txt".into(), md5(b"y"))],
    });
    let mark = |app: &App, side: Side, name: &str| {
        let pane = app.pane(side);
        hash_mark(pane, app.pane(side.other()), pane.entry(name).unwrap()).to_string()
    };
    assert_eq!(mark(&app, Side::Local, "a.txt"), "=");
    assert_eq!(mark(&app, Side::Remote, "b.txt"), "≠");
    assert_eq!(mark(&app, Side::Local, "mine.txt"), "+");
    assert_eq!(mark(&app, Side::Remote, "c.txt"), "+");
    assert_eq!(mark(&app, Side::Remote, "docs"), "+");
}

#[test]
fn movement_keys_move_the_cursor_of_the_active_pane() {
    let mut app = listed();
    assert_eq!(app.active, Side::Remote);
    assert_eq!(current_name(&app, Side::Remote), "docs");
    press(&mut app, "jj");
    assert_eq!(current_name(&app, Side::Remote), "b.txt");
    press(&mut app, "G");
    assert_eq!(current_name(&app, Side::Remote), "c.txt");
    press(&mut app, "j");
    assert_eq!(current_name(&app, Side::Remote), "c.txt", "stops at the end");
    press(&mut app, "kg");
    assert_eq!(current_name(&app, Side::Remote), "docs");
    app.on_key(key(KeyCode::PageDown));
    assert_eq!(current_name(&app, Side::Remote), "c.txt");
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.active, Side::Local);
    press(&mut app, "j");
    assert_eq!(current_name(&app, Side::Local), "b.txt");
    assert_eq!(current_name(&app, Side::Remote), "c.txt");
}

#[test]
fn enter_opens_a_folder_and_backspace_returns_to_it() {
    let mut app = listed();
    let jobs = app.on_key(key(KeyCode::Enter));
    assert_eq!(jobs, vec![Job::List { side: Side::Remote, dir: "docs".into() }]);
    app.on_event(Event::Listed { side: Side::Remote, dir: "docs".into(), result: Ok(vec![file("docs/x.md")]) });
    assert_eq!(app.remote.dir, "docs");
    assert_eq!(current_name(&app, Side::Remote), "x.md");
    assert!(app.on_key(key(KeyCode::Enter)).is_empty(), "Enter on a file does nothing");
    let jobs = app.on_key(key(KeyCode::Backspace));
    assert_eq!(jobs, vec![Job::List { side: Side::Remote, dir: String::new() }]);
    app.on_event(Event::Listed {
        side: Side::Remote,
        dir: String::new(),
        result: Ok(vec![entry("docs", EntryKind::Dir, 1), file("a.txt")]),
    });
    assert_eq!(current_name(&app, Side::Remote), "docs", "cursor lands on the folder we came from");
    assert!(app.on_key(key(KeyCode::Backspace)).is_empty(), "no parent above the root");
}

#[test]
fn d_downloads_the_selection_into_the_local_folder() {
    let mut app = listed();
    // Space selects and moves down: a.txt, then b.txt.
    press(&mut app, "j  ");
    assert_eq!(app.remote.selected.len(), 2);
    let jobs = press(&mut app, "d");
    assert_eq!(
        jobs,
        vec![Job::Download {
            paths: vec![("a.txt".into(), EntryKind::File), ("b.txt".into(), EntryKind::File)],
            local_dir: String::new(),
            protocol: Protocol::Tcp,
        }]
    );
    assert!(app.remote.selected.is_empty());
    // Without a selection, the entry under the cursor; a folder goes whole.
    press(&mut app, "g");
    let jobs = app.on_key(key(KeyCode::F(5)));
    let docs = vec![("docs".into(), EntryKind::Dir)];
    assert_eq!(jobs, vec![Job::Download { paths: docs.clone(), local_dir: String::new(), protocol: Protocol::Tcp }]);
    // u is the same over UDP.
    let jobs = press(&mut app, "u");
    assert_eq!(jobs, vec![Job::Download { paths: docs, local_dir: String::new(), protocol: Protocol::Udp }]);
    // From the local pane, d explains itself instead.
    app.on_key(key(KeyCode::Tab));
    assert!(press(&mut app, "d").is_empty());
    assert!(app.status().unwrap().error);
    assert!(app.status().unwrap().text.starts_with("downloads start from the remote pane"));
}

#[test]
fn s_starts_sync_and_pressing_again_stops_it() {
    let mut app = listed();
    assert_eq!(press(&mut app, "s"), vec![Job::StartSync]);
    assert_eq!(app.sync.phase, SyncPhase::Starting);
    assert_eq!(press(&mut app, "s"), vec![Job::StopSync]);
    assert_eq!(app.sync.phase, SyncPhase::Stopping);
    assert!(press(&mut app, "s").is_empty(), "no second stop, and no start before the stop is done");
    app.on_event(Event::SyncStopped { result: Ok(SyncSummary::default()) });
    assert_eq!(app.sync.phase, SyncPhase::Off);
    assert_eq!(app.status().unwrap().text, "sync stopped");
    // A failed sync can be started again.
    assert_eq!(press(&mut app, "s"), vec![Job::StartSync]);
    app.on_event(Event::SyncStopped { result: Err("/home/me: not a folder".into()) });
    assert_eq!(app.sync.phase, SyncPhase::Failed("/home/me: not a folder".into()));
    assert!(app.status().unwrap().error);
    assert_eq!(press(&mut app, "s"), vec![Job::StartSync]);
}

#[test]
fn sync_events_move_the_title_state_and_a_pass_with_changes_relists_both_panes() {
    let mut app = listed();
    app.on_key(key(KeyCode::Enter));
    app.on_event(Event::Listed { side: Side::Remote, dir: "docs".into(), result: Ok(vec![file("docs/x")]) });
    press(&mut app, "s");
    app.on_event(Event::Sync(SyncEvent::Connected { server: "server:7878".into() }));
    assert_eq!(app.status().unwrap().text, "sync: connected to server:7878");
    assert!(app.on_event(Event::Sync(SyncEvent::Syncing)).is_empty());
    assert_eq!(app.sync.phase, SyncPhase::Syncing);
    let summary = SyncSummary { uploaded: 2, downloaded: 1, ..Default::default() };
    let jobs = app.on_event(Event::Sync(SyncEvent::Idle { summary, left_out: 0 }));
    assert_eq!(
        jobs,
        vec![Job::List { side: Side::Local, dir: String::new() }, Job::List { side: Side::Remote, dir: "docs".into() }]
    );
    assert_eq!((&app.sync.phase, app.sync.last), (&SyncPhase::InSync, Some(summary)));
    assert_eq!(app.status().unwrap().text, "sync: 2 uploaded, 1 downloaded, 0 deleted, 0 conflicts");
    // A quiet pass afterwards neither relists nor forgets what the last busy one did.
    app.on_event(Event::Sync(SyncEvent::Syncing));
    assert!(app.on_event(Event::Sync(SyncEvent::Idle { summary: SyncSummary::default(), left_out: 0 })).is_empty());
    assert_eq!(app.sync.last, Some(summary));
    // A path left out is told once in the log, and counted on the status line until it syncs.
    let reason = "a special file (a FIFO, socket or device), which has no content to sync".to_string();
    app.on_event(Event::Sync(SyncEvent::LeftOut { path: "queue.fifo".into(), reason }));
    let told = app.status().unwrap();
    assert!(told.error && told.text.starts_with("sync: left out queue.fifo: a special file"), "{}", told.text);
    app.on_event(Event::Sync(SyncEvent::Idle { summary: SyncSummary::default(), left_out: 1 }));
    assert_eq!(app.sync.left_out, 1);
    app.on_event(Event::Sync(SyncEvent::Problem("lost the connection to server:7878".into())));
    assert_eq!(app.sync.phase, SyncPhase::Problem("lost the connection to server:7878".into()));
    let status = app.status().unwrap();
    assert!(status.error && status.text == "sync: lost the connection to server:7878", "{}", status.text);
}

#[test]
fn shift_l_locks_an_unlocked_remote_file_and_unlocks_a_locked_one() {
    let mut app = listed();
    let mut locked = file("b.txt");
    locked.locked_by = Some("alice-laptop".into());
    let remote = vec![entry("docs", EntryKind::Dir, 1), file("a.txt"), locked, file("c.txt")];
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    press(&mut app, "j");
    assert_eq!(press(&mut app, "L"), vec![Job::Lock { path: "a.txt".into() }]);
    press(&mut app, "j");
    assert_eq!(press(&mut app, "L"), vec![Job::Unlock { path: "b.txt".into() }]);
    // The answer is shown, and the folder relisted to show the new lock state.
    let refused = Err("b.txt is locked by alice-laptop".to_string());
    let jobs = app.on_event(Event::LockChanged { path: "b.txt".into(), locked: false, result: refused });
    assert_eq!(jobs, vec![Job::List { side: Side::Remote, dir: String::new() }]);
    let status = app.status().unwrap();
    assert!(status.error && status.text == "b.txt is locked by alice-laptop");
    app.on_event(Event::LockChanged { path: "a.txt".into(), locked: true, result: Ok(()) });
    assert_eq!(app.status().unwrap().text, "locked a.txt");
    // The local pane has nothing to lock.
    app.on_key(key(KeyCode::Tab));
    assert!(press(&mut app, "L").is_empty());
    let status = app.status().unwrap();
    assert!(status.error && status.text == "select a file in the remote pane to lock it");
}

#[test]
fn f5_in_the_local_pane_uploads_into_the_remote_folder() {
    let mut app = listed();
    // F5 from the local pane uploads the selection into the remote pane's folder.
    app.on_key(key(KeyCode::Tab));
    press(&mut app, "G");
    let jobs = app.on_key(key(KeyCode::F(5)));
    assert_eq!(
        jobs,
        vec![Job::Upload { paths: vec![("mine.txt".into(), EntryKind::File)], remote_dir: String::new() }]
    );
}

#[test]
fn regex_filter_is_live_shows_errors_and_esc_clears_it() {
    let mut app = listed();
    press(&mut app, "/");
    press(&mut app, "[ab]\\.");
    assert_eq!(app.remote.visible.len(), 2, "a.txt and b.txt");
    press(&mut app, "(");
    let Mode::Prompt(prompt) = &app.mode else { panic!("still typing") };
    assert!(prompt.error.as_deref().unwrap().starts_with(r#"invalid regex "[ab]\\.(": unclosed group"#), "{prompt:?}");
    assert_eq!(app.remote.visible.len(), 2, "the last valid pattern stays applied");
    app.on_key(key(KeyCode::Enter));
    assert!(matches!(app.mode, Mode::Prompt(_)), "Enter does not accept an invalid pattern");
    app.on_key(key(KeyCode::Backspace));
    app.on_key(key(KeyCode::Enter));
    assert!(matches!(app.mode, Mode::Normal));
    assert_eq!(app.remote.visible.len(), 2);
    assert_eq!(app.local.visible.len(), 3, "only the active pane is filtered");
    press(&mut app, "/");
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.remote.visible.len(), 4);
    assert!(app.remote.filter.regex.is_none());
}

#[test]
fn time_filter_takes_a_range_in_the_shortlist_formats() {
    let mut app = App::new("/l".into(), "r".into(), KeyMap::default());
    let listing = vec![entry("old", EntryKind::File, 1_000), entry("new", EntryKind::File, 2_000_000_000)];
    app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(listing) });
    press(&mut app, "t");
    press(&mut app, "2000-01-01 ..");
    app.on_key(key(KeyCode::Enter));
    assert!(matches!(app.mode, Mode::Normal));
    assert_eq!(current_name(&app, Side::Remote), "new");
    assert_eq!(app.remote.visible.len(), 1);
    press(&mut app, "t");
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    press(&mut app, "someday .. 2001");
    app.on_key(key(KeyCode::Enter));
    let Mode::Prompt(prompt) = &app.mode else { panic!("error keeps the prompt open") };
    assert!(prompt.error.as_deref().unwrap().starts_with("invalid time \"someday\""));
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.remote.visible.len(), 2);
}

#[test]
fn verify_hashes_the_selection_on_both_sides_again() {
    let mut app = listed();
    app.on_event(Event::Hashed {
        side: Side::Local,
        dir: String::new(),
        results: vec![("a.txt".into(), Some(Md5Digest::of(b"1")))],
    });
    press(&mut app, "j");
    let jobs = press(&mut app, "v");
    assert_eq!(
        jobs,
        vec![
            Job::Hash { side: Side::Local, dir: String::new(), names: vec!["a.txt".into()] },
            Job::Hash { side: Side::Remote, dir: String::new(), names: vec!["a.txt".into()] },
        ]
    );
    let jobs = press(&mut app, "V");
    let names = |side| {
        jobs.iter().find_map(|j| match j {
            Job::Hash { side: s, names, .. } if *s == side => Some(names.clone()),
            _ => None,
        })
    };
    assert_eq!(names(Side::Local).unwrap(), ["a.txt", "b.txt", "mine.txt"]);
    assert_eq!(names(Side::Remote).unwrap(), ["a.txt", "b.txt", "c.txt"]);
}

#[test]
fn command_line_runs_cli_words_and_output_opens_an_overlay() {
    let mut app = listed();
    press(&mut app, ":");
    press(&mut app, "index regex \\.txt$");
    let jobs = app.on_key(key(KeyCode::Enter));
    assert_eq!(jobs, vec![Job::Command { line: "index regex \\.txt$".into(), local_dir: String::new() }]);
    app.on_event(Event::Output { title: ":index".into(), text: "table".into() });
    assert!(matches!(app.mode, Mode::Output { .. }));
    app.on_key(key(KeyCode::Esc));
    assert!(matches!(app.mode, Mode::Normal));
}

#[test]
fn lost_connection_is_reported_once_and_recovery_relists() {
    let mut app = listed();
    app.on_key(key(KeyCode::Enter));
    app.on_event(Event::Listed { side: Side::Remote, dir: "docs".into(), result: Ok(vec![file("docs/x")]) });
    let lost = || {
        Event::Connection(ConnectionState::Lost {
            reason: "refused".into(),
            retry_in: std::time::Duration::from_secs(1),
        })
    };
    app.on_event(lost());
    app.on_event(Event::Connection(ConnectionState::Connecting));
    app.on_event(lost());
    assert_eq!(app.log.iter().filter(|l| l.text == "connection lost: refused").count(), 1);
    assert!(matches!(app.connection, ConnectionState::Lost { .. }), "retrying keeps the banner up");
    let jobs = app.on_event(Event::Connection(ConnectionState::Connected { server: "t".into() }));
    assert_eq!(jobs, vec![Job::List { side: Side::Remote, dir: "docs".into() }]);
    assert_eq!(app.status().unwrap().text, "connection restored");
}

#[test]
fn a_finished_download_refreshes_the_local_folder() {
    let mut app = listed();
    let progress = crate::transfer::Progress::default();
    app.on_event(Event::TransferQueued { id: 7, name: "a.txt".into(), protocol: Protocol::Udp, progress });
    assert_eq!(app.transfers[0].protocol, "UDP");
    app.on_event(Event::TransferStarted { id: 7 });
    let refresh = (Side::Local, String::new());
    let jobs = app.on_event(Event::TransferFinished { id: 7, refresh: refresh.clone(), result: Err("boom".into()) });
    assert!(jobs.is_empty());
    assert_eq!(app.status().unwrap().text, "transfer of a.txt failed: boom");
    let done = Ok("downloaded a.txt, MD5 verified".to_string());
    let jobs = app.on_event(Event::TransferFinished { id: 7, refresh, result: done });
    assert_eq!(jobs, vec![Job::List { side: Side::Local, dir: String::new() }]);
    assert_eq!(app.status().unwrap().text, "downloaded a.txt, MD5 verified");
    // An upload refreshes the remote pane instead, if it still shows that folder.
    let uploaded = Ok("uploaded x".to_string());
    let jobs =
        app.on_event(Event::TransferFinished { id: 7, refresh: (Side::Remote, String::new()), result: uploaded });
    assert_eq!(jobs, vec![Job::List { side: Side::Remote, dir: String::new() }]);

    // The relisted file has a new mtime: its old MD5 is forgotten and it is hashed again.
    app.on_event(Event::Hashed {
        side: Side::Local,
        dir: String::new(),
        results: vec![("a.txt".into(), Some(Md5Digest::of(b"old")))],
    });
    app.on_event(Event::Hashed {
        side: Side::Local,
        dir: String::new(),
        results: vec![("b.txt".into(), Some(Md5Digest::of(b"b")))],
    });
    let relisted = vec![entry("a.txt", EntryKind::File, 1_800_000_000), file("b.txt"), file("mine.txt")];
    let jobs = app.on_event(Event::Listed { side: Side::Local, dir: String::new(), result: Ok(relisted) });
    assert_eq!(jobs, vec![Job::Hash { side: Side::Local, dir: String::new(), names: vec!["a.txt".into()] }]);
    assert_eq!(
        app.local.hashes.get("b.txt"),
        Some(&HashState::Known(Md5Digest::of(b"b"))),
        "unchanged file keeps its MD5"
    );
}

#[test]
fn remapped_keys_apply_and_quit_works() {
    let keys = [("x", "quit"), ("q", "help")].iter().map(|(k, a)| (k.to_string(), a.to_string())).collect();
    let mut app = App::new("/l".into(), "r".into(), KeyMap::with_config(&keys).0);
    press(&mut app, "q");
    assert!(matches!(app.mode, Mode::Help { .. }));
    press(&mut app, "q");
    assert!(matches!(app.mode, Mode::Normal), "any key closes help");
    press(&mut app, "x");
    assert!(app.should_quit);
    let mut app = listed();
    app.on_key(key(KeyCode::F(10)));
    assert!(app.should_quit);
}

#[test]
fn remote_files_of_a_cached_size_are_hashed_then_marked() {
    let mut app = listed();
    // a.txt and b.txt are hashed already, as files both sides hold; c.txt is only worth hashing for the cache.
    let objects = vec![(Md5Digest::of(b"c"), 10), (Md5Digest::of(b"other"), 99)];
    let jobs = app.on_event(Event::Cached { objects });
    assert_eq!(jobs, vec![Job::Hash { side: Side::Remote, dir: String::new(), names: vec!["c.txt".into()] }]);
    let c = app.remote.entry("c.txt").unwrap().clone();
    assert!(!app.is_cached(&c), "not before its MD5 is known");
    let results = vec![("c.txt".into(), Some(Md5Digest::of(b"c"))), ("b.txt".into(), Some(Md5Digest::of(b"b")))];
    app.on_event(Event::Hashed { side: Side::Remote, dir: String::new(), results });
    assert!(app.is_cached(&c));
    assert!(!app.is_cached(&app.remote.entry("b.txt").unwrap().clone()), "another MD5 of the same size");
    // A relisting of the unchanged folder asks for nothing again, and a cache emptied unmarks.
    let remote = app.remote.entries.clone();
    let jobs = app.on_event(Event::Listed { side: Side::Remote, dir: String::new(), result: Ok(remote) });
    assert!(jobs.is_empty(), "{jobs:?}");
    assert!(app.on_event(Event::Cached { objects: Vec::new() }).is_empty());
    assert!(!app.is_cached(&c));
}
