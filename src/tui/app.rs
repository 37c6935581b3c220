//! The TUI's state and its only way of changing: keys become [`Action`]s, actions and background [`Event`]s
//! update the state and return the [`Job`]s to start. No I/O happens here, so every behaviour can be tested by
//! feeding keys and events and looking at the state.

use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::action::Action;
use super::cached::CachedObjects;
use super::keymap::{Key, KeyMap};
use super::pane::{HashState, PaneState, Side, parent};
use super::prompt::{Prompt, PromptKind};
use super::sync::{SyncPhase, SyncStatus};
use super::transfers::{Transfer, TransferState};
use super::worker::{ConnectionState, Event, Job};
use crate::share::{Entry, EntryKind, compile_pattern};
use crate::timefmt::{Bound, parse_time};
use crate::transfer::Protocol;

/// Folders with more files in common than this are not hashed on arrival; `V` still does it.
const AUTO_VERIFY_LIMIT: usize = 2000;
/// Messages kept for the log overlay.
const LOG_LIMIT: usize = 500;

/// What the keyboard currently drives.
#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    Prompt(Prompt),
    Help { scroll: u16 },
    Log { scroll: u16 },
    Output { title: String, text: String, scroll: u16 },
}

/// One line of the message log.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub time: String,
    pub text: String,
    pub error: bool,
}

pub struct App {
    pub local: PaneState,
    pub remote: PaneState,
    pub active: Side,
    pub mode: Mode,
    pub keymap: KeyMap,
    pub transfers: Vec<Transfer>,
    pub log: Vec<LogLine>,
    pub connection: ConnectionState,
    pub sync: SyncStatus,
    /// What the download cache holds, as the worker last reported it.
    pub cached: CachedObjects,
    /// Where the local pane's root is, and which server the remote pane shows.
    pub local_label: String,
    pub remote_label: String,
    pub should_quit: bool,
}

impl App {
    pub fn new(local_label: String, remote_label: String, keymap: KeyMap) -> Self {
        App {
            local: PaneState::new(Side::Local),
            remote: PaneState::new(Side::Remote),
            active: Side::Remote,
            mode: Mode::Normal,
            keymap,
            transfers: Vec::new(),
            log: Vec::new(),
            connection: ConnectionState::Connecting,
            sync: SyncStatus::default(),
            cached: CachedObjects::default(),
            local_label,
            remote_label,
            should_quit: false,
        }
    }

    /// The jobs to start with: the local root now; the remote root once connected.
    pub fn start(&mut self) -> Vec<Job> {
        vec![Job::List { side: Side::Local, dir: String::new() }]
    }

    pub fn pane(&self, side: Side) -> &PaneState {
        match side {
            Side::Local => &self.local,
            Side::Remote => &self.remote,
        }
    }

    pub fn pane_mut(&mut self, side: Side) -> &mut PaneState {
        match side {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        }
    }

    /// Whether the download cache holds the bytes of this remote entry, as far as its MD5 is known.
    pub fn is_cached(&self, entry: &Entry) -> bool {
        self.cached.holds(&self.remote, entry)
    }

    /// The last message, for the status bar.
    pub fn status(&self) -> Option<&LogLine> {
        self.log.last()
    }

    pub fn message(&mut self, text: impl Into<String>, error: bool) {
        let time = chrono::Local::now().format("%H:%M:%S").to_string();
        let text = text.into();
        if error {
            tracing::warn!("{text}");
        }
        self.log.push(LogLine { time, text, error });
        if self.log.len() > LOG_LIMIT {
            self.log.remove(0);
        }
    }

