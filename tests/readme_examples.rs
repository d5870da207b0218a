//! The README's shell examples work when pasted: every fenced block whose
//! info string is `sh test` is run with bash, and what it prints (stdout and
//! stderr, as a terminal shows them) must be the `text` block that follows
//! it. The blocks are read from README.md, so they cannot drift from what
//! is run here.
//!
//! Each block runs in a temporary directory holding `config/` (the
//! repository's) and `target/debug/` (the binaries under test), which is
//! where the README's commands run from after `cargo build`; `/tmp/` in a
//! block becomes a temporary directory of its own, so that runs do not
//! meet each other's sockets.
//!
//! The daemons here run as the README starts them, so under the build's
//! default system-call filter mode (`log` in a debug build), not the
//! `--seccomp kill` every other test daemon runs under.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A runnable example and the output the README promises for it.
struct Example {
    /// Line of the opening fence, for messages.
    line: usize,
    script: String,
    expected: String,
}

/// The `sh test` blocks of `markdown`, each with the `text` block after it.
fn examples(markdown: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut lines = markdown.lines().enumerate();
    let mut pending: Option<(usize, String)> = None;
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let info = info.trim();
        if info.is_empty() {
            continue;
        }
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        match info {
            "sh test" => {
                if let Some((line, _)) = &pending {
                    panic!(
                        "README.md line {line}: a `sh test` block without a `text` block after it"
                    );
                }
                pending = Some((n + 1, body));
            }
            "text" => {
                if let Some((line, script)) = pending.take() {
                    examples.push(Example {
                        line,
                        script,
                        expected: body,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some((line, _)) = pending {
        panic!("README.md line {line}: a `sh test` block without a `text` block after it");
    }
    examples
}

/// Runs `script` with bash in `cwd`, stdout and stderr into one file as a
/// terminal would interleave them; returns what it printed. Whatever the
/// script left running (its process group) is killed afterwards.
fn run(script: &str, cwd: &Path) -> String {
    let out = cwd.join("output");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = Command::new("bash")
        .arg("--noprofile")
        .arg("--norc")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .process_group(0)
        .spawn()
        .unwrap();
    // Not a timing assertion: a guard, so that a daemon that never creates
    // its socket fails this test instead of hanging it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    let printed = std::fs::read_to_string(&out).unwrap();
    assert!(status.is_some(), "did not finish; printed:\n{printed}");
    printed
}

#[test]
fn the_readme_shell_examples_print_what_the_readme_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let examples = examples(&readme);
    assert!(
        examples.len() >= 2,
        "the quick start and the walk-through are marked `sh test`"
    );
    let bins = Path::new(env!("CARGO_BIN_EXE_qemu-pr-helper"))
        .parent()
        .unwrap();
    assert_eq!(
        bins,
        Path::new(env!("CARGO_BIN_EXE_qemu-pr-client"))
            .parent()
            .unwrap()
    );
    for example in examples {
        assert!(
            !example.script.contains("cargo "),
            "README.md line {}: the blocks run after `cargo build`, not cargo itself",
            example.line
        );
        let cwd = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root.join("config"), cwd.path().join("config")).unwrap();
        std::fs::create_dir(cwd.path().join("target")).unwrap();
        std::os::unix::fs::symlink(bins, cwd.path().join("target/debug")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let script = example
            .script
            .replace("/tmp/", &format!("{}/", tmp.path().display()));
        let printed = run(&script, cwd.path());
        let log = std::fs::read_to_string(tmp.path().join("pr-helper.log")).unwrap_or_default();
        assert_eq!(
            printed, example.expected,
            "README.md line {}: the block printed something else\n--- daemon log:\n{log}",
            example.line
        );
        // The daemon's log went to its file, not between the answers.
        assert!(
            !log.trim().is_empty(),
            "README.md line {}: the daemon's log file is empty",
            example.line
        );
    }
}

#[test]
fn a_block_marked_for_testing_needs_its_output() {
    let found = examples("```sh test\necho hi\n```\n\n```text\nhi\n```\n```sh\nnot run\n```\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].script, "echo hi\n");
    assert_eq!(found[0].expected, "hi\n");
    let missing = std::panic::catch_unwind(|| examples("```sh test\necho hi\n```\n"));
    assert!(missing.is_err());
}
