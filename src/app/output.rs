//! How command results look: aligned tables with human sizes and local times for people, and JSON documents with
//! the field names of the command-line contract for scripts. Pure functions from values to text.

use humansize::{BINARY, format_size};
use serde_json::{Value, json};

use crate::client::{DownloadReport, UploadReport};
use crate::share::{Entry, EntryKind};
use crate::sync::SyncSummary;
use crate::timefmt::{format_local, format_rfc3339};

/// One entry as JSON: `path`, `kind`, `size`, `mtime`, and `md5` when it was hashed.
pub fn entry_json(entry: &Entry) -> Value {
    let mut value = json!({
        "path": entry.path,
        "kind": entry.kind.as_str(),
        "size": entry.size,
        "mtime": format_rfc3339(entry.mtime_ns),
    });
    if let Some(md5) = entry.md5 {
        value["md5"] = json!(md5.to_string());
    }
    if let Some(holder) = &entry.locked_by {
        value["locked_by"] = json!(holder);
    }
    if let Some(target) = &entry.target {
        value["target"] = json!(target);
    }
    value
}

/// `sync --json`: what a sync did.
pub fn sync_json(summary: &SyncSummary, left_out: &std::collections::BTreeMap<String, String>) -> Value {
    let left_out: Vec<Value> = left_out.iter().map(|(path, reason)| json!({"path": path, "reason": reason})).collect();
    json!({
        "uploaded": summary.uploaded,
        "downloaded": summary.downloaded,
        "moved": summary.moved,
        "deleted": summary.deleted,
        "conflicts": summary.conflicts,
        "bytes_sent": summary.bytes_sent,
        "bytes_received": summary.bytes_received,
        "left_out": left_out,
    })
}

/// `sync` for people: one line.
pub fn sync_text(summary: &SyncSummary) -> String {
    format!(
        "synced: {} uploaded, {} downloaded, {}{} deleted, {}; {} sent, {} received\n",
        summary.uploaded,
        summary.downloaded,
        summary.moved_phrase(),
        summary.deleted,
        summary.conflicts_phrase(),
        format_size(summary.bytes_sent, BINARY),
        format_size(summary.bytes_received, BINARY)
    )
}

pub fn entries_json(entries: &[Entry]) -> Value {
    Value::Array(entries.iter().map(entry_json).collect())
}

/// An aligned table of entries, with an MD5 column when `with_md5`, and a closing summary line.
pub fn entries_table(entries: &[Entry], with_md5: bool) -> String {
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| {
            let first = if with_md5 {
                e.md5.map(|m| m.to_string()).unwrap_or_else(|| "-".repeat(32))
            } else {
                e.kind.as_str().to_string()
            };
            let size = if e.kind == EntryKind::Dir { "-".to_string() } else { format_size(e.size, BINARY) };
            let mut path = match &e.target {
                Some(target) => format!("{} -> {target}", e.path),
                None => e.path.clone(),
            };
            if let Some(holder) = &e.locked_by {
                path += &format!("  [locked by {holder}]");
            }
            [first, size, format_local(e.mtime_ns), path]
        })
        .collect();
    let header = [if with_md5 { "MD5" } else { "KIND" }, "SIZE", "MODIFIED", "PATH"];
    let width = |col: usize| rows.iter().map(|r| r[col].chars().count()).chain([header[col].len()]).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = format!("{:<w0$}  {:>w1$}  {:<w2$}  {}\n", header[0], header[1], header[2], header[3]);
    for [first, size, modified, path] in &rows {
        out.push_str(&format!("{first:<w0$}  {size:>w1$}  {modified:<w2$}  {path}\n"));
    }
    out.push_str(&summary(entries));
    out.push('\n');
    out
}

/// `3 files (1.50 KiB), 1 folder, 1 symlink`.
pub fn summary(entries: &[Entry]) -> String {
    let count = |kind| entries.iter().filter(|e| e.kind == kind).count();
    let bytes: u64 = entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).sum();
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts =
        vec![format!("{} ({})", plural(count(EntryKind::File), "file", "files"), format_size(bytes, BINARY))];
    let folders = count(EntryKind::Dir);
    if folders > 0 {
        parts.push(plural(folders, "folder", "folders"));
    }
    let links = count(EntryKind::Symlink);
    if links > 0 {
        parts.push(plural(links, "symlink", "symlinks"));
    }
    parts.join(", ")
}

/// `hash verify` for people: one labelled field per line.
pub fn entry_fields(entry: &Entry) -> String {
    let md5 = entry.md5.map(|m| m.to_string()).unwrap_or_default();
    format!(
        "path      {}\nsize      {} ({} bytes)\nmodified  {}\nmd5       {md5}\n",
        entry.path,
        format_size(entry.size, BINARY),
        entry.size,
        format_local(entry.mtime_ns),
    )
}

