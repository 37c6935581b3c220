//! `tandem demo --tour`: a guided run of the plain commands (listing, hashing, comparing, a verified download)
//! against the sample share of [`crate::app::demo`], printed as a person would type and see them.

use std::path::Path;

use super::{print, progress};
use crate::app::demo::{BIG_FILE, Sample};
use crate::app::output;
use crate::client::{Connection, download_tcp};
use crate::compare::{Status, compare_files};
use crate::config::Config;
use crate::digest::md5_file;
use crate::error::{Error, Result};
use crate::protocol::ListFilter;
use crate::share::{Entry, EntryKind, Walk};
use crate::transfer::Progress;

/// `tandem demo --tour`: the plain commands, one after another, against the sample share.
pub async fn tour(config: &Config) -> Result<()> {
    let sample = Sample::start(config).await?;
    let result = run_tour(&sample.share, &sample.local, &sample.addr.to_string()).await;
    sample.stop().await;
    result
}

async fn run_tour(share: &Path, local: &Path, addr: &str) -> Result<()> {
    let (share, local) = (share.to_path_buf(), local.to_path_buf());
    print(&format!(
        "tandem demo: serving a sample share from {} on {addr}\nlocal folder: {}\n",
        share.display(),
        local.display()
    ))?;
    let conn = Connection::connect(addr).await?;

    step("tandem index longlist")?;
    print(&output::entries_table(&conn.list("", ListFilter::default()).await?, false))?;

    step("tandem hash checkall")?;
    let remote = conn.hash_all("", None).await?;
    print(&output::entries_table(&remote, true))?;

    step("compare the local folder with the share (MD5 on both sides)")?;
    let local_entries = hash_local(&local)?;
    let mut table = String::new();
    for (path, status) in compare_files(&local_entries, &remote) {
        table.push_str(&format!("  {}  {path:<32} {}\n", status.mark(), status.describe()));
    }
    print(&table)?;

    step(&format!("tandem download tcp '{BIG_FILE}' --to {}", local.display()))?;
    let progress = Progress::default();
    let bar = progress::show(progress.clone(), BIG_FILE.to_string());
    let report = download_tcp(&conn, BIG_FILE, &local, &progress).await;
    bar.finish().await;
    print(&output::download_text(&report?))?;

    step("compare again")?;
    let after = compare_files(&hash_local(&local)?, &remote);
    let status = after.iter().find(|(p, _)| p == BIG_FILE).map(|(_, s)| *s).unwrap_or(Status::Unknown);
    print(&format!("  {}  {BIG_FILE:<32} {}\n", status.mark(), status.describe()))?;

    step("tandem index regex '\\.md$'")?;
    let filter = ListFilter { pattern: Some(r"\.md$".into()), ..Default::default() };
    print(&output::entries_table(&conn.list("", filter).await?, false))?;

    step("tail -n 4 share/.tandem/history.log   (time, peer, command, arguments, outcome, bytes, ms)")?;
    let log_path = share.join(".tandem/history.log");
    let log = std::fs::read_to_string(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let lines: Vec<&str> = log.lines().collect();
    print(&(lines[lines.len().saturating_sub(4)..].join("\n") + "\n"))?;

    print(
        "\nTry it on your own folders: `tandem serve DIR` on one machine, then \
         `tandem --remote HOST:7878 index longlist` on another.\n",
    )?;
    Ok(())
}

fn step(command: &str) -> Result<()> {
    print(&format!("\n$ {command}\n"))
}

/// Every file in the local folder, hashed.
fn hash_local(root: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in Walk::local(root, "")? {
        let mut entry = entry?;
        if entry.kind == EntryKind::File {
            entry.md5 = Some(md5_file(&root.join(&entry.path))?);
        }
        entries.push(entry);
    }
    Ok(entries)
}
