//! Many files over one bulk connection: one request gets a ticket for the whole batch, then the files travel
//! back to back, each verified by MD5 and committed on its own exactly as a single upload or download would be.
//! Sync moves folders this way, so a file of 100 KB costs its bytes and its hash, not a round trip, a TCP
//! connection and two threads.
//!
//! Each file has its own result. A file refused by the server, changed while it was read, or refused at the
//! rename fails alone; a broken connection fails the file in flight and every file after it.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use super::connection::Connection;
use super::download::{BeforeCommit, DownloadReport, report, verify};
use super::upload::{UploadReport, local_file};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{BatchItem, BulkTrailer, Expect, Request, Ticket, UploadItem};
use crate::share::{
    AtomicFile, Destination, Entry, FileStamp, GROUP_BYTES, GROUP_FILES, Renamed, sync_renamed, sync_staged,
};
use crate::transfer::Progress;
use crate::transfer::tcp::{self, FileFailed};

/// One file to upload: the local file, where it goes in the share, and what that path must still hold.
pub struct UploadJob {
    pub local: PathBuf,
    pub remote: String,
    pub expect: Option<Expect>,
}

/// One file to download: the remote path, exactly where it goes (its folder must exist), and a check that runs
/// after the bytes are verified and before they replace anything.
pub struct DownloadJob {
    pub remote: String,
    pub dest: Destination,
    pub before_commit: BeforeCommit,
}

