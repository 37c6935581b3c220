//! One-time transfer tickets: a control request reserves a download or an upload (or a batch of them), and the
//! bulk connection (or UDP session) that presents the ticket gets exactly that, once, within [`TICKET_LIFETIME`].
//! A ticket is bound to the session that asked for it: it is redeemed only with a proof made with that session's
//! key ([`crate::auth`]), so a ticket seen on the wire or handed to another client is worthless.
//!
//! Each session has its own queue of tickets. A ticket nobody presents is dropped once it expires, once
//! [`MAX_PENDING_PER_SESSION`] newer ones have been issued to the same session, or when its session closes,
//! whichever comes first. A client that floods download requests thus evicts only its own tickets, never another
//! session's; all sessions together hold at most sessions × [`MAX_PENDING_PER_SESSION`]; and issuing stays
//! constant-time however many tickets wait. Real clients present theirs within milliseconds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::auth::{SessionKey, TicketProof};
use crate::protocol::{ClientIdentity, Expect, Held, Ticket};
use crate::share::{Entry, FileStamp};

/// How long a ticket stays valid if nobody presents it.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// A ticket is dropped once this many newer ones have been issued to the same session.
pub const MAX_PENDING_PER_SESSION: usize = 256;

/// What a ticket grants.
#[derive(Debug, Clone)]
pub struct PendingDownload {
    /// The entry announced to the client (its path clean and relative to the share), with its MD5 if the cache
    /// knew it. The file is opened beneath the share's root when the bytes go out.
    pub entry: Entry,
    /// The version announced; a different version on disk is refused rather than sent.
    pub stamp: FileStamp,
    /// The control connection that asked, for the log.
    pub peer: String,
    /// Where the bytes start: a resumed download already has the file's first `offset` bytes.
    pub offset: u64,
}

/// What a client may send: one file, to be stored at `rel` with this size, mtime and mode.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    /// Clean and relative to the share; resolved beneath its root only when the file is placed.
    pub rel: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub peer: String,
    /// What the client expects to replace, checked again just before the rename.
    pub expect: Option<Expect>,
    /// The uploading client, for locks and for the journal's author.
    pub client: Option<ClientIdentity>,
    /// The server's version that the client's file begins with, when the ticket let the client send only the
    /// bytes after it (an append).
    pub append_to: Option<Held>,
}

#[derive(Debug, Clone)]
pub enum Grant {
    Download(PendingDownload),
    Upload(PendingUpload),
    /// Several files on one bulk connection, in this order.
    DownloadBatch(Vec<PendingDownload>),
    UploadBatch(Vec<PendingUpload>),
    /// One file in the delta form of the bulk stream: the client's signature comes first. With `delta_only`,
    /// no delta worth sending means nothing is sent. With an `offset` (an append), the plain stream from there.
    DownloadDelta {
        download: PendingDownload,
        delta_only: bool,
    },
    /// One file in the delta form: the server sends its signature first; or, with the upload's `append_to`, the
    /// client sends the bytes after that version.
    UploadDelta(PendingUpload),
}

/// The session a ticket belongs to: its number (for its own queue of tickets), the key its proofs are made with,
/// and its gate on transfers at once.
#[derive(Debug, Clone)]
pub struct Owner {
    pub session: u64,
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
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    grants: HashMap<Ticket, Issued>,
    /// Per session, every ticket issued to it and not yet dropped, oldest first, redeemed ones too: expiry and
    /// eviction look only at the front of the issuing session's own queue.
    issued: HashMap<u64, VecDeque<(Instant, Ticket)>>,
}

impl Tickets {
    /// Issues a fresh random ticket for `grant` to the session `owner`, dropping that session's expired tickets
    /// and its oldest beyond [`MAX_PENDING_PER_SESSION`].
    pub fn issue(&self, grant: Grant, owner: &Owner) -> Ticket {
        self.issue_at(grant, owner, Instant::now())
    }

    fn issue_at(&self, grant: Grant, owner: &Owner, now: Instant) -> Ticket {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Pending { grants, issued } = &mut *pending;
        let queue = issued.entry(owner.session).or_default();
        while let Some(&(at, ticket)) = queue.front() {
            if now.duration_since(at) < TICKET_LIFETIME && queue.len() < MAX_PENDING_PER_SESSION {
                break;
            }
            queue.pop_front();
            // A redeemed ticket is gone already; its number may even have been issued again since.
            if grants.get(&ticket).is_some_and(|granted| granted.at == at && granted.owner.session == owner.session) {
                grants.remove(&ticket);
            }
        }
        loop {
            let ticket = Ticket(rand::random());
            if let std::collections::hash_map::Entry::Vacant(slot) = grants.entry(ticket) {
                slot.insert(Issued { at: now, owner: owner.clone(), grant });
                queue.push_back((now, ticket));
                return ticket;
            }
        }
    }

