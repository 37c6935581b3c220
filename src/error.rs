//! Typed errors for the tandem library.
//!
//! Every variant carries the path, address or value involved, so a message printed as `error: {err}` tells the
//! person what went wrong and where. Errors a server reports to a client travel as [`ErrorBody`] and come back
//! out of the client as [`Error::Remote`]. Only `main.rs` wraps these in `anyhow`.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// A socket operation with a peer failed.
    #[error("{addr}: {source}")]
    Net { addr: String, source: io::Error },

    /// The peer closed the connection before the exchange was complete.
    #[error("{addr}: connection closed {during}")]
    Closed { addr: String, during: &'static str },

    /// The peer did not answer in time.
    #[error("{addr}: no answer for {seconds} s {during}")]
    Timeout { addr: String, seconds: u64, during: &'static str },

    /// The server answered with an error.
    #[error("{}", .0.message)]
    Remote(ErrorBody),

    /// A remote path that the sandbox refuses.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    /// A path that leads through a symbolic link, or names one where a file or folder must be. tandem lists
    /// links and moves them, but never follows one.
    #[error("{path}: {link:?} is a symbolic link, and tandem never follows one")]
    Symlink { path: String, link: String },

    /// A path that leads through something that is not a folder.
    #[error("{path}: {part:?} is not a folder")]
    NotAFolder { path: String, part: String },

    /// A folder a walk found but could not read; the walk goes on without what is in it.
    #[error("{path}: the folder cannot be read: {source}")]
    UnreadableFolder { path: String, source: io::Error },

    /// A path that does not exist in the share.
    #[error("{path}: no such file or folder")]
    NotFound { path: String },

    /// A path that exists but is not a regular file.
    #[error("{path}: not a regular file")]
    NotAFile { path: String },

    /// A file that changed while tandem was reading it; its bytes are not delivered mixed.
    #[error("{path}: changed while it was being read; try again")]
    Changed { path: String },

    /// A length prefix larger than the protocol allows; refused before allocating.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u64 },

    /// Bytes that do not decode as the expected message.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },

    /// The two sides speak different protocol versions.
    #[error("protocol version mismatch: {addr} speaks version {theirs}, this tandem speaks version {ours}")]
    VersionMismatch { addr: String, ours: u32, theirs: u32 },

    /// A user-supplied regular expression that does not compile.
    #[error("invalid regex {pattern:?}: {reason}")]
    BadRegex { pattern: String, reason: String },

    /// A user-supplied time that does not parse.
    #[error("invalid time {value:?}: expected \"YYYY-MM-DD HH:MM:SS\" (local time), \"YYYY-MM-DD\" or RFC 3339")]
    BadTime { value: String },

    /// A time range whose start is after its end.
    #[error("invalid time range: start {start:?} is after end {end:?}")]
    BadRange { start: String, end: String },

    /// Received bytes whose MD5 differs from the sender's.
    #[error("{path}: MD5 mismatch: expected {expected}, received bytes hash to {actual}")]
    Md5Mismatch { path: String, expected: String, actual: String },

    /// A delta from the other side did not rebuild a file.
    #[error("{path}: the delta could not be applied: {reason}")]
    BadDelta { path: String, reason: String },

    /// Received a different number of bytes than announced.
    #[error("{path}: size mismatch: expected {expected} bytes, received {actual}")]
    SizeMismatch { path: String, expected: u64, actual: u64 },

    /// A write to a share served read-only.
    #[error("{path}: the server is read-only")]
    ReadOnly { path: String },

    /// A new name that differs from one already in its folder only by case: one file on Windows and macOS.
    #[error("{path}: {existing:?} is already in that folder, and Windows and macOS cannot tell the two names apart")]
    CaseTwin { path: String, existing: String },

    /// A write whose target already exists.
    #[error("{path}: already exists")]
    Exists { path: String },

    /// A write that expected a state the path no longer has: another change came first.
    #[error("{path}: changed on the other side since it was last seen ({found}); nothing was overwritten")]
    Stale { path: String, found: String },

    /// A write or delete of a path someone else has locked.
    #[error("{path} is locked by {host}")]
    Locked { path: String, host: String },

    /// Something tandem will not do, for safety or by policy: `what` is the refused action with the path, address
    /// or value it concerns, `reason` why and what to do instead.
    #[error("refusing {what}: {reason}")]
    Refused { what: String, reason: String },

    /// A command or feature not available here (in this front end, on this filesystem, over this protocol), with
    /// what to do instead.
    #[error("{0}")]
    NotSupported(String),

    /// A background task or thread that panicked or ended without its result; `what` names its work.
    #[error("{what} failed: {reason}")]
    TaskFailed { what: String, reason: String },

    /// The platform gives no home folder, so there is nowhere to keep `purpose`.
    #[error("no home folder to keep {purpose} in")]
    NoHomeFolder { purpose: &'static str },

    /// An unlock of a path nobody has locked.
    #[error("{path} is not locked")]
    NotLocked { path: String },

    /// A sync that did everything it could except these paths, each already told with its reason.
    #[error("{count} {} left out of this sync (each is told above, with the reason)", paths_were(.count))]
    LeftOut { count: usize },

    /// A local folder a person named that tandem cannot use as asked: missing, or not a folder.
    #[error("{}: {problem}", path.display())]
    UnusableFolder { path: PathBuf, problem: &'static str },

    /// A local file another tandem process holds locked for its own work.
    #[error("{}: {by} is running (this file is locked); try again once it ends", path.display())]
    InUse { path: PathBuf, by: &'static str },

    /// A host name that resolves to no address.
    #[error("{addr}: the name resolves to no address")]
    NoAddress { addr: String },

    /// The filesystem would not tell tandem of changes under a folder.
    #[error("{}: cannot watch for changes: {reason}", path.display())]
    CannotWatch { path: PathBuf, reason: String },

    /// A transfer asked to start past the end of its file.
    #[error("offset {offset} is past the end of {path} ({size} bytes)")]
    BadOffset { path: String, offset: u64, size: u64 },

    /// The local hash cache database failed.
    #[error("database {}: {source}", path.display())]
    Database { path: PathBuf, source: rusqlite::Error },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Wraps a socket error with the peer address it concerns.
    pub fn net(addr: impl ToString, source: io::Error) -> Self {
        Error::Net { addr: addr.to_string(), source }
    }

    /// A background task or thread that panicked or ended early (`reason`, e.g. a join error); `what` names its work.
    pub fn task_failed(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::TaskFailed { what: what.into(), reason: reason.to_string() }
    }

    /// What kind of failure this is, the same for one that happened here and one the server reported, so code
    /// that reacts to a refusal need not ask where it happened.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Remote(body) => body.code,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::InvalidPath { .. }
            | Error::Symlink { .. }
            | Error::NotAFolder { .. }
            | Error::UnusableFolder { .. } => ErrorCode::InvalidPath,
            Error::NotAFile { .. } => ErrorCode::NotAFile,
            Error::BadRegex { .. } | Error::BadTime { .. } | Error::BadRange { .. } | Error::BadOffset { .. } => {
                ErrorCode::BadRequest
            }
            Error::Refused { .. } | Error::NotSupported(_) | Error::NotLocked { .. } => ErrorCode::BadRequest,
            Error::ReadOnly { .. } => ErrorCode::ReadOnly,
            Error::Exists { .. } | Error::CaseTwin { .. } => ErrorCode::Exists,
            Error::Stale { .. } => ErrorCode::Stale,
            Error::Locked { .. } => ErrorCode::Locked,
            Error::FrameTooLarge { .. } | Error::Malformed { .. } => ErrorCode::BadRequest,
            Error::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            Error::Timeout { .. } => ErrorCode::Timeout,
            Error::InUse { .. } => ErrorCode::Busy,
            Error::Changed { .. } | Error::Md5Mismatch { .. } | Error::SizeMismatch { .. } | Error::BadDelta { .. } => {
                ErrorCode::Changed
            }
            // Nothing the request did wrong: this side could not do it.
            Error::Io { .. }
            | Error::UnreadableFolder { .. }
            | Error::Net { .. }
            | Error::Closed { .. }
            | Error::NoAddress { .. }
            | Error::Database { .. }
            | Error::TaskFailed { .. }
            | Error::NoHomeFolder { .. }
            | Error::CannotWatch { .. }
            | Error::LeftOut { .. } => ErrorCode::Io,
        }
    }

    /// The wire form of this error, for a server answering a client.
    pub fn to_body(&self) -> ErrorBody {
        match self {
            Error::Remote(body) => body.clone(),
            _ => ErrorBody { code: self.code(), message: self.to_string() },
        }
    }
}

fn paths_were(count: &usize) -> &'static str {
    if *count == 1 { "path was" } else { "paths were" }
}

/// An error as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// A complete sentence for a person, naming the path or value involved.
    pub message: String,
}

