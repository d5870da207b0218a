// SPDX-License-Identifier: GPL-2.0-or-later
//! Removing the socket file and the pidfile when the daemon ends, also when
//! it runs as another user (`-u`): it can then no longer write to their
//! directory (`/run` is root's), so the files would stay behind.
//!
//! A small process, forked while the daemon is still root and
//! single-threaded, keeps root's uid for that alone: it drops every
//! capability, sets no_new_privs and installs a filter that allows little
//! more than stat, unlink and read. It waits until the daemon's end of a
//! socket pair closes, which happens however the daemon ends (a crash
//! included), and then removes each file if it is still the one the daemon
//! made: a file a newer daemon put there since is left alone.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};
use nix::unistd::Pid;

use super::forked_child::{self, ChildError};
use super::seccomp::SeccompMode;

/// A file's device and inode: what tells a file this daemon made from one
/// that replaced it since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileIdentity {
    /// The identity of what `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Removes `path` if it is still the file `identity` names (not following a
/// link); what replaced it, or nothing at all, is fine.
pub fn remove_if_same(path: &Path, identity: FileIdentity) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if FileIdentity::of(&m) == identity => std::fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The remover could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RemoverError {
    /// A system call failed.
    #[error("{step}: {source}")]
    Os {
        /// What was being done.
        step: &'static str,
        /// Why.
        #[source]
        source: Errno,
    },
    /// The process has more than one thread: forking would copy a process
    /// whose other threads may hold locks.
    #[error("the process has {0} threads; the remover is forked before any other starts")]
    Threaded(usize),
    /// It started but could not confine itself (it said why) and exited.
    #[error("it could not confine itself: {0}")]
    NotReady(String),
}

/// The daemon's side: the socket whose closing tells the remover to act.
#[derive(Debug)]
pub struct Remover {
    socket: OwnedFd,
    pid: Pid,
}

/// The remover's first message: confined, waiting.
const READY: u8 = b'R';
/// The remover's first byte when it could not confine itself.
const FAILED: u8 = b'E';

/// Starts the remover for `files`, its filter in `mode`. Call it while root
/// and before any thread exists.
pub fn spawn(
    files: Vec<(PathBuf, FileIdentity)>,
    mode: SeccompMode,
) -> Result<Remover, RemoverError> {
    let (ours, theirs) = forked_child::socket_pair().map_err(|e| match e {
        ChildError::Threaded(n) => RemoverError::Threaded(n),
        ChildError::Os { step, source } => RemoverError::Os { step, source },
    })?;
    let os = |step| move |source| RemoverError::Os { step, source };
    // SAFETY: the process has exactly one thread (checked above), so the
    // child is a complete copy with no lock held by a vanished thread; it
    // runs `remover_main` and leaves with `_exit`, never returning here.
    match unsafe { nix::unistd::fork() }.map_err(os("fork"))? {
        nix::unistd::ForkResult::Child => {
            std::panic::set_hook(Box::new(|_| {
                // SAFETY: _exit ends the remover at once; nothing is shared.
                unsafe { libc::_exit(101) }
            }));
            drop(ours);
            let code = remover_main(theirs, &files, mode);
            // SAFETY: _exit ends the child at once, without running the
            // daemon's exit handlers or destructors on the copied state.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let remover = Remover {
                socket: ours,
                pid: child,
            };
            let mut first = [0u8; 256];
            match socket::recv(remover.socket.as_raw_fd(), &mut first, MsgFlags::empty()) {
                Ok(1) if first[0] == READY => Ok(remover),
                Ok(n) if n > 1 && first[0] == FAILED => Err(RemoverError::NotReady(
                    String::from_utf8_lossy(&first[1..n]).into_owned(),
                )),
                Ok(_) => Err(RemoverError::NotReady("it exited".into())),
                Err(e) => Err(RemoverError::NotReady(e.to_string())),
            }
        }
    }
}

impl Remover {
    /// The remover's process id, for the log.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Tells the remover the daemon is done and waits until the files are
    /// gone, so that whoever waits for the daemon's exit finds them removed.
    /// (A `Remover` dropped without this, on a failed start, closes its
    /// socket all the same: the remover then acts alone.)
    pub fn finish(self) {
        let Remover { socket, pid } = self;
        drop(socket);
        loop {
            match nix::sys::wait::waitpid(pid, None) {
                Err(Errno::EINTR) => continue,
                Ok(_) | Err(_) => return,
            }
        }
    }
}

/// The remover's life: confine, say so, wait for the daemon's end, remove.
fn remover_main(socket: OwnedFd, files: &[(PathBuf, FileIdentity)], mode: SeccompMode) -> i32 {
    if let Err(why) =
        forked_child::confine(socket.as_fd(), || super::seccomp::install_remover(mode))
    {
        let mut message = vec![FAILED];
        message.extend_from_slice(why.as_bytes());
        let _ = socket::send(socket.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL);
        return 2;
    }
    if socket::send(socket.as_raw_fd(), &[READY], MsgFlags::MSG_NOSIGNAL).is_err() {
        return 2;
    }
    let mut byte = [0u8; 1];
    loop {
        match socket::recv(socket.as_raw_fd(), &mut byte, MsgFlags::empty()) {
            Err(Errno::EINTR) => continue,
            Ok(n) if n > 0 => continue,
            // End of file: the daemon closed its end or is gone.
            _ => break,
        }
    }
    let mut failed = 0;
    for (path, identity) in files {
        if remove_if_same(path, *identity).is_err() {
            failed = 1;
        }
    }
    failed
}
