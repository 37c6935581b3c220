//! How the engine carries out a plan: structural changes first (conflict copies, folders, moves), then transfers
//! in parallel batches, then links and deletions; each result is logged, and a failure skips only its own path.
//! What succeeded is written to the state database in one transaction at the end of the pass.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;

use super::{Engine, PassOutcome, SyncSummary, action_path};
use crate::digest::Md5Digest;
use crate::error::{Error, Result};
use crate::protocol::{ErrorCode, Expect};
use crate::share::{EntryKind, FileStamp};
use crate::sync::plan::{Action, Kind, PathState, Version};
use crate::sync::scan::LocalEntry;
use crate::sync::state::{RemoteVersion, Update};
use crate::sync::transfer::{PARALLEL_BATCHES, Planned, batched, check_local, transfer_batch, worth_a_delta};
use crate::task::blocking;

impl Engine {
    pub(super) async fn execute(
        &mut self,
        actions: Vec<Action>,
        states: &HashMap<&str, &PathState>,
        local: &HashMap<String, LocalEntry>,
    ) -> Result<PassOutcome> {
        let mut outcome = PassOutcome::default();
        let mut update = Update::default();
        // Paths renamed away on one side this pass: that side now expects nothing there.
        let mut renamed_local = HashSet::new();
        let mut renamed_remote = HashSet::new();
        let (transfers, others): (Vec<Action>, Vec<Action>) =
            actions.into_iter().partition(|a| matches!(a, Action::Upload { .. } | Action::Download { .. }));
        let (before, after): (Vec<Action>, Vec<Action>) = others.into_iter().partition(|a| {
            matches!(
                a,
                Action::RenameLocal { .. }
                    | Action::RenameRemote { .. }
                    | Action::MkdirLocal { .. }
                    | Action::MkdirRemote { .. }
                    | Action::MoveLocal { .. }
                    | Action::MoveRemote { .. }
            )
        });

        for action in before {
            let done = self.structural(&action, states, local, &mut update, &mut outcome.summary).await;
            if let Action::RenameLocal { from, .. } = &action {
                renamed_local.insert(from.clone());
            }
            if let Action::RenameRemote { from, .. } = &action {
                renamed_remote.insert(from.clone());
            }
            self.settle(&action, done, states, &mut outcome)?;
        }

        let planned: Vec<Planned> = transfers
            .into_iter()
            .map(|action| {
                let path = action_path(&action).to_string();
                let state = states.get(path.as_str()).copied();
                let local_stamp =
                    if renamed_local.contains(&path) { None } else { local.get(&path).and_then(|e| e.stamp) };
                let remote_expect =
                    if renamed_remote.contains(&path) { Some(Expect::Absent) } else { expect_of(state) };
                let remote_file = state.and_then(|s| s.remote.as_ref()).filter(|v| v.kind == Kind::File);
                let (size, base_size) = match action {
                    Action::Upload { .. } => {
                        let remote_base = remote_file.filter(|_| matches!(remote_expect, Some(Expect::File { .. })));
                        (local.get(&path).map_or(0, |e| e.version.size), remote_base.map(|v| v.size))
                    }
                    _ => (remote_file.map_or(0, |v| v.size), local_stamp.map(|s| s.size)),
                };
                let delta = worth_a_delta(size, base_size);
                Planned { action, local_stamp, remote_expect, size, delta }
            })
            .collect();
        let (conn, folder) = (self.conn.clone(), self.folder.clone());
        let batches = batched(planned).into_iter().map(|batch| {
            let (conn, folder) = (conn.clone(), folder.clone());
            async move { futures::stream::iter(transfer_batch(&conn, &folder, batch).await) }
        });
        let mut running = futures::stream::iter(batches).buffer_unordered(PARALLEL_BATCHES).flatten();
        while let Some((action, result)) = running.next().await {
            let done = result.map(|(version, moved)| {
                let path = action_path(&action).to_string();
                let uploaded = local.get(&path).and_then(|entry| entry.stamp);
                self.remember_hash(
                    &path,
                    &version,
                    matches!(action, Action::Upload { .. }).then_some(uploaded).flatten(),
                );
                update.base.push((path.clone(), Some(version.clone())));
                if let Action::Upload { .. } = action {
                    outcome.summary.uploaded += 1;
                    let mirrored = RemoteVersion { version, author: Some(self.host.clone()), target: None };
                    update.remote.push((path, Some(mirrored)));
                } else {
                    outcome.summary.downloaded += 1;
                }
                outcome.summary.bytes_sent += moved.sent;
                outcome.summary.bytes_received += moved.received;
            });
            self.settle(&action, done, states, &mut outcome)?;
        }
        drop(running);

        for action in after {
            let done = self.structural(&action, states, local, &mut update, &mut outcome.summary).await;
            self.settle(&action, done, states, &mut outcome)?;
        }
        let hashes = self.hashes.clone();
        blocking(move || hashes.flush()).await?;
        self.state.apply(update).await?;
        Ok(outcome)
    }

