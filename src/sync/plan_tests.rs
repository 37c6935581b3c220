//! Tests of the planner, one per rule; the property test over random trees is in `plan_property_tests.rs`.

use chrono::{Local, NaiveDateTime, TimeZone};

use super::*;

const HOST: &str = "me";
const SECOND: i64 = 1_000_000_000;

fn file(content: &str, mtime_s: i64) -> Version {
    Version {
        kind: Kind::File,
        size: content.len() as u64,
        mtime_ns: mtime_s * SECOND,
        md5: Some(Md5Digest::of(content.as_bytes())),
    }
}

fn dir() -> Version {
    Version { kind: Kind::Dir, size: 0, mtime_ns: 0, md5: None }
}

fn state(path: &str, base: Option<Version>, local: Option<Version>, remote: Option<Version>) -> PathState {
    PathState { path: path.to_string(), base, local, remote, remote_author: None }
}

fn s(path: &str) -> String {
    path.to_string()
}

/// The copy name `plan` should choose when nothing is in the way.
fn copy_of(path: &str, mtime_s: i64, host: &str) -> String {
    conflict_name(path, mtime_s * SECOND, host, &|_| false)
}

fn plan1(state: PathState) -> Vec<Action> {
    plan(&[state], HOST)
}

// ---- content equality ----

#[test]
fn content_equality_is_kind_and_md5_only() {
    let a = file("x", 1);
    let same_bytes_other_time = Version { size: 99, mtime_ns: 5, ..file("x", 7) };
    assert!(same_content(None, None));
    assert!(same_content(Some(&dir()), Some(&Version { mtime_ns: 42, ..dir() })));
    assert!(same_content(Some(&a), Some(&same_bytes_other_time)));
    assert!(!same_content(Some(&a), Some(&file("y", 1))));
    assert!(!same_content(Some(&a), None));
    assert!(!same_content(None, Some(&dir())));
    assert!(!same_content(Some(&a), Some(&dir())));
    let unhashed = Version { md5: None, ..a.clone() };
    assert!(!same_content(Some(&unhashed), Some(&unhashed)), "an unknown MD5 equals nothing, not even itself");
    assert!(!same_content(Some(&unhashed), Some(&a)));
}

// ---- neither side changed ----

#[test]
fn unchanged_paths_plan_nothing_even_if_times_differ() {
    let states = [
        state("f", Some(file("x", 1)), Some(file("x", 2)), Some(file("x", 3))),
        state("d", Some(dir()), Some(dir()), Some(dir())),
        state("gone", None, None, None),
    ];
    assert_eq!(plan(&states, HOST), vec![]);
}

// ---- one side changed ----

#[test]
fn local_changes_are_pushed() {
    assert_eq!(plan1(state("new.txt", None, Some(file("x", 1)), None)), vec![Action::Upload { path: s("new.txt") }]);
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), Some(file("y", 2)), Some(file("x", 1)))),
        vec![Action::Upload { path: s("f") }]
    );
    assert_eq!(plan1(state("d", None, Some(dir()), None)), vec![Action::MkdirRemote { path: s("d") }]);
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), None, Some(file("x", 1)))),
        vec![Action::DeleteRemote { path: s("f"), kind: Kind::File }]
    );
    assert_eq!(
        plan1(state("d", Some(dir()), None, Some(dir()))),
        vec![Action::DeleteRemote { path: s("d"), kind: Kind::Dir }]
    );
}

#[test]
fn remote_changes_are_pulled() {
    assert_eq!(plan1(state("new.txt", None, None, Some(file("x", 1)))), vec![Action::Download { path: s("new.txt") }]);
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), Some(file("x", 1)), Some(file("y", 2)))),
        vec![Action::Download { path: s("f") }]
    );
    assert_eq!(plan1(state("d", None, None, Some(dir()))), vec![Action::MkdirLocal { path: s("d") }]);
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), Some(file("x", 1)), None)),
        vec![Action::DeleteLocal { path: s("f"), kind: Kind::File }]
    );
    assert_eq!(
        plan1(state("d", Some(dir()), Some(dir()), None)),
        vec![Action::DeleteLocal { path: s("d"), kind: Kind::Dir }]
    );
}

#[test]
fn an_unhashed_local_file_counts_as_changed() {
    let unhashed = Version { md5: None, ..file("x", 1) };
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), Some(unhashed), Some(file("x", 1)))),
        vec![Action::Upload { path: s("f") }]
    );
}

