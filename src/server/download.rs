//! `Download`: checks the file and hands out a one-time ticket for a bulk connection. The MD5 travels on the
//! ticket when the hash cache already knows it, so the client can check each byte against it.

use std::sync::Arc;

use super::Shared;
use super::session::Responder;
use super::tickets::{Grant, PendingDownload};
use crate::error::{Error, Result};
use crate::protocol::Response;
use crate::share::{Entry, FileStamp};

pub async fn handle(shared: &Arc<Shared>, path: &str, peer: &str, out: &mut Responder) -> Result<()> {
    let resolved = shared.share.resolve(path)?;
    let metadata = std::fs::metadata(&resolved.abs).map_err(|e| Error::io(&resolved.abs, e))?;
    if !metadata.is_file() {
        return Err(Error::NotAFile { path: resolved.rel });
    }
    let stamp = FileStamp::of(&metadata);
    let mut entry = Entry::from_metadata(resolved.rel.clone(), &metadata);
    entry.md5 = shared.hashes.get(&resolved.rel, stamp);
    let ticket = shared.tickets.issue(Grant::Download(PendingDownload {
        abs: resolved.abs,
        entry: entry.clone(),
        stamp,
        peer: peer.to_string(),
    }));
    #[cfg(unix)]
    let mode = Some(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777);
    #[cfg(not(unix))]
    let mode = None;
    out.send(Response::Ticket { ticket, entry, mode }).await
}
