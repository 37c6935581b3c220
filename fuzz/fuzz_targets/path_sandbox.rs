//! Fuzzes the path sandbox: `normalize` on the text alone, then the share's jail (`Share::meta`,
//! `Share::open_file`, `Share::open_dir`) against a real share in a temporary folder that holds files, folders,
//! tandem's `.tandem` state folder and symlinks of every kind (inside, to the parent, to `/etc`, a chain of links,
//! into `.tandem`, a loop, a dangling one). Whatever the jail opens must be the entry at the clean path, reached
//! through real folders only: no link followed, nothing in `.tandem`. Run it with `-dict=dict/path.dict` so the
//! fuzzer knows the fixture's names.
#![no_main]

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tandem::share::{STATE_DIR, Share, normalize};

struct Fixture {
    _base: tempfile::TempDir,
    share: Share,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = tempfile::tempdir().expect("temporary folder");
        let root = base.path().join("share");
        let outside = base.path().join("outside");
        for dir in [root.join("dir/sub"), root.join(STATE_DIR), outside.clone()] {
            std::fs::create_dir_all(dir).expect("fixture folder");
        }
        for file in [root.join("file.txt"), root.join("dir/inner.txt"), root.join(".tandem/journal.sqlite")] {
            std::fs::write(file, b"x").expect("fixture file");
        }
        std::fs::write(outside.join("secret.txt"), b"secret").expect("fixture file");
        for (target, link) in [
            (Path::new("dir"), "inside-link"),
            (Path::new("../file.txt"), "dir/back"),
            (Path::new(".."), "up"),
            (Path::new("/etc"), "escape"),
            (outside.as_path(), "outside-link"),
            (Path::new("chain2"), "chain"),
            (Path::new("escape"), "chain2"),
            (Path::new(STATE_DIR), "state-link"),
            (Path::new("loop-b"), "loop-a"),
            (Path::new("loop-a"), "loop-b"),
            (Path::new("/nonexistent/target"), "dangling"),
        ] {
            symlink(target, root.join(link)).expect("fixture symlink");
        }
        let share = Share::open(&root).expect("open share");
        Fixture { _base: base, share }
    })
}

/// `rel`'s folders, below the root, are all real folders (no link), and none is tandem's state folder.
fn assert_reached_without_links(root: &Path, rel: &str, input: &str) {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for depth in 1..parts.len() {
        let dir = root.join(parts[..depth].join("/"));
        let meta = std::fs::symlink_metadata(&dir).unwrap_or_else(|e| panic!("{input:?}: {}: {e}", dir.display()));
        assert!(meta.is_dir(), "{input:?} passed through {}", dir.display());
    }
    assert!(Path::new(rel).components().all(|c| c.as_os_str() != STATE_DIR), "{input:?} reached .tandem");
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let fixture = fixture();
    let root = fixture.share.root();

    let normalized = normalize(input);
    if let Ok(rel) = &normalized {
        assert!(rel.len() <= 4096 && !rel.contains('\0') && !rel.starts_with('/'), "{input:?} -> {rel:?}");
        for name in rel.split('/').filter(|_| !rel.is_empty()) {
            assert!(!matches!(name, "" | "." | ".." | STATE_DIR) && name.len() <= 255, "{input:?} -> {rel:?}");
        }
        assert_eq!(normalize(rel).ok().as_ref(), Some(rel), "normalizing twice changes {input:?}");
    } else if let Err(e) = &normalized {
        assert!(e.to_string().starts_with(&format!("invalid path {input:?}: ")), "{e}");
    }

    let Ok(rel) = normalized else { return };
    let inode = |path: &Path| std::fs::symlink_metadata(path).map(|m| m.ino()).ok();
    if let Ok(Some(meta)) = fixture.share.meta(&rel) {
        assert_reached_without_links(root, &rel, input);
        assert_eq!(inode(&root.join(&rel)), Some(meta.inode), "{input:?} looked at something else");
    }
    if let Ok((_, meta)) = fixture.share.open_file(&rel) {
        assert_reached_without_links(root, &rel, input);
        assert!(std::fs::symlink_metadata(root.join(&rel)).is_ok_and(|m| m.is_file()), "{input:?} opened a non-file");
        assert_eq!(inode(&root.join(&rel)), Some(meta.inode), "{input:?} opened something else");
    }
    if let Ok(dir) = fixture.share.open_dir(&rel) {
        assert_reached_without_links(root, &rel, input);
        let opened = std::fs::File::from(dir).metadata().map(|m| m.ino()).ok();
        assert_eq!(inode(&root.join(&rel)), opened, "{input:?} opened another folder");
    }
});
