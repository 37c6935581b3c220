//! `Download` and `DownloadDelta`: checks the file and hands out a one-time ticket for a bulk connection. The MD5
//! travels on the ticket when the hash cache already knows it, so the client can check each byte against it. A
//! download that resumes says which version its first bytes came from; if the file is still that version, its
//! ticket starts the stream at the client's offset. A delta download whose older version the file begins with
//! (an append) starts the stream after it, the same way.

use std::sync::Arc;

use super::Shared;
use super::session::{Caller, Responder};
use super::tickets::{Grant, PendingDownload};
use crate::error::{Error, Result};
use crate::protocol::{Held, Response, ResumeFrom};
use crate::share::{Entry, EntryKind, normalize};
use crate::task::blocking;
use crate::transfer::append;

pub async fn handle(
    shared: &Arc<Shared>,
    path: &str,
    resume: Option<ResumeFrom>,
    caller: &Caller,
    out: &mut Responder,
) -> Result<()> {
    let (mut pending, mode) = prepare(shared, path, &caller.peer)?;
    pending.offset = resume_offset(&pending.entry, resume);
    let (entry, offset) = (pending.entry.clone(), pending.offset);
    let ticket = shared.tickets.issue(Grant::Download(pending), &caller.owner);
    out.send(Response::Ticket { ticket, entry, mode, offset }).await
}

/// Where a download that asked to resume may start: its offset if the file is still the version its first
/// bytes came from, else 0, the whole file. Any offset, size or mtime is safe to ask about.
pub fn resume_offset(entry: &Entry, resume: Option<ResumeFrom>) -> u64 {
    match resume {
        Some(from) if from.size == entry.size && from.mtime_ns == entry.mtime_ns && from.offset <= entry.size => {
            from.offset
        }
        _ => 0,
    }
}

/// `DownloadDelta`: the same checks, and a ticket for the delta form of the bulk stream; or, when the file
/// begins with the client's version (`append_to`), for the plain stream of the bytes after it.
pub async fn handle_delta(
    shared: &Arc<Shared>,
    (path, delta_only, append_to): (&str, bool, Option<Held>),
    caller: &Caller,
    out: &mut Responder,
) -> Result<()> {
    let (mut pending, mode) = prepare(shared, path, &caller.peer)?;
    // Only a version shorter than the file can have been appended to: nothing is read for any other.
    if let Some(held) = append_to.filter(|held| held.size > 0 && held.size < pending.stamp.size) {
        let (shared_for_check, pending_for_check) = (shared.clone(), pending.clone());
        pending.offset = blocking(move || Ok(append_offset(&shared_for_check, &pending_for_check, held))).await?;
    }
    let (entry, offset) = (pending.entry.clone(), pending.offset);
    let ticket = shared.tickets.issue(Grant::DownloadDelta { download: pending, delta_only }, &caller.owner);
    out.send(Response::Ticket { ticket, entry, mode, offset }).await
}

/// Where a delta download's bytes start: after the client's version `held` if the file (still the version
/// `pending` announces) begins with exactly those bytes, an append; else 0, and the delta form. Blocking: it
/// reads the first `held.size` bytes.
fn append_offset(shared: &Shared, pending: &PendingDownload, held: Held) -> u64 {
    let path = &pending.entry.path;
    let begins = shared.share.open_file(path).and_then(|(file, _)| {
        append::begins_with(&file, pending.stamp, held).map_err(|e| Error::io(shared.share.shown(path), e))
    });
    match begins {
        Ok(true) => held.size,
        Ok(false) => 0,
        Err(e) => {
            tracing::debug!(path, "no append: {e}");
            0
        }
    }
}

/// Checks that `path` is a file the client may fetch, and describes the version it will get, with its
/// permission bits (only `rwxrwxrwx` travel). A link is refused: tandem never follows one.
pub fn prepare(shared: &Shared, path: &str, peer: &str) -> Result<(PendingDownload, Option<u32>)> {
    let rel = normalize(path)?;
    let meta = shared.share.meta(&rel)?.ok_or_else(|| Error::NotFound { path: rel.clone() })?;
    match meta.kind {
        EntryKind::File => {}
        EntryKind::Symlink => return Err(Error::Symlink { path: rel.clone(), link: rel }),
        EntryKind::Dir => return Err(Error::NotAFile { path: rel }),
    }
    let stamp = meta.stamp();
    let mut entry = Entry::from_meta(rel.clone(), &meta);
    entry.md5 = shared.hashes.get(&rel, stamp);
    Ok((PendingDownload { entry, stamp, peer: peer.to_string(), offset: 0 }, Some(meta.mode & 0o777)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Request;
    use crate::share::EntryKind;

    #[test]
    fn only_the_same_version_resumes_and_no_offset_is_trusted_blindly() {
        let entry = Entry {
            path: "f".into(),
            kind: EntryKind::File,
            size: 100,
            mtime_ns: -7,
            md5: None,
            locked_by: None,
            target: None,
        };
        let from = |offset, size, mtime_ns| Some(ResumeFrom { offset, size, mtime_ns });
        assert_eq!(resume_offset(&entry, None), 0);
        assert_eq!(resume_offset(&entry, from(40, 100, -7)), 40);
        assert_eq!(resume_offset(&entry, from(100, 100, -7)), 100, "all there: only the trailer comes");
        assert_eq!(resume_offset(&entry, from(40, 100, 0)), 0, "another mtime");
        assert_eq!(resume_offset(&entry, from(40, 99, -7)), 0, "another size");
        assert_eq!(resume_offset(&entry, from(101, 100, -7)), 0, "past the end");
        assert_eq!(resume_offset(&entry, from(u64::MAX, u64::MAX, i64::MIN)), 0);
        let request = Request::Download { path: "a b".into(), resume: from(40, 100, -7) };
        assert_eq!(request.arguments(), "path=\"a b\" resume_from=40");
        assert_eq!(Request::Download { path: "a".into(), resume: None }.arguments(), "path=\"a\"");
    }
}
