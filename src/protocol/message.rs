//! The message types of the control and bulk channels. Plain data with serde derives; see the module docs of
//! [`crate::protocol`] for how they are exchanged.

use serde::{Deserialize, Serialize};

use crate::digest::Md5Digest;
use crate::share::Entry;

/// The first frame a client sends on any connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientHello {
    pub protocol_version: u32,
    /// Free text such as `tandem 0.1.0`, for logs.
    pub software: String,
    pub channel: Channel,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    Control,
    Bulk { ticket: Ticket },
}

/// The first frame a server sends on any connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerHello {
    pub protocol_version: u32,
    pub software: String,
}

/// A one-time, short-lived permission to open a bulk channel for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket(pub u64);

/// Frames a client sends on a control channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    Hello(ClientHello),
    Request { id: u64, body: Request },
}

/// Frames a server sends on a control channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    Hello(ServerHello),
    Response {
        id: u64,
        body: Response,
    },
    /// The server is closing this connection, and says why.
    Fatal(ErrorBody),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Every entry below `path` (`""` is the share root), recursively, that passes `filter`.
    List { path: String, filter: ListFilter },
    /// The MD5 of one file.
    Hash { path: String },
    /// The MD5 of every file below `path`, at most `max_depth` levels down (`None`: no limit; `Some(1)`: the
    /// folder's own files).
    HashAll {
        path: String,
        #[serde(default)]
        max_depth: Option<u32>,
    },
    /// A ticket for fetching one file over a bulk channel.
    Download { path: String },
    /// A ticket for sending one file over a bulk channel, to be stored at `path` with this mtime and mode.
    Upload { path: String, size: u64, mtime_ns: i64, mode: u32 },
    /// Creates a folder and any missing parents.
    Mkdir { path: String },
    /// Moves a file or folder to the share's trash.
    Delete { path: String },
    /// Renames within the share; refused if `to` exists.
    Rename { from: String, to: String },
}

impl Request {
    /// A short name for logs, such as `list`.
    pub fn command(&self) -> &'static str {
        match self {
            Request::List { .. } => "list",
            Request::Hash { .. } => "hash",
            Request::HashAll { .. } => "hashall",
            Request::Download { .. } => "download",
            Request::Upload { .. } => "upload",
            Request::Mkdir { .. } => "mkdir",
            Request::Delete { .. } => "delete",
            Request::Rename { .. } => "rename",
        }
    }

    /// The request's arguments, for logs.
    pub fn arguments(&self) -> String {
        match self {
            Request::List { path, filter } => format!("path={path:?} {filter}").trim_end().to_string(),
            Request::HashAll { path, max_depth: Some(depth) } => format!("path={path:?} depth={depth}"),
            Request::Upload { path, size, .. } => format!("path={path:?} size={size}"),
            Request::Rename { from, to } => format!("from={from:?} to={to:?}"),
            Request::Hash { path }
            | Request::HashAll { path, .. }
            | Request::Download { path }
            | Request::Mkdir { path }
            | Request::Delete { path } => format!("path={path:?}"),
        }
    }
}

/// Which entries a listing returns. Every condition that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListFilter {
    /// Only entries modified at or after this time (nanoseconds since the Unix epoch).
    pub modified_from_ns: Option<i64>,
    /// Only entries modified at or before this time (nanoseconds since the Unix epoch).
    pub modified_to_ns: Option<i64>,
    /// Only entries whose name (or whole path, with `match_path`) matches this regular expression.
    pub pattern: Option<String>,
    pub match_path: bool,
    /// How many levels below the path to list: `Some(1)` is the folder's own entries, `None` is everything.
    #[serde(default)]
    pub max_depth: Option<u32>,
}

impl std::fmt::Display for ListFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(from) = self.modified_from_ns {
            parts.push(format!("from={from}"));
        }
        if let Some(to) = self.modified_to_ns {
            parts.push(format!("to={to}"));
        }
        if let Some(pattern) = &self.pattern {
            let key = if self.match_path { "path_regex" } else { "regex" };
            parts.push(format!("{key}={pattern:?}"));
        }
        if let Some(depth) = self.max_depth {
            parts.push(format!("depth={depth}"));
        }
        write!(f, "{}", parts.join(" "))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// One batch of a listing; `more` is false on the last batch.
    Entries {
        entries: Vec<Entry>,
        more: bool,
    },
    /// Permission to fetch one file: open a bulk channel with `ticket`. `entry.md5` is set when the server
    /// already knows it.
    Ticket {
        ticket: Ticket,
        entry: Entry,
    },
    /// A write request (mkdir, delete, rename) is done; `entry` describes the result where there is one.
    Done {
        entry: Option<Entry>,
    },
    Error(ErrorBody),
}

/// The last frame on a bulk channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BulkTrailer {
    /// All bytes were sent; they hash to `md5`.
    Done { size: u64, md5: Md5Digest },
    /// Sending stopped early; the bytes received must be discarded.
    Failed(ErrorBody),
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
}
