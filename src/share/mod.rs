//! The served folder: the path sandbox every remote path goes through, the directory walk, entry metadata,
//! atomic writes and the trash.
//!
//! A [`Share`] is a canonical root directory. [`Share::resolve`] is the one place a path from the network becomes
//! a filesystem path; nothing else in the server joins remote strings onto the root.

mod atomic;
mod entry;
pub mod events;
mod filter;
mod sandbox;
mod trash;
mod walk;

pub use atomic::{
    AtomicFile, GROUP_BYTES, GROUP_FILES, WRITEBACK_STEP, is_temp_name, remove_stale_temps, start_writeback,
    sync_renamed, sync_staged,
};
pub use entry::{
    Entry, EntryKind, FileStamp, STATE_DIR, is_being_written, is_being_written_at, permission_bits, system_time_to_ns,
};
pub use filter::{EntryFilter, compile_pattern};
pub use sandbox::{Resolved, Share, normalize};
pub use trash::move_to_trash;
pub use walk::Walk;
