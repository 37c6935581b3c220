//! The tandem wire protocol: message types, framing and the MessagePack codec. Sans-IO: nothing here opens a
//! socket or a file, so every part can be tested and fuzzed over plain bytes.
//!
//! # Connections
//!
//! A server listens on one TCP port. Every connection starts with a [`ClientHello`] from the client, answered by a
//! [`ServerHello`]. The hello's [`Channel`] says what the connection is for:
//!
//! - [`Channel::Control`]: requests and responses, as [`ClientFrame`] and [`ServerFrame`];
//! - [`Channel::Bulk`]: the bytes of one file, opened with a one-time [`Ticket`] that a control request handed out.
//!
//! If the versions differ, the server still sends its hello (so the client can name both versions) followed by a
//! [`ServerFrame::Fatal`], and closes the connection.
//!
//! The server's hello goes out before the client has proved anything, so it holds only the protocol version, the
//! challenge nonce and whether a token is required. A control connection then proves the token if asked
//! ([`ClientFrame::Auth`]) and is let in with [`ServerFrame::Welcome`], which names the server's software and the
//! share's journal.
//!
//! # Frames
//!
//! Every message is one frame: a 4-byte big-endian length, then that many bytes of MessagePack (structs encoded as
//! maps, so fields can be added without breaking older peers). A length over [`MAX_FRAME_LEN`] is refused before
//! any buffer is allocated; see [`frame`].
//!
//! # Control channel
//!
//! Each [`ClientFrame::Request`] carries an id chosen by the client. The server answers with one or more
//! [`ServerFrame::Response`] frames echoing that id. Requests run concurrently, so responses to different ids may
//! interleave and arrive in any order. Streaming answers ([`Response::Entries`]) come in batches whose `more` flag
//! is `true` on every batch but the last. Any request may be answered by [`Response::Error`] instead, with an
//! [`ErrorCode`] and a message that names the path or value involved.
//!
//! | request                | answer                                          |
//! |------------------------|-------------------------------------------------|
//! | `List { path, filter }`| `Entries` batches: every entry below `path`     |
//! | `Hash { path }`        | one `Entries` batch with one hashed file        |
//! | `HashAll { path, max_depth }` | `Entries` batches: every file below `path`, hashed |
//! | `Download { path, resume }` | `Ticket`: size, mtime, maybe MD5, a ticket, and the `offset` the bytes start at |
//! | `Upload { path, size, mtime_ns, mode }` | `Ticket` for a bulk channel the client sends on |
//! | `DownloadBatch { paths }`, `UploadBatch { files }` | `Batch`: one ticket, and per file `Ready` or `Refused` |
//! | `DownloadDelta { path, append_to }`, `UploadDelta { file, append_to }` | `Ticket`, as for `Download` and `Upload`; its `offset` grants an append |
//! | `Mkdir`, `Delete { expect }`, `Rename { expect }` | `Done`; deletes go to the share's trash, a rename never replaces |
//! | `Symlink { path, target, expect }` | `Done`; only a target that stays inside the share, what was there to the trash |
//!
//! # Bulk channel
//!
//! A client that holds a ticket opens a second TCP connection and sends `ClientHello` with `Channel::Bulk`. After
//! the server's hello come the file's bytes as chunks: a 4-byte big-endian length (at most [`MAX_CHUNK_LEN`]) and
//! that many bytes. A zero length ends the data, and one last frame follows: a [`BulkTrailer`] with the MD5 of the
//! bytes sent, or an error such as "file changed while it was being read". The receiver trusts nothing until the
//! trailer's MD5 equals its own.
//!
//! A download that resumes names, in `resume`, how many bytes it holds and the size and mtime of the version they
//! came from. If the file is still that version, the ticket's `offset` is that count and the stream (TCP chunks or
//! UDP sequence numbers) starts there; otherwise the offset is 0 and the whole file comes. Either way the trailer's
//! MD5 is the whole file's, so the receiver hashes the bytes it kept, then the ones that arrive.
//!
//! An upload runs the same stream the other way: the client sends the chunks and a trailer with its MD5; the
//! server writes them to a temporary file, checks size and MD5, moves any file it replaces to `.tandem/trash/`,
//! renames the new file into place, and answers with one more `BulkTrailer` frame: its verdict.
//!
//! A batch ticket opens a bulk channel that carries every `Ready` file of the batch, in order, each as the
//! stream above (chunks, end, trailer; for uploads, the server's verdict after each file). A file that fails
//! (changed while read, refused at the rename) ends with a `Failed` trailer or verdict and the next file follows;
//! only a broken stream ends the channel. Per-file costs (a round trip, a connection, a thread) are paid once per
//! batch, so a folder of small files moves at the speed of its bytes.
//!
//! A delta ticket (`DownloadDelta`, `UploadDelta`) opens a bulk channel for one file that the receiving side
//! may already hold an older version of. The receiver first sends a signature of that version as chunks and an
//! end marker (no chunks: nothing worth using). The sender answers with a [`BulkBody`] frame: `Whole`, and the
//! stream above follows; or `Delta`, and the chunks carry an rsync delta against the signed version, and the
//! trailer gives the size and MD5 of the file it rebuilds; or, when the request said `delta_only` and no delta
//! is worth it, `Declined`, and nothing follows. The transfer module's `delta` builds and applies them.
//!
//! A delta request may name, in `append_to`, a version by its length and MD5 ([`Held`]): for a download the
//! client's own, for an upload the server's, which the client's file begins with. If the file the server holds
//! begins with exactly that version (download) or is exactly that version (upload), the ticket's `offset` is its
//! length, and the bulk channel carries the plain stream above from that offset on, as for a resumed download:
//! no signature and no `BulkBody`, chunks of the bytes after the offset, then a trailer counting those bytes and
//! giving the whole file's MD5. The receiver writes a copy of its own first `offset` bytes, then the rest, to a
//! temporary file, and commits it only if that file's MD5 is the trailer's. Otherwise the offset is 0 and the
//! channel is the delta form. Both fields default to none, so an older peer on either side simply gets or grants
//! no append. The transfer module's `append` does this.

pub mod codec;
mod entry;
pub mod frame;
mod message;

pub use entry::{Entry, EntryKind};
pub use message::*;

/// Bumped on any change that an older peer would misread.
pub const PROTOCOL_VERSION: u32 = 3;

/// The largest frame either side accepts: 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The largest data chunk on a bulk channel: 1 MiB.
pub const MAX_CHUNK_LEN: usize = 1024 * 1024;

/// How many entries go in one `Entries` batch, so a listing of 100,000 entries streams in small frames.
pub const ENTRIES_PER_BATCH: usize = 2048;

/// A batch of entries or changes also ends once its names pass this many bytes ([`Entry::weight`]): paths may be
/// 4 KiB long, and a server holds each answer frame whole until its client reads it.
pub const BATCH_BYTES: usize = 256 * 1024;

/// Splits `entries` into batches of at most [`ENTRIES_PER_BATCH`] entries and about [`BATCH_BYTES`].
pub fn batches(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut batches = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for entry in entries {
        bytes += entry.weight();
        batch.push(entry);
        if batch.len() == ENTRIES_PER_BATCH || bytes >= BATCH_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// The most files one `DownloadBatch` or `UploadBatch` may name; larger requests are refused.
pub const MAX_BATCH_FILES: usize = 4096;
