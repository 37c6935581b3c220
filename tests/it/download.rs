//! `download tcp`: byte-identical files of every awkward size and name, mtime kept, and nothing left behind when
//! anything goes wrong, including a server that lies about the MD5 or hangs up halfway.

use std::path::Path;

use tandem::protocol::{
    BulkTrailer, Channel, ClientFrame, Request, Response, ServerFrame, ServerHello, ServerWelcome, Ticket,
};
use tandem::share::{Entry, EntryKind};
use tandem::wire::{FrameReader, FrameWriter};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::common::*;

fn assert_same_file(remote: &Path, local: &Path) {
    assert_eq!(std::fs::metadata(remote).unwrap().len(), std::fs::metadata(local).unwrap().len());
    assert_eq!(md5sum(remote), md5sum(local));
    assert_eq!(std::fs::read(remote).unwrap(), std::fs::read(local).unwrap());
    assert_eq!(
        std::fs::metadata(remote).unwrap().modified().unwrap(),
        std::fs::metadata(local).unwrap().modified().unwrap(),
        "mtime kept"
    );
}

#[test]
fn every_size_and_name_downloads_byte_identical() {
    let root = tempfile::tempdir().unwrap();
    let cases: Vec<(String, usize)> = [0usize, 1, 1399, 1400, 1401, 5_000_000]
        .iter()
        .map(|&size| (format!("sizes/file-{size}.bin"), size))
        .chain([
            ("name with spaces.txt".to_string(), 100),
            ("ünïcödé/日本語 ファイル.dat".to_string(), 3000),
            ("a/b/c/d/nested deep.bin".to_string(), 70_000),
        ])
        .collect();
    for (i, (rel, size)) in cases.iter().enumerate() {
        write_file(root.path(), rel, &pseudo_random(*size, i as u64 + 1), 1_600_000_000 + i as u64);
    }
    let server = ServeProcess::start(root);
    let dest = tempfile::tempdir().unwrap();
    for (rel, size) in &cases {
        let output = server.cli(&["download", "tcp", rel, "--to", dest.path().to_str().unwrap(), "--json"]);
        let report = json(&output);
        let name = rel.rsplit('/').next().unwrap();
        let local = dest.path().join(name);
        assert_same_file(&server.path(rel), &local);
        assert_eq!(report["path"], rel.as_str());
        assert_eq!(report["dest"], local.display().to_string());
        assert_eq!(report["size"], *size as u64);
        assert_eq!(report["bytes_received"], *size as u64);
        assert_eq!(report["md5"], md5sum(&local));
        assert_eq!(report["protocol"], "tcp");
        assert_eq!(report["from_cache"], false);
        assert_eq!(report["resumed_from"], 0);
        assert!(report["seconds"].as_f64().unwrap() >= 0.0);
        assert_eq!(report["mtime"], rfc3339(std::fs::metadata(&local).unwrap().modified().unwrap()));
    }
    let mut expected: Vec<String> = cases.iter().map(|(rel, _)| rel.rsplit('/').next().unwrap().to_string()).collect();
    expected.sort();
    assert_eq!(names_in(dest.path()), expected, "no temporary files left");
}

