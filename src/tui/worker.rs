//! The TUI's background side. The UI sends [`Job`]s and receives [`Event`]s; everything here runs on tokio tasks
//! and blocking threads, so the UI thread only draws and handles keys.
//!
//! A supervisor task keeps one control connection to the remote, as this user's client identity so that locks
//! are theirs, reconnecting with backoff when it drops, and reports each change of state. Each job runs on its
//! own task; downloads run two at a time, through the download cache. Sync starts and stops in job order, on
//! the [`SyncRunner`]'s task. The worker tells the UI which MD5s the cache holds at start and after each change,
//! so the remote pane can mark cached files without reading the cache itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use tokio::sync::{Semaphore, mpsc, watch};

use super::pane::{Side, join};
use super::sync::SyncRunner;
use super::transfers::download_message;
use crate::app::cache_output::{cleared_text, entries_table};
use crate::app::commands;
use crate::app::output;
use crate::app::{CacheCommand, Cli, Command, HashCommand};
use crate::cache::DownloadCache;
use crate::client::{Backoff, Connection, Remote, fetch, identity, upload_tcp};
use crate::config::Config;
use crate::digest::{HashCache, Md5Digest, md5_file};
use crate::error::{Error, Result};
use crate::protocol::ListFilter;
use crate::share::{Entry, EntryKind, FileStamp, Walk};
use crate::sync::{SyncEvent, SyncSummary};
use crate::task::blocking;
use crate::transfer::udp::DEFAULT_IDLE_TIMEOUT;
use crate::transfer::{Progress, Protocol};

/// Downloads running at once; the rest wait in the queue.
const PARALLEL_DOWNLOADS: usize = 2;
/// Above this many names, one `HashAll` of the folder beats one request per file.
const HASH_ALL_THRESHOLD: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Work the UI asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// The entries of one folder.
    List { side: Side, dir: String },
    /// The MD5 of some files of one folder.
    Hash { side: Side, dir: String, names: Vec<String> },
    /// Download remote files and folders into a local folder (relative to the local root).
    Download { paths: Vec<(String, EntryKind)>, local_dir: String, protocol: Protocol },
    /// Upload local files and folders (relative to the local root) into a remote folder.
    Upload { paths: Vec<(String, EntryKind)>, remote_dir: String },
    /// A command line typed at the `:` prompt; downloads land in `local_dir`.
    Command { line: String, local_dir: String },
    /// Lock a remote path for this client.
    Lock { path: String },
    /// Release this client's lock on a remote path.
    Unlock { path: String },
    /// Two-way sync of the local root with the remote share; nothing if it already runs.
    StartSync,
    /// Stop sync; [`Event::SyncStopped`] follows once it has.
    StopSync,
}

