//! `Hash` and `HashAll`: MD5s through the hash cache. `HashAll` hashes files in parallel on every core, and a
//! file whose (size, mtime, ctime, inode) matches the cache is not read at all.

use std::sync::Arc;

use super::Shared;
use super::session::Responder;
use crate::digest::md5_open;
use crate::error::{Error, Result};
use crate::protocol::{Response, batches};
use crate::share::{Entry, EntryKind, FileStamp, Walk, normalize};
use crate::task::{blocking, parallel_map};

pub async fn handle_one(shared: &Arc<Shared>, path: &str, out: &mut Responder) -> Result<()> {
    let rel = normalize(path)?;
    let shared_for_hash = shared.clone();
    let entry = blocking(move || {
        let entry = hash_file(&shared_for_hash, &rel)?;
        shared_for_hash.hashes.flush()?;
        Ok(entry)
    })
    .await?;
    let mut entries = vec![entry];
    shared.journal.mark_locks(&mut entries);
    out.send(Response::Entries { entries, more: false }).await
}

pub async fn handle_all(shared: &Arc<Shared>, path: &str, max_depth: Option<u32>, out: &mut Responder) -> Result<()> {
    let rel = normalize(path)?;
    let shared_for_hash = shared.clone();
    let mut entries = blocking(move || {
        let entries = hash_tree(&shared_for_hash, &rel, max_depth)?;
        shared_for_hash.hashes.flush()?;
        Ok(entries)
    })
    .await?;
    shared.journal.mark_locks(&mut entries);
    let mut batches = batches(entries).into_iter().peekable();
    if batches.peek().is_none() {
        return out.send(Response::Entries { entries: Vec::new(), more: false }).await;
    }
    while let Some(batch) = batches.next() {
        out.send(Response::Entries { entries: batch, more: batches.peek().is_some() }).await?;
    }
    Ok(())
}

/// The MD5 of the regular file `rel`, from the cache when its stamp is unchanged. The file is opened beneath the
/// share's root without following a link, and its stamp is read from the open file before and after. Blocking.
pub fn hash_file(shared: &Shared, rel: &str) -> Result<Entry> {
    let (mut file, meta) = shared.share.open_file(rel)?;
    let stamp = meta.stamp();
    let md5 = match shared.hashes.get(rel, stamp) {
        Some(md5) => md5,
        None => {
            let shown = shared.share.shown(rel);
            let md5 = md5_open(&mut file, &shown)?;
            let after = file.metadata().map_err(|e| Error::io(&shown, e))?;
            if FileStamp::of(&after) != stamp {
                return Err(Error::Changed { path: rel.to_string() });
            }
            shared.hashes.insert(rel, stamp, md5);
            md5
        }
    };
    let mut entry = Entry::from_meta(rel.to_string(), &meta);
    entry.md5 = Some(md5);
    Ok(entry)
}

/// Hashes every regular file below `rel`, on all cores, in path order. Files deleted meanwhile are left out.
fn hash_tree(shared: &Shared, rel: &str, max_depth: Option<u32>) -> Result<Vec<Entry>> {
    let files: Vec<String> = match shared.share.meta(rel)?.map(|meta| meta.kind) {
        Some(EntryKind::Dir) => {
            let mut files = Vec::new();
            for entry in Walk::new(&shared.share, rel)?.max_depth(max_depth) {
                match entry {
                    Ok(entry) if entry.kind == EntryKind::File => files.push(entry.path),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("checkall skips a folder: {e}"),
                }
            }
            files
        }
        Some(_) => return Ok(vec![hash_file(shared, rel)?]),
        None => return Err(Error::NotFound { path: rel.to_string() }),
    };

    let results = parallel_map(&files, |rel| hash_file(shared, rel));
    let mut entries = Vec::with_capacity(files.len());
    for result in results {
        match result {
            Ok(entry) => entries.push(entry),
            // Gone, or replaced by something that is not a file, since the walk saw it.
            Err(Error::NotFound { .. } | Error::NotAFile { .. } | Error::Symlink { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(entries)
}
