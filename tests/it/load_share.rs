//! The workload of the load test and of `cargo bench --bench load`, so both run the same: the share (a few
//! folders, files from empty to 1 MB, names with spaces and non-ASCII letters) and one client's session.

use std::path::Path;

/// Each file and its size. All names differ, so one client's downloads never land on each other.
pub const FILES: &[(&str, u64)] = &[
    ("empty.txt", 0),
    ("one byte", 1),
    ("docs/datagram 1400.bin", 1400),
    ("docs/notes – ünïcødé.txt", 4096),
    ("docs/archive/2023 report.pdf", 65_537),
    ("media/photo 100k.jpg", 100 * 1024),
    ("media/movie 1M.bin", 1 << 20),
    ("日本語/ファイル 名前.txt", 777),
];
const EMPTY_FOLDER: &str = "empty folder";
/// The folders listed, in turn, and how many entries each (recursive) listing holds.
pub const LISTED: &[(&str, usize)] =
    &[("", 13), ("docs", 4), ("docs/archive", 1), ("media", 2), ("日本語", 1), (EMPTY_FOLDER, 0)];
pub const LISTINGS: usize = 50;
pub const DOWNLOADS: usize = 5;

/// Writes the share below `root`.
pub fn write(root: &Path) {
    std::fs::create_dir(root.join(EMPTY_FOLDER)).expect("create the empty folder");
    for (rel, size) in FILES {
        tandem::pseudo_random::write_pseudo_random(&root.join(rel), *size).expect("write a file of the share");
    }
}

/// One request of a session.
pub enum Step {
    List {
        path: &'static str,
        entries: usize,
    },
    /// An index into [`FILES`].
    Download(usize),
}

/// Client `n`'s session: 50 listings over the folders in turn, with a download after every tenth, each of a
/// different file. Clients start at different places, so every folder and file is asked for at once.
pub fn session(n: usize) -> Vec<Step> {
    let every = LISTINGS / DOWNLOADS;
    let mut steps = Vec::with_capacity(LISTINGS + DOWNLOADS);
    for i in 0..LISTINGS {
        let (path, entries) = LISTED[(n + i) % LISTED.len()];
        steps.push(Step::List { path, entries });
        if i % every == every - 1 {
            steps.push(Step::Download((n + i / every) % FILES.len()));
        }
    }
    steps
}
