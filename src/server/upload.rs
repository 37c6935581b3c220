//! `Upload`: checks where the file will go and hands out a one-time ticket; the bytes then arrive on a bulk
//! connection ([`super::bulk`]), which writes them atomically and keeps any replaced file in the trash.

use std::sync::Arc;

use super::Shared;
use super::guard::{check_expect, may_write};
use super::session::Responder;
use super::tickets::{Grant, PendingUpload};
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Expect, Response};
use crate::share::{Entry, EntryKind};
use crate::task::blocking;

pub async fn handle(
    shared: &Arc<Shared>,
    path: &str,
    (size, mtime_ns, mode): (u64, i64, u32),
    expect: Option<Expect>,
    (peer, client): (&str, Option<&ClientIdentity>),
    out: &mut Responder,
) -> Result<()> {
    let resolved = shared.share.resolve_for_write(path)?;
    may_write(shared, &resolved.rel, client)?;
    if resolved.abs.is_dir() {
        return Err(Error::NotAFile { path: resolved.rel });
    }
    // Checked now so a stale upload is refused before any byte moves, and again before the rename.
    let (shared_for_check, rel, abs) = (shared.clone(), resolved.rel.clone(), resolved.abs.clone());
    blocking(move || check_expect(&shared_for_check, &rel, &abs, expect)).await?;
    let entry = Entry { path: resolved.rel.clone(), kind: EntryKind::File, size, mtime_ns, md5: None, locked_by: None };
    let ticket = shared.tickets.issue(Grant::Upload(PendingUpload {
        rel: resolved.rel,
        abs: resolved.abs,
        size,
        mtime_ns,
        mode,
        peer: peer.to_string(),
        expect,
        client: client.cloned(),
    }));
    out.send(Response::Ticket { ticket, entry, mode: Some(mode) }).await
}
