//! The integration suite: real `tandem` servers on 127.0.0.1:0 over temporary folders, driven through the real
//! binary and through the client library. One binary, so the suite links once.

#![allow(clippy::unwrap_used)] // A test or benchmark that cannot go on stops with the reason; that is its report.

mod common;

mod auth;
mod batch;
mod cache;
mod cli;
mod concurrency;
mod delta;
mod download;
mod fairness;
mod faults;
mod fuzz_inputs;
mod garbage;
mod hostile_paths;
mod jail;
mod jail_property;
mod layers;
mod limits;
mod load;
mod load_share;
mod memory_attacks;
mod prehello;
mod resume;
mod safety;
mod starvation;
mod sync;
mod sync_cli;
mod sync_delta;
mod sync_links;
mod sync_moves;
mod sync_property;
mod sync_safety_net;
mod sync_stress;
mod tui;
mod udp;
mod upload;
mod wan;
