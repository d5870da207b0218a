// SPDX-License-Identifier: GPL-2.0-or-later
//! The documentation's shell examples work when pasted: every fenced block
//! whose info string is `sh test`, in README.md and in every `docs/*.md`, is
//! run with bash, and what it prints (stdout and stderr, as a terminal shows
//! them) must be the `text` block that follows it. The blocks are read from
//! the documents themselves, so they cannot drift from what is run here.
//!
//! Each block runs in a temporary directory holding `config/` (the
//! repository's) and `target/debug/` (the binaries under test), which is
//! where the documents' commands run from after `cargo build`; `/tmp/` in a
//! block becomes a temporary directory of its own, so that runs do not
//! meet each other's sockets.
//!
//! The daemons here run as the documents start them, so under the build's
//! default system-call filter mode (`log` in a debug build), not the
//! `--seccomp kill` every other test daemon runs under.
//!
//! The documents' relative links are checked too: a file they name, or a
//! section of one, that is not there fails, and so does a `docs/` file the
//! source code cites.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A runnable example and the output its document promises for it.
struct Example {
    /// The document and the line of the opening fence, for messages.
    place: String,
    script: String,
    expected: String,
}

/// The documents that must hold examples, with how many each holds at
/// least: the README's quick start, and the emulated device's walk-through
/// and its one-initiator-per-connection example. A file missing here fails.
const DOCUMENTS_WITH_EXAMPLES: &[(&str, usize)] =
    &[("README.md", 1), ("docs/emulated-device.md", 2)];

/// The `sh test` blocks of `markdown` (the file `name`), each with the
/// `text` block after it.
fn examples(name: &str, markdown: &str) -> Vec<Example> {
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
                    panic!("{name} line {line}: a `sh test` block without a `text` block after it");
                }
                pending = Some((n + 1, body));
            }
            "text" => {
                if let Some((line, script)) = pending.take() {
                    examples.push(Example {
                        place: format!("{name} line {line}"),
                        script,
                        expected: body,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some((line, _)) = pending {
        panic!("{name} line {line}: a `sh test` block without a `text` block after it");
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

/// README.md and every `docs/*.md`, by path from the repository's top
/// directory, with their text.
fn documents(root: &Path) -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(&name)).unwrap();
            (name, text)
        })
        .collect()
}

#[test]
fn the_documents_shell_examples_print_what_the_documents_show() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documents = documents(root);
    for &(name, at_least) in DOCUMENTS_WITH_EXAMPLES {
        let Some((_, text)) = documents.iter().find(|(n, _)| n == name) else {
            panic!("{name} is missing: it holds examples that are run here");
        };
        let found = examples(name, text).len();
        assert!(
            found >= at_least,
            "{name}: {found} `sh test` blocks, expected at least {at_least}"
        );
    }
    let examples: Vec<Example> = documents
        .iter()
        .flat_map(|(name, text)| examples(name, text))
        .collect();
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
            "{}: the blocks run after `cargo build`, not cargo itself",
            example.place
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
            "{}: the block printed something else\n--- daemon log:\n{log}",
            example.place
        );
        // The daemon's log went to its file, not between the answers.
        assert!(
            !log.trim().is_empty(),
            "{}: the daemon's log file is empty",
            example.place
        );
    }
}

/// The anchor a heading gets on the forges that render these files:
/// lower case, spaces to dashes, punctuation other than `-` and `_` left
/// out.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of `markdown`'s headings (outside code blocks).
fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of `markdown`'s inline links and images, `](target)`,
/// outside code blocks and code spans.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut targets = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans may hold `](` that is no link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    targets
}

#[test]
fn the_documents_links_lead_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, text) in documents(root) {
        let dir = Path::new(&name).parent().unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, section) = match target.split_once('#') {
                Some((file, section)) => (file, Some(section)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                root.join(&name)
            } else {
                root.join(dir).join(file)
            };
            assert!(path.exists(), "{name}: the link to {target} leads nowhere");
            if let Some(section) = section {
                let linked = std::fs::read_to_string(&path).unwrap();
                assert!(
                    anchors(&linked).iter().any(|a| a == section),
                    "{name}: the link to {target} names no section of {file}"
                );
            }
        }
    }
}

/// Every `docs/NAME.md` the source cites in its comments.
fn cited_documents(dir: &Path, cited: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            cited_documents(&path, cited);
        } else if path.extension().is_some_and(|e| e == "rs")
            // This file names documents in its own tests' inputs.
            && !path.ends_with("tests/readme_examples.rs")
        {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("docs/") {
                rest = &rest[at + "docs/".len()..];
                let end = rest
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                    })
                    .unwrap_or(rest.len());
                let file = rest[..end].trim_end_matches('.');
                if file.ends_with(".md") {
                    cited.push((path.display().to_string(), format!("docs/{file}")));
                }
            }
        }
    }
}

#[test]
fn every_document_the_source_cites_is_there() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cited = Vec::new();
    for dir in ["src", "tests", "benches"] {
        cited_documents(&root.join(dir), &mut cited);
    }
    assert!(
        cited.iter().any(|(_, doc)| doc == "docs/protocol.md"),
        "the framing cites the protocol's document"
    );
    for (source, doc) in cited {
        assert!(
            root.join(&doc).exists(),
            "{source} cites {doc}, which is missing"
        );
    }
}

#[test]
fn a_block_marked_for_testing_needs_its_output() {
    let found = examples(
        "x.md",
        "```sh test\necho hi\n```\n\n```text\nhi\n```\n```sh\nnot run\n```\n",
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].script, "echo hi\n");
    assert_eq!(found[0].expected, "hi\n");
    let missing = std::panic::catch_unwind(|| examples("x.md", "```sh test\necho hi\n```\n"));
    assert!(missing.is_err());
}

#[test]
fn anchors_and_links_are_read_as_the_forges_render_them() {
    assert_eq!(
        anchor(" Executors: SG_IO and the PR ioctls"),
        "executors-sg_io-and-the-pr-ioctls"
    );
    assert_eq!(
        anchor(" The client: `qemu-pr-client`"),
        "the-client-qemu-pr-client"
    );
    assert_eq!(
        anchors("# A\n```sh\n# not a heading\n```\n## B c\n"),
        ["a", "b-c"]
    );
    assert_eq!(
        link_targets(
            "see [x](docs/x.md#y) and `[z](not/a/link)`\n```\n[w](nor)\n```\n![i](p.svg)\n"
        ),
        ["docs/x.md#y", "p.svg"]
    );
}
