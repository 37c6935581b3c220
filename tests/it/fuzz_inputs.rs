//! Property tests over the four entry points the `fuzz/` targets cover, short enough for every `cargo test`:
//! frames, messages, UDP datagrams and remote paths, as arbitrary bytes and as real encodings with bytes
//! flipped, overwritten, inserted, deleted or cut off. Each must decode or be refused with an error that says
//! what was malformed, never panic; a frame's length header is never an allocation; and whatever the sandbox
//! accepts stays inside the share and out of `.tandem`.

use std::fmt::Debug;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tandem::auth::{Nonce, Proof, TicketProof};
use tandem::digest::Md5Digest;
use tandem::protocol::*;
use tandem::share::{Entry, EntryKind, STATE_DIR, Share, normalize};
use tandem::transfer::udp::packet::{self, Ack, Packet};

use crate::common::plant_traps;

/// One edit of an encoding; positions wrap around its length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ];
    prop::collection::vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Flip { at, bit } => {
                if let Some(byte) = bytes.get_mut(at % len) {
                    *byte ^= 1 << bit;
                }
            }
            Mutation::Set { at, value } => {
                if let Some(byte) = bytes.get_mut(at % len) {
                    *byte = *value;
                }
            }
            Mutation::Insert { at, bytes: new } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Delete { at, len: n } => {
                let at = at % len;
                bytes.drain(at.min(bytes.len())..(at + n).min(bytes.len()));
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
        }
    }
    bytes
}

fn md5() -> Md5Digest {
    Md5Digest::of(b"abc")
}

fn entry(path: &str) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::File,
        size: 3,
        mtime_ns: -1,
        md5: Some(md5()),
        locked_by: Some("h".into()),
        target: None,
    }
}

/// Every kind of frame a server decodes from a client.
fn client_frames() -> Vec<ClientFrame> {
    let client = Some(ClientIdentity { id: "id-0123".into(), host: "laptop".into() });
    let filter = ListFilter {
        modified_from_ns: Some(-5),
        modified_to_ns: Some(i64::MAX),
        pattern: Some("^a.*[b-z]$".into()),
        match_path: true,
        max_depth: Some(2),
    };
    let requests = vec![
        Request::List { path: "dir/sub".into(), filter },
        Request::Hash { path: "file.txt".into() },
        Request::HashAll { path: String::new(), max_depth: Some(1) },
        Request::Download { path: "a b/ü.bin".into(), resume: None },
        Request::Download {
            path: "a b/ü.bin".into(),
            resume: Some(ResumeFrom { offset: u64::MAX, size: 1 << 40, mtime_ns: i64::MIN }),
        },
        Request::Upload {
            path: "u".into(),
            size: 1 << 40,
            mtime_ns: 7,
            mode: 0o644,
            expect: Some(Expect::File { md5: md5() }),
        },
        Request::DownloadDelta { path: "d/ü.bin".into(), delta_only: true, append_to: None },
        Request::DownloadDelta {
            path: "d/ü.bin".into(),
            delta_only: false,
            append_to: Some(Held { size: u64::MAX, md5: md5() }),
        },
        Request::UploadDelta {
            file: UploadItem {
                path: "u".into(),
                size: 1 << 20,
                mtime_ns: -1,
                mode: 0o600,
                expect: Some(Expect::Absent),
            },
            append_to: None,
        },
        Request::UploadDelta {
            file: UploadItem { path: "u".into(), size: 10, mtime_ns: 0, mode: 0o600, expect: None },
            append_to: Some(Held { size: 1 << 62, md5: md5() }),
        },
        Request::Mkdir { path: "new/dir".into() },
        Request::Delete { path: "old".into(), expect: Some(Expect::EmptyDir) },
        Request::Rename { from: "a".into(), to: "b".into(), expect: None },
        Request::Symlink { path: "a".into(), target: "b".into(), expect: None },
        Request::Changes { since: u64::MAX },
        Request::Subscribe,
        Request::Lock { path: "l".into() },
        Request::Unlock { path: "l".into(), force: true },
        Request::DownloadBatch { paths: vec!["a".into(), "b/ü".into()] },
        Request::UploadBatch {
            files: vec![UploadItem {
                path: "u".into(),
                size: 3,
                mtime_ns: -1,
                mode: 0o600,
                expect: Some(Expect::Absent),
            }],
        },
    ];
    let mut frames: Vec<ClientFrame> = requests.into_iter().map(|body| ClientFrame::Request { id: 42, body }).collect();
    frames.push(ClientFrame::Hello(ClientHello {
        protocol_version: PROTOCOL_VERSION,
        software: "tandem test".into(),
        channel: Channel::Control,
        client,
        nonce: Some(Nonce([1; 32])),
    }));
    frames.push(ClientFrame::Auth { proof: Proof([2; 32]) });
    frames.push(ClientFrame::Hello(ClientHello {
        protocol_version: PROTOCOL_VERSION,
        software: String::new(),
        channel: Channel::Bulk { ticket: Ticket(u64::MAX), proof: TicketProof([3; 16]) },
        client: None,
        nonce: None,
    }));
    frames
}