/// `download --json`.
pub fn download_json(report: &DownloadReport) -> Value {
    let mut value = json!({
        "path": report.path,
        "dest": report.dest.display().to_string(),
        "size": report.size,
        "md5": report.md5.to_string(),
        "mtime": format_rfc3339(report.mtime_ns),
        "protocol": report.protocol,
        "bytes_received": report.bytes_received,
        "from_cache": report.from_cache,
        "resumed_from": report.resumed_from,
        "seconds": report.seconds,
    });
    value["bytes_sent"] = json!(report.bytes_sent);
    value["delta"] = json!(report.delta);
    if let Some(udp) = report.udp {
        value["datagrams_sent"] = json!(udp.datagrams_sent);
        value["datagrams_received"] = json!(udp.datagrams_received);
        value["retransmits"] = json!(udp.retransmits);
    }
    value
}

/// `upload --json`.
pub fn upload_json(report: &UploadReport) -> Value {
    json!({
        "path": report.path,
        "source": report.source.display().to_string(),
        "size": report.size,
        "md5": report.md5.to_string(),
        "mtime": format_rfc3339(report.mtime_ns),
        "mode": format!("{:o}", report.mode),
        "protocol": "tcp",
        "bytes_sent": report.bytes_sent,
        "bytes_received": report.bytes_received,
        "delta": report.delta,
        "seconds": report.seconds,
    })
}

/// `upload` for people.
pub fn upload_text(report: &UploadReport) -> String {
    let text = format!(
        "uploaded {} -> {}\nsize      {} ({} bytes)\nmodified  {}\nmode      {:o}\nmd5       {}  verified by the server\n",
        report.source.display(),
        report.path,
        format_size(report.size, BINARY),
        report.size,
        format_local(report.mtime_ns),
        report.mode,
        report.md5,
    );
    match report.delta {
        true => text + &delta_line(report.bytes_sent, report.bytes_received, report.size),
        false => text,
    }
}

/// How little a delta moved: its own bytes and the signature's, against the whole file.
fn delta_line(delta: u64, signature: u64, size: u64) -> String {
    let share = if size > 0 { (delta + signature) as f64 * 100.0 / size as f64 } else { 0.0 };
    format!(
        "delta     {} of changes and a {} signature instead of {} ({share:.2} %)\n",
        format_size(delta, BINARY),
        format_size(signature, BINARY),
        format_size(size, BINARY),
    )
}

/// `download` for people.
pub fn download_text(report: &DownloadReport) -> String {
    let rate = if report.seconds > 0.0 { (report.bytes_received as f64 / report.seconds) as u64 } else { 0 };
    let how = if report.from_cache {
        format!("source    download cache, no bytes over the network, in {:.2} s", report.seconds)
    } else if report.delta {
        format!("time      {:.2} s over {}", report.seconds, report.protocol.to_uppercase())
    } else {
        format!(
            "speed     {}/s over {} in {:.2} s",
            format_size(rate, BINARY),
            report.protocol.to_uppercase(),
            report.seconds
        )
    };
    let resumed = match report.resumed_from {
        0 => String::new(),
        offset => format!(
            "resumed   at byte {offset} of an interrupted download; {} received now\n",
            format_size(report.bytes_received, BINARY)
        ),
    };
    let text = format!(
        "downloaded {} -> {}\n{resumed}size      {} ({} bytes)\nmodified  {}\nmd5       {}  verified\n{how}\n",
        report.path,
        report.dest.display(),
        format_size(report.size, BINARY),
        report.size,
        format_local(report.mtime_ns),
        report.md5,
    );
    match report.delta {
        true => text + &delta_line(report.bytes_received, report.bytes_sent, report.size),
        false => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_sums_up() {
        let entries = vec![
            Entry {
                path: "docs".into(),
                kind: EntryKind::Dir,
                size: 4096,
                mtime_ns: 0,
                md5: None,
                locked_by: None,
                target: None,
            },
            Entry {
                path: "docs/a b.txt".into(),
                kind: EntryKind::File,
                size: 1536,
                mtime_ns: 0,
                md5: None,
                locked_by: None,
                target: None,
            },
            Entry {
                path: "ln".into(),
                kind: EntryKind::Symlink,
                size: 4,
                mtime_ns: 0,
                md5: None,
                locked_by: None,
                target: None,
            },
        ];
        let table = entries_table(&entries, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5);
        let path_column = lines[0].find("PATH").unwrap();
        assert_eq!(lines[2].find("docs/a b.txt"), Some(path_column));
        assert!(lines[2].contains("1.50 KiB"), "{table}");
        assert!(lines[1].starts_with("dir "));
        assert_eq!(lines[4], "1 file (1.50 KiB), 1 folder, 1 symlink");
    }
}