/// What the background reports.
#[derive(Debug, Clone)]
pub enum Event {
    Listed {
        side: Side,
        dir: String,
        result: std::result::Result<Vec<Entry>, String>,
    },
    /// MD5s of files of `dir`; `None` where hashing failed.
    Hashed {
        side: Side,
        dir: String,
        results: Vec<(String, Option<Md5Digest>)>,
    },
    TransferQueued {
        id: u64,
        name: String,
        protocol: Protocol,
        progress: Progress,
    },
    TransferStarted {
        id: u64,
    },
    /// A transfer ended: a summary line or the error, and the pane folder that now holds the file.
    TransferFinished {
        id: u64,
        refresh: (Side, String),
        result: std::result::Result<String, String>,
    },
    Connection(ConnectionState),
    /// Text produced by a `:` command.
    Output {
        title: String,
        text: String,
    },
    Message {
        text: String,
        error: bool,
    },
    /// A report from the running sync.
    Sync(SyncEvent),
    /// Sync ended: stopped as asked (what it did in all) or failed.
    SyncStopped {
        result: std::result::Result<SyncSummary, String>,
    },
    /// What the download cache holds now: MD5 and size of each object.
    Cached {
        objects: Vec<(Md5Digest, u64)>,
    },
    /// A lock or unlock of a remote path was answered.
    LockChanged {
        path: String,
        locked: bool,
        result: std::result::Result<(), String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionState {
    Connecting,
    Connected { server: String },
    Lost { reason: String, retry_in: Duration },
}

/// The UI's handle on the background side.
pub struct Handle {
    jobs: mpsc::UnboundedSender<Job>,
    worker: Arc<Worker>,
}

impl Handle {
    pub fn send(&self, job: Job) {
        let _ = self.jobs.send(job);
    }

    /// Stops sync and waits until it has, so quitting never cuts a pass short without need.
    pub async fn shutdown(&self) {
        self.worker.sync.shutdown().await;
    }
}

/// Starts the background side; returns the handle that takes jobs.
pub fn spawn(local_root: PathBuf, remote: Remote, config: Config, events: mpsc::UnboundedSender<Event>) -> Handle {
    let config = Arc::new(config);
    let (conn_tx, conn_rx) = watch::channel(None);
    tokio::spawn(supervise(remote.clone(), config.clone(), conn_tx, events.clone()));
    let worker = Arc::new(Worker {
        local_root,
        remote,
        config,
        events,
        conn: conn_rx,
        local_hashes: HashCache::in_memory(),
        downloads: Arc::new(Semaphore::new(PARALLEL_DOWNLOADS)),
        next_id: AtomicU64::new(1),
        sync: SyncRunner::default(),
        cache: tokio::sync::OnceCell::new(),
    });
    tokio::spawn(worker.clone().report_cache());
    let (jobs_tx, mut jobs_rx) = mpsc::unbounded_channel::<Job>();
    let dispatcher = worker.clone();
    tokio::spawn(async move {
        while let Some(job) = jobs_rx.recv().await {
            let worker = dispatcher.clone();
            match job {
                // Here, not on tasks of their own, so a quick start, stop, start happens in that order.
                Job::StartSync => worker.sync.start(
                    worker.local_root.clone(),
                    worker.remote.clone(),
                    worker.config.clone(),
                    worker.events.clone(),
                ),
                Job::StopSync => worker.sync.stop(),
                job => drop(tokio::spawn(async move { worker.run(job).await })),
            }
        }
    });
    Handle { jobs: jobs_tx, worker }
}

/// Keeps a connection to `remote`, reconnecting with backoff, and publishes the current one.
async fn supervise(
    remote: Remote,
    config: Arc<Config>,
    current: watch::Sender<Option<Connection>>,
    events: mpsc::UnboundedSender<Event>,
) {
    // Without an identity the server still answers but refuses locks: say so once and carry on.
    let me = match blocking(move || identity::current(&config)).await {
        Ok(me) => Some(me),
        Err(e) => {
            let _ =
                events.send(Event::Message { text: format!("connecting anonymously, so no locks: {e}"), error: true });
            None
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
    loop {
        let _ = events.send(Event::Connection(ConnectionState::Connecting));
        let reason = match remote.connect(me.clone()).await {
            Ok(conn) => {
                backoff.reset();
                let server = conn.server().software.clone();
                // Publish the connection before announcing it: the UI lists the remote as soon as it hears.
                current.send_replace(Some(conn.clone()));
                let _ = events.send(Event::Connection(ConnectionState::Connected { server }));
                conn.closed().await;
                current.send_replace(None);
                conn.close_reason().map(|r| r.message).unwrap_or_else(|| "connection closed".into())
            }
            Err(e) => e.to_string(),
        };
        if events.is_closed() {
            return;
        }
        let retry_in = backoff.next_delay();
        let _ = events.send(Event::Connection(ConnectionState::Lost { reason, retry_in }));
        tokio::time::sleep(retry_in).await;
    }
}

struct Worker {
    local_root: PathBuf,
    remote: Remote,
    config: Arc<Config>,
    events: mpsc::UnboundedSender<Event>,
    conn: watch::Receiver<Option<Connection>>,
    /// MD5s of local files, keyed like the server's cache so unchanged files are not read twice.
    local_hashes: HashCache,
    downloads: Arc<Semaphore>,
    next_id: AtomicU64,
    sync: SyncRunner,
    /// The download cache, opened on first use off the UI thread; `None` when it is off or unusable.
    cache: tokio::sync::OnceCell<Option<Arc<DownloadCache>>>,
}

impl Worker {
    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    async fn cache(&self) -> Option<Arc<DownloadCache>> {
        let opened = self.cache.get_or_init(|| async {
            match commands::cache_for_downloads(&self.config).await {
                Ok(cache) => cache,
                Err(e) => {
                    self.send(Event::Message { text: format!("download cache off: {e}"), error: true });
                    None
                }
            }
        });
        opened.await.clone()
    }

    /// Tells the UI what the cache holds.
    async fn report_cache(self: Arc<Self>) {
        let Some(cache) = self.cache().await else { return };
        match blocking(move || cache.entries()).await {
            Ok(entries) => self.send(Event::Cached { objects: entries.into_iter().map(|e| (e.md5, e.size)).collect() }),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    fn connection(&self) -> Result<Connection> {
        self.conn.borrow().clone().ok_or_else(|| Error::Closed { addr: "remote".into(), during: "(reconnecting)" })
    }

    async fn run(self: Arc<Self>, job: Job) {
        match job {
            Job::List { side, dir } => {
                let result = self.list(side, &dir).await.map_err(|e| e.to_string());
                self.send(Event::Listed { side, dir, result });
            }
            Job::Hash { side, dir, names } => {
                let results = match side {
                    Side::Local => self.clone().hash_local(dir.clone(), names).await,
                    Side::Remote => self.hash_remote(&dir, names).await,
                };
                self.send(Event::Hashed { side, dir, results });
            }
            Job::Download { paths, local_dir, protocol } => {
                if let Err(e) = self.clone().download(paths, local_dir, protocol).await {
                    self.send(Event::Message { text: e.to_string(), error: true });
                }
            }
            Job::Upload { paths, remote_dir } => {
                if let Err(e) = self.clone().upload(paths, remote_dir).await {
                    self.send(Event::Message { text: e.to_string(), error: true });
                }
            }
            Job::Command { line, local_dir } => self.command(&line, local_dir).await,
            Job::Lock { path } => self.set_lock(path, true).await,
            Job::Unlock { path } => self.set_lock(path, false).await,
            // Handled in order by the job loop in `spawn`.
            Job::StartSync | Job::StopSync => {}
        }
    }

    /// Locks or unlocks one remote path; the server refuses another client's lock, which the person then sees.
    async fn set_lock(&self, path: String, lock: bool) {
        let result = async {
            let conn = self.connection()?;
            if lock { conn.lock(&path).await } else { conn.unlock(&path, false).await }
        }
        .await
        .map(drop)
        .map_err(|e| e.to_string());
        self.send(Event::LockChanged { path, locked: lock, result });
    }

    async fn list(&self, side: Side, dir: &str) -> Result<Vec<Entry>> {
        let entries = match side {
            Side::Remote => {
                let filter = ListFilter { max_depth: Some(1), ..Default::default() };
                self.connection()?.list(dir, filter).await?
            }
            Side::Local => {
                let root = self.local_root.clone();
                let dir = dir.to_string();
                blocking(move || Walk::local(&root, &dir)?.max_depth(Some(1)).collect::<Result<Vec<Entry>>>()).await?
            }
        };
        // Sorting 100,000 names takes a moment: do it here, never on the UI thread.
        blocking(move || {
            let mut entries = entries;
            entries.sort_by_cached_key(|e| (e.kind != EntryKind::Dir, e.name().to_lowercase(), e.name().to_string()));
            Ok(entries)
        })
        .await
    }

    async fn hash_local(self: Arc<Self>, dir: String, names: Vec<String>) -> Vec<(String, Option<Md5Digest>)> {
        let worker = self.clone();
        blocking(move || {
            Ok(names
                .into_iter()
                .map(|name| {
                    let rel = join(&dir, &name);
                    let md5 = worker.hash_local_file(&rel).map_err(|e| tracing::warn!("{e}")).ok();
                    (name, md5)
                })
                .collect())
        })
        .await
        .unwrap_or_default()
    }

    fn hash_local_file(&self, rel: &str) -> Result<Md5Digest> {
        let path = self.local_root.join(rel);
        let stamp = FileStamp::of(&std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?);
        if let Some(md5) = self.local_hashes.get(rel, stamp) {
            return Ok(md5);
        }
        let md5 = md5_file(&path)?;
        self.local_hashes.insert(rel, stamp, md5);
        Ok(md5)
    }

    async fn hash_remote(&self, dir: &str, names: Vec<String>) -> Vec<(String, Option<Md5Digest>)> {
        let failed = |names: Vec<String>| names.into_iter().map(|n| (n, None)).collect();
        let conn = match self.connection() {
            Ok(conn) => conn,
            Err(_) => return failed(names),
        };
        if names.len() > HASH_ALL_THRESHOLD {
            return match conn.hash_all(dir, Some(1)).await {
                Ok(entries) => {
                    let known: std::collections::HashMap<String, Option<Md5Digest>> =
                        entries.into_iter().map(|e| (e.name().to_string(), e.md5)).collect();
                    names.into_iter().map(|n| (n.clone(), known.get(&n).copied().flatten())).collect()
                }
                Err(e) => {
                    self.send(Event::Message { text: e.to_string(), error: true });
                    failed(names)
                }
            };
        }
        let requests = names.iter().map(|name| {
            let (conn, path) = (conn.clone(), join(dir, name));
            async move { conn.hash(&path).await }
        });
        let answers = futures::future::join_all(requests).await;
        names.into_iter().zip(answers).map(|(name, answer)| (name, answer.ok().and_then(|e| e.md5))).collect()
    }

    /// Queues every file of `paths` (folders are expanded) for download into `local_dir`.
    async fn download(
        self: Arc<Self>,
        paths: Vec<(String, EntryKind)>,
        local_dir: String,
        protocol: Protocol,
    ) -> Result<()> {
        let conn = self.connection()?;
        let mut files: Vec<(String, String)> = Vec::new();
        for (path, kind) in paths {
            if kind != EntryKind::Dir {
                files.push((path, local_dir.clone()));
                continue;
            }
            // A folder: everything below it, recreating its structure under the local folder.
            let base = path.rsplit_once('/').map(|(parent, _)| parent.len() + 1).unwrap_or(0);
            files.push((String::new(), join(&local_dir, &path[base..])));
            for entry in conn.list(&path, ListFilter::default()).await? {
                let relative = &entry.path[base..];
                match entry.kind {
                    EntryKind::Dir => files.push((String::new(), join(&local_dir, relative))),
                    _ => {
                        let target = relative.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        files.push((entry.path.clone(), join(&local_dir, target)));
                    }
                }
            }
        }
        for (remote, local) in files {
            let folder = self.local_root.join(&local);
            blocking(move || std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))).await?;
            if remote.is_empty() {
                continue; // a folder to create, nothing to fetch
            }
            self.clone().queue_download(conn.clone(), remote, local, protocol);
        }
        Ok(())
    }

    fn queue_download(self: Arc<Self>, conn: Connection, remote: String, local_dir: String, protocol: Protocol) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress = Progress::default();
        let name = remote.rsplit('/').next().unwrap_or(&remote).to_string();
        self.send(Event::TransferQueued { id, name, protocol, progress: progress.clone() });
        tokio::spawn(async move {
            let Ok(_permit) = self.downloads.clone().acquire_owned().await else { return };
            self.send(Event::TransferStarted { id });
            let dest = self.local_root.join(&local_dir);
            let via = commands::via(protocol, DEFAULT_IDLE_TIMEOUT.as_secs(), &self.config);
            let cache = self.cache().await;
            let cached = cache.is_some();
            let result = fetch(&conn, &remote, &dest, via, &progress, cache).await;
            let result = result.map(|(report, outcome)| download_message(&report, outcome)).map_err(|e| e.to_string());
            self.send(Event::TransferFinished { id, refresh: (Side::Local, local_dir), result });
            if cached {
                self.report_cache().await;
            }
        });
    }

    /// Queues every file of `paths` (local, relative to the local root; folders are expanded and recreated) for
    /// upload into the remote folder `remote_dir`.
    async fn upload(self: Arc<Self>, paths: Vec<(String, EntryKind)>, remote_dir: String) -> Result<()> {
        let conn = self.connection()?;
        for (path, kind) in paths {
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            if kind != EntryKind::Dir {
                self.clone().queue_upload(conn.clone(), path, join(&remote_dir, &name));
                continue;
            }
            let base = path.len() - name.len();
            conn.mkdir(&join(&remote_dir, &name)).await?;
            let root = self.local_root.clone();
            let below = path.clone();
            let entries = blocking(move || Walk::local(&root, &below)?.collect::<Result<Vec<Entry>>>()).await?;
            for entry in entries {
                let target = join(&remote_dir, &entry.path[base..]);
                match entry.kind {
                    EntryKind::Dir => drop(conn.mkdir(&target).await?),
                    EntryKind::File => self.clone().queue_upload(conn.clone(), entry.path, target),
                    EntryKind::Symlink => {}
                }
            }
        }
        Ok(())
    }

    fn queue_upload(self: Arc<Self>, conn: Connection, local: String, remote: String) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress = Progress::default();
        let name = local.rsplit('/').next().unwrap_or(&local).to_string();
        self.send(Event::TransferQueued { id, name, protocol: Protocol::Tcp, progress: progress.clone() });
        tokio::spawn(async move {
            let Ok(_permit) = self.downloads.clone().acquire_owned().await else { return };
            self.send(Event::TransferStarted { id });
            let source = self.local_root.join(&local);
            let result = upload_tcp(&conn, &source, &remote, &progress)
                .await
                .map(|r| match r.delta {
                    true => {
                        let moved = humansize::format_size(r.bytes_sent + r.bytes_received, humansize::BINARY);
                        format!("updated {} ({}) with a {moved} delta, verified by the server", r.path, r.md5)
                    }
                    false => format!("uploaded {} ({}), verified by the server", r.path, r.md5),
                })
                .map_err(|e| e.to_string());
            let remote_dir = remote.rsplit_once('/').map(|(dir, _)| dir.to_string()).unwrap_or_default();
            self.send(Event::TransferFinished { id, refresh: (Side::Remote, remote_dir), result });
        });
    }

    /// Runs a `:` command line with the CLI's own parser.
    async fn command(self: Arc<Self>, line: &str, local_dir: String) {
        let Some(words) = shlex::split(line) else {
            return self.send(Event::Message { text: format!("unbalanced quotes in {line:?}"), error: true });
        };
        let cli = match Cli::try_parse_from(std::iter::once("tandem".to_string()).chain(words)) {
            Ok(cli) => cli,
            Err(e) => return self.send(Event::Output { title: format!(":{line}"), text: e.render().to_string() }),
        };
        let title = format!(":{line}");
        let result: Result<Option<String>> = async {
            match cli.command {
                Command::Index(index) => {
                    let entries = commands::index(&self.connection()?, &index).await?;
                    Ok(Some(output::entries_table(&entries, false)))
                }
                Command::Hash(HashCommand::Verify { path }) => {
                    Ok(Some(output::entry_fields(&self.connection()?.hash(&path).await?)))
                }
                Command::Hash(HashCommand::Checkall) => {
                    Ok(Some(output::entries_table(&commands::hash_all(&self.connection()?).await?, true)))
                }
                Command::Download(args) => {
                    let target = download_target(&args.to, &local_dir);
                    self.clone().download(vec![(args.path, EntryKind::File)], target, args.protocol).await?;
                    Ok(None)
                }
                Command::Upload(args) => {
                    // A relative local path means the local pane's folder.
                    let local = if args.local.is_absolute() {
                        args.local.clone()
                    } else {
                        self.local_root.join(&local_dir).join(&args.local)
                    };
                    let remote = commands::upload_target(&args);
                    let local = local.to_string_lossy().into_owned();
                    self.clone().queue_upload(self.connection()?, local, remote);
                    Ok(None)
                }
                // Reported as `L` is, so the remote pane shows the new lock state.
                Command::Lock { path } => {
                    commands::lock(&self.connection()?, &path).await?;
                    self.send(Event::LockChanged { path, locked: true, result: Ok(()) });
                    Ok(None)
                }
                Command::Unlock { path, force } => {
                    self.connection()?.unlock(&path, force).await?;
                    self.send(Event::LockChanged { path, locked: false, result: Ok(()) });
                    Ok(None)
                }
                Command::Cache(CacheCommand::Show) => {
                    let Some(cache) = self.cache().await else {
                        return Err(Error::NotSupported("the download cache is off (its limit is 0)".into()));
                    };
                    let listing = commands::cache_show(cache).await?;
                    let dir = listing.dir.display().to_string();
                    Ok(Some(entries_table(&listing.entries, listing.limit, &dir)))
                }
                Command::Cache(CacheCommand::Clear) => {
                    let Some(cache) = self.cache().await else { return Ok(None) };
                    let dir = cache.dir().display().to_string();
                    let cleared = commands::cache_clear(cache).await?;
                    let text = cleared_text(cleared, &dir);
                    self.send(Event::Message { text: text.trim_end().to_string(), error: false });
                    self.clone().report_cache().await;
                    Ok(None)
                }
                // Downloads go through the cache anyway: the transfer line says whether it served the file.
                Command::Cache(CacheCommand::Verify(args)) => {
                    let target = download_target(&args.to, &local_dir);
                    self.clone().download(vec![(args.path, EntryKind::File)], target, args.protocol).await?;
                    Ok(None)
                }
                Command::Sync(_) => {
                    Err(Error::NotSupported("in the TUI, `s` starts and stops sync of the two panes".into()))
                }
                Command::Serve(_) | Command::Demo(_) | Command::Open(_) => {
                    Err(Error::NotSupported("this command does not run inside the TUI; use it from a shell".into()))
                }
            }
        }
        .await;
        match result {
            Ok(Some(text)) => self.send(Event::Output { title, text }),
            Ok(None) => {}
            Err(e) => self.send(Event::Message { text: e.to_string(), error: true }),
        }
    }
}

/// Where a typed `download` or `cache verify` puts its file: `--to DIR`, or by default the local pane's folder.
fn download_target(to: &std::path::Path, local_dir: &str) -> String {
    if to == std::path::Path::new(".") { local_dir.to_string() } else { to.display().to_string() }
}
