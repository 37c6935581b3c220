//! How a sync pass moves files: uploads and downloads in batches (one request and one bulk connection for up to
//! [`BATCH_FILES`] files), and a file whose receiving side holds an older version as a delta of its own
//! ([`crate::client::download_delta_to`], [`crate::client::upload_delta`]), or as the bytes appended to it when it
//! grew at its end (a log). Every download checks, after its bytes
//! are verified and before they replace anything, that the local file is still the version the pass scanned.

use std::sync::Arc;

use super::engine::action_path;
use super::plan::{Action, Kind, Version};
use crate::client::{
    BeforeCommit, Connection, DownloadJob, UploadJob, download_batch, download_delta_to, upload_batch, upload_delta,
};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{Expect, Held};
use crate::share::{Destination, FileStamp, Share};
use crate::transfer::{Progress, append, delta};

/// Transfers go in batches, each one request and one bulk connection ([`crate::client::upload_batch`]), so a
/// small file costs its bytes and its hash rather than round trips. A batch ends at this many files or bytes.
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// Batches at once: enough to keep both ends' hashing, the disk's fsyncs and the network busy together.
pub(super) const PARALLEL_BATCHES: usize = 4;

/// A transfer the plan asked for, with what each side must still hold for it to go ahead.
pub(super) struct Planned {
    pub action: Action,
    /// The local file as scanned (`None`: nothing there); a download replaces only that.
    pub local_stamp: Option<FileStamp>,
    /// What the server's path must hold for an upload to replace it.
    pub remote_expect: Option<Expect>,
    pub size: u64,
    /// The size of the receiving side's older version, when it is worth a delta or the file may have grown by an
    /// append to it: the file then travels alone, as a delta or as the appended bytes.
    pub delta: Option<u64>,
}

/// Payload bytes one transfer moved each way: file or delta bytes one way, a signature the other.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Moved {
    pub sent: u64,
    pub received: u64,
}

/// Whether a transfer of `size` bytes over a receiving side's older version of `base_size` bytes goes alone, as
/// a delta or an append: then the older version's size.
pub(super) fn worth_a_delta(size: u64, base_size: Option<u64>) -> Option<u64> {
    base_size.filter(|&base| {
        (delta::worth_a_delta(base) && delta::worth_a_delta(size)) || append::may_be_an_append(size, base)
    })
}

