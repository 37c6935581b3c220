//! Named network namespaces through iproute2's `ip`: adding, deleting, listing, removing those a dead process
//! left behind, and running code inside one from a thread of this process (setns affects only that thread).

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Where `ip netns add` keeps the names.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";
/// Every namespace the emulator names for itself starts so, followed by `a-` or `b-` and the owner's pid.
pub const PREFIX: &str = "tandem-wan-";

/// Runs `ip ARGS…`; an error quotes the whole command and what it printed.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let shown = format!("`ip {}`", args.join(" "));
    let out = Command::new("ip").args(args).output().map_err(|e| Error::failed(format!("running {shown}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        Err(Error::Failed(format!("{shown} failed ({}): {}", out.status, said.trim())))
    }
}

pub(crate) fn add(name: &str) -> Result<()> {
    ip(&["netns", "add", name])
}

pub(crate) fn delete(name: &str) -> Result<()> {
    ip(&["netns", "delete", name])
}

fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether a namespace called `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// The names of all named namespaces on this machine.
pub fn list() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::failed(format!("listing {NETNS_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::failed(format!("listing {NETNS_DIR}"), e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The pid in a name of ours: the first part after the prefix made only of digits.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?
        .split('-')
        .find(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// Deletes the namespaces of ours whose owning process is gone (killed before it could clean up); returns
/// their names.
pub(crate) fn remove_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list()? {
        let Some(pid) = owner_pid(&name) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        delete(&name)?;
        removed.push(name);
    }
    Ok(removed)
}

/// Moves the calling thread into namespace `name`.
fn enter(name: &str) -> Result<()> {
    let file = File::open(path(name)).map_err(|e| Error::failed(format!("opening namespace {name}"), e))?;
    // SAFETY: a valid fd; CLONE_NEWNET changes only this thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(Error::failed(format!("entering namespace {name}"), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `name` and returns its result. Sockets made there stay in that
/// namespace and may be used from any thread afterwards. A panic in `f` goes on in the caller.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn_scoped(scope, || enter(name).map(|()| f()))
            .map_err(|e| Error::failed(format!("spawning a thread for namespace {name}"), e))?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Named namespaces that are deleted when this guard drops, so a failed or panicking setup leaves none.
pub(crate) struct Owned {
    names: Vec<String>,
}

impl Owned {
    pub(crate) fn new() -> Owned {
        Owned { names: Vec::new() }
    }

    pub(crate) fn add(&mut self, name: &str) -> Result<()> {
        add(name)?;
        self.names.push(name.to_owned());
        Ok(())
    }

    /// Deletes them all now; the first failure is returned after trying every one.
    pub(crate) fn delete_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        for name in self.names.drain(..) {
            if let Err(e) = delete(&name)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Err(e) = self.delete_all() {
            eprintln!("linkem: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn pid_is_read_from_our_names_only() {
        assert_eq!(owner_pid("tandem-wan-a-1234-0"), Some(1234));
        assert_eq!(owner_pid("tandem-wan-b-77"), Some(77));
        assert_eq!(owner_pid("tandem-wan-bench"), None);
        assert_eq!(owner_pid("other-a-1234"), None);
    }
}
