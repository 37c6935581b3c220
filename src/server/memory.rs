//! Gives memory freed by closed sessions back to the system. glibc keeps freed heap in its arenas; after a burst
//! of sessions that queued large answers, the server would otherwise stay at its peak size for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A burst of sessions closing together is trimmed once, this long after the first of them.
const TRIM_DELAY: Duration = Duration::from_millis(200);

/// Whether a trim is already scheduled.
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Returns freed heap to the system soon, once for every burst of calls. Must run inside the tokio runtime.
pub fn give_back_freed() {
    if SCHEDULED.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(TRIM_DELAY).await;
        // Cleared first: a session that closes while the trim runs schedules another.
        SCHEDULED.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(trim).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
