//! `Upload`: checks where the file will go and hands out a one-time ticket; the bytes then arrive on a bulk
//! connection ([`super::bulk`]), which writes them atomically and keeps any replaced file in the trash.

use std::sync::Arc;

use super::Shared;
use super::session::Responder;
use super::tickets::{Grant, PendingUpload};
use crate::error::{Error, Result};
use crate::protocol::Response;
use crate::share::{Entry, EntryKind};

pub async fn handle(
    shared: &Arc<Shared>,
    path: &str,
    (size, mtime_ns, mode): (u64, i64, u32),
    peer: &str,
    out: &mut Responder,
) -> Result<()> {
    refuse_if_read_only(shared, path)?;
    let resolved = shared.share.resolve_for_write(path)?;
    if resolved.abs.is_dir() {
        return Err(Error::NotAFile { path: resolved.rel });
    }
    let entry = Entry { path: resolved.rel.clone(), kind: EntryKind::File, size, mtime_ns, md5: None };
    let ticket = shared.tickets.issue(Grant::Upload(PendingUpload {
        rel: resolved.rel,
        abs: resolved.abs,
        size,
        mtime_ns,
        mode,
        peer: peer.to_string(),
    }));
    out.send(Response::Ticket { ticket, entry }).await
}

/// Every write request starts here: a read-only share says so, naming the path.
pub fn refuse_if_read_only(shared: &Shared, path: &str) -> Result<()> {
    if shared.config.read_only {
        return Err(Error::ReadOnly { path: path.to_string() });
    }
    Ok(())
}
