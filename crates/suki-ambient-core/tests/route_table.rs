//! Suki's API paths are spelled once, in `api::Route`: no other library or binary source of the
//! workspace writes one (tests may, to check against an independent spelling).

use std::path::{Path, PathBuf};

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
fn no_api_path_is_written_outside_the_route_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["crates", "examples/src", "bench/src", "tests/src"] {
        let dir = root.join(dir);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    let table = Path::new("crates/suki-ambient-core/src/api/route.rs");
    let mut offenders = Vec::new();
    let mut checked = 0;
    for file in files {
        let relative = file.strip_prefix(&root).unwrap_or(&file).to_path_buf();
        let text = relative.to_string_lossy().replace('\\', "/");
        // Library and binary sources only: integration tests, benches and fuzz targets may
        // spell paths to check the table against.
        if relative == table || !text.contains("/src/") || text.contains("/tests/") {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        // Unit-test modules close every file (clippy's items_after_test_module).
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        checked += 1;
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            if line.contains("api/v1") {
                offenders.push(format!("{}:{}: {line}", relative.display(), n + 1));
            }
        }
    }
    assert!(checked > 50, "only {checked} source files were checked");
    assert!(
        offenders.is_empty(),
        "Suki API paths written outside api::Route:\n{}",
        offenders.join("\n")
    );
}
