//! Every write passes here first: a read-only share refuses it, a lock held by another client refuses it, and a
//! write that says what it expects to find (a sync client's view of the path) is refused if the path has moved on,
//! so a change the client has not seen yet is never overwritten.

use std::path::Path;

use super::Shared;
use super::hash::hash_file;
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Expect};

/// Refuses a write to `rel` on a read-only share or under someone else's lock.
pub fn may_write(shared: &Shared, rel: &str, client: Option<&ClientIdentity>) -> Result<()> {
    if shared.config.read_only {
        return Err(Error::ReadOnly { path: rel.to_string() });
    }
    shared.journal.check_write(rel, client)
}

/// Refuses unless `abs` (at `rel`) holds what `expect` says. Blocking: it may hash the file.
pub fn check_expect(shared: &Shared, rel: &str, abs: &Path, expect: Option<Expect>) -> Result<()> {
    let Some(expect) = expect else { return Ok(()) };
    let stale = |found: &str| Err(Error::Stale { path: rel.to_string(), found: found.to_string() });
    let metadata = match std::fs::symlink_metadata(abs) {
        Ok(metadata) => Some(metadata),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(abs, e)),
    };
    match (expect, metadata) {
        (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(_)) => stale("it now exists"),
        (_, None) => stale("it is gone"),
        (Expect::File { md5 }, Some(metadata)) if metadata.is_file() => {
            if hash_file(shared, rel, abs)?.md5 == Some(md5) { Ok(()) } else { stale("it has other bytes now") }
        }
        (Expect::File { .. }, Some(_)) => stale("it is no longer a file"),
        (Expect::EmptyDir, Some(metadata)) if metadata.is_dir() => {
            let mut children = std::fs::read_dir(abs).map_err(|e| Error::io(abs, e))?;
            if children.next().is_none() { Ok(()) } else { stale("the folder has content the client has not seen") }
        }
        (Expect::EmptyDir, Some(_)) => stale("it is no longer a folder"),
    }
}
