// SPDX-License-Identifier: GPL-2.0-or-later
//! Going to the background (`-d`) so that whoever started the daemon learns
//! how the start ended. The parent leaves only when the child says it is
//! serving (status 0: pidfile written, privileges dropped, filter
//! installed) or when the child has died (status 1; its error is already on
//! the terminal, since the child keeps stderr until it is ready). An init
//! script or a `Type=forking` unit that reads the pidfile as soon as the
//! parent exits therefore always finds the serving process's pid in it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::{fork, ForkResult};

/// Why the daemon could not go to the background.
#[derive(Debug, thiserror::Error)]
#[error("cannot go to the background: {step}: {source}")]
pub struct BackgroundError {
    /// What was being done.
    step: &'static str,
    /// What the kernel said.
    #[source]
    source: std::io::Error,
}

fn failed(step: &'static str) -> impl FnOnce(nix::errno::Errno) -> BackgroundError {
    move |e| BackgroundError {
        step,
        source: e.into(),
    }
}

/// The child's side, once detached: it still has the terminal's stdio and
/// the parent waiting on a pipe until [`Detached::ready`].
#[derive(Debug)]
pub struct Detached {
    ready: File,
    dev_null: OwnedFd,
}

/// Forks; the parent waits for the child's word and exits with the outcome
/// (printing `announcement` on stderr first if the daemon serves), the
/// child returns in a new session with `/` as its directory. Call it while
/// the process has one thread.
pub fn detach(announcement: &str) -> Result<Detached, BackgroundError> {
    let dev_null: OwnedFd = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| BackgroundError {
            step: "open /dev/null",
            source,
        })?
        .into();
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed("pipe"))?;
    // SAFETY: the daemon calls this before it starts any thread (the
    // multipathd relay is a process of its own), so the child is a complete
    // copy with no lock held by a vanished thread.
    match unsafe { fork() }.map_err(failed("fork"))? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            let mut word = [0u8; 1];
            let mut pipe = File::from(read_end);
            let status = loop {
                match pipe.read(&mut word) {
                    Ok(1) => {
                        eprintln!("{announcement}");
                        break 0;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // The child died before it was serving; it said why.
                    _ => break 1,
                }
            };
            // Nothing of the parent's state is released here: the socket
            // file, the pidfile and its lock are the child's now.
            std::process::exit(status)
        }
        ForkResult::Child => {
            drop(read_end);
            nix::unistd::setsid().map_err(failed("setsid"))?;
            nix::unistd::chdir("/").map_err(failed("chdir /"))?;
            Ok(Detached {
                ready: File::from(write_end),
                dev_null,
            })
        }
    }
}

impl Detached {
    /// The daemon serves: stdio goes to /dev/null and the parent exits 0.
    pub fn ready(mut self) {
        for fd in 0..=2 {
            // Nothing to report to if this fails: stdio is the terminal's,
            // which is only less tidy.
            let _ = nix::unistd::dup2(self.dev_null.as_raw_fd(), fd);
        }
        // A parent that is gone (killed while waiting) needs no word.
        let _ = self.ready.write_all(b"1");
    }
}
