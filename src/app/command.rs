//! The command-line contract as clap types. The TUI's `:` prompt parses the same types, so a command typed there
//! means exactly what it means in a shell.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::transfer::Protocol;

use crate::DEFAULT_ADDR;

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "A two-pane file manager for a folder on another machine",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Address of the tandem server
    #[arg(short, long, global = true, env = "TANDEM_REMOTE", default_value = DEFAULT_ADDR, value_name = "ADDR")]
    pub remote: String,

    /// Shared secret: the server's with `serve`, the one to prove otherwise (also `token` in config.toml)
    #[arg(long, global = true, env = "TANDEM_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Print one JSON document on stdout instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a folder to tandem clients over TCP
    Serve(ServeArgs),
    /// The two-pane TUI on a local folder and the remote share
    Open(OpenArgs),
    /// The TUI against an embedded server over a sample share
    Demo(DemoArgs),
    /// List the remote share recursively
    #[command(subcommand)]
    Index(IndexCommand),
    /// MD5 of remote files
    #[command(subcommand)]
    Hash(HashCommand),
    /// Download one remote file, verified by MD5
    Download(DownloadArgs),
    /// Upload one local file, written atomically on the server; a replaced file goes to its trash
    Upload(UploadArgs),
    /// The download cache: list it, check one file against it, or empty it
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Two-way sync of DIR with the remote share; runs until stopped (Ctrl-C), or one full pass with --once
    Sync(SyncArgs),
    /// Lock a remote path: other clients' writes and deletes of it are refused until you unlock it
    Lock {
        /// Remote path, relative to the share
        path: String,
    },
    /// Release a lock you hold, or anyone's with --force
    Unlock {
        /// Remote path, relative to the share
        path: String,
        /// Release the lock even if another client holds it
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Local folder to keep in step with the share
    pub dir: PathBuf,
    /// Seconds between polls of the server, with a full rescan of DIR every tenth poll (changes on either side are
    /// picked up at once anyway, by a file watcher and the server's push)
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub interval: u64,
    /// Run one full sync and exit
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Folder to serve
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = DEFAULT_ADDR, value_name = "ADDR")]
    pub listen: String,
    /// Connections served at once
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,
    /// Control sessions one client address may hold at once
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_sessions_per_address: usize,
    /// Bulk connections one client address may hold at once, running or waiting; more are refused as busy (at most a
    /// quarter of --max-connections)
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_bulk_per_address: usize,
    /// Transfers one session may run at once; more wait their turn
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_transfers_per_client: usize,
    /// Transfers one client address may run at once over all its sessions; more wait their turn (UDP: refused as busy)
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_transfers_per_address: usize,
    /// Transfers the whole server runs at once; more wait their turn (UDP: refused as busy)
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub max_transfers: usize,
    /// Listings and whole-tree hashes one client address may run at once; more wait their turn
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_listings_per_address: usize,
    /// Listings and whole-tree hashes the whole server runs at once; more wait their turn
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_listings: usize,
    /// Connections from one address that sent nothing for a second after connecting; more are refused
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_handshakes_per_address: usize,
    /// Connections from all addresses still saying hello (at most half of --max-connections); when all are taken, a
    /// newcomer evicts the oldest of the address holding the most
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_handshakes: usize,
    /// Bytes of answers one session may have waiting to be sent; its requests wait for the client to read
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_queued_bytes: usize,
    /// Drop a session whose client has read none of its waiting answers for this many seconds
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub stall_timeout: u64,
    /// Failed authentications after which an address is refused for --auth-lockout seconds
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_auth_failures: u32,
    /// Seconds an address that failed to authenticate too often is refused
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub auth_lockout: u64,
    /// Make a strong random token, print it, and require it (instead of --token)
    #[arg(long)]
    pub generate_token: bool,
    /// Requests one session may have running at once; more wait their turn
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_requests_in_flight: usize,
    /// Requests one session may start per second (after a burst of as many); faster ones are delayed
    #[arg(long, default_value_t = 5000, value_name = "N")]
    pub requests_per_second: u32,
    /// Close a connection that has not said hello (and proved its token) within this many seconds
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub handshake_timeout: u64,
    /// Close a control connection after this many seconds without a request
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Refuse every write (upload, mkdir, delete, rename)
    #[arg(long)]
    pub read_only: bool,
    /// Accept names that Windows or macOS cannot hold (`CON`, `nul.txt`, `a:b`, a trailing dot or space, control
    /// characters, names in one folder that differ only by case); by default they are refused, so the share stays
    /// usable from every client
    #[arg(long)]
    pub allow_unportable_names: bool,
    /// Serve on a non-loopback address without a token (anyone who can reach it can read and change the folder)
    #[arg(long)]
    pub insecure_no_auth: bool,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Local file to send
    pub local: PathBuf,
    /// Where to put it in the share (default: its file name at the share's root)
    #[arg(value_name = "REMOTE_PATH")]
    pub remote_path: Option<String>,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Local folder for the left pane
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub local: PathBuf,
    /// Also serve the local folder to peers on this address
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print a guided tour of the plain commands instead of opening the TUI
    #[arg(long)]
    pub tour: bool,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Every entry
    Longlist,
    /// Entries modified between START and END, inclusive ("YYYY-MM-DD HH:MM:SS" local time, or RFC 3339)
    Shortlist { start: String, end: String },
    /// Entries whose name matches PATTERN
    Regex {
        pattern: String,
        /// Match the whole relative path instead of the name
        #[arg(long)]
        path: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HashCommand {
    /// MD5, size and modification time of one file
    Verify { path: String },
    /// MD5 of every file
    Checkall,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// tcp or udp, in any letter case
    #[arg(value_enum, ignore_case = true)]
    pub protocol: Protocol,
    /// Remote path, relative to the share
    pub path: String,
    /// Local folder to write into
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub to: PathBuf,
    /// With udp: give up after this many seconds without a datagram from the server
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub udp_idle_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Cached files (name, size, MD5, last use) and the total against the limit
    Show,
    /// Copy remote PATH from the cache if the cached bytes still match the remote MD5; download it otherwise
    Verify(CacheVerifyArgs),
    /// Remove every cached file
    Clear,
}

#[derive(Debug, Args)]
pub struct CacheVerifyArgs {
    /// Remote path, relative to the share
    pub path: String,
    /// Local folder to write into
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub to: PathBuf,
    /// How to download the file if the cache cannot serve it: tcp or udp, in any letter case
    #[arg(long, value_enum, ignore_case = true, default_value = "tcp")]
    pub protocol: Protocol,
    /// With udp: give up after this many seconds without a datagram from the server
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub udp_idle_timeout: u64,
}
