//! One pane's state: the folder shown, its entries (already sorted by the worker), the filter, the cursor, the
//! selection and what is known of each file's MD5. Filtering runs here, in `update`, never while drawing.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use regex::Regex;

use crate::compare::Status;
use crate::digest::Md5Digest;
use crate::share::{Entry, EntryKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }
}

/// What is known of one file's MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashState {
    Pending,
    Known(Md5Digest),
    Failed,
}

/// The filters of one pane; both must pass.
#[derive(Debug, Clone, Default)]
pub struct PaneFilter {
    pub regex: Option<Regex>,
    /// Inclusive modification-time range in nanoseconds, and how the person typed it.
    pub time: Option<(i64, i64, String)>,
}

impl PaneFilter {
    pub fn is_active(&self) -> bool {
        self.regex.is_some() || self.time.is_some()
    }

    fn keeps(&self, entry: &Entry) -> bool {
        self.regex.as_ref().is_none_or(|re| re.is_match(entry.name()))
            && self.time.as_ref().is_none_or(|(from, to, _)| (*from..=*to).contains(&entry.mtime_ns))
    }

    /// A short description for the pane's title.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(re) = &self.regex {
            parts.push(format!("/{}/", re.as_str()));
        }
        if let Some((_, _, typed)) = &self.time {
            parts.push(typed.clone());
        }
        parts.join(" ")
    }
}

#[derive(Debug)]
pub struct PaneState {
    pub side: Side,
    /// The folder shown, relative to the pane's root (`""` for the root).
    pub dir: String,
    /// Entries of `dir`: folders first, then by name.
    pub entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// Indices into `entries` that pass the filter, in display order.
    pub visible: Vec<usize>,
    /// Position in `visible`.
    pub cursor: usize,
    /// Names selected with Space.
    pub selected: HashSet<String>,
    pub filter: PaneFilter,
    pub hashes: HashMap<String, HashState>,
    pub loading: bool,
    pub error: Option<String>,
    /// Rows the last frame had room for, and the first row it drew; written while drawing so paging and
    /// scrolling follow the real window size.
    pub viewport_rows: Cell<usize>,
    pub scroll: Cell<usize>,
}

impl PaneState {
    pub fn new(side: Side) -> Self {
        PaneState {
            side,
            dir: String::new(),
            entries: Vec::new(),
            by_name: HashMap::new(),
            visible: Vec::new(),
            cursor: 0,
            selected: HashSet::new(),
            filter: PaneFilter::default(),
            hashes: HashMap::new(),
            loading: true,
            error: None,
            viewport_rows: Cell::new(20),
            scroll: Cell::new(0),
        }
    }

    /// Shows a new listing of `dir`, keeping the cursor on the same name when the folder is unchanged.
    pub fn set_listing(&mut self, dir: String, entries: Vec<Entry>) {
        let same_dir = dir == self.dir;
        let keep = if same_dir { self.current().map(|e| e.name().to_string()) } else { None };
        if !same_dir {
            self.selected.clear();
            self.hashes.clear();
            self.cursor = 0;
            self.scroll.set(0);
        }
        self.dir = dir;
        // A known MD5 only stays while the file keeps its size and mtime.
        let unchanged =
            |old: Option<&Entry>, new: &Entry| old.is_some_and(|o| (o.size, o.mtime_ns) == (new.size, new.mtime_ns));
        let still_valid: HashSet<String> =
            entries.iter().filter(|e| unchanged(self.entry(e.name()), e)).map(|e| e.name().to_string()).collect();
        self.by_name = entries.iter().enumerate().map(|(i, e)| (e.name().to_string(), i)).collect();
        self.entries = entries;
        self.hashes.retain(|name, state| still_valid.contains(name) || *state == HashState::Pending);
        self.selected.retain(|name| self.by_name.contains_key(name));
        self.loading = false;
        self.error = None;
        self.apply_filter();
        if let Some(name) = keep {
            self.select_name(&name);
        }
    }

    /// Recomputes which entries show, after a listing or a filter change.
    pub fn apply_filter(&mut self) {
        let filter = &self.filter;
        self.visible = (0..self.entries.len()).filter(|&i| filter.keeps(&self.entries[i])).collect();
        self.cursor = self.cursor.min(self.visible.len().saturating_sub(1));
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    pub fn current(&self) -> Option<&Entry> {
        self.visible.get(self.cursor).map(|&i| &self.entries[i])
    }

    /// Moves the cursor to `name` if it is visible.
    pub fn select_name(&mut self, name: &str) {
        if let Some(&index) = self.by_name.get(name)
            && let Some(position) = self.visible.iter().position(|&i| i == index)
        {
            self.cursor = position;
        }
    }

    pub fn move_by(&mut self, delta: isize) {
        let last = self.visible.len().saturating_sub(1) as isize;
        self.cursor = (self.cursor as isize + delta).clamp(0, last.max(0)) as usize;
    }

    pub fn page(&self) -> isize {
        self.viewport_rows.get().max(1) as isize
    }

    pub fn toggle_selected(&mut self) {
        if let Some(name) = self.current().map(|e| e.name().to_string())
            && !self.selected.remove(&name)
        {
            self.selected.insert(name);
        }
    }

    /// The selected entries, or the one under the cursor when nothing is selected.
    pub fn selection(&self) -> Vec<&Entry> {
        if self.selected.is_empty() {
            return self.current().into_iter().collect();
        }
        self.visible.iter().map(|&i| &self.entries[i]).filter(|e| self.selected.contains(e.name())).collect()
    }

    /// The path of a child of the shown folder, relative to the root.
    pub fn child_path(&self, name: &str) -> String {
        join(&self.dir, name)
    }

    /// Names of the files in this folder.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.name())
    }
}

/// Joins a relative folder and a name with `/`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// The parent of a relative folder (`""` stays `""`).
pub fn parent(dir: &str) -> String {
    dir.rsplit_once('/').map(|(parent, _)| parent.to_string()).unwrap_or_default()
}

/// The Hash column mark for the entry `name` of `pane`, compared with the other pane's folder: the marks of
/// [`Status`] that `tandem demo --tour` prints too, plus what only a live view has (hashing, failed, loading).
pub fn hash_mark(pane: &PaneState, other: &PaneState, entry: &Entry) -> &'static str {
    let Some(theirs) = other.entry(entry.name()) else {
        return if other.loading { " " } else { Status::OnlyLocal.mark() };
    };
    if entry.kind != EntryKind::File || theirs.kind != EntryKind::File {
        return " ";
    }
    match (pane.hashes.get(entry.name()), other.hashes.get(entry.name())) {
        (Some(HashState::Known(a)), Some(HashState::Known(b))) => {
            if a == b {
                Status::Same.mark()
            } else {
                Status::Differs.mark()
            }
        }
        (Some(HashState::Pending), _) | (_, Some(HashState::Pending)) => "…",
        (Some(HashState::Failed), _) | (_, Some(HashState::Failed)) => "!",
        _ => Status::Unknown.mark(),
    }
}
