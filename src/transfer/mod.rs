//! Moving file bytes between machines, separate from the control connection. [`tcp`] is the bulk stream over a
//! second TCP connection; [`udp`] is tandem's own reliable UDP protocol. Both receivers hand bytes to
//! [`sink`], which writes and hashes them on their own threads. [`delta`] and [`tcp_delta`] send only the changed
//! parts of a file the receiver holds an older version of, and [`append`] only the bytes added to the end of one.
//! Every transfer ends with an MD5 check; nothing unverified reaches the destination.

pub mod append;
pub mod delta;
pub mod sink;
pub mod tcp;
pub mod tcp_delta;
pub mod udp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which way a file's bytes travel: the bulk TCP stream, or tandem's reliable UDP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// How long a transfer may go without receiving a byte.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes moved so far by a running transfer, and its total; cheap to share with a progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<[AtomicU64; 2]>);

impl Progress {
    pub fn set(&self, bytes: u64) {
        self.0[0].store(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }

    pub fn set_total(&self, bytes: u64) {
        self.0[1].store(bytes, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.0[1].load(Ordering::Relaxed)
    }
}
