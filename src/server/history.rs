//! `.tandem/history.log`: one tab-separated line per request with time, peer, command, arguments, outcome, bytes
//! and milliseconds, so the owner of a share can see who fetched what.
//!
//! Lines about connections that never got in (failed authentications, unknown tickets) cost an attacker nothing
//! to cause, so they are rate-limited per peer address and server-wide ([`History::record_failure`]); what is
//! left out is counted in one "N similar lines suppressed" line. The log rotates by size: at
//! [`MAX_LOG_BYTES`] it becomes `history.log.1` (the older ones `.2` and `.3`) and a new one starts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The size at which the log rotates.
pub const MAX_LOG_BYTES: u64 = 16 << 20;
/// Rotated logs kept beside the current one.
pub const KEPT_LOGS: usize = 3;
/// Failure lines one peer address may cause per second; more are counted, not written.
const FAILURES_PER_ADDRESS_PER_SECOND: u32 = 2;
/// Failure lines all peers together may cause per second.
const FAILURES_PER_SECOND: u32 = 20;

pub struct History {
    /// Appends are single short writes; a std mutex keeps lines whole.
    inner: Mutex<Inner>,
    path: PathBuf,
    max_bytes: u64,
}

struct Inner {
    file: File,
    /// Bytes in the current file.
    size: u64,
    failures: FailureWindow,
}

/// Failure lines written in the current second, per address and in total, and how many were left out.
struct FailureWindow {
    started: Instant,
    total: u32,
    by_address: HashMap<String, u32>,
    suppressed: u64,
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
        Self::open_rotating_at(path, MAX_LOG_BYTES)
    }

    /// [`History::open`], rotating at `max_bytes` instead of [`MAX_LOG_BYTES`].
    pub fn open_rotating_at(path: &Path, max_bytes: u64) -> Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let failures = FailureWindow { started: Instant::now(), total: 0, by_address: HashMap::new(), suppressed: 0 };
        Ok(History { inner: Mutex::new(Inner { file, size, failures }), path: path.to_path_buf(), max_bytes })
    }

    /// Appends one line. A failure to log is reported but never fails the request.
    pub fn record(&self, record: Record<'_>) {
        let line = line(&record);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_suppressed(&mut inner, Instant::now());
        self.append(&mut inner, &line);
    }

    /// Appends a line about a connection that never got in, unless its address or the server has written too
    /// many such lines this second; those are counted and summed up in one line later.
    pub fn record_failure(&self, record: Record<'_>) {
        let now = Instant::now();
        let address = record.peer.rsplit_once(':').map_or(record.peer, |(ip, _)| ip);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_suppressed(&mut inner, now);
        let window = &mut inner.failures;
        let by_address = window.by_address.get(address).copied().unwrap_or(0);
        if window.total >= FAILURES_PER_SECOND || by_address >= FAILURES_PER_ADDRESS_PER_SECOND {
            window.suppressed += 1;
            return;
        }
        window.total += 1;
        window.by_address.insert(address.to_string(), by_address + 1);
        self.append(&mut inner, &line(&record));
    }

    /// Once a second has passed, starts a new window and writes how many lines the last ones left out.
    fn flush_suppressed(&self, inner: &mut Inner, now: Instant) {
        if now.duration_since(inner.failures.started) >= Duration::from_secs(1) {
            self.write_suppressed(inner, now);
        }
    }

    fn write_suppressed(&self, inner: &mut Inner, now: Instant) {
        let suppressed = std::mem::take(&mut inner.failures.suppressed);
        inner.failures = FailureWindow { started: now, total: 0, by_address: HashMap::new(), suppressed: 0 };
        if suppressed > 0 {
            let message = format!("{suppressed} similar lines suppressed");
            let summary = Record {
                peer: "-",
                command: "suppressed",
                arguments: &format!("count={suppressed}"),
                outcome: Err(message),
                bytes: 0,
                elapsed: Duration::ZERO,
            };
            self.append(inner, &line(&summary));
        }
    }

    fn append(&self, inner: &mut Inner, line: &str) {
        if inner.size > 0 && inner.size + line.len() as u64 > self.max_bytes {
            self.rotate(inner);
        }
        match inner.file.write_all(line.as_bytes()) {
            Ok(()) => inner.size += line.len() as u64,
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot write history: {e}"),
        }
    }

    /// Moves `history.log` to `history.log.1` (and each older one a number up, the oldest dropped) and starts a
    /// new one. On failure the current file goes on growing, and the failure is reported.
    fn rotate(&self, inner: &mut Inner) {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..KEPT_LOGS).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let reopened = std::fs::rename(&self.path, numbered(1))
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&self.path));
        match reopened {
            Ok(file) => (inner.file, inner.size) = (file, 0),
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot rotate history: {e}"),
        }
    }
}

