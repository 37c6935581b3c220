//! In-process exclusion per path: a write holds its path from the moment it checks what is there until the
//! journal has recorded the result, so two uploads of one path never interleave their check, trash and rename,
//! and the journal never records them out of order. (Readers need no lock: every write ends in an atomic rename,
//! so a download opens either the old file or the new one, never a half-written one.)

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct PathLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

/// Holds a set of paths until dropped.
pub struct PathGuard<'a> {
    locks: &'a PathLocks,
    paths: Vec<String>,
}

impl PathLocks {
    /// Waits until none of `paths` is held, then holds them all. Blocking; call from a blocking thread.
    pub fn hold<'a>(&'a self, paths: &[&str]) -> PathGuard<'a> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while paths.iter().any(|p| held.contains(*p)) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        held.extend(paths.iter().cloned());
        PathGuard { locks: self, paths }
    }

    /// Whether a write holds `path` right now.
    pub fn is_held(&self, path: &str) -> bool {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).contains(path)
    }
}

impl Drop for PathGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        for path in &self.paths {
            held.remove(path);
        }
        drop(held);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn holders_of_one_path_take_turns() {
        let locks = Arc::new(PathLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _guard = locks.hold(&["a.txt"]);
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        let _other = locks.hold(&["a.txt", "b.txt"]);
        assert!(locks.is_held("b.txt") && !locks.is_held("c.txt"));
    }
}
