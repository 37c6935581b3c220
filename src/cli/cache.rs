//! `tandem cache show | verify PATH | clear`: the download cache from the command line. `show` and `clear` never
//! touch the network.

use std::sync::Arc;

use serde_json::json;

use super::{print, print_json};
use crate::app::cache_output::{cleared_text, entries_json, entries_table, verify_json, verify_text};
use crate::app::commands;
use crate::app::{CacheCommand, CacheVerifyArgs};
use crate::cache::DownloadCache;
use crate::client::Remote;
use crate::config::Config;
use crate::error::Result;

/// Runs one `cache` command.
pub async fn run(command: CacheCommand, remote: &Remote, config: &Config, json: bool) -> Result<()> {
    let cache = commands::open_cache(config).await?;
    match command {
        CacheCommand::Show => {
            let listing = commands::cache_show(cache).await?;
            if json {
                print_json(&entries_json(&listing.entries))
            } else {
                print(&entries_table(&listing.entries, listing.limit, &listing.dir.display().to_string()))
            }
        }
        CacheCommand::Clear => {
            let dir = cache.dir().display().to_string();
            let cleared = commands::cache_clear(cache).await?;
            if json {
                print_json(&json!({ "removed": cleared.entries, "bytes": cleared.bytes }))
            } else {
                print(&cleared_text(cleared, &dir))
            }
        }
        CacheCommand::Verify(args) => verify(args, remote, config, cache, json).await,
    }
}

/// `cache verify PATH`: the file from the cache if its bytes still match the remote MD5, else from the network.
async fn verify(
    args: CacheVerifyArgs,
    remote: &Remote,
    config: &Config,
    cache: Arc<DownloadCache>,
    json: bool,
) -> Result<()> {
    let how = (args.protocol, args.udp_idle_timeout);
    let (report, outcome) = super::fetch_shown(remote, config, (&args.path, &args.to), how, json, Some(cache)).await?;
    if json { print_json(&verify_json(&report, outcome)) } else { print(&verify_text(&report, outcome)) }
}
