//! The command layer, beneath both front ends: the command-line contract as clap types ([`command`]), each
//! command as a typed call ([`commands`]), how results look as text and JSON ([`output`], [`cache_output`]), and
//! the demo's sample share ([`demo`]). `cli` prints what these return and `tui` shows it; neither imports the
//! other.

pub mod cache_output;
pub mod command;
pub mod commands;
pub mod demo;
pub mod output;

pub use command::{
    CacheCommand, CacheVerifyArgs, Cli, Command, DemoArgs, DownloadArgs, HashCommand, IndexCommand, OpenArgs, Protocol,
    ServeArgs, SyncArgs, UploadArgs,
};
