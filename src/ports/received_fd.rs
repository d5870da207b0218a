// SPDX-License-Identifier: GPL-2.0-or-later
//! A file descriptor as it arrives from a client, before anything looked at it.

use std::os::fd::OwnedFd;

/// An fd received with SCM_RIGHTS and not inspected yet.
///
/// Any system call on it may block for as long as the file system behind it
/// wants: on a FUSE file whose server never answers, `fstat` and `close`
/// never return. So the transport only receives it, and the server inspects,
/// uses and closes it on a blocking thread, never on the runtime thread that
/// serves every other connection.
#[derive(Debug)]
pub struct ReceivedFd(OwnedFd);

impl ReceivedFd {
    /// Wraps an fd just installed by `recvmsg`.
    pub fn new(fd: OwnedFd) -> ReceivedFd {
        ReceivedFd(fd)
    }

    /// The fd itself, for the blocking thread that inspects it.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}
