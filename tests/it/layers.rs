//! The layer order of `docs/ARCHITECTURE.md`, checked against the code: every `crate::…` path in a module of
//! `src/` names a module of a lower layer, and every module of `src/lib.rs` has a layer. A new arrow upward or
//! sideways fails here with the file and line that made it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Module name to layer, from the table under `## Layers`.
fn layers() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let table = text.split("| layer | modules |").nth(1).expect("a `| layer | modules |` table in ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for row in table.lines().skip(2).take_while(|line| line.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let layer: u32 = cells[1].parse().unwrap_or_else(|_| panic!("layer number in {row:?}"));
        for module in cells[2].split(',').map(str::trim) {
            assert!(layers.insert(module.to_string(), layer).is_none(), "{module} is in two layers");
        }
    }
    layers
}

/// The code of `text` without comments, line by line (doc links are not dependencies).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines().enumerate().map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("").to_string())).collect()
}

/// The top-level modules a file names through `crate::`, with the line that names each.
fn uses(text: &str) -> Vec<(usize, String)> {
    let lines = code_lines(text);
    let code: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut rest = 0;
    while let Some(at) = code[rest..].find("crate::") {
        let start = rest + at + "crate::".len();
        let after = &code[start..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a::b, c}`: the names at the group's top level.
            let (mut depth, mut name, mut expecting) = (0, String::new(), true);
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expecting = true,
                    c if expecting && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ if !name.is_empty() => {
                        found.push((line_of(start), std::mem::take(&mut name)));
                        expecting = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.push((line_of(start), name));
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push((line_of(start), name));
        }
        rest = start;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layers = layers();
    let src = Path::new(ROOT).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    for module in &modules {
        assert!(layers.contains_key(*module), "src/{module} has no layer in docs/ARCHITECTURE.md");
    }
    for module in layers.keys() {
        assert!(modules.contains(&module.as_str()), "docs/ARCHITECTURE.md names {module}, which src/lib.rs lacks");
    }

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut arrows = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let own = top.strip_suffix(".rs").unwrap_or(&top).to_string();
        if own == "main" || own == "lib" {
            continue;
        }
        let own_layer = layers[&own];
        for (line, used) in uses(&std::fs::read_to_string(file).unwrap()) {
            let Some(&used_layer) = layers.get(&used) else { continue };
            if used == own {
                continue;
            }
            arrows += 1;
            if used_layer >= own_layer {
                wrong.push(format!(
                    "src/{}:{line}: {own} (layer {own_layer}) uses {used} (layer {used_layer})",
                    rel.display()
                ));
            }
        }
    }
    assert!(arrows > 100, "the scanner found only {arrows} uses between modules: it is broken");
    assert!(wrong.is_empty(), "uses against the layer order of docs/ARCHITECTURE.md:\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_sees_every_form_of_use() {
    let text = "use crate::error::Result;\nuse crate::{\n    app::commands::{self, x},\n    sync::Engine,\n};\n\
                // crate::tui is only a comment\nfn f() { crate::task::blocking(g) }\n";
    let names: Vec<String> = uses(text).into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, ["error", "app", "sync", "task"]);
}

#[test]
fn only_config_reads_the_environment_the_user_folders_and_the_config_file() {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().display().to_string();
        if rel == "config.rs" || rel == "main.rs" {
            continue;
        }
        for (line, code) in code_lines(&std::fs::read_to_string(file).unwrap()) {
            for banned in ["env::var", "var_os(", "ProjectDirs", "toml::", "from_env("] {
                if code.contains(banned) {
                    wrong.push(format!("src/{rel}:{line}: {banned}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "outside src/config.rs:\n{}", wrong.join("\n"));
}
