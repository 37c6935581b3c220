//! `DownloadBatch` and `UploadBatch`: every file goes through the same checks as a single `Download` or `Upload`,
//! and one ticket covers all the files that passed. The bulk connection that presents it ([`super::bulk`]) then
//! carries them one after another, so a folder of small files costs one round trip, not one per file.

use std::sync::Arc;

use super::guard::CaseTwins;
use super::session::{Caller, Responder};
use super::tickets::Grant;
use super::{Shared, download, upload};
use crate::error::{Error, Result};
use crate::protocol::{BatchItem, MAX_BATCH_FILES, Response, UploadItem};
use crate::task::blocking;

pub async fn download(shared: &Arc<Shared>, paths: &[String], caller: &Caller, out: &mut Responder) -> Result<()> {
    check_size(paths.len())?;
    let (shared_for_checks, paths, peer) = (shared.clone(), paths.to_vec(), caller.peer.clone());
    let prepared = blocking(move || {
        Ok(paths.iter().map(|path| download::prepare(&shared_for_checks, path, &peer)).collect::<Vec<_>>())
    })
    .await?;
    let mut items = Vec::with_capacity(prepared.len());
    let mut grants = Vec::new();
    for result in prepared {
        match result {
            Ok((pending, mode)) => {
                items.push(BatchItem::Ready { entry: pending.entry.clone(), mode });
                grants.push(pending);
            }
            Err(e) => items.push(BatchItem::Refused(e.to_body())),
        }
    }
    let ticket = shared.tickets.issue(Grant::DownloadBatch(grants), &caller.owner);
    out.send(Response::Batch { ticket, items }).await
}

pub async fn upload(shared: &Arc<Shared>, files: &[UploadItem], caller: &Caller, out: &mut Responder) -> Result<()> {
    check_size(files.len())?;
    let (shared_for_checks, files) = (shared.clone(), files.to_vec());
    let (peer, client) = (caller.peer.clone(), caller.client.clone());
    let prepared = blocking(move || {
        // One listing per folder for the whole batch.
        let mut twins = CaseTwins::default();
        Ok(files
            .iter()
            .map(|item| upload::prepare(&shared_for_checks, item, (&peer, client.as_deref()), &mut twins))
            .collect::<Vec<_>>())
    })
    .await?;
    let mut items = Vec::with_capacity(prepared.len());
    let mut grants = Vec::new();
    for result in prepared {
        match result {
            Ok(pending) => {
                let (entry, mode) = upload::announced(&pending);
                items.push(BatchItem::Ready { entry, mode: Some(mode) });
                grants.push(pending);
            }
            Err(e) => items.push(BatchItem::Refused(e.to_body())),
        }
    }
    let ticket = shared.tickets.issue(Grant::UploadBatch(grants), &caller.owner);
    out.send(Response::Batch { ticket, items }).await
}

fn check_size(files: usize) -> Result<()> {
    if files > MAX_BATCH_FILES {
        return Err(Error::Refused {
            what: format!("a batch of {files} files"),
            reason: format!("it is too large; at most {MAX_BATCH_FILES} files go in one batch"),
        });
    }
    Ok(())
}
