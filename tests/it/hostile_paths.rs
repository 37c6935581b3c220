//! The path sandbox against a table of hostile paths, each with what reading and what writing it must give: a
//! refusal whose text names the path and the reason, "no such file", or the place inside the share it really
//! names. Reads and writes are real operations on a [`Share`]: a file opened for reading, and a file written to
//! `.tandem/tmp` and renamed into place. No symbolic link is followed, wherever it points: a path through one is
//! refused by name, and a write to a link's own name replaces the link (which goes to the trash). Some paths look
//! hostile and are harmless: on Unix `%2e%2e`, `..%2f` and backslashes are plain characters of a name, so those
//! resolve to literal files inside the share. A few of the paths then go to a live server through the real
//! `tandem` binary and the client library.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tandem::client::Connection;
use tandem::share::{Share, normalize};

use crate::common::*;

const CLIMBS_OUT: &str = "`..` leads outside the share";
const ABSOLUTE: &str = "absolute paths are not allowed; give a path relative to the share";
/// `path: "link" is a symbolic link, and tandem never follows one`.
const LINK: &str = "is a symbolic link, and tandem never follows one";
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
    /// An error that names the path (as normalized) and says this.
    Fails(&'static str),
    /// `"…" is a symbolic link`, naming the clean path and the link on it.
    Link(&'static str),
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
        // Symlinks, to /etc, a chain of two links to /etc, to the parent folder, into `.tandem`, nowhere, a loop:
        // none is followed, and writing to a link's own name replaces the link.
        ("escape", Link("escape"), At("escape")),
        ("escape/passwd", Link("escape"), Link("escape")),
        ("chain", Link("chain"), At("chain")),
        ("chain/passwd", Link("chain"), Link("chain")),
        ("chain/no-such-file", Link("chain"), Link("chain")),
        ("up", Link("up"), At("up")),
        ("up/x", Link("up"), Link("up")),
        ("up/../x", Missing, At("x")), // `..` is taken from the text, before anything is looked up
        ("state-link", Link("state-link"), At("state-link")),
        ("state-link/notes.txt", Link("state-link"), Link("state-link")),
        ("state-link/new.txt", Link("state-link"), Link("state-link")),
        ("dangling", Link("dangling"), At("dangling")),
        ("dangling/x", Link("dangling"), Link("dangling")),
        ("loop-a", Link("loop-a"), At("loop-a")),
        ("loop-a/x", Link("loop-a"), Link("loop-a")),
        // Links that stay inside are not followed either: one file, one spelling.
        ("inside-link/inner.txt", Link("inside-link"), Link("inside-link")),
        ("dir/back", Link("dir/back"), At("dir/back")),
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
        // Harmless: extra slashes, lexical `..` that stays inside. A folder is read, never overwritten by a file.
        ("dir/", At("dir"), Fails("not a regular file")),
        ("file.txt/", At("file.txt"), At("file.txt")),
        ("dir//inner.txt", At("dir/inner.txt"), At("dir/inner.txt")),
        ("dir/inner.txt/..", At("dir"), Fails("not a regular file")),
        ("file.txt/x", Fails("\"file.txt\" is not a folder"), Fails("\"file.txt\" is not a folder")),
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

/// Reads `path` as a download or a listing would: a folder is opened as a folder, anything else as a regular file
/// for reading. Returns the inode it opened.
fn read(share: &Share, path: &str) -> tandem::Result<u64> {
    let rel = normalize(path)?;
    match share.open_dir(&rel) {
        Ok(dir) => Ok(std::fs::File::from(dir).metadata().unwrap().ino()),
        Err(_) => share.open_file(&rel).map(|(_, meta)| meta.inode),
    }
}

/// Writes `path` as an upload would, in a fresh copy of the traps: bytes to `.tandem/tmp`, then a rename into
/// place. Returns the inode of the file written.
fn write(path: &str) -> (tandem::Result<u64>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    plant_traps(dir.path());
    let share = Share::open_writable(dir.path()).unwrap();
    let written = normalize(path).and_then(|rel| {
        let (mut file, name) = share.temp_file()?;
        file.write_all(b"written").unwrap();
        let inode = file.metadata().unwrap().ino();
        let placed = share.place(&name, &rel).map(|_| inode);
        share.remove_temp(&name);
        placed
    });
    (written, dir)
}

/// Checks one sandbox answer against the table; `Err` says what differed.
fn check(path: &str, root: &Path, got: tandem::Result<u64>, want: Outcome) -> Result<(), String> {
    let got = got.map_err(|e| e.to_string());
    let clean = normalize(path).unwrap_or_default();
    let ok = match (&got, want) {
        // The share itself names the path as cleaned; a server names it as the client sent it.
        (Err(text), Refused(reason)) => {
            [path, clean.as_str()].iter().any(|p| *text == format!("invalid path {p:?}: {reason}"))
        }
        (Err(text), Missing) => *text == format!("{clean}: no such file or folder"),
        (Err(text), Fails(what)) => text.starts_with(&format!("{clean}: ")) && text.contains(what),
        (Err(text), Link(link)) => *text == format!("{clean}: {link:?} {LINK}"),
        (Ok(inode), At(rel)) => std::fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.ino() == *inode),
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
    for (path, read_outcome, write_outcome) in &rows {
        wrong.extend(check(path, root, read(&share, path), *read_outcome).err());
        let (written, written_root) = write(path);
        wrong.extend(check(path, written_root.path(), written, *write_outcome).err());
        // Whatever a write did, it did it inside its own share.
        assert_eq!(
            std::fs::read_dir("/etc").unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name() == "x").count(),
            0
        );
    }
    assert!(wrong.is_empty(), "{} of {} answers differ:\n{}", wrong.len(), rows.len() * 2, wrong.join("\n"));
    let refused = rows.iter().filter(|(_, read, write)| !matches!((read, write), (At(_), At(_)))).count();
    assert!(refused >= 30, "only {refused} paths are refused one way or the other");
    // The accepted literals really are the files planted inside the share.
    for literal in ["%2e%2e/x", "..%2fx", "..\\x"] {
        let (mut file, _) = share.open_file(literal).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "a literal name");
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
    for (path, expected) in [
        ("a/../../x", format!("invalid path \"a/../../x\": {CLIMBS_OUT}")),
        ("./C:x", format!("invalid path \"./C:x\": {ABSOLUTE}")),
        ("C:\\Windows\\system32", format!("invalid path \"C:\\\\Windows\\\\system32\": {ABSOLUTE}")),
        ("chain/passwd", format!("chain/passwd: \"chain\" {LINK}")),
        ("up/x", format!("up/x: \"up\" {LINK}")),
        ("state-link/notes.txt", format!("state-link/notes.txt: \"state-link\" {LINK}")),
        ("inside-link/inner.txt", format!("inside-link/inner.txt: \"inside-link\" {LINK}")),
        ("escape", format!("escape: \"escape\" {LINK}")),
        ("x/.tandem/y", format!("invalid path \"x/.tandem/y\": {PRIVATE}")),
        (long_name.as_str(), format!("invalid path {long_name:?}: {NAME_TOO_LONG}")),
    ] {
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
    for (path, expected) in [
        (".tandem/x", format!("invalid path \".tandem/x\": {PRIVATE}")),
        ("escape/x", format!("escape/x: \"escape\" {LINK}")),
        ("state-link/x", format!("state-link/x: \"state-link\" {LINK}")),
        ("", "invalid path \"\": names the share itself".to_string()),
    ] {
        assert_cli_refuses(&server, &["upload", local, path], &expected);
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
