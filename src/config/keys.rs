// SPDX-License-Identifier: GPL-2.0-or-later
//! Every key of the configuration file, as an operator reads about it:
//! table, type, default, accepted range and meaning. The qemu-pr-helper.toml(5)
//! man page is rendered from this list, and the tests below hold it to the
//! parser ([`ConfigFile`](super::ConfigFile)): the same keys, the listed
//! choices and bounds exactly those the parser takes, each example and
//! default accepted, and each default the value an absent key gets (or, for
//! the limits the server applies, the server's own).

use super::{DEFAULT_SOCKET, DEFAULT_SYSLOG_SOCKET};
use crate::domain::sg_io_timeout::SgIoTimeout;

/// One key of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The table it belongs to: "" for the top level, "executor",
    /// "security", or "executor.fault" (an array of tables).
    pub table: &'static str,
    /// The key as written.
    pub name: &'static str,
    /// What kind of value it takes, in words ("integer", "path", ...).
    pub kind: &'static str,
    /// The strings it accepts, for a key that takes one of a few.
    pub choices: &'static [&'static str],
    /// The smallest and largest integer it accepts, for an integer key.
    pub bounds: Option<(i128, i128)>,
    /// What an absent key means.
    pub default: KeyDefault,
    /// A value it accepts, as TOML.
    pub example: &'static str,
    /// What it does, in a sentence or two.
    pub meaning: &'static str,
}

/// What an absent key means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyDefault {
    /// The same as this value, written as TOML: setting it changes nothing.
    Value(String),
    /// Said in words: no value written in the file stands for it (no
    /// pidfile, the umask's mode, a limit the daemon works out...).
    Words(String),
}

/// The largest integer a TOML file can hold: the bound of the keys whose
/// type (u64, usize) reaches further.
pub const TOML_MAX: i128 = i64::MAX as i128;
/// The largest `count`.
const U32: i128 = u32::MAX as i128;
const U64: i128 = TOML_MAX;
const USIZE: i128 = TOML_MAX;

