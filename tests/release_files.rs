// SPDX-License-Identifier: GPL-2.0-or-later
//! What a distribution checks before it packages a release: every source
//! file, script and shipped configuration file says its licence in an SPDX
//! line that matches `Cargo.toml`, and the CHANGELOG has a dated section for
//! the version being built.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The licence line, from the same field `cargo package` and the Debian
/// package read.
fn spdx_line() -> String {
    format!("SPDX-License-Identifier: {}", env!("CARGO_PKG_LICENSE"))
}

/// Folders whose files are the project's own, written by hand; generated
/// pages, completions, fuzz seeds and the tier's caches are not.
const SOURCE_DIRS: &[&str] = &[
    "src",
    "tests",
    "benches",
    "fuzz/fuzz_targets",
    "config",
    "dist/kubevirt",
];
const SKIP: &[&str] = &["tests/real-device/.cache", "tests/real-device/work"];
const SINGLE_FILES: &[&str] = &[".ci/run", "fuzz/run.sh"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let rel = dir.strip_prefix(ROOT).unwrap_or(dir);
    if SKIP.iter().any(|s| rel == Path::new(s)) {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

/// Whether `path` must carry the line: Rust sources, shell scripts (by
/// ending or `#!`), and everything under `config/` and `dist/kubevirt/`.
fn needs_licence_line(path: &Path, text: &str) -> bool {
    let rel = path.strip_prefix(ROOT).unwrap_or(path);
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
    matches!(ext, "rs" | "sh")
        || text.starts_with("#!")
        || rel.starts_with("config")
        || (rel.starts_with("dist/kubevirt") && ext != "md")
}

#[test]
fn every_source_file_script_and_shipped_config_says_its_licence() {
    let line = spdx_line();
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        walk(&Path::new(ROOT).join(dir), &mut files);
    }
    files.extend(SINGLE_FILES.iter().map(|f| Path::new(ROOT).join(f)));
    let mut checked = 0;
    let mut missing = Vec::new();
    for path in &files {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        if !needs_licence_line(path, &text) {
            continue;
        }
        checked += 1;
        if !text.lines().take(3).any(|l| l.contains(&line)) {
            missing.push(path.strip_prefix(ROOT).unwrap().display().to_string());
        }
    }
    assert!(
        checked > 150,
        "only {checked} files found: is the walk right?"
    );
    assert!(
        missing.is_empty(),
        "no `{line}` in the first three lines of:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_changelog_has_a_dated_section_for_this_version() {
    let text = fs::read_to_string(Path::new(ROOT).join("CHANGELOG.md")).unwrap();
    let heading = format!("## [{}] - ", env!("CARGO_PKG_VERSION"));
    let line = text
        .lines()
        .find(|l| l.starts_with(&heading))
        .unwrap_or_else(|| panic!("CHANGELOG.md has no `{heading}YYYY-MM-DD` section"));
    let date = &line[heading.len()..];
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3
            && [4, 2, 2]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit())),
        "`{line}`: the release date must be YYYY-MM-DD"
    );
    // Unreleased changes go above the newest release, never below it.
    let unreleased = text.find("## [Unreleased]");
    let release = text.find(&heading);
    assert!(
        unreleased.is_none() || unreleased < release,
        "[Unreleased] must come before the {} section",
        env!("CARGO_PKG_VERSION")
    );
}
