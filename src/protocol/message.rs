//! The message types of the control and bulk channels. Plain data with serde derives; see the module docs of
//! [`crate::protocol`] for how they are exchanged.

use serde::{Deserialize, Serialize};

use super::Entry;
pub use crate::auth::Ticket;
use crate::auth::{Nonce, Proof, TicketProof};
use crate::digest::Md5Digest;
pub use crate::error::{ErrorBody, ErrorCode};

/// The first frame a client sends on any connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientHello {
    pub protocol_version: u32,
    /// Free text such as `tandem 0.1.0`, for logs.
    pub software: String,
    pub channel: Channel,
    /// Who is connecting: needed to take locks and to write past one's own locks.
    #[serde(default)]
    pub client: Option<ClientIdentity>,
    /// A fresh random value; see [`crate::auth`].
    #[serde(default)]
    pub nonce: Option<Nonce>,
}

/// A client's lasting identity: a random id made on first use, and the host name people see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientIdentity {
    pub id: String,
    pub host: String,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    Control,
    /// Presents a ticket, with the proof that this client's control session is the one it was issued to.
    Bulk {
        ticket: Ticket,
        proof: TicketProof,
    },
}

/// The first frame a server sends on any connection. It goes out before the client has proved anything, so it
/// carries only what the client needs to authenticate: nothing about the share or the software.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerHello {
    pub protocol_version: u32,
    /// Always empty since protocol version 2 (the software is named in [`ServerWelcome`]); still sent so that a
    /// client of version 1, which requires it, can read the hello and report the version mismatch clearly.
    #[serde(default)]
    pub software: String,
    /// A fresh random value: the challenge a client with a token answers; see [`crate::auth`].
    #[serde(default)]
    pub nonce: Option<Nonce>,
    /// Whether a control connection must prove it holds the server's token ([`ClientFrame::Auth`]) before any
    /// request.
    #[serde(default)]
    pub auth: bool,
}

/// What a control connection learns about the server once it is in (after the token's proof, if one is asked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerWelcome {
    /// Free text such as `tandem 0.1.0`.
    pub software: String,
    /// A random id of the share's journal, made when the journal was. Sync clients keep their state per journal:
    /// a share whose `.tandem` was wiped, or another server at the same address, is a new journal to them.
    #[serde(default)]
    pub journal: Option<String>,
}

/// Frames a client sends on a control channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    Hello(ClientHello),
    /// The answer to the server's challenge, when [`ServerHello::auth`] asks for one.
    Auth {
        proof: Proof,
    },
    Request {
        id: u64,
        body: Request,
    },
}