/// Uploads every job's file; one result per job, in order.
pub async fn upload_batch(conn: &Connection, jobs: Vec<UploadJob>) -> Vec<Result<UploadReport>> {
    let started = Instant::now();
    let mut results: Vec<Option<Result<UploadReport>>> = (0..jobs.len()).map(|_| None).collect();
    // Files that cannot be read are refused here, before the server is asked.
    let mut asked = Vec::new();
    let mut files = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        match local_file(&job.local) {
            Ok((stamp, mode)) => {
                let (size, mtime_ns, path, expect) = (stamp.size, stamp.mtime_ns, job.remote.clone(), job.expect);
                files.push(UploadItem { path, size, mtime_ns, mode, expect });
                asked.push((index, stamp, mode));
            }
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    if files.is_empty() {
        return finished(results);
    }
    let (ticket, items) = match conn.batch_ticket(Request::UploadBatch { files }).await {
        Ok(answer) => answer,
        Err(e) => {
            for ((index, ..), error) in asked.iter().zip(spread(e, asked.len())) {
                results[*index] = Some(error);
            }
            return finished(results);
        }
    };
    let mut ready = Vec::new();
    for ((index, stamp, mode), item) in asked.into_iter().zip(items) {
        match item {
            BatchItem::Ready { entry, .. } => ready.push((index, stamp, mode, entry)),
            BatchItem::Refused(body) => results[index] = Some(Err(Error::Remote(body))),
        }
    }
    if ready.is_empty() {
        return finished(results);
    }
    let sources = ready.iter().map(|(index, stamp, ..)| (jobs[*index].local.clone(), *stamp)).collect();
    let sent = send_files(conn, ticket, sources).await;
    for ((index, stamp, mode, entry), outcome) in ready.into_iter().zip(sent) {
        results[index] = Some(outcome.map(|md5| UploadReport {
            path: entry.path,
            source: jobs[index].local.clone(),
            size: stamp.size,
            md5,
            mtime_ns: stamp.mtime_ns,
            mode,
            bytes_sent: stamp.size,
            bytes_received: 0,
            delta: false,
            seconds: started.elapsed().as_secs_f64(),
        }));
    }
    finished(results)
}

/// Downloads every job's file; one result per job, in order.
pub async fn download_batch(conn: &Connection, jobs: Vec<DownloadJob>) -> Vec<Result<DownloadReport>> {
    let started = Instant::now();
    let mut results: Vec<Option<Result<DownloadReport>>> = (0..jobs.len()).map(|_| None).collect();
    let paths = jobs.iter().map(|job| job.remote.clone()).collect();
    let (ticket, items) = match conn.batch_ticket(Request::DownloadBatch { paths }).await {
        Ok(answer) => answer,
        Err(e) => return spread(e, jobs.len()),
    };
    let mut ready = Vec::new();
    let mut indexes = Vec::new();
    for ((index, job), item) in jobs.into_iter().enumerate().zip(items) {
        match item {
            BatchItem::Ready { entry, mode } => {
                ready.push((job, entry, mode));
                indexes.push(index);
            }
            BatchItem::Refused(body) => results[index] = Some(Err(Error::Remote(body))),
        }
    }
    if ready.is_empty() {
        return finished(results);
    }
    let count = ready.len();
    let received = match conn.open_bulk(ticket).await {
        Ok((stream, already_read)) => {
            let peer = conn.addr().to_string();
            // Bytes that arrived behind the server's hello are the start of the stream.
            let stream = std::io::Cursor::new(already_read).chain(stream);
            tokio::task::spawn_blocking(move || receive_files(stream, &peer, ready, started)).await.unwrap_or_else(
                |e| spread(Error::task_failed(format!("the batch download from {}", conn.addr()), e), count),
            )
        }
        Err(e) => spread(e, count),
    };
    for (index, outcome) in indexes.into_iter().zip(received) {
        results[index] = Some(outcome);
    }
    finished(results)
}

/// Sends the files on one bulk connection while a second thread reads the server's verdicts, so neither side
/// ever waits for the other to drain its socket. Returns each file's MD5, as both sides computed it.
async fn send_files(conn: &Connection, ticket: Ticket, sources: Vec<(PathBuf, FileStamp)>) -> Vec<Result<Md5Digest>> {
    let count = sources.len();
    let mut stream = match conn.open_bulk(ticket).await {
        Ok((stream, _)) => stream,
        Err(e) => return spread(e, count),
    };
    let peer = conn.addr().to_string();
    tokio::task::spawn_blocking(move || {
        let mut verdict_stream = match stream.try_clone() {
            Ok(clone) => clone,
            Err(e) => return spread(Error::net(&peer, e), count),
        };
        let reader_peer = peer.clone();
        let verdicts = std::thread::spawn(move || {
            let mut verdicts = Vec::with_capacity(count);
            while verdicts.len() < count {
                match tcp::read_trailer(&mut verdict_stream, &reader_peer) {
                    Ok(trailer) => verdicts.push(Ok(trailer)),
                    Err(e) => {
                        verdicts.extend(spread(e, count - verdicts.len()));
                        break;
                    }
                }
            }
            verdicts
        });
        let mut sent = Vec::with_capacity(count);
        for (source, stamp) in &sources {
            let shown = source.display().to_string();
            match tcp::send_file(&mut stream, source, &shown, &peer, *stamp, None, &Progress::default()) {
                Ok(done) => sent.push(Ok(done)),
                Err(e) => {
                    // The connection is gone: the server's verdicts will say so for the files it did not get.
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    sent.extend(spread(e, count - sent.len()));
                    break;
                }
            }
        }
        let verdicts = verdicts.join().unwrap_or_else(|_| {
            spread(Error::task_failed(format!("reading the verdicts of {peer}"), "the reader thread panicked"), count)
        });
        sent.into_iter()
            .zip(verdicts)
            .zip(&sources)
            .map(|((sent, verdict), (source, _))| {
                let sent = sent?;
                let ours = match sent.trailer {
                    BulkTrailer::Done { md5, .. } => md5,
                    BulkTrailer::Failed(body) => return Err(Error::Remote(body)),
                };
                match verdict? {
                    BulkTrailer::Done { md5, size } if md5 == ours && size == sent.bytes => Ok(md5),
                    BulkTrailer::Done { md5, .. } => Err(Error::Md5Mismatch {
                        path: source.display().to_string(),
                        expected: ours.to_string(),
                        actual: md5.to_string(),
                    }),
                    BulkTrailer::Failed(body) => Err(Error::Remote(body)),
                }
            })
            .collect()
    })
    .await
    .unwrap_or_else(|e| spread(Error::task_failed(format!("the batch upload to {}", conn.addr()), e), count))
}

/// A received, verified file waiting for its group's commit.
struct Staged {
    file: AtomicFile,
    before_commit: BeforeCommit,
    report: DownloadReport,
}

/// Receives each file into a temporary file beside its destination, and commits the verified ones in groups.
fn receive_files(
    mut stream: impl Read,
    peer: &str,
    files: Vec<(DownloadJob, Entry, Option<u32>)>,
    started: Instant,
) -> Vec<Result<DownloadReport>> {
    let count = files.len();
    let mut results = Vec::with_capacity(count);
    let mut files = files.into_iter().peekable();
    while files.peek().is_some() {
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let mut broken = None;
        while let Some((job, entry, mode)) = files.next_if(|_| group.len() < GROUP_FILES && group_bytes < GROUP_BYTES) {
            group_bytes += entry.size;
            match stage(&mut stream, peer, job, (entry, mode), started) {
                Ok(staged) => group.push(Ok(staged)),
                Err(FileFailed::Alone(e)) => group.push(Err(e)),
                Err(FileFailed::StreamBroken(e)) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        results.extend(commit_group(group));
        if let Some(e) = broken {
            results.extend(spread(e, count - results.len()));
            break;
        }
    }
    results
}

/// Receives one file and checks it against the server's word, ready for its group's commit.
fn stage(
    stream: &mut impl Read,
    peer: &str,
    job: DownloadJob,
    (entry, mode): (Entry, Option<u32>),
    started: Instant,
) -> std::result::Result<Staged, FileFailed> {
    let (mut file, received) = tcp::receive_to_temp(stream, peer, job.dest.create_file(), entry.size)?;
    let checked = match received.trailer {
        BulkTrailer::Failed(body) => Err(Error::Remote(body)),
        BulkTrailer::Done { size, .. } if size != received.bytes => {
            Err(Error::SizeMismatch { path: entry.path.clone(), expected: size, actual: received.bytes })
        }
        BulkTrailer::Done { md5, .. } => verify(&mut file, (&entry, mode), received.md5, md5),
    };
    checked.map_err(FileFailed::Alone)?;
    let report = report(entry, job.dest.shown(), received.bytes, received.md5, "tcp", started, None);
    Ok(Staged { file, before_commit: job.before_commit, report })
}

/// Makes a group's bytes durable together, renames each file into place once its check allows, then makes the
/// renames durable; only then does any file count as downloaded.
fn commit_group(group: Vec<Result<Staged>>) -> Vec<Result<DownloadReport>> {
    let staged: Vec<&AtomicFile> = group.iter().filter_map(|s| s.as_ref().ok().map(|s| &s.file)).collect();
    let synced = sync_staged(&staged).map_err(|e| e.to_body());
    let mut renamed: Vec<Renamed> = Vec::new();
    let placed: Vec<Result<DownloadReport>> = group
        .into_iter()
        .map(|staged| {
            let Staged { file, before_commit, report } = staged?;
            synced.clone().map_err(Error::Remote)?;
            before_commit()?;
            renamed.push(file.rename_into_place()?);
            Ok(report)
        })
        .collect();
    let durable = sync_renamed(&renamed).map_err(|e| e.to_body());
    placed
        .into_iter()
        .map(|placed| placed.and_then(|report| durable.clone().map(|()| report).map_err(Error::Remote)))
        .collect()
}

/// The same failure for `count` files: the first keeps the error itself, the others get its wire form.
fn spread<T>(e: Error, count: usize) -> Vec<Result<T>> {
    let body = e.to_body();
    let mut errors = Vec::with_capacity(count);
    if count > 0 {
        errors.push(Err(e));
    }
    errors.extend((1..count).map(|_| Err(Error::Remote(body.clone()))));
    errors
}

fn finished<T>(results: Vec<Option<Result<T>>>) -> Vec<Result<T>> {
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(Error::task_failed("the batch", "it ended before this file"))))
        .collect()
}
