// SPDX-License-Identifier: GPL-2.0-or-later
//! The command line of `qemu-pr-helper`, option for option the C helper's.
//! In the library so that man pages and shell completions are generated from
//! the same definition the binary parses.

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{ArgAction, Parser};

use crate::config::{ExecutorKind, LogTo, SeccompMode, DEFAULT_PIDFILE, DEFAULT_SOCKET};
use crate::domain::sg_io_timeout::SgIoTimeout;

/// Help lines that show a default: written from the constant the settings
/// use, so the two cannot differ.
static PIDFILE_HELP: LazyLock<String> =
    LazyLock::new(|| format!("PID file when running as a daemon [default: {DEFAULT_PIDFILE}]"));
static SOCKET_HELP: LazyLock<String> =
    LazyLock::new(|| format!("Path to the unix socket [default: {DEFAULT_SOCKET}]"));
static TIMEOUT_HELP: LazyLock<String> = LazyLock::new(|| {
    let ms = SgIoTimeout::DEFAULT.as_millis();
    format!("SG_IO timeout in milliseconds [default: {ms}]")
});

/// Persistent Reservation helper program for QEMU.
#[derive(Debug, Parser)]
#[command(
    name = "qemu-pr-helper",
    version,
    disable_version_flag = true,
    about = "Persistent Reservation helper program for QEMU",
    after_help = "Drop-in replacement for QEMU's qemu-pr-helper: same options, same protocol."
)]
pub struct Cli {
    /// Run in the background.
    ///
    /// Its stderr is then /dev/null, so the log goes to the journal if it
    /// answers, else to syslog (/dev/log); where it goes is printed before
    /// going to the background. -T file=FILE or --log-to choose otherwise.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// PID file when running as a daemon (the help shows the default).
    #[arg(short = 'f', long, value_name = "PATH", help = PIDFILE_HELP.as_str())]
    pub pidfile: Option<PathBuf>,
    /// Path to the unix socket (the help shows the default).
    #[arg(short = 'k', long, value_name = "PATH", help = SOCKET_HELP.as_str())]
    pub socket: Option<PathBuf>,
    /// Tracing options ('-T help' lists the targets).
    ///
    /// PATTERN (a glob with '*' over log targets such as
    /// 'qemu_pr_helper::server' or 'audit') logs everything those targets
    /// log, TRACE included, whatever -v/-q say; events=FILE reads patterns
    /// one per line; file=FILE appends the log to FILE. '-T help' prints the
    /// targets and exits.
    #[arg(
        short = 'T',
        long,
        value_name = "[[enable=]PATTERN][,events=FILE][,file=FILE]"
    )]
    pub trace: Option<String>,
    /// User to drop privileges to (name or number).
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Group to drop privileges to (name or number).
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,
    /// More log output: -v debug, -vv trace.
    ///
    /// The default is INFO: start, stop, warnings and one audit line per
    /// PR OUT. -v adds DEBUG (every command, connection and SG_IO result),
    /// -vv adds TRACE (each request as it arrives, the sense bytes of each
    /// SG_IO). More v's add nothing.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors in the log (audit lines too are left out; -T audit keeps
    /// them).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// TOML configuration file; command-line flags override it.
    #[arg(short = 'c', long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Serve an in-memory emulated device instead of real ones (testing).
    #[arg(long)]
    pub emulate: bool,
    /// How commands reach devices: auto, sg_io, pr_ioctl or emulated.
    ///
    /// auto (the default) uses SG_IO while the helper holds CAP_SYS_RAWIO,
    /// and otherwise the block layer's PR ioctls on every device whose
    /// kernel (6.19 or later) and driver take them. pr_ioctl uses the PR
    /// ioctls only and drops CAP_SYS_RAWIO too, even when started as root:
    /// the daemon then holds no capability at all. sg_io is the C helper's
    /// way. docs/executors.md lists which service actions each one carries.
    #[arg(long, value_name = "KIND")]
    pub executor: Option<ExecutorKind>,
    /// SG_IO timeout in milliseconds (the help shows the default).
    #[arg(
        long,
        value_name = "MS",
        value_parser = clap::value_parser!(u64).range(1..),
        help = TIMEOUT_HELP.as_str()
    )]
    pub timeout: Option<u64>,
    /// Where the log goes: auto, stderr, journald or syslog.
    ///
    /// auto (the default) is the journal when systemd connected stderr to it
    /// (JOURNAL_STREAM), with -d the journal or else syslog, otherwise
    /// stderr. journald writes native fields and priorities (journalctl -p
    /// warning, PEER_PID=...); syslog writes to /dev/log (syslog_socket in
    /// the configuration file) with the daemon facility.
    #[arg(long, value_name = "WHERE")]
    pub log_to: Option<LogTo>,
    /// System-call filter: kill (release default), log (debug default), off.
    #[arg(long, value_name = "MODE")]
    pub seccomp: Option<SeccompMode>,
    /// Output version information and exit.
    #[arg(short = 'V', long, action = ArgAction::Version)]
    pub version: (),
}