/// Frames a server sends on a control channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    Hello(ServerHello),
    /// The client is in (its [`ClientFrame::Auth`] proof was right, or none was asked); requests may follow.
    Welcome(ServerWelcome),
    Response {
        id: u64,
        body: Response,
    },
    /// The server is closing this connection, and says why.
    Fatal(ErrorBody),
    /// Pushed to subscribed clients: the share's journal has reached sequence number `seq`.
    Changed {
        seq: u64,
    },
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
    /// A ticket for fetching one file over a bulk channel. With `resume`, the client holds the first bytes of
    /// that version already and asks for the rest; [`Response::Ticket`]'s `offset` says what it gets.
    Download {
        path: String,
        #[serde(default)]
        resume: Option<ResumeFrom>,
    },
    /// A ticket for sending one file over a bulk channel, to be stored at `path` with this mtime and mode.
    /// With `expect`, refused unless the path still holds what the client last saw.
    Upload {
        path: String,
        size: u64,
        mtime_ns: i64,
        mode: u32,
        #[serde(default)]
        expect: Option<Expect>,
    },
    /// Tickets for many files at once, answered by [`Response::Batch`]: one bulk channel then carries every
    /// file the server accepted, one after another. Sync uses it so that a file costs no round trip of its own.
    DownloadBatch { paths: Vec<String> },
    /// The upload form of [`Request::DownloadBatch`]; each file is checked as an [`Request::Upload`] would be.
    UploadBatch { files: Vec<UploadItem> },
    /// A [`Request::Download`] over a file the client already holds an older version of. The bulk channel
    /// starts with the client's signature of that version, and the server answers with a [`BulkBody`]: a delta
    /// against it, or the whole file when that is cheaper; with `delta_only`, nothing at all
    /// ([`BulkBody::Declined`]) rather than the whole file.
    ///
    /// With `append_to` (the client's version), if the server's file begins with exactly those bytes, the
    /// ticket's `offset` is their length and the bulk channel is a plain stream of the rest of the file, as for
    /// a resumed download: no signature, no [`BulkBody`]. Otherwise the offset is 0 and the channel is as above.
    DownloadDelta {
        path: String,
        #[serde(default)]
        delta_only: bool,
        #[serde(default)]
        append_to: Option<Held>,
    },
    /// A [`Request::Upload`] over a file the server may hold an older version of. The bulk channel starts with
    /// the server's signature of that version (empty when it has none worth using), and the client answers with
    /// a [`BulkBody`] and then the delta or the whole file.
    ///
    /// With `append_to` (the server's version, which the client's file begins with), if the server still holds
    /// exactly that, the ticket's `offset` is its length and the client sends only the rest of the file, as a
    /// plain stream with no signature before it and no [`BulkBody`]; its trailer counts the bytes sent and gives
    /// the whole file's MD5. Otherwise the offset is 0 and the channel is as above.
    UploadDelta {
        file: UploadItem,
        #[serde(default)]
        append_to: Option<Held>,
    },
    /// Creates a folder and any missing parents.
    Mkdir { path: String },
    /// Moves a file or folder to the share's trash; with `expect`, only if it still holds what the client saw.
    Delete {
        path: String,
        #[serde(default)]
        expect: Option<Expect>,
    },
    /// Renames within the share; refused if `to` exists, and with `expect`, unless `from` still holds what the
    /// client saw (sync moving a file it saw renamed on its side).
    Rename {
        from: String,
        to: String,
        #[serde(default)]
        expect: Option<Expect>,
    },
    /// Makes `path` a symbolic link to `target`, which must stay inside the share; what was there goes to the trash.
    /// With `expect`, only if `path` still holds what the client saw.
    Symlink {
        path: String,
        target: String,
        #[serde(default)]
        expect: Option<Expect>,
    },
    /// Every journal change after sequence number `since`, oldest first, in batches.
    Changes { since: u64 },
    /// Asks for a [`ServerFrame::Changed`] push whenever the journal moves on.
    Subscribe,
    /// Locks `path` for this client: other clients' writes and deletes of it are refused.
    Lock { path: String },
    /// Releases a lock; `force` releases someone else's.
    Unlock { path: String, force: bool },
}

/// Where an interrupted download stopped: the client holds bytes `[0, offset)` of the version of the file that
/// had this size and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeFrom {
    pub offset: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A version of a file that one side holds, named so the other side can tell whether its own file begins with
/// it: an append ([`Request::DownloadDelta`], [`Request::UploadDelta`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub size: u64,
    pub md5: Md5Digest,
}

/// One file of an [`Request::UploadBatch`]: the fields of an [`Request::Upload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadItem {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// The server's answer for one file of a batch, in the order the request named them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BatchItem {
    /// The file travels on the batch's bulk channel: its entry (with the MD5 when the server knows it) and
    /// permission bits, as a [`Response::Ticket`] would give them.
    Ready { entry: Entry, mode: Option<u32> },
    /// The file does not travel, and why.
    Refused(ErrorBody),
}

/// What a write expects to find at its path, so that a change the client has not seen yet is never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    Absent,
    File {
        md5: Md5Digest,
    },
    EmptyDir,
    /// A symbolic link whose target text has this MD5.
    Link {
        md5: Md5Digest,
    },
}

