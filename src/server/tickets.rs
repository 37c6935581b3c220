//! One-time transfer tickets: a control request reserves a download or an upload (or a batch of them), and the
//! bulk connection (or UDP session) that presents the ticket gets exactly that, once, within [`TICKET_LIFETIME`].
//! A ticket is bound to the session that asked for it: it is redeemed only with a proof made with that session's
//! key ([`crate::auth`]), so a ticket seen on the wire or handed to another client is worthless.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::auth::{SessionKey, TicketProof};
use crate::protocol::{ClientIdentity, Expect, Ticket};
use crate::share::{Entry, FileStamp};

/// How long a ticket stays valid if nobody presents it.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);

/// What a ticket grants.
#[derive(Debug, Clone)]
pub struct PendingDownload {
    /// The file on disk, already through the sandbox.
    pub abs: PathBuf,
    /// The entry announced to the client, with its MD5 if the cache knew it.
    pub entry: Entry,
    /// The version announced; a different version on disk is refused rather than sent.
    pub stamp: FileStamp,
    /// The control connection that asked, for the log.
    pub peer: String,
}

/// What a client may send: one file, to be stored at `abs` with this size, mtime and mode.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub peer: String,
    /// What the client expects to replace, checked again just before the rename.
    pub expect: Option<Expect>,
    /// The uploading client, for locks and for the journal's author.
    pub client: Option<ClientIdentity>,
}

#[derive(Debug, Clone)]
pub enum Grant {
    Download(PendingDownload),
    Upload(PendingUpload),
    /// Several files on one bulk connection, in this order.
    DownloadBatch(Vec<PendingDownload>),
    UploadBatch(Vec<PendingUpload>),
}

/// The session a ticket belongs to: the key its proofs are made with, and its gate on transfers at once.
#[derive(Debug, Clone)]
pub struct Owner {
    pub key: SessionKey,
    pub transfers: Arc<Semaphore>,
}

struct Issued {
    at: Instant,
    owner: Owner,
    grant: Grant,
}

#[derive(Default)]
pub struct Tickets {
    /// A std mutex: held only for a map operation, never across an await.
    pending: Mutex<HashMap<Ticket, Issued>>,
}

impl Tickets {
    /// Issues a fresh random ticket for `grant` to the session `owner`, dropping expired ones.
    pub fn issue(&self, grant: Grant, owner: &Owner) -> Ticket {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|_, issued| now.duration_since(issued.at) < TICKET_LIFETIME);
        loop {
            let ticket = Ticket(rand::random());
            if let std::collections::hash_map::Entry::Vacant(slot) = pending.entry(ticket) {
                slot.insert(Issued { at: now, owner: owner.clone(), grant });
                return ticket;
            }
        }
    }

    /// Takes a ticket out, so it cannot be used again; with it comes its session's gate on transfers. `None` if
    /// unknown, used or expired, or if `proof` does not come from the session it was issued to (then it stays,
    /// so a stranger cannot spoil it for its owner).
    pub fn redeem(&self, ticket: Ticket, proof: &TicketProof) -> Option<(Grant, Arc<Semaphore>)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.get(&ticket)?.owner.key.verifies(ticket, proof) {
            return None;
        }
        let issued = pending.remove(&ticket)?;
        (issued.at.elapsed() < TICKET_LIFETIME).then_some((issued.grant, issued.owner.transfers))
    }

    /// Redeems a ticket that must be a download (UDP sessions only send).
    pub fn redeem_download(&self, ticket: Ticket, proof: &TicketProof) -> Option<(PendingDownload, Arc<Semaphore>)> {
        match self.redeem(ticket, proof)? {
            (Grant::Download(download), gate) => Some((download, gate)),
            (Grant::Upload(_) | Grant::DownloadBatch(_) | Grant::UploadBatch(_), _) => None,
        }
    }
}
