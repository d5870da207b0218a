// SPDX-License-Identifier: GPL-2.0-or-later
//! Man pages and shell completions are rendered from the clap definitions
//! the binaries parse, and qemu-pr-helper.toml(5) from the configuration
//! file's key list; the copies under `dist/`, which packages install, must
//! be what those definitions render today. After changing an option or a
//! key:
//!
//! ```sh
//! REGENERATE_DIST=1 cargo test --test generated_files
//! ```
//!
//! rewrites them (then commit `dist/`).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "generated_files/config_page.rs"]
mod config_page;
#[path = "generated_files/helper_page.rs"]
mod helper_page;

/// The date in the pages' title line (the last change to the options or
/// the text around them). Without one, clap_mangen leaves the `.TH` slot
/// empty and unquoted, and man shifts the source and manual names into it.
const MAN_DATE: &str = "2026-12-07";

/// The helper's man page.
const HELPER_MAN: &str = helper_page::NAME;

/// What the client's man page adds.
const CLIENT_EXTRA: &str = r#".SH SEE ALSO
\fBqemu\-pr\-helper\-rs\fR(8), \fBsg_persist\fR(8)
"#;

/// clap_mangen puts the text after the options (`after_help`) under one
/// heading, EXTRA; a man page reader looks for EXIT STATUS and EXAMPLES.
/// Each paragraph of that text becomes a section of its own, named by its
/// first line ("Exit status ...:", "Examples:"), its lines kept as written.
fn titled_after_help(page: String) -> String {
    let Some(start) = page.find(".SH EXTRA\n") else {
        return page;
    };
    let body_start = start + ".SH EXTRA\n".len();
    let end = page[body_start..]
        .find("\n.SH ")
        .map_or(page.len(), |i| body_start + i + 1);
    let mut sections = String::new();
    for paragraph in page[body_start..end].trim_end().split("\n\n") {
        let (first, rest) = paragraph.split_once('\n').unwrap_or((paragraph, ""));
        let heading = if first.starts_with("Exit status") {
            "EXIT STATUS"
        } else if first.starts_with("Examples") {
            "EXAMPLES"
        } else {
            sections.push_str(&format!(".SH NOTES\n{paragraph}\n"));
            continue;
        };
        sections.push_str(&format!(".SH \"{heading}\"\n"));
        if heading != "EXAMPLES" {
            sections.push_str(&format!("{first}\n"));
        }
        sections.push_str(&format!(".nf\n{rest}\n.fi\n"));
    }
    format!("{}{}{}", &page[..start], sections, &page[end..])
}

/// `page` with the body of its section `heading` (up to the next heading)
/// replaced by `body`.
fn with_section(page: String, heading: &str, body: &str) -> String {
    let marker = format!(".SH {heading}\n");
    let start = page.find(&marker).expect("the section") + marker.len();
    let end = page[start..]
        .find("\n.SH ")
        .map_or(page.len(), |i| start + i + 1);
    format!("{}{body}\n{}", &page[..start], &page[end..])
}

/// roff for text set in a font: a hyphen is `\-` (else it may break or
/// render as a typographic hyphen).
fn roff(text: &str) -> String {
    text.replace('-', "\\-")
}

