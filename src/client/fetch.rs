//! Downloads through the download cache ([`crate::cache`]), for `tandem download`, `tandem cache verify` and the
//! TUI. The raw drivers in `download` stay uncached; sync and the benchmarks use those.
//!
//! A download first asks for a ticket, which says the file's size and, when the server's hash cache knows it,
//! its MD5. If the MD5 is unknown but the cache holds something of that size, the server is asked for the hash
//! (no file bytes cross). A cached object with that MD5 is copied beside the destination while being hashed
//! again, given the server's mtime and permission bits, and renamed into place only if the MD5 still matches;
//! the ticket is left to expire. A damaged object is dropped, and the file is downloaded as usual. After a
//! download from the network the verified file is stored in the cache; a failure to cache only warns.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::connection::Connection;
use super::download::{DownloadReport, UdpOptions, download_planned, known_at};
use super::strategy::{self, CacheState};
use crate::cache::DownloadCache;
use crate::digest::{ChunkHasher, Md5Digest};
use crate::error::{Error, Result};
use crate::share::{AtomicFile, Entry, normalize, sync_renamed, sync_staged};
use crate::task::blocking;
use crate::transfer::{Progress, Protocol};

/// Read size when copying an object out of the cache.
const COPY_BLOCK: usize = 1024 * 1024;

/// How the bytes travel when they are not in the cache.
#[derive(Debug, Clone)]
pub enum Via {
    Tcp,
    Udp(UdpOptions),
}

/// What the cache did for one download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache: it is off (limit 0) or could not be opened.
    Off,
    /// Not in the cache: downloaded, then stored.
    Miss,
    /// Copied from the cache; no file bytes crossed the network.
    Hit,
    /// The cached copy no longer matched its MD5: dropped, downloaded again and stored afresh.
    Repaired,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Repaired => "repaired",
        }
    }
}

/// Downloads `remote` into the folder `dest_dir`, from `cache` when it holds the same bytes; how is decided by
/// [`strategy::plan`].
pub async fn fetch(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    via: Via,
    progress: &Progress,
    cache: Option<Arc<DownloadCache>>,
) -> Result<(DownloadReport, CacheOutcome)> {
    let started = Instant::now();
    let cache_state = match &cache {
        None => CacheState::Off,
        Some(cache) => {
            let cache = cache.clone();
            // An empty cache cannot hit: the plan skips the extra ticket.
            match blocking(move || cache.is_empty()).await.unwrap_or_else(|e| warn_unusable(&e)) {
                true => CacheState::Empty,
                false => CacheState::MayHold,
            }
        }
    };
    let (protocol, udp) = match via {
        Via::Tcp => (Protocol::Tcp, UdpOptions::default()),
        Via::Udp(options) => (Protocol::Udp, options),
    };
    let plan = strategy::plan(known_at(remote, dest_dir, protocol, cache_state));
    let mut outcome = if cache.is_some() { CacheOutcome::Miss } else { CacheOutcome::Off };
    if let (true, Some(cache)) = (plan.from_cache, &cache) {
        match try_cache(conn, remote, dest_dir, protocol, progress, cache, started).await? {
            Tried::Hit(report) => return Ok((*report, CacheOutcome::Hit)),
            Tried::Damaged => outcome = CacheOutcome::Repaired,
            Tried::Miss => {}
        }
    }
    let report = download_planned(conn, remote, dest_dir, plan, udp, progress).await?;
    if let Some(cache) = cache {
        let name = report.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (dest, md5) = (report.dest.clone(), report.md5);
        let stored = blocking(move || cache.store(&dest, md5, &name)).await;
        if let Err(e) = stored {
            tracing::warn!("{}: not kept in the download cache: {e}", report.path);
        }
    }
    Ok((report, outcome))
}

/// What looking in the cache found.
enum Tried {
    Hit(Box<DownloadReport>),
    Miss,
    /// An object with the right MD5 was there, but its bytes were not; it is gone now.
    Damaged,
}