    /// Drops every ticket of a session that has closed: nobody can present them any more.
    pub fn forget_session(&self, session: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Pending { grants, issued } = &mut *pending;
        for (at, ticket) in issued.remove(&session).unwrap_or_default() {
            if grants.get(&ticket).is_some_and(|granted| granted.at == at && granted.owner.session == session) {
                grants.remove(&ticket);
            }
        }
    }

    /// Takes a ticket out, so it cannot be used again; with it comes its session's gate on transfers. `None` if
    /// unknown, used or expired, or if `proof` does not come from the session it was issued to (then it stays,
    /// so a stranger cannot spoil it for its owner).
    pub fn redeem(&self, ticket: Ticket, proof: &TicketProof) -> Option<(Grant, Arc<Semaphore>)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.grants.get(&ticket)?.owner.key.verifies(ticket, proof) {
            return None;
        }
        let issued = pending.grants.remove(&ticket)?;
        (issued.at.elapsed() < TICKET_LIFETIME).then_some((issued.grant, issued.owner.transfers))
    }

    /// Redeems a ticket that must be a download (UDP sessions only send).
    pub fn redeem_download(&self, ticket: Ticket, proof: &TicketProof) -> Option<(PendingDownload, Arc<Semaphore>)> {
        match self.redeem(ticket, proof)? {
            (Grant::Download(download), gate) => Some((download, gate)),
            (_, _) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::{EntryKind, FileStamp};

    fn grant(n: usize) -> Grant {
        let entry = Entry {
            path: format!("f{n}"),
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 0,
            md5: None,
            locked_by: None,
            target: None,
        };
        let stamp = FileStamp { size: 1, mtime_ns: 0, ctime_ns: 0, inode: n as u64 };
        Grant::Download(PendingDownload { entry, stamp, peer: "peer".into(), offset: 0 })
    }

    fn owner() -> Owner {
        owner_of(1)
    }

    fn owner_of(session: u64) -> Owner {
        let nonce = crate::auth::Nonce([session as u8; 32]);
        Owner { session, key: SessionKey::derive(None, &nonce, &nonce), transfers: Arc::new(Semaphore::new(1)) }
    }

    fn path_of(redeemed: Option<(Grant, Arc<Semaphore>)>) -> Option<String> {
        match redeemed?.0 {
            Grant::Download(download) => Some(download.entry.path),
            _ => None,
        }
    }

    #[test]
    fn a_flood_of_tickets_keeps_only_the_newest_of_the_flooding_session() {
        let (tickets, owner, other) = (Tickets::default(), owner(), owner_of(2));
        let redeem = |ticket: Ticket, owner: &Owner| tickets.redeem(ticket, &owner.key.ticket_proof(ticket));
        let bystander = tickets.issue(grant(7), &other);
        let max = MAX_PENDING_PER_SESSION;
        let issued: Vec<Ticket> = (0..max + 10).map(|n| tickets.issue(grant(n), &owner)).collect();
        assert_eq!(tickets.pending.lock().unwrap().grants.len(), max + 1);
        assert!(issued[..10].iter().all(|t| redeem(*t, &owner).is_none()), "the oldest are dropped");
        assert_eq!(path_of(redeem(issued[10], &owner)), Some("f10".into()));
        assert_eq!(path_of(redeem(issued[max + 9], &owner)), Some(format!("f{}", max + 9)));
        assert!(redeem(issued[10], &owner).is_none(), "a ticket works once");
        assert_eq!(path_of(redeem(bystander, &other)), Some("f7".into()), "another session's ticket survives");
        tickets.forget_session(owner.session);
        assert!(redeem(issued[11], &owner).is_none(), "a closed session's tickets are gone");
        assert!(tickets.pending.lock().unwrap().grants.is_empty());
    }

    #[test]
    fn expired_tickets_are_dropped_and_redeemed_ones_leave_the_rest_alone() {
        let (tickets, owner) = (Tickets::default(), owner());
        let start = Instant::now();
        let old = tickets.issue_at(grant(0), &owner, start);
        let used = tickets.issue_at(grant(1), &owner, start);
        assert!(tickets.redeem(used, &owner.key.ticket_proof(used)).is_some());
        let fresh = tickets.issue_at(grant(2), &owner, start + TICKET_LIFETIME / 2);
        tickets.issue_at(grant(3), &owner, start + TICKET_LIFETIME);
        let pending = tickets.pending.lock().unwrap();
        assert!(!pending.grants.contains_key(&old) && pending.grants.contains_key(&fresh));
        assert_eq!((pending.grants.len(), pending.issued[&owner.session].len()), (2, 2));
    }
}
