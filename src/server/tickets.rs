//! One-time transfer tickets: a control request reserves a download or an upload, and the bulk connection (or
//! UDP session) that presents the ticket gets exactly that, once, within [`TICKET_LIFETIME`].
//!
//! A ticket nobody presents is dropped once it expires, or once [`MAX_PENDING`] newer ones have been issued,
//! whichever comes first. A client that floods download requests thus costs bounded memory, and issuing stays
//! constant-time however many tickets wait; real clients present theirs within milliseconds.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::{ClientIdentity, Expect, Ticket};
use crate::share::{Entry, FileStamp};

/// How long a ticket stays valid if nobody presents it.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// A ticket is dropped once this many newer ones have been issued.
pub const MAX_PENDING: usize = 4096;

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
}

#[derive(Default)]
pub struct Tickets {
    /// A std mutex: held only for a map operation, never across an await.
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    grants: HashMap<Ticket, (Instant, Grant)>,
    /// Every ticket issued and not yet dropped, oldest first, redeemed ones too: expiry looks only at the front.
    issued: VecDeque<(Instant, Ticket)>,
}

impl Tickets {
    /// Issues a fresh random ticket for `grant`, dropping expired ones and the oldest beyond [`MAX_PENDING`].
    pub fn issue(&self, grant: Grant) -> Ticket {
        self.issue_at(grant, Instant::now())
    }

    fn issue_at(&self, grant: Grant, now: Instant) -> Ticket {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Pending { grants, issued } = &mut *pending;
        while let Some(&(at, ticket)) = issued.front() {
            if now.duration_since(at) < TICKET_LIFETIME && issued.len() < MAX_PENDING {
                break;
            }
            issued.pop_front();
            // A redeemed ticket is gone already; its number may even have been issued again since.
            if grants.get(&ticket).is_some_and(|(granted, _)| *granted == at) {
                grants.remove(&ticket);
            }
        }
        loop {
            let ticket = Ticket(rand::random());
            if let std::collections::hash_map::Entry::Vacant(slot) = grants.entry(ticket) {
                slot.insert((now, grant));
                issued.push_back((now, ticket));
                return ticket;
            }
        }
    }

    /// Takes a ticket out, so it cannot be used again. `None` if unknown, used or expired.
    pub fn redeem(&self, ticket: Ticket) -> Option<Grant> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (issued, grant) = pending.grants.remove(&ticket)?;
        (issued.elapsed() < TICKET_LIFETIME).then_some(grant)
    }

    /// Redeems a ticket that must be a download (UDP sessions only send).
    pub fn redeem_download(&self, ticket: Ticket) -> Option<PendingDownload> {
        match self.redeem(ticket)? {
            Grant::Download(download) => Some(download),
            Grant::Upload(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::{EntryKind, FileStamp};

    fn grant(n: usize) -> Grant {
        let entry =
            Entry { path: format!("f{n}"), kind: EntryKind::File, size: 1, mtime_ns: 0, md5: None, locked_by: None };
        let stamp = FileStamp { size: 1, mtime_ns: 0, inode: n as u64 };
        Grant::Download(PendingDownload { abs: PathBuf::from("/x"), entry, stamp, peer: "peer".into() })
    }

    fn path_of(grant: Option<Grant>) -> Option<String> {
        match grant? {
            Grant::Download(download) => Some(download.entry.path),
            Grant::Upload(upload) => Some(upload.rel),
        }
    }

    #[test]
    fn a_flood_of_tickets_keeps_only_the_newest() {
        let tickets = Tickets::default();
        let issued: Vec<Ticket> = (0..MAX_PENDING + 10).map(|n| tickets.issue(grant(n))).collect();
        assert_eq!(tickets.pending.lock().unwrap().grants.len(), MAX_PENDING);
        assert!(issued[..10].iter().all(|t| tickets.redeem(*t).is_none()), "the oldest are dropped");
        assert_eq!(path_of(tickets.redeem(issued[10])), Some("f10".into()));
        assert_eq!(path_of(tickets.redeem(issued[MAX_PENDING + 9])), Some(format!("f{}", MAX_PENDING + 9)));
        assert!(tickets.redeem(issued[10]).is_none(), "a ticket works once");
    }

    #[test]
    fn expired_tickets_are_dropped_and_redeemed_ones_leave_the_rest_alone() {
        let tickets = Tickets::default();
        let start = Instant::now();
        let old = tickets.issue_at(grant(0), start);
        let used = tickets.issue_at(grant(1), start);
        assert!(tickets.redeem(used).is_some());
        let fresh = tickets.issue_at(grant(2), start + TICKET_LIFETIME / 2);
        tickets.issue_at(grant(3), start + TICKET_LIFETIME);
        let pending = tickets.pending.lock().unwrap();
        assert!(!pending.grants.contains_key(&old) && pending.grants.contains_key(&fresh));
        assert_eq!((pending.grants.len(), pending.issued.len()), (2, 2));
    }
}