/// Looks for `remote`'s bytes in the cache and, if they are there, copies them to the destination.
async fn try_cache(
    conn: &Connection,
    remote: &str,
    dest_dir: &Path,
    protocol: Protocol,
    progress: &Progress,
    cache: &Arc<DownloadCache>,
    started: Instant,
) -> Result<Tried> {
    let metadata = std::fs::metadata(dest_dir).map_err(|e| Error::io(dest_dir, e))?;
    if !metadata.is_dir() {
        return Err(Error::UnusableFolder { path: dest_dir.into(), problem: "not a folder; a download goes into one" });
    }
    let (_unused_ticket, mut entry, mode) = conn.download_ticket_with_mode(remote).await?;
    let dest = dest_dir.join(file_name(&entry.path)?);
    if entry.md5.is_none() {
        let size = entry.size;
        let cache = cache.clone();
        let candidate = size <= cache.limit() && blocking(move || cache.holds_size(size)).await.unwrap_or(false);
        if candidate {
            // The MD5 of the same version the ticket describes, or nothing.
            entry.md5 = conn
                .hash(remote)
                .await
                .ok()
                .filter(|h| (h.size, h.mtime_ns) == (size, entry.mtime_ns))
                .and_then(|h| h.md5);
        }
    }
    let Some(md5) = entry.md5 else { return Ok(Tried::Miss) };
    let found = {
        let cache = cache.clone();
        blocking(move || cache.lookup(md5)).await.unwrap_or_else(|e| {
            warn_unusable(&e);
            None
        })
    };
    let Some((_, object)) = found else { return Ok(Tried::Miss) };
    progress.set_total(entry.size);
    let copy = {
        let (entry, dest, object, progress) = (entry.clone(), dest.clone(), object.clone(), progress.clone());
        blocking(move || copy_verified(&object, &dest, (&entry, md5, mode), &progress)).await?
    };
    let name = file_name(&entry.path)?;
    match copy {
        Copied::Verified => {
            let cache = cache.clone();
            if let Err(e) = blocking(move || cache.touch(md5, &name)).await {
                tracing::warn!("download cache: cannot record the use of {}: {e}", entry.path);
            }
            let udp = (protocol == Protocol::Udp).then(Default::default);
            let protocol = match protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
            };
            Ok(Tried::Hit(Box::new(DownloadReport {
                path: entry.path,
                dest,
                size: entry.size,
                md5,
                mtime_ns: entry.mtime_ns,
                protocol,
                bytes_received: 0,
                from_cache: true,
                resumed_from: 0,
                bytes_sent: 0,
                delta: false,
                notes: Vec::new(),
                seconds: started.elapsed().as_secs_f64(),
                udp,
            })))
        }
        Copied::Damaged(reason) => {
            tracing::warn!(
                "download cache: the cached copy of {} ({}) is damaged: {reason}; dropped it, downloading again",
                entry.path,
                object.display()
            );
            let cache = cache.clone();
            if let Err(e) = blocking(move || cache.remove(md5)).await {
                tracing::warn!("download cache: cannot drop {}: {e}", object.display());
            }
            progress.set(0);
            Ok(Tried::Damaged)
        }
    }
}

/// How copying an object out went; errors writing the destination are `Err` instead.
enum Copied {
    Verified,
    Damaged(String),
}

/// Copies `object` to a temporary file beside `dest` while hashing it, and renames it into place with the
/// server's mtime and permission bits only if its MD5 is `expected`, the server's.
fn copy_verified(
    object: &Path,
    dest: &Path,
    (entry, expected, mode): (&Entry, Md5Digest, Option<u32>),
    progress: &Progress,
) -> Result<Copied> {
    let mut source = match File::open(object) {
        Ok(file) => file,
        Err(e) => return Ok(Copied::Damaged(format!("cannot open it: {e}"))),
    };
    let length = source.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    if length != entry.size {
        return Ok(Copied::Damaged(format!("it holds {length} bytes, not {}", entry.size)));
    }
    let mut file = AtomicFile::create(dest)?;
    let mut hasher = ChunkHasher::for_size(entry.size, 4);
    let mut copied = 0u64;
    loop {
        let mut block = vec![0u8; COPY_BLOCK];
        let n = match source.read(&mut block) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Ok(Copied::Damaged(format!("cannot read it: {e}"))),
        };
        if n == 0 {
            break;
        }
        block.truncate(n);
        let block = Bytes::from(block);
        file.write_all(&block).map_err(|e| Error::io(file.temp_path(), e))?;
        hasher.feed(block);
        copied += n as u64;
        progress.set(copied);
    }
    let actual: Md5Digest = hasher.finish();
    if copied != entry.size || actual != expected {
        return Ok(Copied::Damaged(format!("its {copied} bytes hash to {actual}, not {expected}")));
    }
    if let Some(mode) = mode {
        file.set_mode(mode)?;
    }
    file.stage(Some(entry.mtime_ns))?;
    sync_staged(&[&file])?;
    let dest = file.rename_into_place()?;
    sync_renamed(&[dest])?;
    Ok(Copied::Verified)
}

/// A cache that cannot be read is no reason to fail a download: say so, and go without it.
fn warn_unusable(e: &Error) -> bool {
    tracing::warn!("download cache unusable, downloading without it: {e}");
    true
}

/// The last component of a path the server sent, checked so it cannot name anything outside the folder.
fn file_name(remote: &str) -> Result<String> {
    let clean = normalize(remote)?;
    match clean.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::InvalidPath { path: remote.to_string(), reason: "names no file" }),
    }
}