/// What kind of failure an [`ErrorBody`] reports, for programs that react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    NotFound,
    InvalidPath,
    NotAFile,
    BadRequest,
    /// The file changed while it was being read.
    Changed,
    Io,
    Busy,
    Timeout,
    VersionMismatch,
    /// A ticket that is unknown, used or expired.
    BadTicket,
    /// The server refuses all writes.
    ReadOnly,
    /// The target of a write already exists.
    Exists,
    /// The path no longer holds what the write expected: someone changed it first.
    Stale,
    /// Another client holds a lock on the path.
    Locked,
    /// The client did not prove it holds the server's token.
    AuthFailed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_the_same_here_and_from_the_server() {
        let here = Error::Stale { path: "a.txt".into(), found: "a newer version".into() };
        let there = Error::Remote(here.to_body());
        assert_eq!(here.code(), ErrorCode::Stale);
        assert_eq!(there.code(), here.code());
        assert_eq!(there.to_body(), here.to_body(), "a remote body goes on unchanged");
        let plain = Error::Remote(ErrorBody { code: ErrorCode::Stale, message: "stale".into() });
        assert_eq!(plain.code(), ErrorCode::Stale);
    }

    #[test]
    fn each_new_variant_has_its_code_and_names_its_value() {
        let cases = [
            (
                Error::Refused { what: "to sync /srv/a".into(), reason: "it is empty".into() },
                ErrorCode::BadRequest,
                "/srv/a",
            ),
            (Error::NotSupported("`open` runs the terminal UI".into()), ErrorCode::BadRequest, "`open`"),
            (Error::task_failed("the upload of /tmp/x", "task 3 panicked"), ErrorCode::Io, "/tmp/x"),
            (Error::NoHomeFolder { purpose: "the client id" }, ErrorCode::Io, "the client id"),
            (Error::NotLocked { path: "docs/a.txt".into() }, ErrorCode::BadRequest, "docs/a.txt"),
            (Error::LeftOut { count: 3 }, ErrorCode::Io, "3 paths were"),
            (Error::LeftOut { count: 1 }, ErrorCode::Io, "1 path was"),
            (
                Error::UnusableFolder { path: "/tmp/f".into(), problem: "not a folder" },
                ErrorCode::InvalidPath,
                "/tmp/f",
            ),
            (Error::InUse { path: "/d/.tandem/partial/f".into(), by: "a download" }, ErrorCode::Busy, "/d/.tandem"),
            (Error::NoAddress { addr: "nowhere.invalid:7878".into() }, ErrorCode::Io, "nowhere.invalid:7878"),
            (Error::CannotWatch { path: "/home/me".into(), reason: "too many".into() }, ErrorCode::Io, "/home/me"),
            (Error::BadOffset { path: "a.bin".into(), offset: 9, size: 4 }, ErrorCode::BadRequest, "offset 9"),
        ];
        for (error, code, named) in cases {
            assert_eq!(error.code(), code, "{error}");
            assert!(error.to_string().contains(named), "{error:?} should name {named:?}: {error}");
            let body = error.to_body();
            assert_eq!((body.code, body.message), (code, error.to_string()));
        }
    }

    #[test]
    fn messages_keep_their_wording() {
        let refused = Error::Refused { what: "to serve on 0.0.0.0:1 without a token".into(), reason: "why".into() };
        assert_eq!(refused.to_string(), "refusing to serve on 0.0.0.0:1 without a token: why");
        let failed = Error::task_failed("the sync of /x", "task 7 panicked");
        assert_eq!(failed.to_string(), "the sync of /x failed: task 7 panicked");
        let left_out = Error::LeftOut { count: 2 };
        assert_eq!(left_out.to_string(), "2 paths were left out of this sync (each is told above, with the reason)");
        let past = Error::BadOffset { path: "a.bin".into(), offset: 9, size: 4 };
        assert_eq!(past.to_string(), "offset 9 is past the end of a.bin (4 bytes)");
    }
}
