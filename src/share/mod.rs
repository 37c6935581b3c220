//! The served folder: the path sandbox every remote path goes through, the directory walk, entry metadata,
//! atomic writes and the trash.
//!
//! A [`Share`] is an open handle of a root folder. A path from the network is first checked as text
//! ([`normalize`]), then every operation on it is made beneath that handle, one name at a time, following no
//! symbolic link; nothing in the server joins a remote string onto the root's path and opens the result.

mod atomic;
mod entry;
pub mod events;
mod filter;
mod jail;
mod sandbox;
mod walk;

pub use atomic::{
    AtomicFile, Destination, GROUP_BYTES, GROUP_FILES, Renamed, WRITEBACK_STEP, is_temp_name, remove_stale_temps,
    start_writeback, sync_renamed, sync_staged,
};
pub use entry::{Meta, STATE_DIR, is_being_written, is_being_written_at, permission_bits};
// Where most of the crate reads them: a share's entries and stamps.
pub use crate::digest::FileStamp;
pub use crate::protocol::{Entry, EntryKind};
pub use crate::timefmt::system_time_to_ns;
pub use filter::{EntryFilter, compile_pattern};
pub use jail::{Share, TempName};
pub use sandbox::{MAX_LINK_TARGET, check_portable, link_stays_inside, normalize};
pub use walk::Walk;
