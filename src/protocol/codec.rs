//! MessagePack encoding of protocol messages, the only place tandem calls rmp-serde.
//!
//! Structs are written as maps (`to_vec_named`) so a newer peer can add fields that an older one ignores.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{MAX_FRAME_LEN, frame};
use crate::error::{Error, Result};

/// Appends `message` to `dst` as one frame.
pub fn encode<T: Serialize>(message: &T, dst: &mut BytesMut) -> Result<()> {
    let body = rmp_serde::to_vec_named(message)
        .map_err(|e| Error::Malformed { what: "outgoing message", reason: e.to_string() })?;
    frame::encode(&body, MAX_FRAME_LEN, dst)
}

/// Decodes one frame body; `what` names the expected message in the error.
pub fn decode<T: DeserializeOwned>(body: &[u8], what: &'static str) -> Result<T> {
    rmp_serde::from_slice(body).map_err(|e| Error::Malformed { what, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::*;
    use crate::protocol::{Entry, EntryKind};

    #[test]
    fn messages_round_trip() {
        let frames = vec![
            ClientFrame::Hello(ClientHello {
                protocol_version: PROTOCOL_VERSION,
                software: "tandem test".into(),
                channel: Channel::Bulk { ticket: Ticket(u64::MAX), proof: crate::auth::TicketProof([7; 16]) },
                client: None,
                nonce: Some(crate::auth::Nonce([3; 32])),
            }),
            ClientFrame::Auth { proof: crate::auth::Proof([5; 32]) },
            ClientFrame::Request {
                id: 7,
                body: Request::List {
                    path: "a b/ü".into(),
                    filter: ListFilter { modified_from_ns: Some(-5), pattern: Some("x$".into()), ..Default::default() },
                },
            },
        ];
        for message in frames {
            let mut buf = BytesMut::new();
            encode(&message, &mut buf).unwrap();
            let body = frame::decode(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
            assert_eq!(decode::<ClientFrame>(&body, "client frame").unwrap(), message);
        }
        let response = ServerFrame::Response {
            id: 9,
            body: Response::Entries {
                entries: vec![Entry {
                    path: "d/f".into(),
                    kind: EntryKind::File,
                    size: 3,
                    mtime_ns: 1_700_000_000_123_456_789,
                    md5: Some("900150983cd24fb0d6963f7d28e17f72".parse().unwrap()),
                    locked_by: None,
                    target: None,
                }],
                more: false,
            },
        };
        let mut buf = BytesMut::new();
        encode(&response, &mut buf).unwrap();
        let body = frame::decode(&mut buf, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(decode::<ServerFrame>(&body, "server frame").unwrap(), response);
    }

    #[test]
    fn garbage_is_an_error_naming_the_message() {
        let err = decode::<ClientFrame>(&[0xc1, 0x00, 0x13], "client frame").unwrap_err();
        assert!(err.to_string().starts_with("malformed client frame: "), "{err}");
    }
}