// ---- both sides changed ----

#[test]
fn both_deleted_forgets_the_base() {
    assert_eq!(plan1(state("f", Some(file("x", 1)), None, None)), vec![Action::Forget { path: s("f") }]);
    assert_eq!(plan1(state("d", Some(dir()), None, None)), vec![Action::Forget { path: s("d") }]);
}

#[test]
fn both_changed_alike_records_the_local_version() {
    let local = file("y", 5);
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), Some(local.clone()), Some(file("y", 9)))),
        vec![Action::Record { path: s("f"), version: local.clone() }]
    );
    assert_eq!(
        plan1(state("f", None, Some(local.clone()), Some(file("y", 2)))),
        vec![Action::Record { path: s("f"), version: local }]
    );
    assert_eq!(
        plan1(state("d", None, Some(dir()), Some(dir()))),
        vec![Action::Record { path: s("d"), version: dir() }]
    );
}

#[test]
fn a_modification_beats_a_deletion() {
    assert_eq!(
        plan1(state("f", Some(file("x", 1)), None, Some(file("y", 2)))),
        vec![Action::Download { path: s("f") }]
    );
    assert_eq!(plan1(state("f", Some(file("x", 1)), Some(file("y", 2)), None)), vec![Action::Upload { path: s("f") }]);
    // A file deleted on one side and replaced by a folder on the other: the folder wins.
    assert_eq!(plan1(state("p", Some(file("x", 1)), None, Some(dir()))), vec![Action::MkdirLocal { path: s("p") }]);
    assert_eq!(plan1(state("p", Some(file("x", 1)), Some(dir()), None)), vec![Action::MkdirRemote { path: s("p") }]);
}

#[test]
fn conflict_with_the_local_file_older_renames_it_and_downloads() {
    let mut st = state("docs/r.txt", Some(file("x", 1)), Some(file("y", 10)), Some(file("z", 20)));
    st.remote_author = Some("bob".to_string());
    assert_eq!(
        plan1(st),
        vec![
            Action::RenameLocal { from: s("docs/r.txt"), to: copy_of("docs/r.txt", 10, HOST) },
            Action::Download { path: s("docs/r.txt") },
        ]
    );
}

#[test]
fn conflict_with_the_remote_file_older_renames_it_and_uploads() {
    let mut st = state("r.txt", Some(file("x", 1)), Some(file("y", 30)), Some(file("z", 20)));
    st.remote_author = Some("bob".to_string());
    assert_eq!(
        plan1(st.clone()),
        vec![
            Action::RenameRemote { from: s("r.txt"), to: copy_of("r.txt", 20, "bob") },
            Action::Upload { path: s("r.txt") },
        ]
    );
    st.remote_author = None;
    assert_eq!(plan1(st)[0], Action::RenameRemote { from: s("r.txt"), to: copy_of("r.txt", 20, "server") });
}

#[test]
fn conflict_on_a_tie_the_local_file_loses() {
    let st = state("r.txt", None, Some(file("y", 20)), Some(file("z", 20)));
    assert_eq!(
        plan1(st),
        vec![
            Action::RenameLocal { from: s("r.txt"), to: copy_of("r.txt", 20, HOST) },
            Action::Download { path: s("r.txt") },
        ]
    );
}

#[test]
fn a_file_meeting_a_folder_loses_whatever_its_age() {
    assert_eq!(
        plan1(state("p", None, Some(file("y", 99)), Some(dir()))),
        vec![Action::RenameLocal { from: s("p"), to: copy_of("p", 99, HOST) }, Action::MkdirLocal { path: s("p") },]
    );
    let mut st = state("p", None, Some(dir()), Some(file("y", 0)));
    st.remote_author = Some("bob".to_string());
    assert_eq!(
        plan1(st),
        vec![Action::RenameRemote { from: s("p"), to: copy_of("p", 0, "bob") }, Action::MkdirRemote { path: s("p") },]
    );
}

// ---- folder deletions keep what survives inside ----

#[test]
fn a_remote_change_inside_a_locally_deleted_folder_recreates_the_folder() {
    let states = [
        state("a/b/c.txt", Some(file("x", 1)), None, Some(file("y", 2))),
        state("a", Some(dir()), None, Some(dir())),
        state("a/b", Some(dir()), None, Some(dir())),
    ];
    assert_eq!(
        plan(&states, HOST),
        vec![
            Action::MkdirLocal { path: s("a") },
            Action::MkdirLocal { path: s("a/b") },
            Action::Download { path: s("a/b/c.txt") },
        ]
    );
}

