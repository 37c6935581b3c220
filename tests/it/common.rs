//! Shared helpers: temporary shares, a `tandem serve` child process, running the CLI, and an independent MD5.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_tandem");

/// A `tandem serve` process over a temporary folder, killed on drop.
pub struct ServeProcess {
    pub child: Child,
    pub addr: String,
    pub root: tempfile::TempDir,
}

impl ServeProcess {
    pub fn start(root: tempfile::TempDir) -> Self {
        Self::start_with(root, &[])
    }

    pub fn start_with(root: tempfile::TempDir, extra: &[&str]) -> Self {
        let (addr, child) = Self::spawn(root.path(), extra);
        ServeProcess { child, addr, root }
    }

    /// Runs the server under `wrapper`, a command that runs the one after it (such as `prlimit … --`).
    pub fn start_under(root: tempfile::TempDir, wrapper: &[&str], extra: &[&str]) -> Self {
        let (addr, child) = Self::spawn_wrapped(root.path(), "127.0.0.1:0", wrapper, extra);
        ServeProcess { child, addr, root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Runs a client command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.addr, args)
    }
}

impl ServeProcess {
    /// Kills the server (as SIGKILL would) and starts it again over the same folder, on a new port.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.addr, self.child) = Self::spawn(self.root.path(), &[]);
    }

    /// Kills the server (as SIGKILL would) and starts it again over the same folder and on the same port, as a
    /// restarted daemon would be.
    pub fn restart_on_same_port(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let listen = self.addr.clone();
        (self.addr, self.child) = Self::spawn_on(self.root.path(), &listen, &[]);
    }

    /// Kills the server as SIGKILL would, leaving it down until a restart.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(root: &Path, extra: &[&str]) -> (String, Child) {
        Self::spawn_on(root, "127.0.0.1:0", extra)
    }

    fn spawn_on(root: &Path, listen: &str, extra: &[&str]) -> (String, Child) {
        Self::spawn_wrapped(root, listen, &[], extra)
    }

    fn spawn_wrapped(root: &Path, listen: &str, wrapper: &[&str], extra: &[&str]) -> (String, Child) {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        let mut child = command
            .arg("serve")
            .arg(root)
            .args(["--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tandem serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).expect("read the serving line");
        assert!(first.starts_with("serving "), "unexpected first line: {first:?}");
        let addr = first.trim().rsplit(" on ").next().expect("address in the serving line").to_string();
        (addr, child)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client command as the client whose identity lives in `config_home` (its `XDG_CONFIG_HOME`).
pub fn cli_as(addr: &str, config_home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TANDEM_REMOTE", addr)
        .env("XDG_CONFIG_HOME", config_home)
        .env(CACHE_OFF.0, CACHE_OFF.1)
        .env_remove("TANDEM_TOKEN")
        .output()
        .expect("run tandem")
}

pub fn cli(addr: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("TANDEM_REMOTE", addr)
        .env(CACHE_OFF.0, CACHE_OFF.1)
        .env_remove("TANDEM_TOKEN")
        .output()
        .expect("run tandem")
}

/// The download cache off: downloads in other tests cross the network every time, and leave nothing in the
/// user's own cache. The cache's tests give each run a cache folder of its own instead.
pub const CACHE_OFF: (&str, &str) = ("TANDEM_CACHE_LIMIT", "0");

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and parses stdout as JSON.
pub fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "command failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

/// Writes a file, creating its folders, with a fixed mtime so tests can reason about it.
pub fn write_file(root: &Path, rel: &str, bytes: &[u8], mtime_secs: u64) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    set_mtime(&path, UNIX_EPOCH + Duration::from_secs(mtime_secs));
}

pub fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift), so large test files are not all zeros.
pub use tandem::pseudo_random::pseudo_random;

/// MD5 from coreutils' md5sum: independent of tandem's own code.
pub fn md5sum(path: &Path) -> String {
    let output = Command::new("md5sum").arg(path).output().expect("run md5sum");
    assert!(output.status.success());
    stdout(&output).split_whitespace().next().unwrap().to_string()
}

/// RFC 3339 UTC with nanoseconds, as `--json` prints mtimes, computed from the file's metadata.
pub fn rfc3339(time: SystemTime) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap();
    chrono::DateTime::from_timestamp(d.as_secs() as i64, d.subsec_nanos())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Names of the files left in a folder (to prove no temporary file stayed behind).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// An in-process server on a free port, for tests that use the client library directly.
pub async fn in_process(root: &Path) -> (String, tokio_util::sync::CancellationToken) {
    let mut config = tandem::server::ServerConfig::new(root);
    config.listen = "127.0.0.1:0".into();
    let (addr, shutdown, _task) = tandem::server::Server::spawn(config).await.expect("start server");
    (addr.to_string(), shutdown)
}

/// Fills `root` with the traps the hostile-path tests aim at: plain files, tandem's `.tandem` folder, literal
/// names that look URL-encoded or Windows-like, and symlinks that lead inside, to the parent, to `/etc` (also
/// through a chain of two links), into `.tandem`, round in a loop, and nowhere.
pub fn plant_traps(root: &Path) {
    write_file(root, "file.txt", b"inside", 1);
    write_file(root, "dir/inner.txt", b"inner", 1);
    write_file(root, ".tandem/notes.txt", b"private", 1);
    for literal in ["%2e%2e/x", "..%2fx", "..\\x"] {
        write_file(root, literal, b"a literal name", 1);
    }
    for (target, link) in [
        ("dir", "inside-link"),
        ("../file.txt", "dir/back"),
        ("..", "up"),
        ("/etc", "escape"),
        ("chain2", "chain"),
        ("escape", "chain2"),
        (".tandem", "state-link"),
        ("loop-b", "loop-a"),
        ("loop-a", "loop-b"),
        ("/nonexistent/target", "dangling"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
}
