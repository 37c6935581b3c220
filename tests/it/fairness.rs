//! Fairness: attacks by which one client (or a few addresses) once stopped or starved the server, each run
//! against a real `tandem serve`. One address's bulk connections leave most connection slots to others.

use std::time::Duration;

use tandem::client::Connection;

use crate::common::*;
use crate::starvation::{answered_within_a_second, connect_from, receive};

/// Opens up to `count` bulk channels for uploads on `conn` and sends nothing on them, until the server refuses one
/// (its reason is returned) or one gets no answer within 2 s. (A download nobody reads could still end, once the
/// kernel's buffers hold the whole file; an upload that never comes holds its connection.)
async fn hold_bulk_uploads(conn: &Connection, count: usize) -> (Vec<tokio::net::TcpStream>, String) {
    let mut held = Vec::new();
    for n in 0..count {
        let ticket = match conn.upload_ticket(&format!("stall/{n}"), (1 << 20, 0, 0o644), None).await {
            Ok((ticket, _)) => ticket,
            Err(e) => return (held, format!("ticket refused: {e}")),
        };
        match tokio::time::timeout(Duration::from_secs(2), conn.open_bulk_channel(ticket)).await {
            Ok(Ok((stream, _))) => held.push(stream),
            Ok(Err(e)) => return (held, e.to_string()),
            Err(_) => return (held, "no answer within 2 s".into()),
        }
    }
    (held, String::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_addresss_bulk_connections_leave_connections_for_everyone_else() {
    let root = tempfile::tempdir().unwrap();
    write_file(root.path(), "small.txt", b"small", 1_600_000_000);
    let server = ServeProcess::start_with(root, &["--max-connections", "200"]);
    // 4 sessions × 60 uploads never sent: 240 bulk connections asked for, 50 (a quarter of 200) let in.
    let mut sessions = Vec::new();
    let (mut held, mut refusals) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let conn = Connection::connect(&server.addr).await.unwrap();
        let (streams, why) = hold_bulk_uploads(&conn, 60).await;
        held.extend(streams);
        refusals.push(why);
        sessions.push(conn);
    }
    println!("one address holds {} bulk connections; refused with {:?}", held.len(), refusals[0]);
    assert_eq!(held.len(), 50);
    let refused = "too many bulk connections from 127.0.0.1: at most 50 at once";
    assert!(refusals.iter().all(|r| r.ends_with(refused)), "{refusals:?}");
    answered_within_a_second(&server.addr, "", "small.txt").await;
    let mut other = connect_from([127, 0, 0, 2], &server.addr).unwrap();
    crate::starvation::send(&mut other, &crate::starvation::hello(tandem::protocol::Channel::Control)).unwrap();
    assert!(matches!(receive(&mut other), Some(tandem::protocol::ServerFrame::Hello(_))));
    drop((held, sessions));
}
