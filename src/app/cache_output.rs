//! How the download cache's answers look: `cache show`, `cache clear` and `cache verify` as tables for people and
//! JSON for scripts. Pure functions from values to text, as in [`super::output`].

use humansize::{BINARY, format_size};
use serde_json::{Value, json};

use super::output::{download_json, download_text};
use crate::cache::{CacheEntry, Cleared};
use crate::client::{CacheOutcome, DownloadReport};
use crate::timefmt::{format_local, format_rfc3339};

/// `cache show --json`: an array of entries, most recently used first.
pub fn entries_json(entries: &[CacheEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "size": e.size,
                    "md5": e.md5.to_string(),
                    "last_used": format_rfc3339(e.last_used_ns),
                })
            })
            .collect(),
    )
}

/// `cache show` for people: an aligned table, most recently used first, then the total against the limit.
pub fn entries_table(entries: &[CacheEntry], limit: u64, dir: &str) -> String {
    let total: u64 = entries.iter().map(|e| e.size).sum();
    let percent = if limit > 0 { total as f64 * 100.0 / limit as f64 } else { 0.0 };
    let files = if entries.len() == 1 { "1 file".to_string() } else { format!("{} files", entries.len()) };
    let summary = format!(
        "{files}, {} of {} limit ({percent:.0}%), in {dir}\n",
        format_size(total, BINARY),
        format_size(limit, BINARY)
    );
    if entries.is_empty() {
        return summary;
    }
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|e| [e.name.clone(), format_size(e.size, BINARY), e.md5.to_string(), format_local(e.last_used_ns)])
        .collect();
    let header = ["NAME", "SIZE", "MD5", "LAST USED"];
    let width = |col: usize| rows.iter().map(|r| r[col].chars().count()).chain([header[col].len()]).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = format!("{:<w0$}  {:>w1$}  {:<w2$}  {}\n", header[0], header[1], header[2], header[3]);
    for [name, size, md5, used] in &rows {
        out.push_str(&format!("{name:<w0$}  {size:>w1$}  {md5:<w2$}  {used}\n"));
    }
    out.push_str(&summary);
    out
}

pub fn cleared_text(cleared: Cleared, dir: &str) -> String {
    let files = if cleared.entries == 1 { "1 file".to_string() } else { format!("{} files", cleared.entries) };
    format!("removed {files} ({}) from the download cache in {dir}\n", format_size(cleared.bytes, BINARY))
}

/// `cache verify --json`: the download's object, with what the cache did as `cache`.
pub fn verify_json(report: &DownloadReport, outcome: CacheOutcome) -> Value {
    let mut value = download_json(report);
    value["cache"] = json!(outcome.as_str());
    value
}

pub fn verify_text(report: &DownloadReport, outcome: CacheOutcome) -> String {
    let verdict = match outcome {
        CacheOutcome::Hit => "hit: the cached bytes match the remote MD5",
        CacheOutcome::Miss => "miss: not in the cache, so downloaded",
        CacheOutcome::Repaired => "repaired: the cached copy was damaged, so it was dropped and the file downloaded",
        CacheOutcome::Off => "off: downloaded",
    };
    format!("{}cache     {verdict}\n", download_text(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Md5Digest;

    #[test]
    fn table_lines_up_and_sums_against_the_limit() {
        let entry = |name: &str, size, n| CacheEntry {
            md5: Md5Digest([n; 16]),
            name: name.into(),
            size,
            last_used_ns: 1_700_000_000_000_000_000,
            use_seq: n as i64,
        };
        let entries = [entry("big.bin", 100 << 20, 2), entry("a b.txt", 1536, 1)];
        let table = entries_table(&entries, 1 << 30, "/c");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(lines[0].find("MD5"), lines[2].find(&"01".repeat(16)), "{table}");
        assert!(lines[1].starts_with("big.bin   100 MiB  0202"), "{table}");
        assert!(lines[2].contains("1.50 KiB"), "{table}");
        assert_eq!(lines[3], "2 files, 100.00 MiB of 1 GiB limit (10%), in /c");
        assert_eq!(entries_table(&[], 1 << 30, "/c"), "0 files, 0 B of 1 GiB limit (0%), in /c\n");
    }
}