/// Every key, in the order the page lists them: the top level, then each
/// table.
pub fn keys() -> Vec<Key> {
    use KeyDefault::{Value, Words};
    let quoted = |s: &str| format!("\"{s}\"");
    vec![
        Key {
            table: "",
            name: "socket",
            kind: "path",
            choices: &[],
            bounds: None,
            default: Value(quoted(DEFAULT_SOCKET)),
            example: "\"/run/qemu-pr-helper.sock\"",
            meaning: "The Unix socket QEMU connects to: an absolute path of at most 107 bytes. \
                      Under systemd socket activation the socket systemd passes is used and this \
                      key is not (the log says so).",
        },
        Key {
            table: "",
            name: "pidfile",
            kind: "path",
            choices: &[],
            bounds: None,
            default: Words(format!(
                "no pidfile; with daemon = true, {}",
                super::DEFAULT_PIDFILE
            )),
            example: "\"/run/qemu-pr-helper.pid\"",
            meaning: "Writes the daemon's pid to this file, locked while it runs, as -f does.",
        },
        Key {
            table: "",
            name: "daemon",
            kind: "boolean",
            choices: &[],
            bounds: None,
            default: Value("false".into()),
            example: "true",
            meaning: "Runs in the background, as -d does.",
        },
        Key {
            table: "",
            name: "user",
            kind: "string",
            choices: &[],
            bounds: None,
            default: Words("the user it was started as".into()),
            example: "\"qemu-pr\"",
            meaning: "The user (a name or a number) to drop to once the socket is open, as -u \
                      does. With only user, that user's primary group is used.",
        },
        Key {
            table: "",
            name: "group",
            kind: "string",
            choices: &[],
            bounds: None,
            default: Words("the group it was started as".into()),
            example: "\"disk\"",
            meaning: "The group (a name or a number) to drop to, as -g does.",
        },
        Key {
            table: "",
            name: "verbose",
            kind: "integer",
            choices: &[],
            bounds: Some((i8::MIN.into(), i8::MAX.into())),
            default: Value("0".into()),
            example: "1",
            meaning: "How much is logged: -1 or less errors only (as -q), 0 start, stop, \
                      warnings and audit lines, 1 debug (as -v), 2 or more trace (as -vv). \
                      -q and -v override it.",
        },
        Key {
            table: "",
            name: "trace",
            kind: "string",
            choices: &[],
            bounds: None,
            default: Words("none".into()),
            example: "\"qemu_pr_helper::server,file=/var/log/qemu-pr-helper.trace\"",
            meaning:
                "Tracing options as -T takes them: [[enable=]PATTERN][,events=FILE][,file=FILE]. \
                      -T overrides it.",
        },
        Key {
            table: "",
            name: "log_format",
            kind: "string",
            choices: &["text", "json"],
            bounds: None,
            default: Value("\"text\"".into()),
            example: "\"json\"",
            meaning: "The form of log lines on stderr, in a file or to syslog: text, or one \
                      JSON object a line. The journal takes fields natively, whatever this says.",
        },
        Key {
            table: "",
            name: "log_to",
            kind: "string",
            choices: &["auto", "stderr", "journald", "syslog"],
            bounds: None,
            default: Value("\"auto\"".into()),
            example: "\"journald\"",
            meaning: "Where the log goes, as --log-to: auto is the journal when systemd \
                      connected stderr to it, with daemon the journal or else syslog, otherwise \
                      stderr. --log-to overrides it.",
        },
        Key {
            table: "",
            name: "syslog_socket",
            kind: "path",
            choices: &[],
            bounds: None,
            default: Value(quoted(DEFAULT_SYSLOG_SOCKET)),
            example: "\"/run/systemd/journal/dev-log\"",
            meaning: "The syslog socket, for log_to = \"syslog\".",
        },
        Key {
            table: "executor",
            name: "kind",
            kind: "string",
            choices: &["sg_io", "pr_ioctl", "auto", "emulated"],
            bounds: None,
            default: Value("\"auto\"".into()),
            example: "\"pr_ioctl\"",
            meaning: "How commands reach the client's device, as --executor: auto uses SG_IO \
                      while the helper holds CAP_SYS_RAWIO and the block layer's PR ioctls \
                      otherwise; sg_io uses SG_IO only; pr_ioctl the PR ioctls only, keeping no \
                      capability; emulated an in-memory device, touching no real one. \
                      --executor and --emulate override it.",
        },
        Key {
            table: "executor",
            name: "timeout_ms",
            kind: "integer",
            choices: &[],
            bounds: Some((1, U64)),
            default: Value(SgIoTimeout::DEFAULT.as_millis().to_string()),
            example: "60000",
            meaning: "The SG_IO timeout in milliseconds, as --timeout.",
        },
        Key {
            table: "executor",
            name: "multipath",
            kind: "boolean",
            choices: &[],
            bounds: None,
            default: Value("true".into()),
            example: "false",
            meaning: "Handles dm-multipath maps path by path: REGISTER on every path, the \
                      reservation moved on failover, and multipathd told about keys.",
        },
        Key {
            table: "executor",
            name: "aptpl_zero",
            kind: "string",
            choices: &["persist", "refuse"],
            bounds: None,
            default: Value("\"persist\"".into()),
            example: "\"refuse\"",
            meaning: "PR ioctls only: what a REGISTER with APTPL=0 gets, since the kernel \
                      registers with APTPL=1 whatever is asked. persist runs it with APTPL=1 \
                      (logged); refuse answers ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST.",
        },
        Key {
            table: "executor",
            name: "initiator",
            kind: "string",
            choices: &["connection", "uid", "session"],
            bounds: None,
            default: Value("\"connection\"".into()),
            example: "\"session\"",
            meaning: "Emulated device only: what makes clients one I_T nexus. connection: \
                      each connection is one; uid: all connections of one peer user; session: \
                      all connections of one session (setsid).",
        },
        Key {
            table: "executor.fault",
            name: "path",
            kind: "path",
            choices: &[],
            bounds: None,
            default: Words("none; required in each [[executor.fault]]".into()),
            example: "\"/var/tmp/lun0\"",
            meaning: "Emulated device only: the file standing for the logical unit that \
                      misbehaves. It must exist when the daemon starts.",
        },
        Key {
            table: "executor.fault",
            name: "fault",
            kind: "string",
            choices: &[
                "eio",
                "timeout",
                "unit_attention",
                "not_ready",
                "task_set_full",
                "reservation_conflict_errno",
                "target_failure",
                "medium_error",
                "no_medium",
                "no_space",
                "host_status:N",
            ],
            bounds: None,
            default: Words("none; required in each [[executor.fault]]".into()),
            example: "\"unit_attention\"",
            meaning: "What the unit does instead of running a command: an errno from the \
                      ioctl, a SCSI answer, or host_status:N, a host status (N decimal or 0x \
                      hex, not 0).",
        },
        Key {
            table: "executor.fault",
            name: "count",
            kind: "integer",
            choices: &[],
            bounds: Some((1, U32)),
            default: Words("for ever".into()),
            example: "3",
            meaning: "How many commands get the fault before the unit heals.",
        },
        Key {
            table: "security",
            name: "allowed_uids",
            kind: "array of integers",
            choices: &[],
            bounds: None,
            default: Value("[]".into()),
            example: "[107]",
            meaning: "Peer user ids (SO_PEERCRED) allowed to connect: a peer whose uid or \
                      gid is listed may. With both lists empty, anyone who can open the socket \
                      may, as with QEMU's helper.",
        },
        Key {
            table: "security",
            name: "allowed_gids",
            kind: "array of integers",
            choices: &[],
            bounds: None,
            default: Value("[]".into()),
            example: "[36]",
            meaning: "Peer group ids allowed to connect.",
        },
        Key {
            table: "security",
            name: "socket_mode",
            kind: "octal string",
            choices: &[],
            bounds: None,
            default: Words("what the umask gives".into()),
            example: "\"0660\"",
            meaning: "The socket file's mode, \"0000\" to \"0777\", set before the socket \
                      appears under its name.",
        },
        Key {
            table: "security",
            name: "socket_group",
            kind: "string",
            choices: &[],
            bounds: None,
            default: Words("the daemon's group".into()),
            example: "\"kvm\"",
            meaning: "The socket file's group (a name or a number), set before the socket \
                      appears.",
        },
        Key {
            table: "security",
            name: "devices",
            kind: "array of strings",
            choices: &[],
            bounds: None,
            default: Value("[]".into()),
            example: "[\"wwid:naa.6001405abcdef0123456789abcdef01\", \"253:0\"]",
            meaning: "The devices commands may go to, each \"MAJOR:MINOR\" or \"wwid:NAME\"; \
                      empty, any device the client passes.",
        },
        Key {
            table: "security",
            name: "audit_keys",
            kind: "string",
            choices: &["full", "hashed", "omitted"],
            bounds: None,
            default: Value("\"full\"".into()),
            example: "\"hashed\"",
            meaning: "How reservation keys appear in audit lines.",
        },
        Key {
            table: "security",
            name: "max_connections",
            kind: "integer",
            choices: &[],
            bounds: Some((1, USIZE)),
            default: Words(
                "16384, lowered at start (with a warning) to what the open-file limit serves: \
                 2 fds a connection and 256 in reserve"
                    .into(),
            ),
            example: "1024",
            meaning: "Connections served at once; more are closed when accepted.",
        },
        Key {
            table: "security",
            name: "max_connections_per_peer",
            kind: "integer",
            choices: &[],
            bounds: Some((1, USIZE)),
            default: Words("256".into()),
            example: "16",
            meaning: "Connections one peer process (SO_PEERCRED pid) may have open.",
        },
        Key {
            table: "security",
            name: "max_commands_per_peer",
            kind: "integer",
            choices: &[],
            bounds: Some((1, 512)),
            default: Words("64".into()),
            example: "8",
            meaning: "Commands of one peer process running at once, up to the threads that \
                      run commands; more wait for a slot, they are not refused.",
        },
        Key {
            table: "security",
            name: "request_timeout_ms",
            kind: "integer",
            choices: &[],
            bounds: Some((1, U64)),
            default: Words("30000".into()),
            example: "5000",
            meaning: "Milliseconds a request may take to arrive whole once it started, and a \
                      reply to be taken by the client. Idle connections are not timed.",
        },
        Key {
            table: "security",
            name: "seccomp",
            kind: "string",
            choices: &["kill", "log", "off"],
            bounds: None,
            default: Words("kill (log in a debug build)".into()),
            example: "\"log\"",
            meaning: "The system-call filter, as --seccomp: on a call outside its list, kill \
                      ends the daemon and log lets the call run and logs it to the kernel's \
                      audit log; off installs no filter. --seccomp overrides it.",
        },
    ]
}

#[cfg(test)]
mod tests;
