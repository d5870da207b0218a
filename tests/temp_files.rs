// SPDX-License-Identifier: GPL-2.0-or-later
//! `cargo test` leaves nothing in the temporary directory: the shared
//! fixtures remove what they make, and no test keeps a temporary file on
//! purpose.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;

use common::*;

/// The files and directories directly in `dir`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_helper_fixtures_leave_nothing_in_the_temporary_directory() {
    // The other test of this binary makes no temporary file: nothing else
    // here depends on TMPDIR while it is changed.
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_var("TMPDIR", tmp.path());
    for h in [
        Helper::emulated(),
        Helper::emulated_with("[security]\nmax_connections = 2\n"),
        Helper::emulated_with_args("", &["-v"]),
    ] {
        assert!(h.socket.starts_with(tmp.path()), "TMPDIR not obeyed");
        let disk = h.disk();
        let mut c = h.connect().negotiate();
        c.register(disk.as_raw_fd(), 0xabc);
    }
    std::env::remove_var("TMPDIR");
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn no_test_keeps_a_temporary_file() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut offenders = Vec::new();
    let mut dirs = vec![tests];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Built from pieces, so that this file does not find itself.
                for kept in [
                    [".keep", "()"].concat(),
                    [".into_", "path()"].concat(),
                    [".persist", "("].concat(),
                    ["std::env::", "temp_dir()"].concat(),
                ] {
                    if text.contains(&kept) {
                        offenders.push(format!("{}: {kept}", path.display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "temporary files kept: {offenders:?}");
}
