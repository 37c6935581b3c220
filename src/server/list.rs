//! `List`: every entry below a path, filtered, streamed in batches while the walk is still running.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Shared;
use super::session::Responder;
use crate::error::{Error, Result};
use crate::protocol::{BATCH_BYTES, ENTRIES_PER_BATCH, ListFilter, Response};
use crate::share::{Entry, EntryFilter, EntryKind, Share, Walk, normalize};

pub async fn handle(shared: &Arc<Shared>, path: &str, filter: &ListFilter, out: &mut Responder) -> Result<()> {
    let rel = normalize(path)?;
    let (batches_tx, mut batches_rx) = mpsc::channel::<Result<Vec<Entry>>>(4);
    let (share, filter) = (shared.share.clone(), filter.clone());
    tokio::task::spawn_blocking(move || {
        // The pattern is compiled here, off the threads that serve every session.
        let result = EntryFilter::new(&filter).and_then(|filter| {
            walk_in_batches(&share, &rel, &filter, |batch| batches_tx.blocking_send(Ok(batch)).is_ok())
        });
        if let Err(e) = result {
            let _ = batches_tx.blocking_send(Err(e));
        }
    });
    // Hold one batch back so the last one can say `more: false`.
    let mut held: Vec<Entry> = Vec::new();
    while let Some(batch) = batches_rx.recv().await {
        let mut batch = batch?;
        shared.journal.mark_locks(&mut batch);
        if !held.is_empty() {
            out.send(Response::Entries { entries: std::mem::take(&mut held), more: true }).await?;
        }
        held = batch;
    }
    out.send(Response::Entries { entries: held, more: false }).await
}

/// Walks `rel` (a folder, or a single entry: a link is listed, never followed) and hands over filtered batches;
/// stops when `emit` returns false.
fn walk_in_batches(
    share: &Share,
    rel: &str,
    filter: &EntryFilter,
    mut emit: impl FnMut(Vec<Entry>) -> bool,
) -> Result<()> {
    let meta = share.meta(rel)?.ok_or_else(|| Error::NotFound { path: rel.to_string() })?;
    if meta.kind != EntryKind::Dir {
        let mut entry = Entry::from_meta(rel.to_string(), &meta);
        if meta.kind == EntryKind::Symlink {
            entry.target = share.read_link(rel).ok();
        }
        let batch = if filter.matches(&entry) { vec![entry] } else { Vec::new() };
        emit(batch);
        return Ok(());
    }
    let (mut batch, mut bytes) = (Vec::with_capacity(ENTRIES_PER_BATCH), 0);
    for entry in Walk::new(share, rel)?.max_depth(filter.max_depth()) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!("listing skips a folder: {e}");
                continue;
            }
        };
        if filter.matches(&entry) {
            bytes += entry.weight();
            batch.push(entry);
            if batch.len() == ENTRIES_PER_BATCH || bytes >= BATCH_BYTES {
                bytes = 0;
                if !emit(std::mem::replace(&mut batch, Vec::with_capacity(ENTRIES_PER_BATCH))) {
                    return Ok(());
                }
            }
        }
    }
    if !batch.is_empty() {
        emit(batch);
    }
    Ok(())
}