#[test]
fn a_new_local_file_inside_a_remotely_deleted_folder_keeps_the_folder() {
    let states = [
        state("d", Some(dir()), Some(dir()), None),
        state("d/old.txt", Some(file("x", 1)), Some(file("x", 1)), None),
        state("d/new.txt", None, Some(file("n", 2)), None),
        state("e", Some(dir()), Some(dir()), None),
        state("e/old.txt", Some(file("x", 1)), Some(file("x", 1)), None),
    ];
    assert_eq!(
        plan(&states, HOST),
        vec![
            Action::MkdirRemote { path: s("d") },
            Action::Upload { path: s("d/new.txt") },
            Action::DeleteLocal { path: s("e/old.txt"), kind: Kind::File },
            Action::DeleteLocal { path: s("e"), kind: Kind::Dir },
            Action::DeleteLocal { path: s("d/old.txt"), kind: Kind::File },
        ]
    );
}

#[test]
fn a_file_replacing_a_folder_loses_to_new_content_inside_it() {
    // Locally the folder `p` became a file; remotely a file appeared inside `p`.
    let states = [
        state("p", Some(dir()), Some(file("f", 50)), Some(dir())),
        state("p/kept.txt", Some(file("x", 1)), None, Some(file("x", 1))),
        state("p/new.txt", None, None, Some(file("n", 2))),
    ];
    assert_eq!(
        plan(&states, HOST),
        vec![
            Action::RenameLocal { from: s("p"), to: copy_of("p", 50, HOST) },
            Action::MkdirLocal { path: s("p") },
            Action::Download { path: s("p/new.txt") },
            Action::DeleteRemote { path: s("p/kept.txt"), kind: Kind::File },
        ]
    );
}

// ---- kind changes take two passes ----

#[test]
fn a_folder_replacing_a_file_clears_the_file_first_and_fills_in_next_pass() {
    let first = [
        state("p", Some(file("x", 1)), Some(dir()), Some(file("x", 1))),
        state("p/in.txt", None, Some(file("i", 2)), None),
    ];
    assert_eq!(plan(&first, HOST), vec![Action::DeleteRemote { path: s("p"), kind: Kind::File }]);
    let second = [state("p", Some(file("x", 1)), Some(dir()), None), state("p/in.txt", None, Some(file("i", 2)), None)];
    assert_eq!(plan(&second, HOST), vec![Action::MkdirRemote { path: s("p") }, Action::Upload { path: s("p/in.txt") }]);
    // The same from the remote side.
    let pulled = [
        state("p", Some(file("x", 1)), Some(file("x", 1)), Some(dir())),
        state("p/in.txt", None, None, Some(file("i", 2))),
    ];
    assert_eq!(plan(&pulled, HOST), vec![Action::DeleteLocal { path: s("p"), kind: Kind::File }]);
}

#[test]
fn a_file_replacing_a_folder_clears_the_folder_first_and_copies_next_pass() {
    let first = [
        state("p", Some(dir()), Some(file("f", 2)), Some(dir())),
        state("p/old.txt", Some(file("x", 1)), None, Some(file("x", 1))),
    ];
    assert_eq!(
        plan(&first, HOST),
        vec![
            Action::DeleteRemote { path: s("p/old.txt"), kind: Kind::File },
            Action::DeleteRemote { path: s("p"), kind: Kind::Dir },
        ]
    );
    let second = [state("p", Some(dir()), Some(file("f", 2)), None)];
    assert_eq!(plan(&second, HOST), vec![Action::Upload { path: s("p") }]);
}

// ---- conflict names ----

fn stamp(mtime_ns: i64) -> String {
    Local.timestamp_nanos(mtime_ns).format("%Y%m%d-%H%M%S").to_string()
}

