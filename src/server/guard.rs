//! Every write passes here first: its path must be a name the share can hold, a read-only share refuses it, a
//! lock held by another client refuses it, and a write that says what it expects to find (a sync client's view of
//! the path) is refused if the path has moved on, so a change the client has not seen yet is never overwritten.

use std::collections::HashMap;

use super::Shared;
use super::hash::hash_file;
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Expect};
use crate::share::{EntryKind, check_portable, normalize};

/// The clean form of a path a client wants to create or replace: never the share itself, and (unless the server
/// allows them) with no name that Windows or macOS cannot hold.
pub fn writable_name(shared: &Shared, path: &str) -> Result<String> {
    let rel = normalize(path)?;
    if rel.is_empty() {
        return Err(Error::InvalidPath { path: path.to_string(), reason: "names the share itself" });
    }
    if !shared.config.allow_unportable_names {
        check_portable(&rel)?;
    }
    Ok(rel)
}

/// Refuses a new name that differs only by case from one already in its folder (`README.md` beside `Readme.md`),
/// which Windows and macOS would take for one file. Each folder is read once per `CaseTwins`, so a batch of
/// many new files in one folder costs one listing, not one per file.
#[derive(Default)]
pub struct CaseTwins {
    /// Per folder: each name in it, by its lowercase form.
    folders: HashMap<String, HashMap<String, String>>,
}

impl CaseTwins {
    /// Checks `rel` (and remembers it as taken); `renamed_from` is a name in the same folder that is about to go,
    /// so a rename that only changes case is allowed.
    pub fn check(&mut self, shared: &Shared, rel: &str, renamed_from: Option<&str>) -> Result<()> {
        if shared.config.allow_unportable_names {
            return Ok(());
        }
        let (folder, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let names = match self.folders.entry(folder.to_string()) {
            std::collections::hash_map::Entry::Occupied(names) => names.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let listed = match shared.share.names(folder) {
                    Ok(listed) => listed,
                    // A folder still to be made holds nothing yet.
                    Err(Error::NotFound { .. }) => Vec::new(),
                    // Said of the path the client named, not of its folder.
                    Err(Error::Symlink { link, .. }) => return Err(Error::Symlink { path: rel.to_string(), link }),
                    Err(Error::NotAFolder { part, .. }) => {
                        return Err(Error::NotAFolder { path: rel.to_string(), part });
                    }
                    Err(e) => return Err(e),
                };
                slot.insert(listed.into_iter().map(|n| (n.to_lowercase(), n)).collect())
            }
        };
        match names.get(&name.to_lowercase()) {
            Some(existing) if existing != name && Some(existing.as_str()) != renamed_from => {
                Err(Error::CaseTwin { path: rel.to_string(), existing: existing.clone() })
            }
            _ => {
                names.insert(name.to_lowercase(), name.to_string());
                Ok(())
            }
        }
    }
}

/// Refuses a write to `rel` on a read-only share or under someone else's lock.
pub fn may_write(shared: &Shared, rel: &str, client: Option<&ClientIdentity>) -> Result<()> {
    if shared.config.read_only {
        return Err(Error::ReadOnly { path: rel.to_string() });
    }
    shared.journal.check_write(rel, client)
}

/// Refuses unless `rel` holds what `expect` says. Blocking: it may hash the file.
pub fn check_expect(shared: &Shared, rel: &str, expect: Option<Expect>) -> Result<()> {
    let Some(expect) = expect else { return Ok(()) };
    let stale = |found: &str| Err(Error::Stale { path: rel.to_string(), found: found.to_string() });
    match (expect, shared.share.meta(rel)?.map(|meta| meta.kind)) {
        (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(_)) => stale("it now exists"),
        (_, None) => stale("it is gone"),
        (Expect::File { md5 }, Some(EntryKind::File)) => {
            if hash_file(shared, rel)?.md5 == Some(md5) {
                Ok(())
            } else {
                stale("it has other bytes now")
            }
        }
        (Expect::File { .. }, Some(_)) => stale("it is no longer a file"),
        (Expect::EmptyDir, Some(EntryKind::Dir)) => {
            if shared.share.is_empty_dir(rel)? {
                Ok(())
            } else {
                stale("the folder has content the client has not seen")
            }
        }
        (Expect::EmptyDir, Some(_)) => stale("it is no longer a folder"),
        (Expect::Link { md5 }, Some(EntryKind::Symlink)) => {
            if Md5Digest::of(shared.share.read_link(rel)?.as_bytes()) == md5 {
                Ok(())
            } else {
                stale("the link points elsewhere now")
            }
        }
        (Expect::Link { .. }, Some(_)) => stale("it is no longer a link"),
    }
}
