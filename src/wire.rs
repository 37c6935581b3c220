//! Thin async adapters that move protocol frames over a byte stream. All parsing lives in [`crate::protocol`];
//! this file only reads into a buffer and writes out of one, and names the peer in every error.

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::protocol::{MAX_FRAME_LEN, codec, frame};

/// Reads whole frames from `io`, decoding each as a message.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    peer: String,
    /// Largest frame accepted; lower than [`MAX_FRAME_LEN`] before a peer has said hello.
    max_len: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R, peer: impl ToString) -> Self {
        FrameReader { io, buf: BytesMut::with_capacity(8 * 1024), peer: peer.to_string(), max_len: MAX_FRAME_LEN }
    }

    /// Changes the largest frame this reader accepts.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// The next message, or `None` if the peer closed the connection between frames.
    pub async fn next<T: DeserializeOwned>(&mut self, what: &'static str) -> Result<Option<T>> {
        loop {
            if let Some(body) = frame::decode(&mut self.buf, self.max_len)? {
                return codec::decode(&body, what).map(Some);
            }
            // Grow by what arrives, in steps, never by what a length prefix claims.
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve((self.buf.len() * 2).clamp(8 * 1024, 1024 * 1024));
            }
            let read = self.io.read_buf(&mut self.buf).await.map_err(|e| Error::net(&self.peer, e))?;
            if read == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(Error::Closed { addr: self.peer.clone(), during: "in the middle of a frame" });
            }
        }
    }

    /// The stream, to write on it between reads.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// Gives back the stream and any bytes already read past the last frame.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buf)
    }
}

/// Writes messages to `io`, one frame each.
pub struct FrameWriter<W> {
    io: W,
    buf: BytesMut,
    peer: String,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W, peer: impl ToString) -> Self {
        FrameWriter { io, buf: BytesMut::with_capacity(8 * 1024), peer: peer.to_string() }
    }

    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        codec::encode(message, &mut buf)?;
        let sent = self.send_encoded(&buf).await;
        self.buf = buf;
        sent
    }

    /// Writes bytes that already hold whole frames.
    pub async fn send_encoded(&mut self, frames: &[u8]) -> Result<()> {
        self.io.write_all(frames).await.map_err(|e| Error::net(&self.peer, e))?;
        self.io.flush().await.map_err(|e| Error::net(&self.peer, e))
    }

    pub fn into_inner(self) -> W {
        self.io
    }
}
