//! `Upload` and `UploadDelta`: check where the file will go and hand out a one-time ticket; the bytes then arrive
//! on a bulk connection ([`super::bulk`]), which writes them atomically and keeps any replaced file in the trash.

use std::sync::Arc;

use super::Shared;
use super::guard::{CaseTwins, check_expect, may_write, writable_name};
use super::session::{Caller, Responder};
use super::tickets::{Grant, PendingUpload};
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Response, UploadItem};
use crate::share::{Entry, EntryKind};
use crate::task::blocking;

/// Answers `Upload`, or `UploadDelta` when `delta` is set.
pub async fn handle(
    shared: &Arc<Shared>,
    (item, delta): (UploadItem, bool),
    caller: &Caller,
    out: &mut Responder,
) -> Result<()> {
    let (shared_for_check, peer, client) = (shared.clone(), caller.peer.clone(), caller.client.clone());
    let pending =
        blocking(move || prepare(&shared_for_check, &item, (&peer, client.as_deref()), &mut CaseTwins::default()))
            .await?;
    let (entry, mode) = announced(&pending);
    let grant = if delta { Grant::UploadDelta(pending) } else { Grant::Upload(pending) };
    let ticket = shared.tickets.issue(grant, &caller.owner);
    out.send(Response::Ticket { ticket, entry, mode: Some(mode), offset: 0 }).await
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
