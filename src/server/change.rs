//! `Mkdir`, `Delete` and `Rename`: the share's structural writes. A delete moves the entry to the trash; a
//! rename never replaces an existing entry. Each holds its paths while it checks and acts, and records the
//! result in the journal.

use std::sync::Arc;

use super::Shared;
use super::guard::{check_expect, may_write};
use super::observe::refresh;
use super::session::Responder;
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Expect, Response};
use crate::share::{Entry, move_to_trash};
use crate::task::blocking;

type Client<'a> = Option<&'a ClientIdentity>;

pub async fn mkdir(shared: &Arc<Shared>, path: &str, client: Client<'_>, out: &mut Responder) -> Result<()> {
    let target = shared.share.resolve_for_write(path)?;
    may_write(shared, &target.rel, client)?;
    let (shared, author) = (shared.clone(), client.map(|c| c.host.clone()));
    let entry = blocking(move || {
        let _held = shared.path_locks.hold(&[&target.rel]);
        if target.abs.exists() && !target.abs.is_dir() {
            return Err(Error::Exists { path: target.rel });
        }
        std::fs::create_dir_all(&target.abs).map_err(|e| Error::io(&target.abs, e))?;
        refresh(&shared, &target.rel, author.as_deref())?;
        let metadata = std::fs::symlink_metadata(&target.abs).map_err(|e| Error::io(&target.abs, e))?;
        Ok(Entry::from_metadata(target.rel, &metadata))
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
    // Resolve without following a final symlink: deleting a link removes the link, not what it points at.
    let target = shared.share.resolve_for_write(path)?;
    may_write(shared, &target.rel, client)?;
    let (shared, author) = (shared.clone(), client.map(|c| c.host.clone()));
    blocking(move || {
        let _held = shared.path_locks.hold(&[&target.rel]);
        check_expect(&shared, &target.rel, &target.abs, expect)?;
        if std::fs::symlink_metadata(&target.abs).is_err() {
            return Err(Error::NotFound { path: target.rel });
        }
        // An empty folder holds nothing to keep; anything else goes to the trash.
        if std::fs::remove_dir(&target.abs).is_err() {
            move_to_trash(shared.share.root(), &target.rel, &target.abs)?;
        }
        refresh(&shared, &target.rel, author.as_deref())
    })
    .await?;
    out.send(Response::Done { entry: None }).await
}

pub async fn rename(shared: &Arc<Shared>, from: &str, to: &str, client: Client<'_>, out: &mut Responder) -> Result<()> {
    let source = shared.share.resolve_for_write(from)?;
    let target = shared.share.resolve_for_write(to)?;
    may_write(shared, &source.rel, client)?;
    may_write(shared, &target.rel, client)?;
    if target.rel.starts_with(&format!("{}/", source.rel)) {
        return Err(Error::InvalidPath { path: to.to_string(), reason: "a folder cannot move into itself" });
    }
    let (shared, author) = (shared.clone(), client.map(|c| c.host.clone()));
    let entry = blocking(move || {
        let _held = shared.path_locks.hold(&[&source.rel, &target.rel]);
        if std::fs::symlink_metadata(&source.abs).is_err() {
            return Err(Error::NotFound { path: source.rel });
        }
        if std::fs::symlink_metadata(&target.abs).is_ok() {
            return Err(Error::Exists { path: target.rel });
        }
        if let Some(parent) = target.abs.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::rename(&source.abs, &target.abs).map_err(|e| Error::io(&source.abs, e))?;
        refresh(&shared, &source.rel, author.as_deref())?;
        refresh(&shared, &target.rel, author.as_deref())?;
        let metadata = std::fs::symlink_metadata(&target.abs).map_err(|e| Error::io(&target.abs, e))?;
        Ok(Entry::from_metadata(target.rel, &metadata))
    })
    .await?;
    out.send(Response::Done { entry: Some(entry) }).await
}
