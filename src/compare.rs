//! Pairs local and remote entries by relative path and says, per path, whether both sides hold the same bytes.
//! Pure: the caller supplies hashed entries from both sides.

use std::collections::BTreeMap;

use crate::share::{Entry, EntryKind};

/// What the two sides hold at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Both sides hold the same bytes (equal MD5).
    Same,
    /// Both sides hold a file at this path, with different bytes.
    Differs,
    OnlyLocal,
    OnlyRemote,
    /// At least one side has no MD5 yet.
    Unknown,
}

impl Status {
    /// The mark shown in tables and in the TUI's Hash column.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Same => "=",
            Status::Differs => "≠",
            Status::OnlyLocal | Status::OnlyRemote => "+",
            Status::Unknown => "?",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Status::Same => "same on both sides",
            Status::Differs => "differs",
            Status::OnlyLocal => "only here (local)",
            Status::OnlyRemote => "only on the remote",
            Status::Unknown => "not hashed yet",
        }
    }
}

/// Every file path on either side, sorted, with its status.
pub fn compare_files(local: &[Entry], remote: &[Entry]) -> Vec<(String, Status)> {
    let mut paths: BTreeMap<&str, (Option<&Entry>, Option<&Entry>)> = BTreeMap::new();
    for entry in local.iter().filter(|e| e.kind == EntryKind::File) {
        paths.entry(&entry.path).or_default().0 = Some(entry);
    }
    for entry in remote.iter().filter(|e| e.kind == EntryKind::File) {
        paths.entry(&entry.path).or_default().1 = Some(entry);
    }
    paths
        .into_iter()
        .map(|(path, sides)| {
            let status = match sides {
                (Some(l), Some(r)) => match (l.md5, r.md5) {
                    (Some(a), Some(b)) if a == b => Status::Same,
                    (Some(_), Some(_)) => Status::Differs,
                    _ => Status::Unknown,
                },
                (Some(_), None) => Status::OnlyLocal,
                _ => Status::OnlyRemote,
            };
            (path.to_string(), status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Md5Digest;

    fn file(path: &str, bytes: Option<&[u8]>) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            size: 0,
            mtime_ns: 0,
            md5: bytes.map(Md5Digest::of),
            locked_by: None,
            target: None,
        }
    }

    #[test]
    fn every_status() {
        let local =
            [file("same", Some(b"a")), file("diff", Some(b"a")), file("mine", Some(b"m")), file("unhashed", None)];
        let remote = [
            file("same", Some(b"a")),
            file("diff", Some(b"b")),
            file("theirs", Some(b"t")),
            file("unhashed", Some(b"u")),
        ];
        let statuses = compare_files(&local, &remote);
        let expected = [
            ("diff", Status::Differs),
            ("mine", Status::OnlyLocal),
            ("same", Status::Same),
            ("theirs", Status::OnlyRemote),
            ("unhashed", Status::Unknown),
        ];
        let expected: Vec<(String, Status)> = expected.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        assert_eq!(statuses, expected);
    }
}