/// Every kind of frame a client decodes from a server.
fn server_frames() -> Vec<ServerFrame> {
    let error = ErrorBody { code: ErrorCode::InvalidPath, message: "invalid path \"..\"".into() };
    let change = Change { seq: 3, path: "f".into(), entry: Some(entry("f")), author: Some("laptop".into()) };
    let responses = vec![
        Response::Entries { entries: vec![entry("d/f"), entry("g")], more: true },
        Response::Ticket { ticket: Ticket(9), entry: entry("t"), mode: Some(0o755), offset: 0 },
        Response::Ticket { ticket: Ticket(9), entry: entry("t"), mode: None, offset: u64::MAX },
        Response::Done { entry: None },
        Response::Batch {
            ticket: Ticket(8),
            items: vec![
                BatchItem::Ready { entry: entry("r"), mode: Some(0o644) },
                BatchItem::Refused(ErrorBody { code: ErrorCode::Stale, message: "stale".into() }),
            ],
        },
        Response::Changes { changes: vec![change], seq: 3, more: false },
        Response::Error(error.clone()),
    ];
    let mut frames: Vec<ServerFrame> =
        responses.into_iter().map(|body| ServerFrame::Response { id: 1, body }).collect();
    let software = "tandem 0.1.0".into();
    let (journal, nonce) = (Some("j".into()), Some(Nonce([4; 32])));
    frames.push(ServerFrame::Hello(ServerHello { protocol_version: 1, software: String::new(), nonce, auth: true }));
    frames.push(ServerFrame::Welcome(ServerWelcome { software, journal }));
    frames.push(ServerFrame::Fatal(error.clone()));
    frames.push(ServerFrame::Changed { seq: 77 });
    frames
}

fn trailers() -> Vec<BulkTrailer> {
    let failed = ErrorBody { code: ErrorCode::Changed, message: "f: changed while it was being read".into() };
    vec![BulkTrailer::Done { size: 1 << 33, md5: md5() }, BulkTrailer::Failed(failed)]
}

fn body_of<T: Serialize>(message: &T) -> Vec<u8> {
    let mut wire = BytesMut::new();
    codec::encode(message, &mut wire).unwrap();
    wire[frame::HEADER_LEN..].to_vec()
}

/// Decodes `body` as `T`: a refusal must name the message; a success must survive encode + decode unchanged.
fn decode_or_refuse<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8], what: &'static str) {
    match codec::decode::<T>(body, what) {
        Ok(message) => assert_eq!(codec::decode::<T>(&body_of(&message), what).unwrap(), message),
        Err(e) => {
            let text = e.to_string();
            let reason = text.strip_prefix(&format!("malformed {what}: ")).unwrap_or_else(|| panic!("{text}"));
            assert!(!reason.is_empty(), "{text}");
        }
    }
}

/// Decodes every message type a peer can send.
fn decode_as_every_message(body: &[u8]) {
    decode_or_refuse::<ClientFrame>(body, "client frame");
    decode_or_refuse::<ServerFrame>(body, "server frame");
    decode_or_refuse::<BulkTrailer>(body, "transfer trailer");
    decode_or_refuse::<Request>(body, "request");
    decode_or_refuse::<Response>(body, "response");
}

fn datagrams() -> Vec<Vec<u8>> {
    let ack = Ack {
        session: 9,
        cumulative: 1,
        window: 2,
        echo_us: 3,
        flags: packet::FLAG_FIN,
        ranges: vec![(5, 9), (11, 12)],
    };
    let packets = [
        Packet::Start { session: 1, window: 8192, payload: 1400, proof: [5; 16] },
        Packet::Data { session: 2, seq: 7, sent_us: 99, payload: b"payload bytes" },
        Packet::Ack(ack),
        Packet::Done { session: 3, size: 1 << 40, packets: 9, retransmits: 4, md5: [7; 16] },
        Packet::Fail { session: 4, code: 2, message: "download ticket unknown, used or expired" },
    ];
    packets
        .iter()
        .map(|packet| {
            let mut buf = Vec::new();
            packet::encode(packet, &mut buf);
            buf
        })
        .collect()
}

