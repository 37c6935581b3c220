//! One-time transfer tickets: a control request reserves a download or an upload (or a batch of them), and the bulk connection (or
//! UDP session) that presents the ticket gets exactly that, once, within [`TICKET_LIFETIME`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[derive(Default)]
pub struct Tickets {
    /// A std mutex: held only for a map operation, never across an await.
    pending: Mutex<HashMap<Ticket, (Instant, Grant)>>,
}

impl Tickets {
    /// Issues a fresh random ticket for `grant`, dropping expired ones.
    pub fn issue(&self, grant: Grant) -> Ticket {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|_, (issued, _)| now.duration_since(*issued) < TICKET_LIFETIME);
        loop {
            let ticket = Ticket(rand::random());
            if let std::collections::hash_map::Entry::Vacant(slot) = pending.entry(ticket) {
                slot.insert((now, grant));
                return ticket;
            }
        }
    }

    /// Takes a ticket out, so it cannot be used again. `None` if unknown, used or expired.
    pub fn redeem(&self, ticket: Ticket) -> Option<Grant> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (issued, grant) = pending.remove(&ticket)?;
        (issued.elapsed() < TICKET_LIFETIME).then_some(grant)
    }

    /// Redeems a ticket that must be a download (UDP sessions only send).
    pub fn redeem_download(&self, ticket: Ticket) -> Option<PendingDownload> {
        match self.redeem(ticket)? {
            Grant::Download(download) => Some(download),
            Grant::Upload(_) | Grant::DownloadBatch(_) | Grant::UploadBatch(_) => None,
        }
    }
}
