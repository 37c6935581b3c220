//! Fuzzes the path sandbox, the one place a path from the network becomes a filesystem path: `normalize` on the
//! text alone, then `Share::resolve` and `Share::resolve_for_write` against a real share in a temporary folder
//! that holds files, folders, tandem's `.tandem` state folder and symlinks of every kind (inside, to the parent,
//! to `/etc`, a chain of links, into `.tandem`, a loop, a dangling one). Whatever is accepted must stay inside
//! the root and out of `.tandem`. Run it with `-dict=dict/path.dict` so the fuzzer knows the fixture's names.
#![no_main]

use std::os::unix::fs::symlink;
use std::path::{Component, Path};
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

/// `path`, which must be below the root, has no component naming tandem's state folder.
fn assert_private_folder_untouched(root: &Path, path: &Path, input: &str) {
    let inside = path.strip_prefix(root).unwrap_or_else(|_| panic!("{input:?} resolved outside: {}", path.display()));
    assert!(inside.components().all(|c| c.as_os_str() != STATE_DIR), "{input:?} reached {}", path.display());
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

    if let Ok(resolved) = fixture.share.resolve(input) {
        assert_eq!(Some(&resolved.rel), normalized.as_ref().ok());
        assert!(resolved.abs.exists());
        let real = resolved.abs.canonicalize().expect("a resolved path exists");
        assert_eq!(real, resolved.abs, "resolve hands out real locations");
        assert_private_folder_untouched(root, &resolved.abs, input);
    }

    if let Ok(resolved) = fixture.share.resolve_for_write(input) {
        assert_eq!(Some(&resolved.rel), normalized.as_ref().ok());
        assert!(!resolved.rel.is_empty(), "a write may not name the root");
        assert_private_folder_untouched(root, &resolved.abs, input);
        // Every existing folder a write would pass through really is inside the share and out of `.tandem`;
        // the last component may be a symlink, which a write replaces and a delete moves, never follows.
        let mut ancestor = resolved.abs.parent();
        while let Some(dir) = ancestor.filter(|dir| dir.starts_with(root)) {
            if let Ok(real) = dir.canonicalize() {
                assert_private_folder_untouched(root, &real, input);
            }
            ancestor = dir.parent();
        }
        assert!(resolved.abs.components().all(|c| !matches!(c, Component::ParentDir | Component::CurDir)));
    }
});
