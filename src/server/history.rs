//! `.tandem/history.log`: one tab-separated line per request with time, peer, command, arguments, outcome, bytes
//! and milliseconds, so the owner of a share can see who fetched what.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};

pub struct History {
    /// Appends are single short writes; a std mutex keeps lines whole.
    file: Mutex<File>,
    path: PathBuf,
}

/// One finished request.
pub struct Record<'a> {
    pub peer: &'a str,
    pub command: &'a str,
    pub arguments: &'a str,
    /// `Ok(())` or the error message.
    pub outcome: std::result::Result<(), String>,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl History {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(History { file: Mutex::new(file), path: path.to_path_buf() })
    }

    /// Appends one line. A failure to log is reported but never fails the request.
    pub fn record(&self, record: Record<'_>) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let outcome = match &record.outcome {
            Ok(()) => "ok".to_string(),
            Err(message) => format!("error: {}", message.replace(['\t', '\n'], " ")),
        };
        let line = format!(
            "{time}\t{}\t{}\t{}\t{outcome}\t{}\t{}\n",
            record.peer,
            record.command,
            record.arguments,
            record.bytes,
            record.elapsed.as_millis()
        );
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), "cannot write history: {e}");
        }
    }
}
