//! The client side of the protocol: a control [`Connection`] that multiplexes requests, typed helpers for each
//! request, the download and upload drivers, and
//! [`fetch`], which downloads through the download cache.

mod append;
mod backoff;
mod batch;
mod connection;
mod delta;
mod download;
mod fetch;
pub mod identity;
mod partial;
pub mod strategy;
mod upload;

use std::time::Duration;

pub use backoff::Backoff;
pub use batch::{DownloadJob, UploadJob, download_batch, upload_batch};
pub use connection::{Connection, Credentials, Remote, Responses};
pub use delta::{download_delta_only, download_delta_to, upload_delta};
pub use download::{BeforeCommit, DownloadReport, UdpOptions, download_tcp, download_tcp_to, download_udp};
pub use fetch::{CacheOutcome, Via, fetch};
pub use upload::{UploadReport, upload_expecting, upload_tcp};

/// How long a connection attempt or a hello may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub use crate::transfer::TRANSFER_TIMEOUT;
