//! State shared by every connection of one server.

use crate::digest::HashCache;
use crate::share::Share;

use super::journal::Journal;
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
    pub sessions: std::sync::Arc<super::limits::SessionsPerAddress>,
    pub config: ServerConfig,
    /// Delta transfers running at once; each holds up to two versions of a file in memory.
    pub delta_slots: std::sync::Arc<tokio::sync::Semaphore>,
}
