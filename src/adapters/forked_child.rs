// SPDX-License-Identifier: GPL-2.0-or-later
//! What the processes the daemon forks while still root and single-threaded
//! (the multipathd relay, the remover of the socket file and pidfile) share:
//! the check that forking is safe, the socket pair to the child, and the
//! child's confinement before it serves.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};

/// Why a child's socket pair could not be made.
#[derive(Debug)]
pub enum ChildError {
    /// The process has more than one thread: forking would copy a process
    /// whose other threads may hold locks.
    Threaded(usize),
    /// A system call failed.
    Os {
        /// What was being done.
        step: &'static str,
        /// Why.
        source: Errno,
    },
}

/// Confines a forked child before it serves: stdio pointed at /dev/null (an
/// inherited pipe would keep a caller of `-d` waiting), every inherited fd
/// but `keep` closed (the daemon's listening socket and pidfile lock must
/// not outlive it there), the supplementary groups and every capability
/// dropped (root's uid stays), `no_new_privs`, and last `install_filter`,
/// the child's own system-call filter. The error says which step failed,
/// for the daemon's log.
pub fn confine<E: std::fmt::Display>(
    keep: BorrowedFd<'_>,
    install_filter: impl FnOnce() -> Result<(), E>,
) -> Result<(), String> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("open /dev/null: {e}"))?;
    for stdio in 0..3 {
        nix::unistd::dup2(null.as_raw_fd(), stdio)
            .map_err(|e| format!("point stdio at /dev/null: {e}"))?;
    }
    drop(null);
    close_inherited_fds(keep.as_raw_fd()).map_err(|e| format!("close inherited fds: {e}"))?;
    // No supplementary groups (needs CAP_SETGID: before the capabilities go).
    if nix::unistd::geteuid().is_root() {
        nix::unistd::setgroups(&[]).map_err(|e| format!("drop supplementary groups: {e}"))?;
    }
    super::privileges::drop_all_capabilities().map_err(|e| format!("drop capabilities: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("set no_new_privs: {e}"))?;
    install_filter().map_err(|e| format!("install the filter: {e}"))
}

/// The daemon's and the child's ends of a close-on-exec SEQPACKET pair, both
/// above the standard fds (which `-d` and the children point at
/// `/dev/null`), once it is checked that the process has one thread.
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd), ChildError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(ChildError::Threaded(threads));
    }
    let os = |step| move |source| ChildError::Os { step, source };
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(os("socketpair"))?;
    let ours = above_stdio(ours).map_err(os("move the socket"))?;
    let theirs = above_stdio(theirs).map_err(os("move the socket"))?;
    Ok((ours, theirs))
}

/// Closes every fd above stdio but `keep`: `close_range`, or where the
/// kernel lacks it (before 5.9), each fd `/proc/self/fd` lists.
pub fn close_inherited_fds(keep: i32) -> Result<(), Errno> {
    let keep = keep.unsigned_abs();
    // SAFETY: close_range closes fds of this single-threaded child; the
    // ones kept (stdio and the child's socket) are outside both ranges, and
    // nothing here refers to the closed ones again (the daemon's OwnedFds
    // in the copied memory are never dropped: the child leaves with _exit).
    let closed = unsafe {
        (keep <= 3 || libc::close_range(3, keep - 1, 0) == 0)
            && libc::close_range(keep + 1, u32::MAX, 0) == 0
    };
    if closed {
        return Ok(());
    }
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        if fd > 2 && fd.unsigned_abs() != keep {
            // The directory's own fd is among them and already closed:
            // EBADF is expected for it.
            // SAFETY: as above; each fd is closed once, none is used again.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// `fd`, or a duplicate of it numbered 3 or more.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::fd::FromRawFd;
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let raw = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: fcntl just returned this new fd, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The number of threads of this process (1 when that cannot be read:
/// then /proc is missing and nothing else has run either).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}
