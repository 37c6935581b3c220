//! tandem: a two-pane terminal file manager for a folder on another machine, with MD5-verified transfers over
//! TCP and over its own reliable UDP protocol, and two-way sync.
//!
//! The `tandem` binary is a thin layer over this library: every command, and every action of the terminal UI,
//! is a call into the modules below.
//!
//! # Layout
//!
//! `docs/ARCHITECTURE.md` is the map: the layers below, from the top, each using only lower ones (a test checks).
//!
//! - [`cli`], [`tui`]: the two front ends: the command line prints, the terminal UI shows.
//! - [`app`]: the command layer: the command-line contract as clap types, each command as a typed call, how
//!   results look as tables and JSON, the demo's sample share.
//! - [`sync`]: two-way sync: the pure planner, the state database, the scanner, the engine and its task.
//! - [`client`]: the control connection, the download drivers (resumable, delta, through the cache).
//! - [`server`]: `tandem serve`: listener, sessions, one file per request kind, bulk transfers, history log.
//! - [`transfer`]: file bytes on the bulk TCP stream and over UDP, hashed while they move, and rsync deltas.
//! - [`cache`]: the client's download cache: objects by MD5, a size limit, least recently used out first.
//! - [`compare`]: pairs local and remote entries and says whether both sides hold the same bytes.
//! - [`share`]: a folder as a jail (every operation beneath its root's handle, no link followed), the path
//!   check, directory walk, entry metadata, filters, atomic writes.
//! - [`wire`]: thin async adapters that read and write frames on a socket.
//! - [`protocol`]: sans-IO wire format: message types, listing entries, frames, the MessagePack codec.
//! - [`config`]: this user's folders, `config.toml` and the environment, read once at start-up.
//! - [`digest`]: every use of MD5, file stamps, and the hash cache.
//! - [`auth`]: tokens, nonces and the proofs a client gives.
//! - [`db`]: opening tandem's SQLite databases.
//! - [`task`]: running blocking filesystem work off the async threads.
//! - [`timefmt`]: parsing and printing times the way people type and read them.
//! - [`pseudo_random`]: deterministic sample bytes for the demo, tests and benchmarks.
//! - [`error`]: typed errors that name the path or value involved.

pub mod app;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod db;
pub mod digest;
pub mod error;
pub mod protocol;
pub mod pseudo_random;
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