#[test]
fn sixty_four_megabytes_in_capitals_with_human_output() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "big.bin", &pseudo_random(64 << 20, 99), 1_650_000_000);
    let server = ServeProcess::start(root);
    let dest = tempfile::tempdir().unwrap();
    let output = server.cli(&["download", "TCP", "big.bin", "--to", dest.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let md5 = md5sum(&server.path("big.bin"));
    assert!(text.starts_with(&format!("downloaded big.bin -> {}", dest.path().join("big.bin").display())), "{text}");
    assert!(text.contains("size      64 MiB (67108864 bytes)"), "{text}");
    assert!(text.contains(&format!("md5       {md5}  verified")), "{text}");
    assert_same_file(&server.path("big.bin"), &dest.path().join("big.bin"));
}

#[test]
fn an_existing_file_is_replaced_only_by_verified_bytes() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "doc.txt", b"new version", 1_700_000_000);
    let server = ServeProcess::start(root);
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join("doc.txt"), b"old version, longer than the new one").unwrap();
    // A failed download of another name leaves everything alone.
    let failed = server.cli(&["download", "tcp", "missing.txt", "--to", dest.path().to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(stderr(&failed).trim(), "error: missing.txt: no such file or folder");
    assert_eq!(names_in(dest.path()), ["doc.txt"]);
    let output = server.cli(&["download", "tcp", "doc.txt", "--to", dest.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_same_file(&server.path("doc.txt"), &dest.path().join("doc.txt"));
    assert_eq!(names_in(dest.path()), ["doc.txt"]);
}

#[test]
fn a_missing_destination_folder_is_named() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "a", b"a", 1);
    let server = ServeProcess::start(root);
    let output = server.cli(&["download", "tcp", "a", "--to", "/nonexistent/folder"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "error: /nonexistent/folder: No such file or directory (os error 2)\n");
}

/// How the fake server misbehaves on the bulk connection.
#[derive(Clone, Copy)]
enum Lie {
    WrongMd5,
    HangUpHalfway,
    TooManyBytes,
}

/// A server that speaks the protocol correctly up to the bulk stream, then misbehaves.
async fn lying_server(lie: Lie) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let payload = pseudo_random(3 << 20, 5);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let payload = payload.clone();
            tokio::spawn(async move {
                let (read, write) = stream.into_split();
                let mut reader = FrameReader::new(read, "client");
                let mut writer = FrameWriter::new(write, "client");
                let Ok(Some(ClientFrame::Hello(hello))) = reader.next::<ClientFrame>("hello").await else { return };
                let ours = ServerHello {
                    protocol_version: hello.protocol_version,
                    software: String::new(),
                    nonce: Some(tandem::auth::Nonce::random()),
                    auth: false,
                };
                writer.send(&ServerFrame::Hello(ours)).await.unwrap();
                if let Channel::Bulk { .. } = hello.channel {
                    // The client may hang up first (that is the point); write errors end the lie quietly.
                    let _ = send_lie(writer.into_inner(), lie, &payload).await;
                    return;
                }
                let welcome = ServerWelcome { software: "liar".into(), journal: None };
                writer.send(&ServerFrame::Welcome(welcome)).await.unwrap();
                while let Ok(Some(ClientFrame::Request { id, body: Request::Download { path, .. } })) =
                    reader.next::<ClientFrame>("request").await
                {
                    let entry = Entry {
                        path,
                        kind: EntryKind::File,
                        size: payload.len() as u64,
                        mtime_ns: 0,
                        md5: None,
                        locked_by: None,
                        target: None,
                    };
                    let body = Response::Ticket { ticket: Ticket(1), entry, mode: None, offset: 0 };
                    writer.send(&ServerFrame::Response { id, body }).await.unwrap();
                }
            });
        }
    });
    addr
}

async fn send_lie(mut stream: tokio::net::tcp::OwnedWriteHalf, lie: Lie, payload: &[u8]) -> tandem::Result<()> {
    let io = |e| tandem::Error::net("client", e);
    let sent = match lie {
        Lie::HangUpHalfway => &payload[..payload.len() / 2],
        _ => payload,
    };
    for chunk in sent.chunks(1 << 20) {
        stream.write_all(&(chunk.len() as u32).to_be_bytes()).await.map_err(io)?;
        stream.write_all(chunk).await.map_err(io)?;
    }
    match lie {
        Lie::TooManyBytes => {
            stream.write_all(&4u32.to_be_bytes()).await.map_err(io)?;
            stream.write_all(b"more").await.map_err(io)
        }
        Lie::WrongMd5 => {
            stream.write_all(&0u32.to_be_bytes()).await.map_err(io)?;
            let md5 = tandem::digest::Md5Digest::of(b"something else");
            FrameWriter::new(stream, "client").send(&BulkTrailer::Done { size: payload.len() as u64, md5 }).await
        }
        Lie::HangUpHalfway => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lies_and_hang_ups_never_touch_the_file_and_only_good_bytes_are_kept_for_a_rerun() {
    // A hang-up keeps what arrived, for a rerun to resume from; bytes that proved wrong are not kept.
    for (lie, expected, kept) in [
        (Lie::WrongMd5, "MD5 mismatch", None),
        (Lie::HangUpHalfway, "connection closed in the middle of the file", Some(3 << 19)),
        (Lie::TooManyBytes, "size mismatch", Some(3 << 20)),
    ] {
        let addr = lying_server(lie).await;
        let dest = tempfile::tempdir().unwrap();
        std::fs::write(dest.path().join("precious.bin"), b"keep me").unwrap();
        let dest_arg = dest.path().to_str().unwrap().to_string();
        let output =
            tokio::task::spawn_blocking(move || cli(&addr, &["download", "tcp", "precious.bin", "--to", &dest_arg]))
                .await
                .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let err = stderr(&output);
        assert!(err.starts_with("error: ") && err.contains(expected), "{expected}: {err}");
        let state = dest.path().join(".tandem");
        match kept {
            None => assert_eq!(names_in(dest.path()), ["precious.bin"], "{expected}"),
            Some(len) => {
                assert_eq!(names_in(dest.path()), [".tandem", "precious.bin"], "{expected}");
                assert_eq!(names_in(&state.join("partial")), ["precious.bin", "precious.bin.partial.json"]);
                assert_eq!(std::fs::metadata(state.join("partial/precious.bin")).unwrap().len(), len, "{expected}");
            }
        }
        assert_eq!(std::fs::read(dest.path().join("precious.bin")).unwrap(), b"keep me");
    }
}