    /// Puts the MD5 of a file this pass just transferred in the hash cache, under the stamp the local file has, so
    /// the next scan does not read it again. An upload's stamp is the scanned one; a download's is read now, and
    /// trusted only while its size and mtime are still the ones the download gave it.
    fn remember_hash(&self, path: &str, version: &Version, uploaded: Option<FileStamp>) {
        let Some(md5) = version.md5 else { return };
        let stamp = match uploaded {
            Some(scanned) => Some(scanned),
            None => self.folder.meta(path).ok().flatten().filter(|m| m.kind == EntryKind::File).map(|m| m.stamp()),
        };
        if let Some(stamp) = stamp.filter(|s| s.size == version.size && s.mtime_ns == version.mtime_ns) {
            self.hashes.insert(path, stamp, md5);
        }
    }

    /// Runs `work` on the synced folder on a blocking thread: filesystem calls never hold up the async threads.
    async fn on_folder<T: Send + 'static>(
        &self,
        work: impl FnOnce(&crate::share::Share) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let folder = self.folder.clone();
        blocking(move || work(&folder)).await
    }

    /// Everything but transfers: renames, folders, deletions and bookkeeping.
    async fn structural(
        &mut self,
        action: &Action,
        states: &HashMap<&str, &PathState>,
        local: &HashMap<String, LocalEntry>,
        update: &mut Update,
        summary: &mut SyncSummary,
    ) -> Result<()> {
        let dir = Version { kind: Kind::Dir, size: 0, mtime_ns: 0, md5: None };
        match action {
            Action::RenameLocal { from, to } => {
                let (from, to, stamp) = (from.clone(), to.clone(), local.get(from).and_then(|e| e.stamp));
                self.on_folder(move |folder| {
                    check_local(folder, &from, stamp)?;
                    // Never replaces what is at `to`.
                    folder.rename(&from, &to)
                })
                .await?;
                summary.conflicts += 1;
            }
            Action::RenameRemote { from, to } => {
                self.conn.rename(from, to).await?;
                summary.conflicts += 1;
            }
            Action::MoveLocal { from, to } => {
                let moved = local.get(from).ok_or_else(|| Error::NotFound { path: from.clone() })?;
                let (old, new, stamp) = (from.clone(), to.clone(), moved.stamp);
                self.on_folder(move |folder| {
                    check_local(folder, &old, stamp)?;
                    // Never replaces what is at `to`; makes its folders.
                    folder.rename(&old, &new)
                })
                .await?;
                self.remember_hash(to, &moved.version, None);
                update.base.push((from.clone(), None));
                update.base.push((to.clone(), Some(moved.version.clone())));
                summary.moved += 1;
            }
            Action::MoveRemote { from, to } => {
                let state = states.get(from.as_str()).copied();
                let remote =
                    state.and_then(|s| s.remote.clone()).ok_or_else(|| Error::NotFound { path: from.clone() })?;
                // A whole folder (see `moves`): whatever is in it goes along, so there is nothing to expect of it.
                let folder = remote.kind == Kind::Dir;
                let expect = if folder { None } else { expect_of(state) };
                self.conn.rename_expecting(from, to, expect).await?;
                let below = format!("{from}/");
                let moved: Vec<(&str, &PathState)> = match state {
                    Some(state) if !folder => vec![(from.as_str(), state)],
                    _ => (states.iter())
                        .filter(|(path, _)| **path == from || path.starts_with(&below))
                        .map(|(p, s)| (*p, *s))
                        .collect(),
                };
                for (old, state) in moved {
                    let new = format!("{to}{}", &old[from.len()..]);
                    let (Some(here), Some(remote)) = (local.get(&new), state.remote.clone()) else { continue };
                    update.base.push((old.to_string(), None));
                    update.remote.push((old.to_string(), None));
                    update.base.push((new.clone(), Some(here.version.clone())));
                    let mirrored = RemoteVersion { version: remote, author: Some(self.host.clone()), target: None };
                    update.remote.push((new, Some(mirrored)));
                    summary.moved += u64::from(here.version.kind == Kind::File);
                }
            }
            Action::LinkRemote { path } => {
                let here = local.get(path).ok_or_else(|| Error::NotFound { path: path.clone() })?;
                let rel = path.clone();
                let target = self.on_folder(move |folder| folder.read_link(&rel)).await?;
                if Some(Md5Digest::of(target.as_bytes())) != here.version.md5 {
                    return Err(Error::Stale { path: path.clone(), found: "the link changed during the sync".into() });
                }
                self.conn.symlink(path, &target, expect_of(states.get(path.as_str()).copied())).await?;
                update.base.push((path.clone(), Some(here.version.clone())));
                let mirrored = RemoteVersion {
                    version: here.version.clone(),
                    author: Some(self.host.clone()),
                    target: Some(target),
                };
                update.remote.push((path.clone(), Some(mirrored)));
                summary.uploaded += 1;
            }
            Action::LinkLocal { path } => {
                let remote = self.state.remote.get(path).ok_or_else(|| Error::NotFound { path: path.clone() })?;
                let target = remote.target.clone().ok_or_else(|| Error::NotFound { path: path.clone() })?;
                let version = remote.version.clone();
                // What is here must still be what the scan saw; the link replaces it (into the trash), or fills a gap.
                let (rel, stamp) = (path.clone(), local.get(path).and_then(|e| e.stamp));
                self.on_folder(move |folder| {
                    check_local(folder, &rel, stamp)?;
                    folder.place_symlink(&rel, &target)
                })
                .await?;
                update.base.push((path.clone(), Some(version)));
                summary.downloaded += 1;
            }
            Action::MkdirLocal { path } => {
                let rel = path.clone();
                self.on_folder(move |folder| folder.create_dirs(&rel).map(drop)).await?;
                update.base.push((path.clone(), Some(dir)));
            }
            Action::MkdirRemote { path } => {
                self.conn.mkdir(path).await?;
                update.base.push((path.clone(), Some(dir)));
            }
            Action::DeleteLocal { path, kind } => {
                let (rel, kind, stamp) = (path.clone(), *kind, local.get(path).and_then(|e| e.stamp));
                self.on_folder(move |folder| {
                    if kind != Kind::Dir {
                        check_local(folder, &rel, stamp)?;
                    }
                    // An emptied folder simply goes; anything else is kept in the trash.
                    let removed = kind == Kind::Dir && folder.remove_empty_dir(&rel)?;
                    if !removed && folder.meta(&rel)?.is_some() {
                        folder.trash(&rel)?;
                    }
                    Ok(())
                })
                .await?;
                update.base.push((path.clone(), None));
                summary.deleted += 1;
            }
            Action::DeleteRemote { path, .. } => {
                let expect = expect_of(states.get(path.as_str()).copied());
                match self.conn.delete_expecting(path, expect).await {
                    Err(e) if e.code() == ErrorCode::NotFound => {}
                    other => other?,
                }
                update.base.push((path.clone(), None));
                update.remote.push((path.clone(), None));
                summary.deleted += 1;
            }
            Action::Record { path, version } => update.base.push((path.clone(), Some(version.clone()))),
            Action::Forget { path } => update.base.push((path.clone(), None)),
            Action::Upload { .. } | Action::Download { .. } => {}
        }
        Ok(())
    }

    /// Logs an action's result. A lost connection ends the pass; anything else skips this path until next pass.
    fn settle(
        &mut self,
        action: &Action,
        done: Result<()>,
        states: &HashMap<&str, &PathState>,
        outcome: &mut PassOutcome,
    ) -> Result<()> {
        if matches!(action, Action::Record { .. } | Action::Forget { .. }) {
            return done;
        }
        outcome.attempted += 1;
        match done {
            Ok(()) => {
                outcome.succeeded += 1;
                self.log.done(action);
                self.left_out.remove(action_path(action));
                Ok(())
            }
            Err(e) if self.conn.close_reason().is_some() => Err(e),
            Err(e) => {
                self.log.skipped(action, &e);
                // Here or on the server, the same: the path changed under this pass.
                let stale = matches!(e.code(), ErrorCode::Stale | ErrorCode::Changed);
                outcome.stale += usize::from(stale);
                let path = action_path(action);
                // The next pass plans a stale path again; anything else stays left out until a later run.
                if !stale {
                    self.left_out.insert(path.to_string(), e.to_string());
                }
                if e.code() == ErrorCode::Locked
                    && let Some(state) = states.get(path)
                {
                    self.blocked.insert(path.to_string(), (state.local.clone(), state.remote.clone()));
                }
                Ok(())
            }
        }
    }
}

/// What a write to the server expects to find: the remote version this pass planned against.
fn expect_of(state: Option<&PathState>) -> Option<Expect> {
    Some(match state.and_then(|s| s.remote.as_ref()) {
        None => Expect::Absent,
        Some(Version { kind: Kind::Dir, .. }) => Expect::EmptyDir,
        Some(Version { kind: Kind::Symlink, md5: Some(md5), .. }) => Expect::Link { md5: *md5 },
        Some(Version { md5: Some(md5), .. }) => Expect::File { md5: *md5 },
        Some(Version { md5: None, .. }) => return None,
    })
}
