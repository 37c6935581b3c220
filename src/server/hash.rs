//! `Hash` and `HashAll`: MD5s through the hash cache. `HashAll` hashes files in parallel on every core, and a
//! file whose (size, mtime, inode) matches the cache is not read at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Shared;
use super::session::Responder;
use crate::digest::md5_file;
use crate::error::{Error, Result};
use crate::protocol::{ENTRIES_PER_BATCH, Response};
use crate::share::{Entry, EntryKind, FileStamp, Walk};
use crate::task::{blocking, parallel_map};

pub async fn handle_one(shared: &Arc<Shared>, path: &str, out: &mut Responder) -> Result<()> {
    let resolved = shared.share.resolve(path)?;
    let shared_for_hash = shared.clone();
    let entry = blocking(move || {
        let entry = hash_file(&shared_for_hash, &resolved.rel, &resolved.abs)?;
        shared_for_hash.hashes.flush()?;
        Ok(entry)
    })
    .await?;
    let mut entries = vec![entry];
    shared.journal.mark_locks(&mut entries);
    out.send(Response::Entries { entries, more: false }).await
}

pub async fn handle_all(shared: &Arc<Shared>, path: &str, max_depth: Option<u32>, out: &mut Responder) -> Result<()> {
    let resolved = shared.share.resolve(path)?;
    let shared_for_hash = shared.clone();
    let mut entries = blocking(move || {
        let entries = hash_tree(&shared_for_hash, &resolved.rel, max_depth)?;
        shared_for_hash.hashes.flush()?;
        Ok(entries)
    })
    .await?;
    shared.journal.mark_locks(&mut entries);
    let mut batches = entries.chunks(ENTRIES_PER_BATCH).peekable();
    if batches.peek().is_none() {
        return out.send(Response::Entries { entries: Vec::new(), more: false }).await;
    }
    while let Some(batch) = batches.next() {
        out.send(Response::Entries { entries: batch.to_vec(), more: batches.peek().is_some() }).await?;
    }
    Ok(())
}

/// The MD5 of one file, from the cache when its stamp is unchanged. Blocking.
pub fn hash_file(shared: &Shared, rel: &str, abs: &Path) -> Result<Entry> {
    let metadata = std::fs::metadata(abs).map_err(|e| Error::io(abs, e))?;
    if !metadata.is_file() {
        return Err(Error::NotAFile { path: rel.to_string() });
    }
    let stamp = FileStamp::of(&metadata);
    let md5 = match shared.hashes.get(rel, stamp) {
        Some(md5) => md5,
        None => {
            let md5 = md5_file(abs)?;
            let after = std::fs::metadata(abs).map_err(|e| Error::io(abs, e))?;
            if FileStamp::of(&after) != stamp {
                return Err(Error::Changed { path: rel.to_string() });
            }
            shared.hashes.insert(rel, stamp, md5);
            md5
        }
    };
    let mut entry = Entry::from_metadata(rel.to_string(), &metadata);
    entry.md5 = Some(md5);
    Ok(entry)
}

/// Hashes every regular file below `rel`, on all cores, in path order. Files deleted meanwhile are left out.
fn hash_tree(shared: &Shared, rel: &str, max_depth: Option<u32>) -> Result<Vec<Entry>> {
    let root = shared.share.root();
    let target = root.join(rel);
    let files: Vec<(String, PathBuf)> = if target.is_dir() {
        let mut files = Vec::new();
        for entry in Walk::new(root.to_path_buf(), rel)?.max_depth(max_depth) {
            match entry {
                Ok(entry) if entry.kind == EntryKind::File => files.push((entry.path.clone(), root.join(&entry.path))),
                Ok(_) => {}
                Err(e) => tracing::warn!("checkall skips a folder: {e}"),
            }
        }
        files
    } else {
        vec![(rel.to_string(), target)]
    };

    let results = parallel_map(&files, |(rel, abs)| hash_file(shared, rel, abs));
    let mut entries = Vec::with_capacity(files.len());
    for result in results {
        match result {
            Ok(entry) => entries.push(entry),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(entries)
}
