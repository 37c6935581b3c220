//! Running blocking filesystem work (walks, hashing, sorting) off the async threads.

use crate::error::{Error, Result};

/// Runs `work` on tokio's blocking pool; a panic in it becomes an error instead of taking the caller down.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Error::io("<worker>", std::io::Error::other(format!("worker failed: {e}")))))
}