/// clap_mangen's SYNOPSIS lists the options without their values
/// (`[-k|--socket]`); a reader needs `[-k|--socket PATH]`. One bracket per
/// option as clap_mangen writes it, with the value name in italics and
/// `...` after an option that may be repeated.
fn synopsis(cmd: &clap::Command) -> String {
    // Built, so that clap's own --help and --version are listed too.
    let mut cmd = cmd.clone();
    cmd.build();
    let mut line = format!("\\fB{}\\fR", roff(cmd.get_name()));
    let visible = || cmd.get_arguments().filter(|a| !a.is_hide_set());
    for arg in visible().filter(|a| !a.is_positional()) {
        let mut names = Vec::new();
        if let Some(short) = arg.get_short() {
            names.push(format!("\\fB\\-{short}\\fR"));
        }
        if let Some(long) = arg.get_long() {
            names.push(format!("\\fB\\-\\-{}\\fR", roff(long)));
        }
        let mut item = names.join("|");
        if arg.get_action().takes_values() {
            let value = arg.get_value_names().map_or_else(
                || arg.get_id().as_str().to_uppercase(),
                |names| {
                    names
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            );
            item.push_str(&format!(" \\fI{}\\fR", roff(&value)));
        }
        let repeated = matches!(
            arg.get_action(),
            clap::ArgAction::Count | clap::ArgAction::Append
        );
        line.push_str(&format!(" [{item}]{}", if repeated { "..." } else { "" }));
    }
    for arg in visible().filter(|a| a.is_positional()) {
        let value = arg
            .get_value_names()
            .and_then(|n| n.first().map(|n| n.to_string()))
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let value = format!("\\fI{}\\fR", roff(&value));
        if arg.is_required_set() {
            line.push_str(&format!(" {value}"));
        } else {
            line.push_str(&format!(" [{value}]"));
        }
    }
    line
}

/// `page` with its SYNOPSIS line replaced by [`synopsis`].
fn with_synopsis(page: String, cmd: &clap::Command) -> String {
    let start = page.find(".SH SYNOPSIS\n").expect("a SYNOPSIS section") + ".SH SYNOPSIS\n".len();
    let end = start + page[start..].find('\n').expect("its line");
    format!("{}{} {}", &page[..start], synopsis(cmd), &page[end..])
}

/// Every generated file: its path under `dist/` and its bytes.
fn rendered() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for (cmd, man_name, section, extra) in [
        (
            qemu_pr_helper::config::cli::Cli::command(),
            HELPER_MAN,
            "8",
            helper_page::sections(),
        ),
        (
            qemu_pr_helper::client::cli::Cli::command(),
            "qemu-pr-client.1",
            "1",
            CLIENT_EXTRA.to_string(),
        ),
    ] {
        let name = cmd.get_name().to_string();
        let title = man_name.rsplit_once('.').unwrap().0.to_uppercase();
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .title(title)
            .section(section)
            .date(MAN_DATE)
            .source(format!(
                "{} {}",
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION")
            ))
            .manual(if section == "8" {
                "System Administration"
            } else {
                "User Commands"
            })
            .render(&mut man)
            .unwrap();
        let mut man = with_synopsis(String::from_utf8(man).unwrap(), &cmd);
        if man_name == HELPER_MAN {
            man = with_section(man, "NAME", helper_page::NAME_LINE);
            man = with_section(man, "DESCRIPTION", helper_page::DESCRIPTION);
        }
        let mut man = titled_after_help(man).into_bytes();
        man.extend_from_slice(extra.as_bytes());
        files.push((Path::new("man").join(man_name), man));

        for (shell, file) in [
            (Shell::Bash, name.clone()),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut out);
            files.push((
                Path::new("completions").join(shell.to_string()).join(file),
                out,
            ));
        }
    }
    let source = format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
    files.push((
        Path::new("man").join(config_page::NAME),
        config_page::render(MAN_DATE, &source).into_bytes(),
    ));
    files
}

#[test]
fn man_pages_and_completions_are_current() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
    let regenerate = std::env::var_os("REGENERATE_DIST").is_some();
    let mut stale = Vec::new();
    for (path, bytes) in rendered() {
        let path = dist.join(path);
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing: {stale:?}\n\
         regenerate with: REGENERATE_DIST=1 cargo test --test generated_files"
    );
}

/// The man pages name what they document, in the section packages put them.
#[test]
fn man_pages_are_titled_for_their_section() {
    let files = rendered();
    let page = |name: &str| {
        let (_, bytes) = files
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8(bytes.clone()).unwrap()
    };
    let helper = page(HELPER_MAN);
    assert!(helper.starts_with(".ie"), "{helper}");
    assert!(helper.contains(".TH QEMU-PR-HELPER-RS 8"), "{helper}");
    // Every slot of the title line filled: title, section, date, source,
    // manual.
    let th = helper.lines().find(|l| l.starts_with(".TH ")).unwrap();
    assert!(!th.contains("  "), "an empty slot: {th}");
    assert!(th.contains(MAN_DATE), "{th}");
    assert!(helper.contains("\\-\\-emulate"), "options are listed");
    let client = page("qemu-pr-client.1");
    assert!(client.contains(".TH QEMU-PR-CLIENT 1"), "{client}");
    // The exit statuses and examples under the headings readers look for.
    for heading in [".SH \"EXIT STATUS\"\n", ".SH \"EXAMPLES\"\n"] {
        assert!(client.contains(heading), "{client}");
    }
    assert!(!client.contains(".SH EXTRA") && !helper.contains(".SH EXTRA"));
    // The synopsis shows what each option takes.
    for (page, option) in [
        (&helper, "[\\fB\\-k\\fR|\\fB\\-\\-socket\\fR \\fIPATH\\fR]"),
        (
            &client,
            "[\\fB\\-K\\fR|\\fB\\-\\-param\\-rk\\fR \\fIRK\\fR]",
        ),
        (&client, "[\\fB\\-v\\fR|\\fB\\-\\-verbose\\fR]..."),
        (&client, "[\\fIDEVICE\\fR]"),
    ] {
        let synopsis = page
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap();
        assert!(synopsis.contains(option), "{option} missing in: {synopsis}");
    }
}

