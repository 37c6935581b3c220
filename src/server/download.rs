//! `Download` and `DownloadDelta`: checks the file and hands out a one-time ticket for a bulk connection. The MD5 travels on the
//! ticket when the hash cache already knows it, so the client can check each byte against it.

use std::sync::Arc;

use super::Shared;
use super::session::{Caller, Responder};
use super::tickets::{Grant, PendingDownload};
use crate::error::{Error, Result};
use crate::protocol::Response;
use crate::share::{Entry, FileStamp, permission_bits};

pub async fn handle(shared: &Arc<Shared>, path: &str, caller: &Caller, out: &mut Responder) -> Result<()> {
    let (pending, mode) = prepare(shared, path, &caller.peer)?;
    let entry = pending.entry.clone();
    let ticket = shared.tickets.issue(Grant::Download(pending), &caller.owner);
    out.send(Response::Ticket { ticket, entry, mode }).await
}

/// `DownloadDelta`: the same checks, and a ticket for the delta form of the bulk stream.
pub async fn handle_delta(shared: &Arc<Shared>, path: &str, caller: &Caller, out: &mut Responder) -> Result<()> {
    let (pending, mode) = prepare(shared, path, &caller.peer)?;
    let entry = pending.entry.clone();
    let ticket = shared.tickets.issue(Grant::DownloadDelta(pending), &caller.owner);
    out.send(Response::Ticket { ticket, entry, mode }).await
}

/// Checks that `path` is a file the client may fetch, and describes the version it will get, with its
/// permission bits.
pub fn prepare(shared: &Shared, path: &str, peer: &str) -> Result<(PendingDownload, Option<u32>)> {
    let resolved = shared.share.resolve(path)?;
    let metadata = std::fs::metadata(&resolved.abs).map_err(|e| Error::io(&resolved.abs, e))?;
    if !metadata.is_file() {
        return Err(Error::NotAFile { path: resolved.rel });
    }
    let stamp = FileStamp::of(&metadata);
    let mut entry = Entry::from_metadata(resolved.rel.clone(), &metadata);
    entry.md5 = shared.hashes.get(&resolved.rel, stamp);
    let mode = permission_bits(&metadata);
    Ok((PendingDownload { abs: resolved.abs, entry, stamp, peer: peer.to_string() }, mode))
}
