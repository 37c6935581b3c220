//! `Upload` and `UploadDelta`: check where the file will go and hand out a one-time ticket; the bytes then arrive
//! on a bulk connection ([`super::bulk`]), which writes them atomically and keeps any replaced file in the trash.
//! An `UploadDelta` that appends to the version the server holds gets a ticket whose offset is that version's
//! length: only the bytes after it travel.

use std::sync::Arc;

use super::Shared;
use super::guard::{CaseTwins, check_expect, may_write, writable_name};
use super::hash::hash_file;
use super::session::{Caller, Responder};
use super::tickets::{Grant, PendingUpload};
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Held, Response, UploadItem};
use crate::share::{Entry, EntryKind};
use crate::task::blocking;

/// Answers `Upload`, or `UploadDelta` when `delta` is set.
pub async fn handle(
    shared: &Arc<Shared>,
    (item, delta): (UploadItem, bool),
    caller: &Caller,
    out: &mut Responder,
) -> Result<()> {
    let append_to = if delta { Some(None) } else { None };
    handle_with(shared, (item, append_to), caller, out).await
}

/// Answers `UploadDelta`: when the path holds exactly `append_to`, the server's version that the client's file
/// begins with, the ticket's offset lets the client send only the bytes after it.
pub async fn handle_delta(
    shared: &Arc<Shared>,
    (item, append_to): (UploadItem, Option<Held>),
    caller: &Caller,
    out: &mut Responder,
) -> Result<()> {
    handle_with(shared, (item, Some(append_to)), caller, out).await
}

/// `delta`: `None` for a plain upload, else the delta form, with the version the upload may append to.
async fn handle_with(
    shared: &Arc<Shared>,
    (item, delta): (UploadItem, Option<Option<Held>>),
    caller: &Caller,
    out: &mut Responder,
) -> Result<()> {
    let (shared_for_check, peer, client) = (shared.clone(), caller.peer.clone(), caller.client.clone());
    let pending = blocking(move || {
        let mut pending = prepare(&shared_for_check, &item, (&peer, client.as_deref()), &mut CaseTwins::default())?;
        let append_to = delta.flatten().filter(|held| held.size > 0 && held.size <= item.size);
        pending.append_to = append_to.filter(|held| holds_exactly(&shared_for_check, &pending.rel, *held));
        Ok(pending)
    })
    .await?;
    let (entry, mode) = announced(&pending);
    let offset = pending.append_to.map_or(0, |held| held.size);
    let grant = if delta.is_some() { Grant::UploadDelta(pending) } else { Grant::Upload(pending) };
    let ticket = shared.tickets.issue(grant, &caller.owner);
    out.send(Response::Ticket { ticket, entry, mode: Some(mode), offset }).await
}

/// Whether `rel` is the regular file `held` describes: its size, and its MD5 (from the hash cache when its
/// stamp is unchanged). Blocking.
fn holds_exactly(shared: &Shared, rel: &str, held: Held) -> bool {
    match hash_file(shared, rel) {
        Ok(entry) => entry.size == held.size && entry.md5 == Some(held.md5),
        Err(e) => {
            tracing::debug!(path = rel, "no append: {e}");
            false
        }
    }
}

/// Checks that the client may write `item.path` and that it still holds what the client expects. Checked now so
/// a refused upload moves no bytes, and again before the rename (another write may come first). `twins` knows
/// the folders of the files prepared with it so far.
pub fn prepare(
    shared: &Shared,
    item: &UploadItem,
    (peer, client): (&str, Option<&ClientIdentity>),
    twins: &mut CaseTwins,
) -> Result<PendingUpload> {
    let rel = writable_name(shared, &item.path)?;
    may_write(shared, &rel, client)?;
    twins.check(shared, &rel, None)?;
    // A link here is replaced by the file (the link goes to the trash); a link above it is refused.
    if shared.share.meta(&rel)?.is_some_and(|meta| meta.kind == EntryKind::Dir) {
        return Err(Error::NotAFile { path: rel });
    }
    check_expect(shared, &rel, item.expect)?;
    Ok(PendingUpload {
        rel,
        size: item.size,
        mtime_ns: item.mtime_ns,
        mode: item.mode,
        peer: peer.to_string(),
        expect: item.expect,
        client: client.cloned(),
        append_to: None,
    })
}

/// The entry and permission bits an upload's ticket announces.
pub fn announced(pending: &PendingUpload) -> (Entry, u32) {
    let entry = Entry {
        path: pending.rel.clone(),
        kind: EntryKind::File,
        size: pending.size,
        mtime_ns: pending.mtime_ns,
        md5: None,
        locked_by: None,
        target: None,
    };
    (entry, pending.mode & 0o777)
}
