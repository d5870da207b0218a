//! Man pages and shell completions are rendered from the clap definitions
//! the binaries parse; the copies under `dist/`, which packages install, must
//! be what those definitions render today. After changing an option:
//!
//! ```sh
//! REGENERATE_DIST=1 cargo test --test generated_files
//! ```
//!
//! rewrites them (then commit `dist/`).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// The date in the pages' title line (the last change to the options or
/// the text around them). Without one, clap_mangen leaves the `.TH` slot
/// empty and unquoted, and man shifts the source and manual names into it.
const MAN_DATE: &str = "2026-12-07";

/// The helper's man page: section 8, named so that it does not replace
/// QEMU's qemu-pr-helper(8) when both are installed.
const HELPER_MAN: &str = "qemu-pr-helper-rs.8";

/// What the helper's man page adds to the options: where the package puts
/// things, and what else to read.
const HELPER_EXTRA: &str = r#".SH FILES
.TP
\fI/usr/libexec/qemu\-pr\-helper\-rs/qemu\-pr\-helper\fR
this program, installed beside QEMU's \fI/usr/bin/qemu\-pr\-helper\fR; point libvirt's
\fBpr_helper\fR (\fI/etc/libvirt/qemu.conf\fR) at it.
.TP
\fIqemu\-pr\-helper\-rs.socket\fR, \fIqemu\-pr\-helper\-rs.service\fR
systemd units: the socket \fI/run/qemu\-pr\-helper.sock\fR, the daemon as a dynamic user
holding CAP_SYS_RAWIO only.
.TP
\fI/etc/default/qemu\-pr\-helper\-rs\fR
options for the service (QEMU_PR_HELPER_OPTS), e.g. \fB\-c /etc/qemu\-pr\-helper.toml\fR.
.TP
\fI/usr/share/doc/qemu\-pr\-helper\-rs/examples/\fR
an example configuration file, the emulated device's, the drop-in for hosts with
dm\-multipath maps (\fIqemu\-pr\-helper\-rs\-multipath.conf\fR), and the drop-in that runs
the daemon with no capability through the block layer's PR ioctls
(\fIqemu\-pr\-helper\-rs\-pr\-ioctl.conf\fR).
.SH SEE ALSO
\fBqemu\-pr\-client\fR(1), \fBqemu\-pr\-helper\fR(8), \fBsg_persist\fR(8), \fBmultipathd\fR(8)
"#;

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
            HELPER_EXTRA,
        ),
        (
            qemu_pr_helper::client::cli::Cli::command(),
            "qemu-pr-client.1",
            "1",
            CLIENT_EXTRA,
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
        let man = with_synopsis(String::from_utf8(man).unwrap(), &cmd);
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
