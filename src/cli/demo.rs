//! `tandem demo`: the TUI against an embedded server over a sample share, so a new user can try every key without
//! setting anything up; `--tour` instead prints a guided run of the plain commands (listing, hashing, comparing,
//! a verified download). The sample data comes from `assets/` (compiled in) plus one generated large file, and
//! shows every hash status on the first screen. Everything lives in a temporary folder that is removed at the
//! end, never in the current folder.

use std::io::Write;
use std::path::Path;

use tandem_assets::{LOCAL, SHARE};

use super::{output, print, progress};
use crate::client::{Connection, download_tcp};
use crate::compare::{Status, compare_files};
use crate::digest::md5_file;
use crate::error::{Error, Result};
use crate::protocol::ListFilter;
use crate::server::{Server, ServerConfig};
use crate::share::{Entry, EntryKind, Walk};
use crate::transfer::Progress;

/// Size of the generated file in MiB, large enough to watch a transfer; `TANDEM_DEMO_BIG_MIB` overrides it.
const BIG_FILE_MIB: u64 = 256;
const BIG_FILE: &str = "holiday video.bin";

mod tandem_assets {
    macro_rules! files {
        ($dir:literal: $($path:literal),* $(,)?) => {
            &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $dir, "/", $path)) as &[u8])),*]
        };
    }
    pub const SHARE: &[(&str, &[u8])] = files!("sample":
        "readme.txt", "notes/todo.md", "changelog.md", "notes/2026/réunion.txt", "photos/trip to the coast.txt");
    pub const LOCAL: &[(&str, &[u8])] = files!("local": "readme.txt", "notes/todo.md", "changelog.md", "draft.txt");
}

pub async fn run(tour: bool) -> Result<()> {
    let base =
        tempfile::Builder::new().prefix("tandem-demo-").tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let share = base.path().join("share");
    let local = base.path().join("local");
    write_files(&share, SHARE)?;
    write_files(&local, LOCAL)?;
    let mib = std::env::var("TANDEM_DEMO_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(BIG_FILE_MIB);
    write_pseudo_random(&share.join(BIG_FILE), mib << 20)?;

    let mut config = ServerConfig::new(&share);
    config.listen = "127.0.0.1:0".into();
    let (addr, shutdown, server) = Server::spawn(config).await?;
    let addr = addr.to_string();
    let result = if tour {
        run_tour(&share, &local, &addr).await
    } else {
        crate::tui::run(&local, &crate::client::Remote::new(&addr)).await
    };
    shutdown.cancel();
    let _ = server.await;
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

fn write_files(root: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    for (rel, bytes) in files {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Writes `size` pseudo-random bytes (xorshift) to `path`, creating its folder: test data that is neither all
/// zeros nor compressible. The demo's large file, and the benchmarks' files.
pub fn write_pseudo_random(path: &Path, size: u64) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        fill_pseudo_random(&mut block, &mut state);
        let n = (size - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).map_err(|e| Error::io(path, e))?;
        written += n as u64;
    }
    file.flush().map_err(|e| Error::io(path, e))
}

/// `len` pseudo-random bytes, the same for the same `seed`: [`write_pseudo_random`]'s data, in memory.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    fill_pseudo_random(&mut bytes, &mut (seed | 1));
    bytes
}

/// Fills `bytes` from the xorshift generator `state`, eight bytes per step.
fn fill_pseudo_random(bytes: &mut [u8], state: &mut u64) {
    for chunk in bytes.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
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
