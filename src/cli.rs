//! The command line of `qemu-pr-helper`, option for option the C helper's.
//! In the library so that man pages and shell completions are generated from
//! the same definition the binary parses.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::adapters::seccomp::SeccompMode;

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
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// PID file when running as a daemon [default: /var/run/qemu-pr-helper.pid].
    #[arg(short = 'f', long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// Path to the unix socket [default: /var/run/qemu-pr-helper.sock].
    #[arg(short = 'k', long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Tracing options: PATTERN (glob over log targets such as
    /// 'qemu_pr_helper::server') enables TRACE level for them; events=FILE
    /// reads patterns one per line; file=FILE writes the log there.
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
    /// More log output (repeat for more).
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors in the log.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// TOML configuration file; command-line flags override it.
    #[arg(short = 'c', long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Serve an in-memory emulated device instead of real ones (testing).
    #[arg(long)]
    pub emulate: bool,
    /// SG_IO timeout in milliseconds [default: 30000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// System-call filter: kill (release default), log (debug default), off.
    #[arg(long, value_name = "MODE", value_parser = parse_seccomp)]
    pub seccomp: Option<SeccompMode>,
    /// Output version information and exit.
    #[arg(short = 'V', long, action = ArgAction::Version)]
    pub version: (),
}

fn parse_seccomp(s: &str) -> Result<SeccompMode, String> {
    match s {
        "kill" => Ok(SeccompMode::Kill),
        "log" => Ok(SeccompMode::Log),
        "off" => Ok(SeccompMode::Off),
        other => Err(format!("'{other}' is not kill, log or off")),
    }
}
