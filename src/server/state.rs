//! State shared by every connection of one server.

use crate::digest::HashCache;
use crate::share::Share;

use super::auth_limit::AuthFailures;
use super::journal::Journal;
use super::limits::PerAddress;
use super::path_locks::PathLocks;
use super::{History, ServerConfig, Tickets};

pub struct Shared {
    /// The served folder, opened as a jail: every filesystem operation goes through it.
    pub share: std::sync::Arc<Share>,
    pub hashes: HashCache,
    pub journal: Journal,
    pub path_locks: PathLocks,
    /// Held while a refresh re-checks and records what it observed; see `observe::refresh`.
    pub refresh_lock: std::sync::Mutex<()>,
    pub history: History,
    pub tickets: Tickets,
    /// Control sessions open per client address.
    pub sessions: std::sync::Arc<PerAddress>,
    /// Connections accepted that have not yet said hello (and proved the token), per address.
    pub handshakes: std::sync::Arc<super::handshakes::Handshakes>,
    /// Of those, the ones that sent nothing within [`super::HELLO_GRACE`], per address.
    pub silent: std::sync::Arc<PerAddress>,
    /// Bulk connections open per address, running or waiting for a transfer slot.
    pub bulk: std::sync::Arc<PerAddress>,
    /// Bulk transfers running, TCP and UDP, per address.
    pub transfers: std::sync::Arc<PerAddress>,
    /// Listings and whole-tree hashes running, per address.
    pub listings: std::sync::Arc<PerAddress>,
    /// Recent failed authentications per address.
    pub auth_failures: AuthFailures,
    /// Proofs of the token being checked, per address: one at a time.
    pub auth_turns: std::sync::Arc<PerAddress>,
    pub config: ServerConfig,
    /// Delta transfers running at once; each holds up to two versions of a file in memory.
    pub delta_slots: std::sync::Arc<tokio::sync::Semaphore>,
}
