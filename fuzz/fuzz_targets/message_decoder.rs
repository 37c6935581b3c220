//! Fuzzes `codec::decode` with every message type tandem reads from a peer: the server decodes `ClientFrame`
//! (hello and requests) and upload `BulkTrailer`s; the client decodes `ServerFrame` (hello, responses, pushes,
//! fatal errors) and download `BulkTrailer`s. The parts are decoded on their own too, so the fuzzer reaches
//! their fields without first finding the enclosing variant. A refusal must name the message; a message that
//! decodes must encode again and decode to the same value; a decoded request must survive what the server does
//! before touching the disk (logging its arguments, compiling its pattern).
#![no_main]

use std::fmt::Debug;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tandem::protocol::{
    BulkTrailer, Change, Channel, ClientFrame, ClientHello, ErrorBody, ListFilter, MAX_FRAME_LEN, Request, Response,
    ServerFrame, ServerHello, codec, frame,
};
use tandem::share::{Entry, EntryFilter};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8], what: &'static str) -> Option<T> {
    let message = match codec::decode::<T>(body, what) {
        Ok(message) => message,
        Err(e) => {
            assert!(e.to_string().starts_with(&format!("malformed {what}: ")), "{e}");
            return None;
        }
    };
    let mut wire = BytesMut::new();
    codec::encode(&message, &mut wire).expect("a decoded message encodes again");
    let again = frame::decode(&mut wire, MAX_FRAME_LEN).expect("own frame").expect("whole frame");
    assert_eq!(codec::decode::<T>(&again, what).expect("re-encoded message decodes"), message);
    Some(message)
}

fn as_server_would(request: &Request) {
    let _ = (request.command(), request.arguments());
    if let Request::List { filter, .. } = request {
        let _ = EntryFilter::new(filter);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(ClientFrame::Request { body, .. }) = round_trip::<ClientFrame>(data, "client frame") {
        as_server_would(&body);
    }
    if let Some(request) = round_trip::<Request>(data, "request") {
        as_server_would(&request);
    }
    round_trip::<ServerFrame>(data, "server frame");
    round_trip::<BulkTrailer>(data, "transfer trailer");
    round_trip::<ClientHello>(data, "hello");
    round_trip::<ServerHello>(data, "server hello");
    round_trip::<Channel>(data, "channel");
    round_trip::<Response>(data, "response");
    round_trip::<Change>(data, "change");
    round_trip::<Entry>(data, "entry");
    round_trip::<ErrorBody>(data, "error");
    if let Some(filter) = round_trip::<ListFilter>(data, "filter") {
        let _ = EntryFilter::new(&filter);
    }
});
