//! Two-way sync of a local folder with a server's share, hub and spoke like Dropbox.
//!
//! - [`plan`]: the pure three-way planner: (base, local, remote) per path → actions.
//! - `moves`: turning a deletion plus a transfer of the same bytes into one move, so renames cost no bytes.
//! - [`state`]: the folder's state database: the base, a mirror of the server's journal, its sequence number.
//! - [`scan`]: reading the local folder, hashing only where a decision needs the bytes.
//! - [`engine`]: one pass: pull the journal, scan, plan, act, with every write checked against what was planned.
//! - `transfer`: how a pass moves files: in batches, and a file the other side holds an older version of as a delta.
//! - [`watch`]: the local file watcher.
//! - [`run`]: the long-running task that ties them to pushes, the watcher, a timer and reconnects.
//! - [`log`]: the per-folder action log.

pub mod engine;
pub mod log;
mod moves;
pub mod plan;
pub mod run;
pub mod scan;
pub mod state;
mod transfer;
pub mod watch;

pub use engine::{Engine, SyncSummary};
pub use run::{SyncConfig, SyncEvent, run};