fn decode_datagram(datagram: &[u8]) {
    match packet::decode(datagram) {
        Ok(decoded) => {
            let mut again = Vec::new();
            packet::encode(&decoded, &mut again);
            assert_eq!(packet::decode(&again).unwrap(), decoded);
        }
        Err(e) => assert!(e.to_string().starts_with("malformed datagram: "), "{e}"),
    }
}

/// Splits every frame off `wire` under `max_len`: bodies fit, a partial frame stays, the buffer never grows.
fn split_frames(wire: &[u8], max_len: usize) -> Vec<BytesMut> {
    let mut buf = BytesMut::from(wire);
    let capacity = buf.capacity();
    let mut bodies = Vec::new();
    loop {
        let before = buf.len();
        match frame::decode(&mut buf, max_len) {
            Ok(Some(body)) => {
                assert!(body.len() <= max_len);
                assert_eq!(buf.len() + frame::HEADER_LEN + body.len(), before);
                bodies.push(body);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before);
                break;
            }
            Err(e) => {
                assert!(e.to_string().contains(&format!("exceeds the limit of {max_len} bytes")), "{e}");
                break;
            }
        }
        assert!(buf.capacity() <= capacity, "decoding grew the buffer");
    }
    bodies
}

proptest! {
    #![proptest_config(Config::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_frame_or_are_refused(wire in prop::collection::vec(any::<u8>(), 0..256), max_len in 0usize..300) {
        split_frames(&wire, max_len);
        for body in split_frames(&wire, MAX_FRAME_LEN) {
            decode_as_every_message(&body);
        }
    }

    #[test]
    fn a_huge_length_header_is_refused_before_allocation(len in (MAX_FRAME_LEN as u32 + 1)..=u32::MAX, tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::with_capacity(frame::HEADER_LEN + tail.len());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&tail);
        let capacity = buf.capacity();
        let err = frame::decode(&mut buf, MAX_FRAME_LEN).unwrap_err();
        prop_assert_eq!(err.to_string(), format!("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes"));
        prop_assert_eq!(buf.capacity(), capacity);
        prop_assert_eq!(buf.len(), frame::HEADER_LEN + tail.len());
    }

    #[test]
    fn a_large_allowed_header_waits_without_allocating(len in 65u32..=MAX_FRAME_LEN as u32, tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&len.to_be_bytes()[..]);
        buf.extend_from_slice(&tail);
        let capacity = buf.capacity();
        prop_assert!(frame::decode(&mut buf, MAX_FRAME_LEN).unwrap().is_none());
        prop_assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn mutated_client_frames_decode_or_are_refused(pick in any::<prop::sample::Index>(), edits in mutations()) {
        let frames = client_frames();
        let mut wire = BytesMut::new();
        codec::encode(&frames[pick.index(frames.len())], &mut wire).unwrap();
        // Mutating the whole frame, header included, exercises framing and decoding together.
        for body in split_frames(&mutate(wire.to_vec(), &edits), MAX_FRAME_LEN) {
            decode_or_refuse::<ClientFrame>(&body, "client frame");
        }
    }

    #[test]
    fn mutated_messages_decode_or_are_refused(pick in any::<prop::sample::Index>(), edits in mutations()) {
        let mut bodies: Vec<Vec<u8>> = client_frames().iter().map(body_of).collect();
        bodies.extend(server_frames().iter().map(body_of));
        bodies.extend(trailers().iter().map(body_of));
        decode_as_every_message(&mutate(bodies.swap_remove(pick.index(bodies.len())), &edits));
    }

    #[test]
    fn arbitrary_bytes_as_a_message(body in prop::collection::vec(any::<u8>(), 0..128)) {
        decode_as_every_message(&body);
    }

    #[test]
    fn mutated_datagrams_decode_or_are_refused(pick in any::<prop::sample::Index>(), edits in mutations()) {
        let mut all = datagrams();
        decode_datagram(&mutate(all.swap_remove(pick.index(all.len())), &edits));
    }

    #[test]
    fn arbitrary_datagrams_decode_or_are_refused(datagram in prop::collection::vec(any::<u8>(), 0..128)) {
        decode_datagram(&datagram);
    }
}