/// Splits transfers into batches of one direction, each at most [`BATCH_FILES`] files and about [`BATCH_BYTES`].
/// A file that goes as a delta is a batch of its own.
pub(super) fn batched(planned: Vec<Planned>) -> Vec<Vec<Planned>> {
    let (deltas, planned): (Vec<Planned>, Vec<Planned>) = planned.into_iter().partition(|p| p.delta.is_some());
    let (uploads, downloads): (Vec<Planned>, Vec<Planned>) =
        planned.into_iter().partition(|p| matches!(p.action, Action::Upload { .. }));
    let mut batches: Vec<Vec<Planned>> = deltas.into_iter().map(|p| vec![p]).collect();
    for direction in [uploads, downloads] {
        let mut batch: Vec<Planned> = Vec::new();
        let mut bytes = 0;
        for planned in direction {
            if !batch.is_empty() && (batch.len() == BATCH_FILES || bytes + planned.size > BATCH_BYTES) {
                batches.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += planned.size;
            batch.push(planned);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    batches
}

/// Runs one batch of uploads or downloads; for each action, the version both sides now hold and the payload
/// bytes moved.
pub(super) async fn transfer_batch(
    conn: &Connection,
    folder: &Arc<Share>,
    mut batch: Vec<Planned>,
) -> Vec<(Action, Result<(Version, Moved)>)> {
    let root = folder.root();
    if batch.len() == 1 && batch[0].delta.is_some() {
        let planned = batch.remove(0);
        let result = transfer_delta(conn, folder, &planned).await;
        return vec![(planned.action, result)];
    }
    if batch.first().is_some_and(|p| matches!(p.action, Action::Upload { .. })) {
        let jobs = batch
            .iter()
            .map(|p| {
                let path = action_path(&p.action);
                UploadJob { local: root.join(path), remote: path.to_string(), expect: p.remote_expect }
            })
            .collect();
        let reports = upload_batch(conn, jobs).await;
        return batch
            .into_iter()
            .zip(reports)
            .map(|(p, report)| (p.action, report.map(|r| (file(r.size, r.mtime_ns, r.md5), sent(r.bytes_sent)))))
            .collect();
    }
    let mut results = Vec::new();
    let mut jobs = Vec::new();
    let mut actions = Vec::new();
    for Planned { action, local_stamp, .. } in batch {
        let (dest, before_commit) = prepare_download(folder, action_path(&action), local_stamp);
        jobs.push(DownloadJob { remote: action_path(&action).to_string(), dest, before_commit });
        actions.push(action);
    }
    let reports = download_batch(conn, jobs).await;
    results.extend(actions.into_iter().zip(reports).map(|(action, report)| {
        (action, report.map(|r| (file(r.size, r.mtime_ns, r.md5), received(r.bytes_received))))
    }));
    results
}

/// One file over the receiving side's older version: only the changed parts travel.
async fn transfer_delta(conn: &Connection, folder: &Arc<Share>, planned: &Planned) -> Result<(Version, Moved)> {
    let path = action_path(&planned.action);
    let progress = Progress::default();
    if let Action::Upload { .. } = planned.action {
        // The server's version as this pass saw it: if the local file begins with it, only the rest is sent.
        let append_to = match (planned.remote_expect, planned.delta) {
            (Some(Expect::File { md5 }), Some(size)) => Some(Held { size, md5 }),
            _ => None,
        };
        let expected = (planned.remote_expect, append_to);
        let r = upload_delta(conn, &folder.root().join(path), path, expected, &progress).await?;
        return Ok((file(r.size, r.mtime_ns, r.md5), Moved { sent: r.bytes_sent, received: r.bytes_received }));
    }
    let (dest, before_commit) = prepare_download(folder, path, planned.local_stamp);
    let r = download_delta_to(conn, path, &dest, before_commit, &progress).await?;
    Ok((file(r.size, r.mtime_ns, r.md5), Moved { sent: r.bytes_sent, received: r.bytes_received }))
}

/// Where a download goes in the sync folder (its folders are made, and the version it replaces goes to the
/// trash, when it is placed, beneath the folder's handle), and the check that runs after its bytes are verified:
/// the local file must still be the scanned version.
fn prepare_download(folder: &Arc<Share>, rel: &str, local_stamp: Option<FileStamp>) -> (Destination, BeforeCommit) {
    let dest = Destination::InFolder { folder: folder.clone(), rel: rel.to_string() };
    let (folder, rel) = (folder.clone(), rel.to_string());
    let before_commit: BeforeCommit = Box::new(move || check_local(&folder, &rel, local_stamp));
    (dest, before_commit)
}

fn file(size: u64, mtime_ns: i64, md5: Md5Digest) -> Version {
    Version { kind: Kind::File, size, mtime_ns, md5: Some(md5) }
}

fn sent(bytes: u64) -> Moved {
    Moved { sent: bytes, received: 0 }
}

fn received(bytes: u64) -> Moved {
    Moved { sent: 0, received: bytes }
}

/// Refuses if the local file at `rel` is no longer what the scan saw (`None`: nothing was there).
pub(super) fn check_local(folder: &Share, rel: &str, scanned: Option<FileStamp>) -> Result<()> {
    let now = folder.meta(rel)?.map(|meta| meta.stamp());
    if now != scanned {
        return Err(Error::Stale { path: rel.to_string(), found: "it changed on this side during the sync".into() });
    }
    Ok(())
}
