// SPDX-License-Identifier: GPL-2.0-or-later
//! The fd inspection port: what a client's fd is, learnt with system calls on
//! the fd and reads of sysfs. On a file of a stuck file system (FUSE) they
//! never return, so they are made only on the blocking thread that runs the
//! fd's command.

use std::os::fd::OwnedFd;

use super::executor::DeviceFd;

/// Gathers every fact about a received fd that the server decides on, in one
/// place.
pub trait FdInspector: Send + Sync + std::fmt::Debug {
    /// Inspects `fd` (`fstat`, `fcntl`) and, when `want_wwid`, reads the
    /// device's WWID (`None` when it has none). Blocking.
    fn inspect(&self, fd: OwnedFd, want_wwid: bool) -> (DeviceFd, Option<String>);
}