/// whatis(1) and apropos(1) index a page under the names of its NAME line:
/// the first must be the file's, or `man -k` lists a name `man` cannot
/// open.
#[test]
fn each_page_is_indexed_under_its_file_name() {
    let pages: Vec<(PathBuf, String)> = rendered()
        .into_iter()
        .filter(|(path, _)| path.starts_with("man"))
        .map(|(path, bytes)| (path, String::from_utf8(bytes).unwrap()))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    for (path, page) in &pages {
        let file = path.file_name().unwrap().to_str().unwrap();
        let (stem, section) = file.rsplit_once('.').unwrap();
        let name_line = page
            .split(".SH NAME\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap_or_else(|| panic!("{file}: no NAME"));
        let (names, what) = name_line.split_once(" \\- ").expect("name \\- what");
        let first = names.split(", ").next().unwrap().replace("\\-", "-");
        assert_eq!(first, stem, "{file}: {name_line}");
        assert!(what.len() > 20, "{file}: {name_line}");
        let th = page.lines().find(|l| l.starts_with(".TH ")).unwrap();
        assert!(
            th.starts_with(&format!(".TH {} {section} ", stem.to_uppercase())),
            "{file}: {th}"
        );
    }
}

/// The helper's page has the sections an operator looks for, each saying
/// what the daemon does.
#[test]
fn the_helper_page_tells_environment_signals_and_exit_status() {
    let files = rendered();
    let (_, bytes) = files.iter().find(|(p, _)| p.ends_with(HELPER_MAN)).unwrap();
    let page = String::from_utf8(bytes.clone()).unwrap();
    let section = |heading: &str| -> String {
        let start = page
            .find(&format!(".SH {heading}\n"))
            .unwrap_or_else(|| panic!("no {heading}"));
        let rest = &page[start + 4..];
        rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
    };
    let description = section("DESCRIPTION");
    assert!(description.contains("SCM_RIGHTS"), "{description}");
    assert!(description.lines().count() > 10, "{description}");
    let environment = section("ENVIRONMENT");
    for name in [
        "MULTIPATH_SOCKET_NAME",
        "NOTIFY_SOCKET",
        "LISTEN_PID",
        "LISTEN_FDS",
        "JOURNAL_STREAM",
    ] {
        assert!(environment.contains(name), "{name}: {environment}");
    }
    let signals = section("SIGNALS");
    for name in ["SIGTERM", "SIGINT", "SIGHUP", "SIGPIPE"] {
        assert!(signals.contains(name), "{name}: {signals}");
    }
    let exit = section("\"EXIT STATUS\"");
    assert!(
        exit.contains(".TP\n\\fB0\\fR\n") && exit.contains(".TP\n\\fB1\\fR\n"),
        "{exit}"
    );
    assert!(section("OPTIONS").contains("\\-\\-emulate"));
    assert!(section("FILES").contains("/var/run/qemu\\-pr\\-helper.sock"));
}

/// qemu-pr-helper.toml(5) lists every key the configuration parser reads
/// (the library's tests hold the key list to the parser).
#[test]
fn the_configuration_page_lists_every_key() {
    let files = rendered();
    let (_, bytes) = files
        .iter()
        .find(|(p, _)| p.ends_with(config_page::NAME))
        .unwrap();
    config_page::check(&String::from_utf8(bytes.clone()).unwrap());
}

/// The configuration page states the server's limits in words; they must be
/// the limits a server built with no settings applies.
#[test]
fn the_configuration_pages_limits_are_the_servers() {
    use qemu_pr_helper::config::keys::{keys, KeyDefault};
    use qemu_pr_helper::server::ServerOptions;
    let server = ServerOptions::new(std::sync::Arc::new(
        qemu_pr_helper::adapters::fd_inspector::ClientFdInspector,
    ));
    let words = |name: &str| match keys().into_iter().find(|k| k.name == name).unwrap().default {
        KeyDefault::Words(w) => w,
        KeyDefault::Value(v) => panic!("{name} = {v}"),
    };
    assert!(words("max_connections").starts_with(&format!("{},", server.max_connections)));
    assert_eq!(
        words("max_connections_per_peer"),
        server.max_connections_per_peer.to_string()
    );
    assert_eq!(
        words("max_commands_per_peer"),
        server.max_commands_per_peer.to_string()
    );
    assert_eq!(
        words("request_timeout_ms"),
        server.request_timeout.as_millis().to_string()
    );
    assert!(words("seccomp").starts_with(qemu_pr_helper::config::SeccompMode::Kill.name()));
}
