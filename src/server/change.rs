//! `Mkdir`, `Delete` and `Rename`: the share's structural writes. A delete moves the entry to the trash; a
//! rename never replaces an existing entry.

use std::sync::Arc;

use super::Shared;
use super::session::Responder;
use super::upload::refuse_if_read_only;
use crate::error::{Error, Result};
use crate::protocol::Response;
use crate::share::{Entry, move_to_trash};

pub async fn mkdir(shared: &Arc<Shared>, path: &str, out: &mut Responder) -> Result<()> {
    refuse_if_read_only(shared, path)?;
    let target = shared.share.resolve_for_write(path)?;
    if target.abs.exists() && !target.abs.is_dir() {
        return Err(Error::Exists { path: target.rel });
    }
    std::fs::create_dir_all(&target.abs).map_err(|e| Error::io(&target.abs, e))?;
    let metadata = std::fs::symlink_metadata(&target.abs).map_err(|e| Error::io(&target.abs, e))?;
    out.send(Response::Done { entry: Some(Entry::from_metadata(target.rel, &metadata)) }).await
}

pub async fn delete(shared: &Arc<Shared>, path: &str, out: &mut Responder) -> Result<()> {
    refuse_if_read_only(shared, path)?;
    // Resolve without following a final symlink: deleting a link removes the link, not what it points at.
    let target = shared.share.resolve_for_write(path)?;
    if std::fs::symlink_metadata(&target.abs).is_err() {
        return Err(Error::NotFound { path: target.rel });
    }
    move_to_trash(shared.share.root(), &target.rel, &target.abs)?;
    out.send(Response::Done { entry: None }).await
}

pub async fn rename(shared: &Arc<Shared>, from: &str, to: &str, out: &mut Responder) -> Result<()> {
    refuse_if_read_only(shared, from)?;
    let source = shared.share.resolve_for_write(from)?;
    let target = shared.share.resolve_for_write(to)?;
    if std::fs::symlink_metadata(&source.abs).is_err() {
        return Err(Error::NotFound { path: source.rel });
    }
    if std::fs::symlink_metadata(&target.abs).is_ok() {
        return Err(Error::Exists { path: target.rel });
    }
    if target.rel.starts_with(&format!("{}/", source.rel)) {
        return Err(Error::InvalidPath { path: to.to_string(), reason: "a folder cannot move into itself" });
    }
    if let Some(parent) = target.abs.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::rename(&source.abs, &target.abs).map_err(|e| Error::io(&source.abs, e))?;
    let metadata = std::fs::symlink_metadata(&target.abs).map_err(|e| Error::io(&target.abs, e))?;
    out.send(Response::Done { entry: Some(Entry::from_metadata(target.rel, &metadata)) }).await
}
