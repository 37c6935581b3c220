//! The sync log, `ROOT/.tandem/sync.log`: one line per action, with the local time, what was done and to which
//! path, or why it was skipped. Also sent to `tracing`, so a person watching `tandem sync` sees it as it happens.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use super::plan::Action;
use crate::error::{Error, Result};

pub struct ActionLog {
    file: Mutex<File>,
}

impl ActionLog {
    pub fn open(path: &Path) -> Result<ActionLog> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(ActionLog { file: Mutex::new(file) })
    }

    pub fn done(&self, action: &Action) {
        let line = describe(action);
        tracing::info!("{line}");
        self.write(&line);
    }

    /// Something about `path` a person should know once, such as why it is left out.
    pub fn noted(&self, path: &str, what: &str) {
        let line = format!("note {path}: {what}");
        tracing::warn!("{line}");
        self.write(&line);
    }

    pub fn skipped(&self, action: &Action, why: &Error) {
        let line = format!("skipped {}: {why}", describe(action));
        tracing::warn!("{line}");
        self.write(&line);
    }

    fn write(&self, line: &str) {
        let stamp = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // The log must never stop a sync: a full disk shows up in the writes that matter instead.
        let _ = writeln!(file, "{stamp} {line}");
    }
}

/// An action in words, as the log and the terminal show it.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Upload { path } => format!("upload {path}"),
        Action::Download { path } => format!("download {path}"),
        Action::LinkRemote { path } => format!("link on server {path}"),
        Action::LinkLocal { path } => format!("link here {path}"),
        Action::MkdirLocal { path } => format!("mkdir here {path}"),
        Action::MkdirRemote { path } => format!("mkdir on server {path}"),
        Action::DeleteLocal { path, .. } => format!("delete here (to trash) {path}"),
        Action::DeleteRemote { path, .. } => format!("delete on server (to trash) {path}"),
        Action::RenameLocal { from, to } => format!("conflict: keep this side's older {from} as {to}"),
        Action::RenameRemote { from, to } => format!("conflict: keep the server's older {from} as {to}"),
        Action::MoveLocal { from, to } => format!("move here {from} -> {to}"),
        Action::MoveRemote { from, to } => format!("move on server {from} -> {to}"),
        Action::Record { path, .. } => format!("in step {path}"),
        Action::Forget { path } => format!("gone on both sides {path}"),
    }
}