impl Drop for History {
    /// The lines left out since the last summary are counted too when the server stops.
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.write_suppressed(&mut inner, Instant::now());
    }
}

fn line(record: &Record<'_>) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let outcome = match &record.outcome {
        Ok(()) => "ok".to_string(),
        Err(message) => format!("error: {}", clipped(message).replace(['\t', '\n'], " ")),
    };
    format!(
        "{time}\t{}\t{}\t{}\t{outcome}\t{}\t{}\n",
        record.peer,
        record.command,
        clipped(record.arguments).replace(['\t', '\n'], " "),
        record.bytes,
        record.elapsed.as_millis()
    )
}

/// Longest field a line keeps: a client's arguments (a path, a pattern) or an error can be megabytes long.
const MAX_FIELD: usize = 2048;

/// `text`, cut at [`MAX_FIELD`] bytes with a note of how long it was.
fn clipped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_FIELD {
        return text.into();
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(peer: &str) -> Record<'_> {
        let outcome = Err("authentication failed".to_string());
        Record { peer, command: "auth", arguments: "", outcome, bytes: 0, elapsed: Duration::ZERO }
    }

    #[test]
    fn failure_lines_are_rate_limited_per_address_and_summed_up() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(&dir.path().join("history.log")).unwrap();
        for _ in 0..100 {
            history.record_failure(failure("10.0.0.1:5000"));
        }
        history.record_failure(failure("10.0.0.2:5000"));
        // A second later, the next line brings the summary with it.
        history.inner.lock().unwrap().failures.started -= Duration::from_secs(1);
        history.record(Record { outcome: Ok(()), ..failure("10.0.0.3:1") });
        let text = std::fs::read_to_string(dir.path().join("history.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines.iter().filter(|l| l.contains("\t10.0.0.1:5000\t")).count(), 2);
        assert!(lines[3].contains("error: 98 similar lines suppressed"), "{}", lines[3]);
        // Lines left out just before the server stops are summed up as it does.
        history.record_failure(failure("10.0.0.1:5000"));
        history.record_failure(failure("10.0.0.1:5000"));
        history.record_failure(failure("10.0.0.1:5000"));
        drop(history);
        let text = std::fs::read_to_string(dir.path().join("history.log")).unwrap();
        assert!(text.lines().last().unwrap().contains("error: 1 similar lines suppressed"), "{text}");
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_a_few() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.log");
        let history = History::open_rotating_at(&path, 1000).unwrap();
        for _ in 0..200 {
            history.record(Record { outcome: Ok(()), ..failure("10.0.0.1:5000") });
        }
        for name in ["history.log", "history.log.1", "history.log.2", "history.log.3"] {
            let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(size > 0 && size <= 1000, "{name} holds {size} bytes");
        }
        assert!(!dir.path().join("history.log.4").exists());
    }

    #[test]
    fn a_huge_argument_or_error_is_clipped_and_a_line_stays_one_line() {
        let (huge, newline) = ("x".repeat(1_000_000), "a\tb\nc".to_string());
        let record = Record {
            peer: "127.0.0.1:1",
            command: "list",
            arguments: &huge,
            outcome: Err(newline),
            bytes: 0,
            elapsed: Duration::ZERO,
        };
        let written = line(&record);
        assert!(written.len() < 3 * MAX_FIELD, "{} bytes", written.len());
        assert!(written.contains("… (1000000 bytes)"));
        assert_eq!(written.matches('\n').count(), 1, "{written}");
        assert!(written.contains("error: a b c"));
    }
}