    /// A key press, in whatever mode is current.
    pub fn on_key(&mut self, event: KeyEvent) -> Vec<Job> {
        if event.modifiers.contains(KeyModifiers::CONTROL) && event.code == KeyCode::Char('c') {
            self.should_quit = true;
            return Vec::new();
        }
        match &mut self.mode {
            Mode::Normal => match self.keymap.action(Key::from_event(event)) {
                Some(action) => self.update(action),
                None => Vec::new(),
            },
            Mode::Prompt(prompt) => {
                let kind = prompt.kind;
                match event.code {
                    KeyCode::Esc => self.cancel_prompt(kind),
                    KeyCode::Enter => self.submit_prompt(),
                    _ => {
                        prompt.edit(event);
                        if kind == PromptKind::Regex {
                            self.live_regex();
                        }
                        Vec::new()
                    }
                }
            }
            Mode::Help { scroll } | Mode::Log { scroll } | Mode::Output { scroll, .. } => {
                match event.code {
                    KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1),
                    KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                    KeyCode::PageDown => *scroll = scroll.saturating_add(10),
                    KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                    _ => self.mode = Mode::Normal,
                }
                Vec::new()
            }
        }
    }

    /// Carries out one action.
    pub fn update(&mut self, action: Action) -> Vec<Job> {
        let side = self.active;
        match action {
            Action::Up => self.pane_mut(side).move_by(-1),
            Action::Down => self.pane_mut(side).move_by(1),
            Action::PageUp => {
                let page = self.pane(side).page();
                self.pane_mut(side).move_by(-page);
            }
            Action::PageDown => {
                let page = self.pane(side).page();
                self.pane_mut(side).move_by(page);
            }
            Action::Home => self.pane_mut(side).cursor = 0,
            Action::End => {
                let pane = self.pane_mut(side);
                pane.cursor = pane.visible.len().saturating_sub(1);
            }
            Action::Open => return self.open(side),
            Action::Parent => return self.go_parent(side),
            Action::SwitchPane => self.active = side.other(),
            Action::Select => {
                let pane = self.pane_mut(side);
                pane.toggle_selected();
                pane.move_by(1);
            }
            Action::DownloadTcp => return self.download(Protocol::Tcp),
            Action::DownloadUdp => return self.download(Protocol::Udp),
            Action::Copy if side == Side::Remote => return self.download(Protocol::Tcp),
            Action::Copy => return self.upload(),
            Action::Verify => {
                let names: Vec<String> = self.pane(side).selection().iter().map(|e| e.name().to_string()).collect();
                return self.verify(names, true);
            }
            Action::VerifyAll => {
                let mut names: Vec<String> = self.local.file_names().map(String::from).collect();
                names.extend(self.remote.file_names().map(String::from));
                names.sort();
                names.dedup();
                self.message(format!("verifying {} files in both folders", names.len()), false);
                return self.verify(names, true);
            }
            Action::FilterRegex => {
                let current = self.pane(side).filter.regex.as_ref().map(|r| r.as_str().to_string()).unwrap_or_default();
                self.mode = Mode::Prompt(Prompt::new(PromptKind::Regex, current));
            }
            Action::FilterTime => {
                let current = self.pane(side).filter.time.as_ref().map(|t| t.2.clone()).unwrap_or_default();
                self.mode = Mode::Prompt(Prompt::new(PromptKind::Time, current));
            }
            Action::ToggleSync => return self.toggle_sync(),
            Action::Lock => return self.toggle_lock(),
            Action::Refresh => return self.relist_both(),
            Action::CommandLine => self.mode = Mode::Prompt(Prompt::new(PromptKind::Command, String::new())),
            Action::Help => self.mode = Mode::Help { scroll: 0 },
            Action::ShowLog => self.mode = Mode::Log { scroll: 0 },
            Action::Quit => self.should_quit = true,
        }
        Vec::new()
    }

    /// Lists both panes' folders again.
    fn relist_both(&self) -> Vec<Job> {
        [Side::Local, Side::Remote]
            .into_iter()
            .map(|side| Job::List { side, dir: self.pane(side).dir.clone() })
            .collect()
    }

    /// `s`: starts sync of the two roots, or stops it.
    fn toggle_sync(&mut self) -> Vec<Job> {
        match self.sync.phase {
            SyncPhase::Off | SyncPhase::Failed(_) => {
                self.sync = SyncStatus { phase: SyncPhase::Starting, ..SyncStatus::default() };
                self.message(format!("sync: starting, {} with {}", self.local_label, self.remote_label), false);
                vec![Job::StartSync]
            }
            SyncPhase::Stopping => {
                self.message("sync is stopping; press s again once it has", false);
                Vec::new()
            }
            _ => {
                self.sync.phase = SyncPhase::Stopping;
                vec![Job::StopSync]
            }
        }
    }

    /// `L`: locks the selected remote entries, or unlocks those already locked.
    fn toggle_lock(&mut self) -> Vec<Job> {
        if self.active != Side::Remote {
            self.message("select a file in the remote pane to lock it", true);
            return Vec::new();
        }
        let pane = &self.remote;
        let jobs = pane
            .selection()
            .iter()
            .map(|e| {
                let path = pane.child_path(e.name());
                if e.locked_by.is_some() { Job::Unlock { path } } else { Job::Lock { path } }
            })
            .collect();
        self.remote.selected.clear();
        jobs
    }

    fn open(&mut self, side: Side) -> Vec<Job> {
        let pane = self.pane_mut(side);
        let Some(entry) = pane.current() else { return Vec::new() };
        if entry.kind == EntryKind::File {
            return Vec::new();
        }
        let dir = pane.child_path(entry.name());
        pane.loading = true;
        vec![Job::List { side, dir }]
    }

    fn go_parent(&mut self, side: Side) -> Vec<Job> {
        let pane = self.pane_mut(side);
        if pane.dir.is_empty() {
            return Vec::new();
        }
        pane.loading = true;
        vec![Job::List { side, dir: parent(&pane.dir) }]
    }

    fn download(&mut self, protocol: Protocol) -> Vec<Job> {
        if self.active != Side::Remote {
            self.message("downloads start from the remote pane: press Tab to switch to it", true);
            return Vec::new();
        }
        let paths: Vec<(String, EntryKind)> =
            self.remote.selection().iter().map(|e| (self.remote.child_path(e.name()), e.kind)).collect();
        if paths.is_empty() {
            return Vec::new();
        }
        self.remote.selected.clear();
        vec![Job::Download { paths, local_dir: self.local.dir.clone(), protocol }]
    }

    fn upload(&mut self) -> Vec<Job> {
        let paths: Vec<(String, EntryKind)> =
            self.local.selection().iter().map(|e| (self.local.child_path(e.name()), e.kind)).collect();
        if paths.is_empty() {
            return Vec::new();
        }
        self.local.selected.clear();
        vec![Job::Upload { paths, remote_dir: self.remote.dir.clone() }]
    }

    /// Hashes `names` on whichever sides hold them as files; `force` hashes again what is already known.
    fn verify(&mut self, names: Vec<String>, force: bool) -> Vec<Job> {
        let mut jobs = Vec::new();
        for side in [Side::Local, Side::Remote] {
            let pane = self.pane_mut(side);
            let wanted: Vec<String> = names
                .iter()
                .filter(|n| pane.entry(n).is_some_and(|e| e.kind == EntryKind::File))
                .filter(|n| force || !pane.hashes.contains_key(n.as_str()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                continue;
            }
            for name in &wanted {
                pane.hashes.insert(name.clone(), HashState::Pending);
            }
            jobs.push(Job::Hash { side, dir: pane.dir.clone(), names: wanted });
        }
        jobs
    }

    /// Hashes the files both folders hold, so the Hash column fills in by itself.
    fn auto_verify(&mut self) -> Vec<Job> {
        if self.local.loading || self.remote.loading {
            return Vec::new();
        }
        let common: Vec<String> = self
            .local
            .file_names()
            .filter(|n| self.remote.entry(n).is_some_and(|e| e.kind == EntryKind::File))
            .map(String::from)
            .collect();
        if common.len() > AUTO_VERIFY_LIMIT {
            return Vec::new();
        }
        self.verify(common, false)
    }

    /// Hashes the remote files whose size the cache holds and whose MD5 is not known yet, so the pane can mark
    /// those it holds. Other sizes cannot be cached, and cost nothing.
    fn hash_cache_candidates(&mut self) -> Vec<Job> {
        let names = self.cached.candidates(&self.remote, AUTO_VERIFY_LIMIT);
        if names.is_empty() {
            return Vec::new();
        }
        for name in &names {
            self.remote.hashes.insert(name.clone(), HashState::Pending);
        }
        vec![Job::Hash { side: Side::Remote, dir: self.remote.dir.clone(), names }]
    }

    fn cancel_prompt(&mut self, kind: PromptKind) -> Vec<Job> {
        let pane = self.pane_mut(self.active);
        match kind {
            PromptKind::Regex => pane.filter.regex = None,
            PromptKind::Time => pane.filter.time = None,
            PromptKind::Command => {}
        }
        pane.apply_filter();
        self.mode = Mode::Normal;
        Vec::new()
    }

    fn live_regex(&mut self) {
        let Mode::Prompt(prompt) = &mut self.mode else { return };
        let pattern = prompt.text.clone();
        let compiled = if pattern.is_empty() { Ok(None) } else { compile_pattern(&pattern).map(Some) };
        match compiled {
            Ok(regex) => {
                prompt.error = None;
                let pane = self.pane_mut(self.active);
                pane.filter.regex = regex;
                pane.apply_filter();
            }
            Err(e) => prompt.error = Some(e.to_string()),
        }
    }

    fn submit_prompt(&mut self) -> Vec<Job> {
        let Mode::Prompt(prompt) = &mut self.mode else { return Vec::new() };
        match prompt.kind {
            PromptKind::Regex => {
                if prompt.error.is_none() {
                    self.mode = Mode::Normal;
                }
                Vec::new()
            }
            PromptKind::Time => {
                let typed = prompt.text.trim().to_string();
                if typed.is_empty() {
                    return self.cancel_prompt(PromptKind::Time);
                }
                match parse_range(&typed) {
                    Ok((from, to)) => {
                        let pane = self.pane_mut(self.active);
                        pane.filter.time = Some((from, to, typed));
                        pane.apply_filter();
                        self.mode = Mode::Normal;
                    }
                    Err(e) => prompt.error = Some(e),
                }
                Vec::new()
            }
            PromptKind::Command => {
                let line = prompt.text.trim().to_string();
                self.mode = Mode::Normal;
                if line.is_empty() {
                    return Vec::new();
                }
                self.message(format!(":{line}"), false);
                vec![Job::Command { line, local_dir: self.local.dir.clone() }]
            }
        }
    }

    /// A report from the background.
    pub fn on_event(&mut self, event: Event) -> Vec<Job> {
        match event {
            Event::Listed { side, dir, result } => {
                let pane = self.pane_mut(side);
                match result {
                    Ok(entries) => {
                        let came_from = (parent(&pane.dir) == dir && !pane.dir.is_empty())
                            .then(|| pane.dir.rsplit('/').next().unwrap_or("").to_string());
                        pane.set_listing(dir, entries);
                        if let Some(name) = came_from {
                            pane.select_name(&name);
                        }
                        let mut jobs = self.auto_verify();
                        jobs.extend(self.hash_cache_candidates());
                        return jobs;
                    }
                    Err(e) => {
                        pane.loading = false;
                        pane.error = Some(e.clone());
                        self.message(e, true);
                    }
                }
            }
            Event::Hashed { side, dir, results } => {
                let pane = self.pane_mut(side);
                if pane.dir == dir {
                    for (name, md5) in results {
                        pane.hashes.insert(name, md5.map(HashState::Known).unwrap_or(HashState::Failed));
                    }
                }
            }
            Event::TransferQueued { id, name, protocol, progress } => {
                let label = match protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                };
                self.transfers.push(Transfer::new(id, name, label, progress));
            }
            Event::TransferStarted { id } => {
                if let Some(t) = self.transfers.iter_mut().find(|t| t.id == id) {
                    t.start(Instant::now());
                }
            }
            Event::TransferFinished { id, refresh: (side, dir), result } => {
                let name = self.transfers.iter().find(|t| t.id == id).map(|t| t.name.clone()).unwrap_or_default();
                let state = match &result {
                    Ok(summary) => {
                        self.message(summary.clone(), false);
                        TransferState::Done
                    }
                    Err(e) => {
                        self.message(format!("transfer of {name} failed: {e}"), true);
                        TransferState::Failed(e.clone())
                    }
                };
                if let Some(t) = self.transfers.iter_mut().find(|t| t.id == id) {
                    t.finish(state, Instant::now());
                }
                if result.is_ok() && dir == self.pane(side).dir {
                    return vec![Job::List { side, dir }];
                }
            }
            Event::Connection(state) => {
                let jobs = match &state {
                    ConnectionState::Connected { .. } => {
                        if matches!(self.connection, ConnectionState::Lost { .. }) {
                            self.message("connection restored", false);
                        }
                        vec![Job::List { side: Side::Remote, dir: self.remote.dir.clone() }]
                    }
                    ConnectionState::Lost { reason, .. }
                        if !matches!(self.connection, ConnectionState::Lost { .. }) =>
                    {
                        self.message(format!("connection lost: {reason}"), true);
                        Vec::new()
                    }
                    // Retrying after a loss: the banner stays up until a connection succeeds.
                    ConnectionState::Connecting if matches!(self.connection, ConnectionState::Lost { .. }) => {
                        return Vec::new();
                    }
                    _ => Vec::new(),
                };
                self.connection = state;
                return jobs;
            }
            Event::Output { title, text } => self.mode = Mode::Output { title, text, scroll: 0 },
            Event::Message { text, error } => self.message(text, error),
            Event::Sync(event) => {
                // A pass that changed something changed the panes' folders too: show it without a key press.
                let changed = matches!(&event, crate::sync::SyncEvent::Idle { summary, .. } if !summary.is_empty());
                if let Some((line, error)) = self.sync.apply(event) {
                    self.message(line, error);
                }
                if changed {
                    return self.relist_both();
                }
            }
            Event::SyncStopped { result } => {
                let (line, error) = self.sync.stopped(result);
                self.message(line, error);
            }
            Event::Cached { objects } => {
                self.cached = CachedObjects::new(&objects);
                return self.hash_cache_candidates();
            }
            Event::LockChanged { path, locked, result } => {
                match result {
                    Ok(()) => self.message(format!("{} {path}", if locked { "locked" } else { "unlocked" }), false),
                    Err(e) => self.message(e, true),
                }
                // Relisted even after a refusal: someone else's lock means this listing was out of date.
                if parent(&path) == self.remote.dir {
                    return vec![Job::List { side: Side::Remote, dir: self.remote.dir.clone() }];
                }
            }
        }
        Vec::new()
    }

    /// Called on a timer: refreshes transfer speeds and retires old finished transfers.
    pub fn on_tick(&mut self, now: Instant) {
        for transfer in &mut self.transfers {
            transfer.sample(now);
        }
        super::transfers::retire(&mut self.transfers, now);
    }

    /// True while the transfers panel changes without input, so the loop keeps redrawing on its timer.
    pub fn animating(&self) -> bool {
        !self.transfers.is_empty()
    }
}

/// Parses `START .. END`; either side may be empty for an open range.
pub fn parse_range(typed: &str) -> Result<(i64, i64), String> {
    let Some((start, end)) = typed.split_once("..") else {
        return Err(format!("expected START .. END, got {typed:?}"));
    };
    let (start, end) = (start.trim(), end.trim());
    let from = if start.is_empty() { i64::MIN } else { parse_time(start, Bound::Start).map_err(|e| e.to_string())? };
    let to = if end.is_empty() { i64::MAX } else { parse_time(end, Bound::End).map_err(|e| e.to_string())? };
    if from > to {
        return Err(format!("start {start:?} is after end {end:?}"));
    }
    Ok((from, to))
}