#[test]
fn conflict_names_put_time_and_host_before_the_extension() {
    let t = 1_700_000_000_123_456_789;
    let st = stamp(t);
    let free = |_: &str| false;
    assert_eq!(
        conflict_name("docs/report.txt", t, "alice-laptop", &free),
        format!("docs/report.sync-conflict-{st}-alice-laptop.txt")
    );
    assert_eq!(conflict_name("Makefile", t, "h", &free), format!("Makefile.sync-conflict-{st}-h"));
    assert_eq!(conflict_name("a/.bashrc", t, "h", &free), format!("a/.bashrc.sync-conflict-{st}-h"));
    assert_eq!(conflict_name(".config.toml", t, "h", &free), format!(".config.sync-conflict-{st}-h.toml"));
    assert_eq!(conflict_name("x/y.d/z.tar.gz", t, "h", &free), format!("x/y.d/z.tar.sync-conflict-{st}-h.gz"));
    assert_eq!(conflict_name("f", t, "büro pc/1:x_y.z", &free), format!("f.sync-conflict-{st}-b_ro_pc_1_x_y.z"));
    assert_eq!(conflict_name("f", t, "", &free), format!("f.sync-conflict-{st}-unknown"));
}

#[test]
fn conflict_name_times_are_local_time_to_the_second() {
    let t = 1_700_000_000_987_654_321;
    let name = conflict_name("f", t, "h", &|_| false);
    let stamp = name.strip_prefix("f.sync-conflict-").and_then(|rest| rest.strip_suffix("-h")).unwrap();
    let naive = NaiveDateTime::parse_from_str(stamp, "%Y%m%d-%H%M%S").unwrap();
    let back = Local.from_local_datetime(&naive).earliest().unwrap();
    assert_eq!(back.timestamp(), 1_700_000_000);
}

#[test]
fn conflict_names_skip_taken_ones() {
    let t = 5 * SECOND;
    let first = conflict_name("a/b.txt", t, "h", &|_| false);
    let second = conflict_name("a/b.txt", t, "h", &|name| name == first);
    assert_eq!(second, format!("a/b.sync-conflict-{}-h-2.txt", stamp(t)));
    let third = conflict_name("a/b.txt", t, "h", &|name| name == first || name == second);
    assert_eq!(third, format!("a/b.sync-conflict-{}-h-3.txt", stamp(t)));
}

#[test]
fn plan_never_names_a_copy_after_an_existing_path() {
    let existing = copy_of("r.txt", 1, HOST);
    let states = [
        state("r.txt", None, Some(file("y", 1)), Some(file("z", 2))),
        state(&existing, Some(file("q", 0)), Some(file("q", 0)), Some(file("q", 0))),
    ];
    let expected = conflict_name("r.txt", SECOND, HOST, &|name| name == existing);
    assert!(expected.ends_with("-me-2.txt"), "{expected}");
    assert_eq!(plan(&states, HOST)[0], Action::RenameLocal { from: s("r.txt"), to: expected });
}

// ---- order ----

#[test]
fn plans_run_renames_then_mkdirs_then_transfers_then_deletes_then_records() {
    let states = [
        state("z-record", None, Some(file("r", 1)), Some(file("r", 1))),
        state("gone", Some(dir()), Some(dir()), None),
        state("gone/deep", Some(dir()), Some(dir()), None),
        state("gone/deep/f", Some(file("x", 1)), Some(file("x", 1)), None),
        state("up.txt", None, Some(file("u", 1)), None),
        state("new", None, None, Some(dir())),
        state("new/sub", None, None, Some(dir())),
        state("new/sub/down.txt", None, None, Some(file("d", 1))),
        state("new.b", None, Some(dir()), None),
        state("clash", None, Some(file("l", 1)), Some(file("r", 2))),
        state("forgotten", Some(file("x", 1)), None, None),
    ];
    let expected = vec![
        Action::RenameLocal { from: s("clash"), to: copy_of("clash", 1, HOST) },
        Action::MkdirLocal { path: s("new") },
        Action::MkdirLocal { path: s("new/sub") },
        Action::MkdirRemote { path: s("new.b") },
        Action::Download { path: s("clash") },
        Action::Download { path: s("new/sub/down.txt") },
        Action::Upload { path: s("up.txt") },
        Action::DeleteLocal { path: s("gone/deep/f"), kind: Kind::File },
        Action::DeleteLocal { path: s("gone/deep"), kind: Kind::Dir },
        Action::DeleteLocal { path: s("gone"), kind: Kind::Dir },
        Action::Forget { path: s("forgotten") },
        Action::Record { path: s("z-record"), version: file("r", 1) },
    ];
    assert_eq!(plan(&states, HOST), expected);
    let mut reversed = states.to_vec();
    reversed.reverse();
    assert_eq!(plan(&reversed, HOST), expected, "input order must not matter");
}
