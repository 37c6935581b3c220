//! `Mkdir`, `Delete`, `Rename` and `Symlink`: the share's structural writes. A delete moves the entry to the
//! trash; a rename never replaces an existing entry; a link is made only when its target stays inside the share. Each holds its paths while it checks and acts, and records the
//! result in the journal.

use std::sync::Arc;

use super::Shared;
use super::guard::{CaseTwins, check_expect, may_write, writable_name};
use super::observe::refresh;
use super::session::Responder;
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Expect, Response};
use crate::share::{Entry, EntryKind, link_stays_inside, normalize};
use crate::task::blocking;

type Client<'a> = Option<&'a ClientIdentity>;

pub async fn mkdir(shared: &Arc<Shared>, path: &str, client: Client<'_>, out: &mut Responder) -> Result<()> {
    let rel = writable_name(shared, path)?;
    may_write(shared, &rel, client)?;
    let (shared, author) = (shared.clone(), client.map(|c| c.host.clone()));
    let entry = blocking(move || {
        let _held = shared.path_locks.hold(&[&rel]);
        if shared.share.meta(&rel)?.is_some_and(|meta| meta.kind != EntryKind::Dir) {
            return Err(Error::Exists { path: rel });
        }
        let mut twins = CaseTwins::default();
        let mut folder = String::new();
        for part in rel.split('/') {
            folder = if folder.is_empty() { part.to_string() } else { format!("{folder}/{part}") };
            twins.check(&shared, &folder, None)?;
        }
        let meta = shared.share.create_dirs(&rel)?;
        refresh(&shared, &rel, author.as_deref())?;
        Ok(Entry::from_meta(rel, &meta))
    })
    .await?;
    out.send(Response::Done { entry: Some(entry) }).await
}

pub async fn delete(
    shared: &Arc<Shared>,
    path: &str,
    expect: Option<Expect>,
    client: Client<'_>,
    out: &mut Responder,
) -> Result<()> {
    // Deleting a link removes the link, never what it points at.
    let rel = normalize(path)?;
    if rel.is_empty() {
        return Err(Error::InvalidPath { path: path.to_string(), reason: "names the share itself" });
    }
    may_write(shared, &rel, client)?;
    let (shared, author) = (shared.clone(), client.map(|c| c.host.clone()));
    blocking(move || {
        let _held = shared.path_locks.hold(&[&rel]);
        check_expect(&shared, &rel, expect)?;
        let meta = shared.share.meta(&rel)?.ok_or_else(|| Error::NotFound { path: rel.clone() })?;
        // An empty folder holds nothing to keep; anything else goes to the trash.
        if !(meta.kind == EntryKind::Dir && shared.share.remove_empty_dir(&rel)?) {
            shared.share.trash(&rel)?;
        }
        refresh(&shared, &rel, author.as_deref())
    })
    .await?;
    out.send(Response::Done { entry: None }).await
}

/// Renames `from` (only while it holds what `expect` says, when there is an expectation) to `to`.
pub async fn rename(
    shared: &Arc<Shared>,
    (from, expect): (&str, Option<Expect>),
    to: &str,
    client: Client<'_>,
    out: &mut Responder,
) -> Result<()> {
    let source = normalize(from)?;
    if source.is_empty() {
        return Err(Error::InvalidPath { path: from.to_string(), reason: "names the share itself" });
    }
    let target = writable_name(shared, to)?;
    may_write(shared, &source, client)?;
    may_write(shared, &target, client)?;
    if target.starts_with(&format!("{source}/")) {
        return Err(Error::InvalidPath { path: to.to_string(), reason: "a folder cannot move into itself" });
    }
    let (shared, author) = (shared.clone(), client.map(|c| c.host.clone()));
    let entry = blocking(move || {
        let _held = shared.path_locks.hold(&[&source, &target]);
        check_expect(&shared, &source, expect)?;
        // `a.txt` to `A.txt` changes only the case of one name, which every system can do.
        let same_folder = source.rsplit_once('/').map(|(f, _)| f) == target.rsplit_once('/').map(|(f, _)| f);
        let source_name = source.rsplit('/').next().filter(|_| same_folder);
        CaseTwins::default().check(&shared, &target, source_name)?;
        // A moved file keeps its bytes: its MD5 moves with it, rather than being read again under the new name.
        let moved = match shared.share.meta(&source)? {
            Some(meta) if meta.kind == EntryKind::File => {
                shared.hashes.get(&source, meta.stamp()).map(|md5| (meta, md5))
            }
            _ => None,
        };
        // Moves the entry itself, a link included; never replaces what is at the target.
        shared.share.rename(&source, &target)?;
        if let (Some((before, md5)), Some(after)) = (moved, shared.share.meta(&target)?)
            && (after.inode, after.size, after.mtime_ns) == (before.inode, before.size, before.mtime_ns)
        {
            shared.hashes.insert(&target, after.stamp(), md5);
        }
        refresh(&shared, &source, author.as_deref())?;
        refresh(&shared, &target, author.as_deref())?;
        let meta = shared.share.meta(&target)?.ok_or_else(|| Error::NotFound { path: target.clone() })?;
        Ok(Entry::from_meta(target, &meta))
    })
    .await?;
    out.send(Response::Done { entry: Some(entry) }).await
}

/// Makes `path` a link to `target` (only while `path` holds what `expect` says, when there is an expectation), what
/// was there going to the trash. The target is text that must stay inside the share; the server never follows it.
pub async fn symlink(
    shared: &Arc<Shared>,
    (path, expect): (&str, Option<Expect>),
    target: &str,
    client: Client<'_>,
    out: &mut Responder,
) -> Result<()> {
    let rel = writable_name(shared, path)?;
    may_write(shared, &rel, client)?;
    if !link_stays_inside(&rel, target) {
        return Err(Error::InvalidPath {
            path: format!("{rel} -> {target}"),
            reason: "the link's target leaves the share; only links that point inside it are made",
        });
    }
    let (shared, author, target) = (shared.clone(), client.map(|c| c.host.clone()), target.to_string());
    let entry = blocking(move || {
        let _held = shared.path_locks.hold(&[&rel]);
        check_expect(&shared, &rel, expect)?;
        CaseTwins::default().check(&shared, &rel, None)?;
        shared.share.place_symlink(&rel, &target)?;
        refresh(&shared, &rel, author.as_deref())?;
        let meta = shared.share.meta(&rel)?.ok_or_else(|| Error::NotFound { path: rel.clone() })?;
        let mut entry = Entry::from_meta(rel, &meta);
        entry.target = Some(target);
        Ok(entry)
    })
    .await?;
    out.send(Response::Done { entry: Some(entry) }).await
}
