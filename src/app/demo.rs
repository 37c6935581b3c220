//! The demo's sample: a share and a local folder filled from `assets/` (compiled in) plus one generated large
//! file, chosen so the first screen shows every hash status, served by an embedded server on loopback. Everything
//! lives in a temporary folder that is removed at the end, never in the current folder. `tandem demo` opens the
//! TUI on it; `tandem demo --tour` prints a guided run of the plain commands against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use tandem_assets::{LOCAL, SHARE};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pseudo_random::write_pseudo_random;
use crate::server::{Server, ServerConfig};

/// Size of the generated file in MiB, large enough to watch a transfer; `TANDEM_DEMO_BIG_MIB` overrides it.
const BIG_FILE_MIB: u64 = 256;
pub const BIG_FILE: &str = "holiday video.bin";

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

/// The sample folders and the server of them, running until [`Sample::stop`].
pub struct Sample {
    pub share: PathBuf,
    pub local: PathBuf,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<()>>,
    /// Removed on drop, with both folders.
    _base: tempfile::TempDir,
}

impl Sample {
    /// Writes the sample folders and starts serving the share on a free loopback port.
    pub async fn start(config: &Config) -> Result<Sample> {
        let base = tempfile::Builder::new()
            .prefix("tandem-demo-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let share = base.path().join("share");
        let local = base.path().join("local");
        write_files(&share, SHARE)?;
        write_files(&local, LOCAL)?;
        let mib = config.demo_big_mib.unwrap_or(BIG_FILE_MIB);
        write_pseudo_random(&share.join(BIG_FILE), mib << 20)?;
        let mut server_config = ServerConfig::new(&share);
        server_config.listen = "127.0.0.1:0".into();
        let (addr, shutdown, server) = Server::spawn(server_config).await?;
        Ok(Sample { share, local, addr, shutdown, server, _base: base })
    }

    /// Stops the server; the folders go when the sample is dropped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }
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
