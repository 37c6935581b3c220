//! What sync clients ask for: the journal's changes since a sequence number, pushes when it moves on, and locks.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::mpsc;

use super::Shared;
use super::session::{Outgoing, Responder};
use crate::error::{Error, Result};
use crate::protocol::{ClientIdentity, Response, ServerFrame, codec};
use crate::task::blocking;

/// Changes per answer frame: each carries an entry, so this stays far below the frame limit.
const CHANGES_PER_BATCH: usize = 2_000;

/// Streams every change after `since`, in batches, each stamped with the cursor it covers up to: read with the
/// changes in one snapshot, so no change recorded meanwhile can fall behind it unsent.
pub async fn changes(shared: &Arc<Shared>, since: u64, out: &mut Responder) -> Result<()> {
    let mut after = since;
    loop {
        let shared_for_query = shared.clone();
        let batch = blocking(move || shared_for_query.journal.since(after, CHANGES_PER_BATCH)).await?;
        let (seq, more) = (batch.cursor, batch.full);
        after = seq;
        out.send(Response::Changes { changes: batch.changes, seq, more }).await?;
        if !more {
            return Ok(());
        }
    }
}

/// Pushes `Changed { seq }` on a subscribed connection each time the journal moves on, until the connection's
/// writer goes away. Pushes coalesce: a client that is busy gets the latest number, not a backlog.
pub async fn push_changes(shared: Arc<Shared>, frames: mpsc::WeakSender<Outgoing>) {
    let mut latest = shared.journal.subscribe();
    latest.mark_unchanged();
    while latest.changed().await.is_ok() {
        let seq = *latest.borrow_and_update();
        let mut buf = BytesMut::new();
        if codec::encode(&ServerFrame::Changed { seq }, &mut buf).is_err() {
            return;
        }
        // A weak sender: a subscription never keeps a closing connection's writer alive.
        let Some(frames) = frames.upgrade() else { return };
        if frames.send(Outgoing::unbudgeted(buf.freeze())).await.is_err() {
            return;
        }
    }
}

pub async fn lock(
    shared: &Arc<Shared>,
    path: &str,
    client: Option<&ClientIdentity>,
    out: &mut Responder,
) -> Result<()> {
    refuse_if_read_only(shared, path)?;
    // A lock is on the entry itself, named without passing a link: `link-to-docs/a.txt` names nothing, so no
    // second spelling of a path escapes its lock.
    let rel = crate::share::normalize(path)?;
    let Some(client) = client.cloned() else {
        return Err(Error::Refused {
            what: format!("to lock {rel}"),
            reason: "taking a lock needs a client identity; this client sent none".into(),
        });
    };
    let shared_for_lock = shared.clone();
    let entry = blocking(move || {
        let meta = shared_for_lock.share.meta(&rel)?.ok_or_else(|| Error::NotFound { path: rel.clone() })?;
        shared_for_lock.journal.lock(&rel, &client)?;
        let mut entry = crate::share::Entry::from_meta(rel, &meta);
        entry.locked_by = Some(client.host);
        Ok(entry)
    })
    .await?;
    out.send(Response::Done { entry: Some(entry) }).await
}

pub async fn unlock(
    shared: &Arc<Shared>,
    path: &str,
    force: bool,
    client: Option<&ClientIdentity>,
    out: &mut Responder,
) -> Result<()> {
    refuse_if_read_only(shared, path)?;
    let rel = crate::share::normalize(path)?;
    let (shared_for_lock, client) = (shared.clone(), client.cloned());
    blocking(move || shared_for_lock.journal.unlock(&rel, client.as_ref(), force)).await?;
    out.send(Response::Done { entry: None }).await
}

/// A lock is a change of the share's state: a read-only server refuses it like any write.
fn refuse_if_read_only(shared: &Shared, path: &str) -> Result<()> {
    if shared.config.read_only {
        return Err(Error::ReadOnly { path: path.to_string() });
    }
    Ok(())
}
