//! A bulk connection: redeems its ticket and streams the file over [`crate::transfer::tcp`] on a blocking
//! thread, then records the MD5 it computed in the hash cache and logs the transfer.

use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;

use super::Shared;
use super::history::Record;
use crate::error::{Error, Result};
use crate::protocol::{BulkTrailer, ErrorBody, ErrorCode, Ticket};
use crate::transfer::tcp;

pub async fn serve(stream: TcpStream, ticket: Ticket, peer: String, shared: Arc<Shared>) {
    let started = Instant::now();
    let pending = shared.tickets.redeem(ticket);
    let arguments = match &pending {
        Some(pending) => format!("path={:?} requested_by={}", pending.entry.path, pending.peer),
        None => format!("ticket={:016x}", ticket.0),
    };
    let shared_for_send = shared.clone();
    let peer_for_send = peer.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<tcp::Sent> {
        let mut stream = into_blocking(stream, &peer_for_send, shared_for_send.config.idle_timeout)?;
        let Some(pending) = pending else {
            return refuse_ticket(&mut stream, &peer_for_send);
        };
        let sent = tcp::send_file(
            &mut stream,
            &pending.abs,
            &pending.entry.path,
            &peer_for_send,
            pending.stamp,
            pending.entry.md5,
        )?;
        if let Some(md5) = sent.computed_md5 {
            shared_for_send.hashes.insert(&pending.entry.path, pending.stamp, md5);
            shared_for_send.hashes.flush()?;
        }
        Ok(sent)
    })
    .await
    .unwrap_or_else(|e| Err(Error::net(&peer, std::io::Error::other(format!("transfer task failed: {e}")))));

    let (bytes, outcome) = match outcome {
        Ok(sent) => match sent.trailer {
            BulkTrailer::Done { .. } => (sent.bytes, Ok(())),
            BulkTrailer::Failed(body) => (sent.bytes, Err(body.message)),
        },
        Err(e) => (0, Err(e.to_string())),
    };
    shared.history.record(Record {
        peer: &peer,
        command: "transfer",
        arguments: &arguments,
        outcome,
        bytes,
        elapsed: started.elapsed(),
    });
}

fn into_blocking(stream: TcpStream, peer: &str, timeout: std::time::Duration) -> Result<std::net::TcpStream> {
    let stream = stream.into_std().map_err(|e| Error::net(peer, e))?;
    stream.set_nonblocking(false).map_err(|e| Error::net(peer, e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| Error::net(peer, e))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| Error::net(peer, e))?;
    Ok(stream)
}

/// An unknown, used or expired ticket gets an empty stream with a failure trailer.
fn refuse_ticket(stream: &mut std::net::TcpStream, peer: &str) -> Result<tcp::Sent> {
    let body = ErrorBody { code: ErrorCode::BadTicket, message: "download ticket unknown, used or expired".into() };
    tcp::refuse(stream, peer, body)
}
