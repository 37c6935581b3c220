//! tandem: a two-pane terminal file manager for a folder on another machine, with MD5-verified transfers over
//! TCP and over its own reliable UDP protocol, and two-way sync.
//!
//! The `tandem` binary is a thin layer over this library: every command, and every action of the terminal UI,
//! is a call into the modules below.
//!
//! # Layout
//!
//! - [`protocol`]: sans-IO wire format: message types, length-prefixed frames, the MessagePack codec.
//! - [`wire`]: thin async adapters that read and write frames on a socket.
//! - [`share`]: the served folder as a jail (every operation beneath its root's handle, no link followed), the
//!   path check, directory walk, entry metadata, filters, atomic writes.
//! - [`digest`]: every use of MD5, and the server's hash cache.
//! - [`server`]: `tandem serve`: listener, sessions, one file per request kind, bulk transfers, history log.
//! - [`client`]: the control connection, the download drivers (resumable, delta, through the cache).
//! - [`cache`]: the client's download cache: objects by MD5, a size limit, least recently used out first.
//! - [`transfer`]: file bytes on the bulk TCP stream and over UDP, hashed while they move, and rsync deltas.
//! - [`sync`]: two-way sync: the pure planner, the state database, the scanner, the engine and its task.
//! - [`compare`]: pairs local and remote entries and says whether both sides hold the same bytes.
//! - [`db`]: opening tandem's SQLite databases.
//! - [`task`]: running blocking filesystem work off the async threads.
//! - [`tui`]: the two-pane terminal UI: app state, keys, background worker, views.
//! - [`timefmt`]: parsing and printing times the way people type and read them.
//! - [`cli`]: the command-line contract: arguments, dispatch, tables and JSON.
//! - [`error`]: typed errors that name the path or value involved.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod compare;
pub mod db;
pub mod digest;
pub mod error;
pub mod protocol;
pub mod server;
pub mod share;
pub mod sync;
pub mod task;
pub mod timefmt;
pub mod transfer;
pub mod tui;
pub mod wire;

pub use error::{Error, Result};

/// Where `serve` listens and where client commands connect unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";
