//! The client side of the protocol: a control [`Connection`] that multiplexes requests, typed helpers for each
//! request, and the download and upload drivers.

mod batch;
mod connection;
mod download;
pub mod identity;
mod partial;
mod upload;

use std::time::Duration;

pub use batch::{DownloadJob, UploadJob, download_batch, upload_batch};
pub use connection::{Connection, Credentials, Remote, Responses};
pub use download::{BeforeCommit, DownloadReport, UdpOptions, download_tcp, download_tcp_to, download_udp};
pub use upload::{UploadReport, upload_expecting, upload_tcp};

/// How long a connection attempt or a hello may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a transfer may go without receiving a byte.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