#[test]
fn every_sample_message_is_valid_before_mutation() {
    for frame in client_frames() {
        assert_eq!(codec::decode::<ClientFrame>(&body_of(&frame), "client frame").unwrap(), frame);
    }
    for frame in server_frames() {
        assert_eq!(codec::decode::<ServerFrame>(&body_of(&frame), "server frame").unwrap(), frame);
    }
    for trailer in trailers() {
        assert_eq!(codec::decode::<BulkTrailer>(&body_of(&trailer), "transfer trailer").unwrap(), trailer);
    }
    for datagram in datagrams() {
        assert!(packet::decode(&datagram).is_ok());
    }
}

/// What the sandbox must guarantee for any input, whatever it accepts or refuses: the text is refused by name or
/// comes out clean, and whatever the share opens for it is the entry at that clean path, reached through real
/// folders only (no link, and nothing in tandem's state folder).
fn check_sandbox(share: &Share, input: &str) {
    use std::os::unix::fs::MetadataExt;
    let normalized = normalize(input);
    match &normalized {
        Ok(rel) => {
            assert!(rel.is_empty() || rel.split('/').all(|n| !matches!(n, "" | "." | ".." | STATE_DIR)), "{rel:?}");
            assert_eq!(normalize(rel).ok().as_ref(), Some(rel), "normalizing {input:?} twice");
        }
        Err(e) => assert!(e.to_string().starts_with(&format!("invalid path {input:?}: ")), "{e}"),
    }
    let Ok(rel) = normalized else { return };
    let abs = share.root().join(&rel);
    let through_real_folders = || {
        abs.ancestors()
            .skip(1)
            .take_while(|dir| dir.starts_with(share.root()))
            .all(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
    };
    if let Ok((_, meta)) = share.open_file(&rel) {
        assert!(through_real_folders(), "{input:?} was opened through a link");
        let on_disk = std::fs::symlink_metadata(&abs).unwrap();
        assert!(on_disk.is_file() && on_disk.ino() == meta.inode, "{input:?} opened something else");
    }
    if let Ok(Some(meta)) = share.meta(&rel) {
        assert!(through_real_folders(), "{input:?} was looked up through a link");
        assert_eq!(std::fs::symlink_metadata(&abs).unwrap().ino(), meta.inode, "{input:?}");
    }
}

fn run_sandbox_property(strategy: impl Strategy<Value = String>) {
    let root = tempfile::tempdir().unwrap();
    plant_traps(root.path());
    let share = Share::open(root.path()).unwrap();
    let mut runner = TestRunner::new(Config::with_cases(4096));
    runner
        .run(&strategy, |input| {
            check_sandbox(&share, &input);
            Ok(())
        })
        .unwrap();
}

#[test]
fn paths_built_from_hostile_pieces_stay_inside() {
    let pieces = vec![
        "..",
        ".",
        "",
        STATE_DIR,
        "dir",
        "inner.txt",
        "file.txt",
        "back",
        "inside-link",
        "up",
        "escape",
        "chain",
        "state-link",
        "loop-a",
        "dangling",
        "%2e%2e",
        "..%2fx",
        "..\\x",
        "C:",
        "c:x",
        "x",
        "\0",
        "~",
        "notes.txt",
    ];
    let path = (any::<bool>(), prop::collection::vec(prop::sample::select(pieces), 0..8), any::<bool>()).prop_map(
        |(leading, parts, trailing)| {
            let mut path = parts.join("/");
            if leading {
                path.insert(0, '/');
            }
            if trailing {
                path.push('/');
            }
            path
        },
    );
    run_sandbox_property(path);
}

#[test]
fn arbitrary_strings_stay_inside() {
    run_sandbox_property(any::<String>());
}

#[test]
fn mutated_paths_stay_inside() {
    let seeds = ["dir/inner.txt", "up/x", "chain/passwd", ".tandem/notes.txt", "state-link/notes.txt", "a/../b"];
    let path = (prop::sample::select(seeds.to_vec()), mutations())
        .prop_map(|(seed, edits)| String::from_utf8_lossy(&mutate(seed.as_bytes().to_vec(), &edits)).into_owned());
    run_sandbox_property(path);
}