/// One entry of the share's journal: the state of `path` as of sequence number `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub path: String,
    /// The file or folder now at `path` (files with their MD5); `None` once it is deleted.
    pub entry: Option<Entry>,
    /// Host name of the client whose write made this change; `None` for changes made on the server's own disk.
    #[serde(default)]
    pub author: Option<String>,
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
            Request::DownloadBatch { .. } => "download-batch",
            Request::UploadBatch { .. } => "upload-batch",
            Request::DownloadDelta { .. } => "download-delta",
            Request::UploadDelta { .. } => "upload-delta",
            Request::Mkdir { .. } => "mkdir",
            Request::Delete { .. } => "delete",
            Request::Rename { .. } => "rename",
            Request::Symlink { .. } => "symlink",
            Request::Changes { .. } => "changes",
            Request::Subscribe => "subscribe",
            Request::Lock { .. } => "lock",
            Request::Unlock { .. } => "unlock",
        }
    }

    /// The request's arguments, for logs.
    pub fn arguments(&self) -> String {
        match self {
            Request::List { path, filter } => format!("path={path:?} {filter}").trim_end().to_string(),
            Request::HashAll { path, max_depth: Some(depth) } => format!("path={path:?} depth={depth}"),
            Request::Upload { path, size, .. }
            | Request::UploadDelta { file: UploadItem { path, size, .. }, append_to: None } => {
                format!("path={path:?} size={size}")
            }
            Request::UploadDelta { file: UploadItem { path, size, .. }, append_to: Some(held) } => {
                format!("path={path:?} size={size} append_to={}", held.size)
            }
            Request::DownloadDelta { path, append_to: Some(held), .. } => {
                format!("path={path:?} append_to={}", held.size)
            }
            Request::Rename { from, to, .. } => format!("from={from:?} to={to:?}"),
            Request::Symlink { path, target, .. } => format!("path={path:?} target={target:?}"),
            Request::Download { path, resume: Some(resume) } => format!("path={path:?} resume_from={}", resume.offset),
            Request::Changes { since } => format!("since={since}"),
            Request::DownloadBatch { paths } => format!("files={}", paths.len()),
            Request::UploadBatch { files } => {
                format!("files={} size={}", files.len(), files.iter().map(|f| f.size).sum::<u64>())
            }
            Request::Subscribe => String::new(),
            Request::Unlock { path, force: true } => format!("path={path:?} force"),
            Request::Hash { path }
            | Request::HashAll { path, .. }
            | Request::Download { path, resume: None }
            | Request::DownloadDelta { path, .. }
            | Request::Mkdir { path }
            | Request::Delete { path, .. }
            | Request::Lock { path }
            | Request::Unlock { path, .. } => format!("path={path:?}"),
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
        /// The file's permission bits (`0o755`), so a download can keep them.
        #[serde(default)]
        mode: Option<u32>,
        /// Where the bulk stream starts in the file: the `resume` offset the download asked for if the file is
        /// still that version, else 0 (the whole file).
        #[serde(default)]
        offset: u64,
    },
    /// Permission to open one bulk channel for a batch: one item per file requested, in order.
    Batch {
        ticket: Ticket,
        items: Vec<BatchItem>,
    },
    /// A write request (mkdir, delete, rename) is done; `entry` describes the result where there is one.
    Done {
        entry: Option<Entry>,
    },
    /// One batch of journal changes; `seq` is the journal's latest sequence number, `more` is false on the last.
    Changes {
        changes: Vec<Change>,
        seq: u64,
        more: bool,
    },
    Error(ErrorBody),
}

/// The last frame on a bulk channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BulkTrailer {
    /// All bytes were sent: `size` of them on this stream (after the ticket's offset, if any), and the whole
    /// file hashes to `md5`.
    Done { size: u64, md5: Md5Digest },
    /// Sending stopped early; the bytes received must be discarded.
    Failed(ErrorBody),
}

/// How one file travels on a delta bulk channel ([`Request::DownloadDelta`], [`Request::UploadDelta`]): sent
/// just before its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkBody {
    /// The whole file follows, as on any bulk channel.
    Whole,
    /// One chunked delta against the receiver's signed version follows, then the trailer with the rebuilt
    /// file's size and MD5.
    Delta,
    /// No delta was worth sending and the client asked for nothing else: nothing follows.
    Declined,
}
