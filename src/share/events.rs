//! Which file-watcher events can mean that content changed. inotify also reports every open and read, and
//! tandem itself opens files and folders all the time (scanning, hashing, fsyncing a folder); counting those as
//! changes would make each scan wake the next one, forever.

use notify::EventKind;
use notify::event::{AccessKind, AccessMode};

pub fn is_change(kind: &EventKind) -> bool {
    match kind {
        // A file closed after writing is the one access that matters: the writer is done.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    #[test]
    fn opens_and_reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
    }
}
