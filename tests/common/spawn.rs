// SPDX-License-Identifier: GPL-2.0-or-later
//! Starting a helper process: the command line and the open-file limit it
//! starts with. Used by the tests (through `common`) and by the benchmark
//! (which includes this file by path).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Our daemon's binary.
pub fn our_helper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qemu-pr-helper"))
}

/// The arguments that put our daemon under the production system-call
/// filter (the release default, spelled out so that debug builds run it
/// too).
pub const PRODUCTION_FILTER: [&str; 2] = ["--seccomp", "kill"];

/// `binary -k SOCKET EXTRA...` with stdin and stdout on /dev/null; the
/// caller chooses where stderr goes.
pub fn helper_command(binary: &Path, socket: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("-k")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// The soft and hard RLIMIT_NOFILE of this process.
pub fn nofile_limits() -> nix::Result<(u64, u64)> {
    getrlimit(Resource::RLIMIT_NOFILE)
}

/// Sets this process's RLIMIT_NOFILE.
pub fn set_nofile_limits(soft: u64, hard: u64) -> nix::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
}

/// Makes `cmd`'s process start with its soft RLIMIT_NOFILE at `soft` (at
/// most the hard limit), as a service manager that leaves the usual 1024
/// would.
pub fn start_with_nofile_soft(cmd: &mut Command, soft: u64) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls getrlimit and setrlimit, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let (_, hard) = nofile_limits()?;
            set_nofile_limits(soft.min(hard), hard)?;
            Ok(())
        });
    }
}

/// Makes `cmd`'s process start with RLIMIT_NOFILE at `limit`, soft and hard:
/// a host whose limit the daemon cannot raise.
pub fn start_with_nofile(cmd: &mut Command, limit: u64) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls getrlimit and setrlimit, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let (_, hard) = nofile_limits()?;
            let limit = limit.min(hard);
            set_nofile_limits(limit, limit)?;
            Ok(())
        });
    }
}
