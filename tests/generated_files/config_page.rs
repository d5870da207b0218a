// SPDX-License-Identifier: GPL-2.0-or-later
//! qemu-pr-helper.toml(5), rendered from the key list the library's tests
//! hold to the configuration parser.

use qemu_pr_helper::config::keys::{keys, Key, KeyDefault, TOML_MAX};

use super::roff;

/// The page's file name under `dist/man/`.
pub const NAME: &str = "qemu-pr-helper.toml.5";

/// The tables in the order the page describes them, with what each is for.
const TABLES: &[(&str, &str, &str)] = &[
    (
        "",
        "TOP LEVEL",
        "Keys before the first table: the socket, the process and the log.",
    ),
    ("executor", "[executor]", "How commands reach devices."),
    (
        "executor.fault",
        "[[executor.fault]]",
        "Emulated device only (kind = \"emulated\"): units that misbehave, for testing what \
         a cluster does when a disk fails. One table per unit; path and fault are required.",
    ),
    (
        "security",
        "[security]",
        "Who may connect, to which devices, and limits.",
    ),
];

/// What `key` accepts beyond its type, in words.
fn accepted(key: &Key) -> Option<String> {
    if !key.choices.is_empty() {
        let choices: Vec<String> = key.choices.iter().map(|c| format!("\"{c}\"")).collect();
        return Some(format!("one of {}", choices.join(", ")));
    }
    key.bounds.map(|(low, high)| {
        if high == TOML_MAX {
            format!("{low} or more")
        } else {
            format!("{low} to {high}")
        }
    })
}

/// One key as a tagged paragraph: name and type, meaning, then what it
/// accepts, its default and an example.
fn entry(key: &Key) -> String {
    let mut text = format!(
        ".TP\n\\fB{}\\fR (\\fI{}\\fR)\n{}\n",
        roff(key.name),
        roff(key.kind),
        roff(key.meaning)
    );
    if let Some(accepted) = accepted(key) {
        text.push_str(&format!(".br\nAccepted: {}\n", roff(&accepted)));
    }
    let default = match &key.default {
        KeyDefault::Value(value) => format!("\\fB{}\\fR", roff(value)),
        KeyDefault::Words(words) => roff(words),
    };
    text.push_str(&format!(".br\nDefault: {default}\n"));
    text.push_str(&format!(
        ".br\nExample: \\fB{} = {}\\fR\n",
        roff(key.name),
        roff(key.example)
    ));
    text
}

/// The whole page.
pub fn render(date: &str, source: &str) -> String {
    let mut page = format!(
        ".TH QEMU-PR-HELPER.TOML 5 {date} \"{source}\" \"File Formats\"\n\
         .SH NAME\n\
         qemu\\-pr\\-helper.toml \\- configuration file of qemu\\-pr\\-helper\\-rs\n\
         .SH SYNOPSIS\n\
         \\fBqemu\\-pr\\-helper \\-c\\fR \\fIPATH\\fR\n\
         .SH DESCRIPTION\n\
         The configuration file of \\fBqemu\\-pr\\-helper\\-rs\\fR(8), read when it starts with \
         \\fB\\-c\\fR \\fIPATH\\fR. It is TOML. Every key is optional: an absent key keeps the \
         default, which is what QEMU's helper does where it has the setting. Options on the \
         command line override the file.\n\
         .PP\n\
         A key the daemon does not know, a value of the wrong type or one out of range stops the \
         start with one line that names the file, the line and the key.\n\
         .PP\n\
         Under systemd, the packaged service passes the options in \
         \\fI/etc/default/qemu\\-pr\\-helper\\-rs\\fR (QEMU_PR_HELPER_OPTS), for instance \
         \\fB\\-c /etc/qemu\\-pr\\-helper.toml\\fR.\n"
    );
    for (table, heading, about) in TABLES {
        page.push_str(&format!(".SH \"{heading}\"\n{}\n", roff(about)));
        for key in keys().iter().filter(|k| k.table == *table) {
            page.push_str(&entry(key));
        }
    }
    page.push_str(
        ".SH FILES\n\
         .TP\n\
         \\fI/usr/share/doc/qemu\\-pr\\-helper\\-rs/examples/qemu\\-pr\\-helper.toml\\fR\n\
         an example, commented.\n\
         .TP\n\
         \\fI/usr/share/doc/qemu\\-pr\\-helper\\-rs/examples/emulated.toml\\fR\n\
         the emulated device's, with fault examples commented out.\n\
         .SH SEE ALSO\n\
         \\fBqemu\\-pr\\-helper\\-rs\\fR(8), \\fBqemu\\-pr\\-client\\fR(1), \\fBmultipathd\\fR(8)\n",
    );
    page
}

/// Every key the parser reads has its entry, under its table's heading.
pub fn check(page: &str) {
    let all = keys();
    assert!(all.len() > 20, "{}", all.len());
    for (table, heading, _) in TABLES {
        let start = page
            .find(&format!(".SH \"{heading}\"\n"))
            .unwrap_or_else(|| panic!("no {heading}"));
        let section = &page[start..];
        let section = &section[..section[4..].find(".SH ").map_or(section.len(), |i| i + 4)];
        for key in all.iter().filter(|k| k.table == *table) {
            let tag = format!(".TP\n\\fB{}\\fR (", roff(key.name));
            assert!(section.contains(&tag), "{} not under {heading}", key.name);
        }
    }
    assert!(
        TABLES.iter().map(|(t, _, _)| *t).collect::<Vec<_>>().len() == 4
            && all
                .iter()
                .all(|k| TABLES.iter().any(|(t, _, _)| *t == k.table)),
        "a key in a table the page does not describe"
    );
}
