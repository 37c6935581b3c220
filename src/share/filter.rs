//! Which entries a listing keeps: an inclusive modification-time range and a regular expression over the name or
//! the whole relative path. The client builds one to check a pattern before sending it; the server builds one to
//! filter, and trusts nothing the client checked.

use regex::{Regex, RegexBuilder};

use super::Entry;
use crate::error::{Error, Result};
use crate::protocol::ListFilter;

/// Bounds on compiled pattern size, so a hostile pattern cannot take the server's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest pattern accepted, in bytes: far beyond any a person types, and short enough that parsing it, or
/// echoing it in an error and the history log, costs next to nothing.
pub const MAX_PATTERN_LEN: usize = 4096;

/// A validated [`ListFilter`].
#[derive(Debug, Clone)]
pub struct EntryFilter {
    from_ns: Option<i64>,
    to_ns: Option<i64>,
    pattern: Option<Regex>,
    match_path: bool,
    max_depth: Option<u32>,
}

impl EntryFilter {
    pub fn new(filter: &ListFilter) -> Result<Self> {
        let pattern = filter.pattern.as_deref().map(compile_pattern).transpose()?;
        Ok(EntryFilter {
            from_ns: filter.modified_from_ns,
            to_ns: filter.modified_to_ns,
            pattern,
            match_path: filter.match_path,
            max_depth: filter.max_depth,
        })
    }

    /// How deep the listing goes; see [`ListFilter::max_depth`].
    pub fn max_depth(&self) -> Option<u32> {
        self.max_depth
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        if self.from_ns.is_some_and(|from| entry.mtime_ns < from) || self.to_ns.is_some_and(|to| entry.mtime_ns > to) {
            return false;
        }
        match &self.pattern {
            None => true,
            Some(re) if self.match_path => re.is_match(&entry.path),
            Some(re) => re.is_match(entry.name()),
        }
    }
}

/// Compiles a user's regular expression, naming it in the error.
pub fn compile_pattern(pattern: &str) -> Result<Regex> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Error::BadRegex {
            pattern: shortened(pattern),
            reason: format!("{} bytes long; a pattern may have at most {MAX_PATTERN_LEN}", pattern.len()),
        });
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| Error::BadRegex { pattern: pattern.to_string(), reason: first_line(&e.to_string()) })
}

/// The start of a long pattern, for a message.
fn shortened(pattern: &str) -> String {
    let mut end = 64.min(pattern.len());
    while !pattern.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &pattern[..end])
}

/// regex's messages draw a caret diagram over several lines; keep the line that says what is wrong.
fn first_line(message: &str) -> String {
    message.lines().rev().find(|l| l.starts_with("error:")).unwrap_or(message).trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::EntryKind;

    fn entry(path: &str, mtime_ns: i64) -> Entry {
        Entry { path: path.into(), kind: EntryKind::File, size: 0, mtime_ns, md5: None, locked_by: None, target: None }
    }

    #[test]
    fn range_is_inclusive_and_regex_matches_name_or_path() {
        let range = EntryFilter::new(&ListFilter {
            modified_from_ns: Some(10),
            modified_to_ns: Some(20),
            ..Default::default()
        })
        .unwrap();
        assert!(!range.matches(&entry("a", 9)));
        assert!(range.matches(&entry("a", 10)));
        assert!(range.matches(&entry("a", 20)));
        assert!(!range.matches(&entry("a", 21)));

        let by_name = EntryFilter::new(&ListFilter { pattern: Some("^docs".into()), ..Default::default() }).unwrap();
        assert!(!by_name.matches(&entry("docs/readme.md", 0)));
        assert!(by_name.matches(&entry("x/docs.txt", 0)));
        let by_path =
            EntryFilter::new(&ListFilter { pattern: Some("^docs".into()), match_path: true, ..Default::default() })
                .unwrap();
        assert!(by_path.matches(&entry("docs/readme.md", 0)));
        assert!(!by_path.matches(&entry("x/docs.txt", 0)));
    }

    #[test]
    fn bad_pattern_names_itself() {
        let err = compile_pattern("a(b").unwrap_err().to_string();
        assert!(err.starts_with("invalid regex \"a(b\": "), "{err}");
        assert!(err.contains("unclosed group"), "{err}");
    }

    #[test]
    fn a_huge_pattern_is_refused_before_it_is_parsed_and_only_its_start_is_echoed() {
        let huge = "a".repeat(8_000_000);
        let err = compile_pattern(&huge).unwrap_err().to_string();
        assert!(err.len() < 200, "the message echoes the pattern: {} bytes", err.len());
        assert!(err.ends_with("8000000 bytes long; a pattern may have at most 4096"), "{err}");
        assert!(compile_pattern(&"a".repeat(MAX_PATTERN_LEN)).is_ok());
    }
}
