//! The path sandbox against a table of hostile paths, each with what reading and what writing it must give: a
//! refusal whose text names the path and the reason, "no such file", or the place inside the share it really
//! names. Some look hostile and are harmless: on Unix `%2e%2e`, `..%2f` and backslashes are plain characters of a
//! name, so those resolve to literal files inside the share, and the table says so. Writes to a symlink's own
//! name are allowed because a write replaces the link and never follows it. A few of the paths then go to a
//! live server through the real `tandem` binary and the client library.

use std::path::Path;

use tandem::client::Connection;
use tandem::share::{Share, normalize};

use crate::common::*;

const CLIMBS_OUT: &str = "`..` leads outside the share";
const ABSOLUTE: &str = "absolute paths are not allowed; give a path relative to the share";
const LINK_OUT: &str = "a symbolic link leads outside the share";
const PRIVATE: &str = "tandem's state folder is private";
const NAME_TOO_LONG: &str = "a name is longer than 255 bytes";
const NUL: &str = "contains a NUL byte";

/// What the sandbox must say about one path.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// `invalid path "…": reason`.
    Refused(&'static str),
    /// `…: no such file or folder`, naming the normalized path.
    Missing,
    /// An error that names the path and says this.
    Fails(&'static str),
    /// Accepted, at this place relative to the share root (the real location for reads).
    At(&'static str),
}

use Outcome::*;

fn table() -> Vec<(String, Outcome, Outcome)> {
    let mut rows: Vec<(String, Outcome, Outcome)> = [
        ("..", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("../x", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("a/../../x", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("dir/../../file.txt", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("./../x", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("dir/./../..", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("file.txt/../../x", Refused(CLIMBS_OUT), Refused(CLIMBS_OUT)),
        ("/etc/passwd", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        ("/", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        ("//server/share/x", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        ("C:\\Windows\\system32", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        ("c:/x", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        ("./C:x", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        ("a/../C:/x", Refused(ABSOLUTE), Refused(ABSOLUTE)),
        // Symlinks: to /etc, a chain of two links to /etc, to the parent folder, into `.tandem`, nowhere, a loop.
        ("escape", Refused(LINK_OUT), At("escape")),
        ("escape/passwd", Refused(LINK_OUT), Refused(LINK_OUT)),
        ("chain", Refused(LINK_OUT), At("chain")),
        ("chain/passwd", Refused(LINK_OUT), Refused(LINK_OUT)),
        ("chain/no-such-file", Refused(LINK_OUT), Refused(LINK_OUT)),
        ("up", Refused(LINK_OUT), At("up")),
        ("up/x", Refused(LINK_OUT), Refused(LINK_OUT)),
        ("up/../x", Missing, At("x")), // `..` is taken from the text, before any link is followed
        ("state-link", Refused(PRIVATE), At("state-link")),
        ("state-link/notes.txt", Refused(PRIVATE), Refused(PRIVATE)),
        ("state-link/new.txt", Refused(PRIVATE), Refused(PRIVATE)),
        ("dangling", Refused("symbolic link leads nowhere"), At("dangling")),
        ("dangling/x", Missing, At("dangling/x")),
        ("loop-a", Fails("Too many levels of symbolic links"), At("loop-a")),
        ("loop-a/x", Fails("Too many levels of symbolic links"), At("loop-a/x")),
        // tandem's own folder, by name.
        (".tandem", Refused(PRIVATE), Refused(PRIVATE)),
        (".tandem/journal.sqlite", Refused(PRIVATE), Refused(PRIVATE)),
        (".tandem/notes.txt", Refused(PRIVATE), Refused(PRIVATE)),
        ("x/.tandem/y", Refused(PRIVATE), Refused(PRIVATE)),
        ("dir/../.tandem", Refused(PRIVATE), Refused(PRIVATE)),
        ("a\0b", Refused(NUL), Refused(NUL)),
        ("\0", Refused(NUL), Refused(NUL)),
        ("dir/inner.txt\0.jpg", Refused(NUL), Refused(NUL)),
        // The share itself: fine to list, never a write target.
        ("", At(""), Refused("names the share itself")),
        (".", At(""), Refused("names the share itself")),
        ("./", At(""), Refused("names the share itself")),
        // Harmless: extra slashes, lexical `..` that stays inside, links that stay inside.
        ("dir/", At("dir"), At("dir")),
        ("file.txt/", At("file.txt"), At("file.txt")),
        ("dir//inner.txt", At("dir/inner.txt"), At("dir/inner.txt")),
        ("dir/inner.txt/..", At("dir"), At("dir")),
        ("inside-link/inner.txt", At("dir/inner.txt"), At("dir/inner.txt")),
        ("dir/back", At("file.txt"), At("dir/back")),
        // Harmless literals: encoded dots, encoded and backslash separators are plain name characters here.
        ("%2e%2e/x", At("%2e%2e/x"), At("%2e%2e/x")),
        ("..%2fx", At("..%2fx"), At("..%2fx")),
        ("..\\x", At("..\\x"), At("..\\x")),
        ("%2e%2e%2f%2e%2e%2fetc%2fpasswd", Missing, At("%2e%2e%2f%2e%2e%2fetc%2fpasswd")),
        ("\\etc\\passwd", Missing, At("\\etc\\passwd")),
        ("~/x", Missing, At("~/x")),
    ]
    .into_iter()
    .map(|(path, read, write)| (path.to_string(), read, write))
    .collect();
    let long_name = "n".repeat(256);
    rows.push((long_name.clone(), Refused(NAME_TOO_LONG), Refused(NAME_TOO_LONG)));
    rows.push((format!("dir/{long_name}/x"), Refused(NAME_TOO_LONG), Refused(NAME_TOO_LONG)));
    rows.push(("a/".repeat(2049), Refused("longer than 4096 bytes"), Refused("longer than 4096 bytes")));
    rows.push(("./".repeat(2049), Refused("longer than 4096 bytes"), Refused("longer than 4096 bytes")));
    rows
}

/// Checks one sandbox answer against the table; `Err` says what differed.
fn check(path: &str, root: &Path, got: tandem::Result<tandem::share::Resolved>, want: Outcome) -> Result<(), String> {
    let got = got.map(|resolved| resolved.abs).map_err(|e| e.to_string());
    let ok = match (&got, want) {
        (Err(text), Refused(reason)) => *text == format!("invalid path {path:?}: {reason}"),
        (Err(text), Missing) => *text == format!("{}: no such file or folder", normalize(path).unwrap()),
        (Err(text), Fails(what)) => text.contains(path) && text.contains(what),
        (Ok(abs), At(rel)) => *abs == root.join(rel),
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("{path:?}: expected {want:?}, got {got:?}")) }
}

#[test]
fn every_hostile_path_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    plant_traps(dir.path());
    let share = Share::open(dir.path()).unwrap();
    let root = share.root();
    let rows = table();
    let mut wrong = Vec::new();
    for (path, read, write) in &rows {
        wrong.extend(check(path, root, share.resolve(path), *read).err());
        wrong.extend(check(path, root, share.resolve_for_write(path), *write).err());
    }
    assert!(wrong.is_empty(), "{} of {} answers differ:\n{}", wrong.len(), rows.len() * 2, wrong.join("\n"));
    let refused = rows.iter().filter(|(_, read, write)| !matches!((read, write), (At(_), At(_)))).count();
    assert!(refused >= 30, "only {refused} paths are refused one way or the other");
    // The accepted literals really are the files planted inside the share.
    for literal in ["%2e%2e/x", "..%2fx", "..\\x"] {
        assert_eq!(std::fs::read(share.resolve(literal).unwrap().abs).unwrap(), b"a literal name");
    }
}

/// `tandem ARGS…` fails with status 1 and an `error:` line that starts with `expected`.
fn assert_cli_refuses(server: &ServeProcess, args: &[&str], expected: &str) {
    let output = server.cli(args);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stderr(&output));
    let text = stderr(&output);
    assert!(text.starts_with(&format!("error: {expected}")), "{args:?}: {text}");
}

#[test]
fn a_live_server_refuses_hostile_paths_by_name() {
    let root = tempfile::tempdir().unwrap();
    plant_traps(root.path());
    let server = ServeProcess::start(root);
    let dest = tempfile::tempdir().unwrap();
    let to = dest.path().to_str().unwrap();
    let long_name = "n".repeat(256);
    for (path, reason) in [
        ("a/../../x", CLIMBS_OUT),
        ("./C:x", ABSOLUTE),
        ("C:\\Windows\\system32", ABSOLUTE),
        ("chain/passwd", LINK_OUT),
        ("up/x", LINK_OUT),
        ("state-link/notes.txt", PRIVATE),
        ("x/.tandem/y", PRIVATE),
        (long_name.as_str(), NAME_TOO_LONG),
    ] {
        let expected = format!("invalid path {path:?}: {reason}");
        for protocol in ["tcp", "udp"] {
            assert_cli_refuses(&server, &["download", protocol, path, "--to", to], &expected);
        }
        assert_cli_refuses(&server, &["hash", "verify", path], &expected);
    }
    assert_cli_refuses(&server, &["download", "tcp", "", "--to", to], ": not a regular file");
    assert_cli_refuses(
        &server,
        &["download", "tcp", "%2e%2e%2fetc%2fpasswd", "--to", to],
        "%2e%2e%2fetc%2fpasswd: no such file",
    );
    assert!(names_in(dest.path()).is_empty(), "nothing may be written for a refused download");

    // Writes: nothing lands in `.tandem` or through a link that leads out.
    let local = dest.path().join("payload.txt");
    std::fs::write(&local, b"payload").unwrap();
    let local = local.to_str().unwrap();
    for (path, reason) in
        [(".tandem/x", PRIVATE), ("escape/x", LINK_OUT), ("state-link/x", PRIVATE), ("", "names the share itself")]
    {
        assert_cli_refuses(&server, &["upload", local, path], &format!("invalid path {path:?}: {reason}"));
    }
    assert!(!server.path(".tandem/x").exists() && !Path::new("/etc/x").exists());

    // A literal that only looks encoded downloads as the file it names.
    let output = server.cli(&["download", "tcp", "%2e%2e/x", "--to", to]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read(dest.path().join("x")).unwrap(), b"a literal name");

    // A NUL byte cannot be a command-line argument, so it goes through the client library.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let conn = Connection::connect(&server.addr).await.unwrap();
        for path in ["a\0b", "dir/inner.txt\0.jpg"] {
            let err = conn.download_ticket(path).await.unwrap_err().to_string();
            assert_eq!(err, format!("invalid path {path:?}: {NUL}"));
        }
        assert_eq!(
            conn.hash("dir/inner.txt").await.unwrap().md5.unwrap().to_string(),
            md5sum(&server.path("dir/inner.txt"))
        );
    });
}
