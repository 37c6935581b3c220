//! The delta form of a bulk connection, for one file ([`crate::protocol::Request::DownloadDelta`] and
//! [`crate::protocol::Request::UploadDelta`]). For a download the client's signature arrives first and the file
//! goes out as a delta against it when that is smaller; for an upload the server signs the version it holds and
//! rebuilds the new one from the client's delta; an upload that appends to the version the server holds
//! ([`super::upload::handle_delta`]) sends only the bytes after it. Everything else (the change check, the MD5 check, the trash,
//! the atomic rename, the verdict) is the whole-file path's, in [`super::bulk`].

use std::net::TcpStream as StdTcpStream;

use super::Shared;
use super::bulk::receive_whole;
use super::tickets::{PendingDownload, PendingUpload};
use crate::error::{Error, Result};
use crate::protocol::{BulkBody, BulkTrailer, Held};
use crate::share::AtomicFile;
use crate::transfer::sink::Prefix;
use crate::transfer::tcp::{self, FileFailed, Received, Sent};
use crate::transfer::{Progress, append, delta, tcp_delta};

/// Reads the client's signature, then sends the file as a delta against it or whole. Without a delta slot
/// (`as_delta` false) the signature is read and dropped, and the file goes whole.
pub(super) fn send(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    download: &PendingDownload,
    (delta_only, as_delta): (bool, bool),
) -> Result<Sent> {
    let signature = tcp::read_blob(stream, peer, "signature", delta::MAX_SIGNATURE_LEN as u64)?;
    let entry = &download.entry;
    // A signature the server cannot use costs the client a whole file, not an error.
    let signature = match signature.is_empty() || !as_delta {
        true => None,
        false => delta::parse_signature(signature)
            .inspect_err(|e| tracing::debug!(peer, path = entry.path, "sending whole: {e}"))
            .ok(),
    };
    // Opened beneath the share's root, never through a link, each time it is read.
    let open = || shared.share.open_file(&entry.path).map(|(file, _)| file);
    let shown = shared.share.shown(&entry.path);
    let file = (&open as tcp_delta::Open<'_>, shown.as_path(), entry.path.as_str());
    let known = (download.stamp, entry.md5);
    let (sent, _) = tcp_delta::send(stream, file, peer, known, (signature.as_ref(), delta_only), &Progress::default())?;
    Ok(sent)
}

/// Signs the version the server holds (nothing, if there is none worth a delta, or no delta slot: `as_delta`
/// false), then receives the new file as a delta against it or whole, into a temporary file in the share's
/// `.tandem/tmp`. An empty signature makes the client send the whole file.
pub(super) fn receive(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    upload: &PendingUpload,
    as_delta: bool,
) -> std::result::Result<(AtomicFile, Received), FileFailed> {
    if let Some(held) = upload.append_to {
        return receive_append(shared, stream, peer, upload, held);
    }
    let broken = FileFailed::StreamBroken;
    let worth = as_delta && delta::worth_a_delta(upload.size);
    let base = if worth { current_version(shared, upload) } else { Vec::new() };
    let signature = if base.is_empty() { Vec::new() } else { delta::signature(&base) };
    tcp::write_blob(stream, peer, &signature).map_err(broken)?;
    match tcp::read_message::<BulkBody>(stream, peer, "bulk body").map_err(broken)? {
        // Exactly a whole upload's path, down to draining the stream when the disk fails.
        BulkBody::Whole => receive_whole(shared, stream, peer, upload),
        BulkBody::Declined => {
            let reason = "an upload cannot decline to send its file".to_string();
            Err(broken(Error::Malformed { what: "bulk stream", reason }))
        }
        BulkBody::Delta => {
            let (bytes, trailer) = tcp_delta::read_delta(stream, peer, upload.size).map_err(broken)?;
            // Everything is read: whatever fails now fails this file alone.
            let alone = FileFailed::Alone;
            let mut file = AtomicFile::create_in(&shared.share, &upload.rel).map_err(alone)?;
            let temp_path = file.temp_path().to_path_buf();
            let (written, md5) =
                tcp_delta::rebuild(&base, &bytes, (&mut file, &temp_path), upload.size).map_err(alone)?;
            Ok((file, Received { bytes: written, md5, trailer }))
        }
    }
}

/// Receives the bytes after `held`, the version the path held when the ticket was issued, into a temporary file
/// that starts as a copy of that version: the file is never written in place. The copy must still hash to
/// `held.md5` (else the file changed, and the client may send it another way); the whole file's MD5 is then
/// checked against the client's as for any upload, and the path must still hold what the upload expects before
/// the rename ([`super::bulk`]).
fn receive_append(
    shared: &Shared,
    stream: &mut StdTcpStream,
    peer: &str,
    upload: &PendingUpload,
    held: Held,
) -> std::result::Result<(AtomicFile, Received), FileFailed> {
    // The ticket was only issued for a version no longer than the upload.
    let rest = upload.size.saturating_sub(held.size);
    let copied = AtomicFile::create_in(&shared.share, &upload.rel).and_then(|mut file| {
        // Opened beneath the share's root, never through a link.
        let (base, _) = shared.share.open_file(&upload.rel)?;
        let md5 = append::copy_prefix(&base, held.size, &mut file)
            .map_err(|e| Error::io(shared.share.shown(&upload.rel), e))?;
        match md5.clone().finish() == held.md5 {
            true => Ok((file, md5)),
            false => Err(Error::Changed { path: upload.rel.clone() }),
        }
    });
    let (mut file, md5) = match copied {
        Ok(copied) => copied,
        Err(e) => {
            tcp::skip_file(stream, peer, rest).map_err(FileFailed::StreamBroken)?;
            return Err(FileFailed::Alone(e));
        }
    };
    let temp_path = file.temp_path().to_path_buf();
    let sink = (rest, Prefix::Hashed(md5));
    let received = tcp::receive_file_after(stream, &mut file, &temp_path, peer, sink, &Progress::default())
        .map_err(FileFailed::StreamBroken)?;
    // The trailer counts the bytes on the stream; the checks and the verdict count the whole file.
    let trailer = match received.trailer {
        BulkTrailer::Done { size, md5 } => BulkTrailer::Done { size: held.size.saturating_add(size), md5 },
        failed => failed,
    };
    Ok((file, Received { bytes: held.size + received.bytes, md5: received.md5, trailer }))
}

/// The bytes of the file the upload replaces, if it is a regular file of a size worth a delta, opened beneath
/// the share's root without following a link: a link swapped in cannot make an outside file the delta's basis.
fn current_version(shared: &Shared, upload: &PendingUpload) -> Vec<u8> {
    let Ok((mut file, meta)) = shared.share.open_file(&upload.rel) else { return Vec::new() };
    if !delta::worth_a_delta(meta.size) {
        return Vec::new();
    }
    let mut bytes = Vec::with_capacity(meta.size as usize);
    match std::io::Read::read_to_end(&mut file, &mut bytes) {
        Ok(_) => bytes,
        Err(_) => Vec::new(),
    }
}
