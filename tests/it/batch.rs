//! Batched transfers, as sync uses them: many files on one bulk connection, each verified and committed on its
//! own. A file that fails (refused by the server, missing locally, stale, unwritable, refused just before the
//! commit) fails alone and the files after it still arrive byte-identical; a used batch ticket is refused.

use std::path::Path;

use tandem::client::{Connection, DownloadJob, UploadJob, download_batch, upload_batch};
use tandem::digest::Md5Digest;
use tandem::protocol::{BatchItem, ErrorCode, Expect, MAX_BATCH_FILES, Request};
use tandem::{Error, transfer::tcp};

use crate::common::*;

/// Sizes around the UDP payload and chunk edges, and names with spaces, Unicode and nesting.
fn sample_files() -> Vec<(String, Vec<u8>)> {
    [0usize, 1, 1399, 1400, 1401, 107_000, 1_048_577, 5_000_000]
        .into_iter()
        .enumerate()
        .map(|(i, size)| (format!("deep/er folder/file ü {i}.bin"), pseudo_random(size, 900 + i as u64)))
        .collect()
}

fn remote_code<T: std::fmt::Debug>(result: &tandem::Result<T>) -> Option<ErrorCode> {
    match result {
        Err(Error::Remote(body)) => Some(body.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_batch_stores_every_good_file_and_fails_only_the_bad_ones() {
    let (local, share) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (addr, shutdown) = in_process(share.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    write_file(share.path(), "taken.txt", b"the server's own version", 1_600_000_000);

    let mut jobs = Vec::new();
    for (rel, bytes) in sample_files() {
        write_file(local.path(), &rel, &bytes, 1_650_000_000);
        jobs.push(UploadJob { local: local.path().join(&rel), remote: rel, expect: Some(Expect::Absent) });
    }
    // In the middle: a stale expectation, a local file that does not exist, and a path outside the share.
    write_file(local.path(), "mine.txt", b"a version that did not see the server's", 1_650_000_000);
    let bad = [
        UploadJob { local: local.path().join("mine.txt"), remote: "taken.txt".into(), expect: Some(Expect::Absent) },
        UploadJob { local: local.path().join("missing.txt"), remote: "missing.txt".into(), expect: None },
        UploadJob { local: local.path().join("mine.txt"), remote: "../escape.txt".into(), expect: None },
    ];
    let good_after = jobs.split_off(4);
    let count_good = jobs.len() + good_after.len();
    jobs.extend(bad);
    jobs.extend(good_after);

    let results = upload_batch(&conn, jobs).await;
    assert_eq!(results.len(), count_good + 3);
    let (good, bad): (Vec<_>, Vec<_>) = results.iter().enumerate().partition(|(i, _)| !(4..7).contains(i));
    for (_, result) in good {
        let report = result.as_ref().expect("a good file is stored");
        let stored = share.path().join(&report.path);
        assert_eq!(std::fs::read(&stored).unwrap(), std::fs::read(&report.source).unwrap(), "{}", report.path);
        assert_eq!(report.md5.to_string(), md5sum(&stored));
        let mtime = std::fs::metadata(&stored).unwrap().modified().unwrap();
        assert_eq!(mtime, std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_650_000_000));
    }
    assert_eq!(remote_code(bad[0].1), Some(ErrorCode::Stale), "{:?}", bad[0].1);
    assert!(bad[1].1.as_ref().is_err_and(|e| e.to_string().contains("missing.txt")), "{:?}", bad[1].1);
    assert_eq!(remote_code(bad[2].1), Some(ErrorCode::InvalidPath), "{:?}", bad[2].1);
    assert_eq!(std::fs::read(share.path().join("taken.txt")).unwrap(), b"the server's own version");
    assert!(!share.path().join("missing.txt").exists());
    assert!(!share.path().parent().unwrap().join("escape.txt").exists());
    // No temporary file is left anywhere.
    let folder = share.path().join("deep/er folder");
    assert!(names_in(&folder).iter().all(|name| name.starts_with("file ü ")), "{:?}", names_in(&folder));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_batch_delivers_every_good_file_and_fails_only_the_bad_ones() {
    let (share, local) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = sample_files();
    for (rel, bytes) in &files {
        write_file(share.path(), rel, bytes, 1_640_000_000);
    }
    let (addr, shutdown) = in_process(share.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();
    std::fs::create_dir_all(local.path().join("deep/er folder")).unwrap();

    let job = |rel: &str, dest: &Path| DownloadJob {
        remote: rel.to_string(),
        dest: dest.to_path_buf().into(),
        before_commit: Box::new(|| Ok(())),
    };
    let mut jobs: Vec<DownloadJob> = files.iter().map(|(rel, _)| job(rel, &local.path().join(rel))).collect();
    let refusing = DownloadJob {
        remote: files[2].0.clone(),
        dest: local.path().join("refused here.bin").into(),
        before_commit: Box::new(|| {
            Err(Error::Stale { path: "refused here.bin".into(), found: "it changed on this side".into() })
        }),
    };
    let later = jobs.split_off(3);
    // Refused by the server, unwritable here (its folder does not exist), and refused just before the commit.
    jobs.push(job("no such file.bin", &local.path().join("no such file.bin")));
    jobs.push(job(&files[1].0, &local.path().join("no folder/x.bin")));
    jobs.push(refusing);
    jobs.extend(later);

    let results = download_batch(&conn, jobs).await;
    assert_eq!(results.len(), files.len() + 3);
    assert_eq!(remote_code(&results[3]), Some(ErrorCode::NotFound), "{:?}", results[3]);
    assert!(results[4].as_ref().is_err_and(|e| e.to_string().contains("no folder")), "{:?}", results[4]);
    assert!(results[5].as_ref().is_err_and(|e| e.to_string().contains("refused here.bin")), "{:?}", results[5]);
    assert!(!local.path().join("refused here.bin").exists());
    assert!(!local.path().join("no such file.bin").exists());
    for (rel, bytes) in &files {
        let got = std::fs::read(local.path().join(rel)).unwrap();
        assert_eq!(Md5Digest::of(&got), Md5Digest::of(bytes), "{rel}");
        assert_eq!(got.len(), bytes.len());
    }
    let delivered: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(delivered.len(), files.len());
    assert!(delivered.iter().all(|report| report.md5.to_string() == md5sum(&report.dest)));
    let folder = local.path().join("deep/er folder");
    assert_eq!(names_in(&folder).len(), files.len(), "no temporary file is left: {:?}", names_in(&folder));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_ticket_works_once_and_an_oversized_batch_is_refused() {
    let share = tempfile::tempdir().unwrap();
    write_file(share.path(), "a.txt", b"alpha", 1_600_000_000);
    let (addr, shutdown) = in_process(share.path()).await;
    let conn = Connection::connect(&addr).await.unwrap();

    let (ticket, items) = conn.batch_ticket(Request::DownloadBatch { paths: vec!["a.txt".into()] }).await.unwrap();
    assert!(matches!(&items[..], [BatchItem::Ready { entry, .. }] if entry.size == 5), "{items:?}");
    for attempt in 0..2 {
        let (stream, already_read) = conn.open_bulk(ticket).await.unwrap();
        let mut stream = std::io::Read::chain(std::io::Cursor::new(already_read), stream);
        let mut sink = Vec::new();
        let received = tcp::receive_file(&mut stream, &mut sink, Path::new("a.txt"), &addr, 5, &Default::default());
        if attempt == 0 {
            assert_eq!(sink, b"alpha");
            assert!(matches!(received.unwrap().trailer, tandem::protocol::BulkTrailer::Done { size: 5, .. }));
        } else {
            match received.unwrap().trailer {
                tandem::protocol::BulkTrailer::Failed(body) => assert_eq!(body.code, ErrorCode::BadTicket),
                other => panic!("a used ticket must be refused, got {other:?}"),
            }
        }
    }

    let paths = (0..=MAX_BATCH_FILES).map(|i| format!("f{i}")).collect();
    let refused = conn.batch_ticket(Request::DownloadBatch { paths }).await.unwrap_err();
    assert!(refused.to_string().contains(&format!("at most {MAX_BATCH_FILES} files")), "{refused}");
    shutdown.cancel();
}
