// SPDX-License-Identifier: GPL-2.0-or-later
//! What the server's tests share: a scripted connection, and an fd
//! inspector that looks at nothing.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::ServerOptions;
use crate::domain::device::{DeviceInfo, DeviceKind, OpenMode};
use crate::domain::initiator::Initiator;
use crate::ports::executor::DeviceFd;
use crate::ports::fd_inspector::FdInspector;
use crate::ports::received_fd::ReceivedFd;
use crate::ports::transport::{MockConnection, ReadOutcome};

/// An fd for a request to carry: the end of a pipe. The server never looks
/// at it: [`StubInspector`] answers for it.
fn device() -> ReceivedFd {
    let (read, _write) = nix::unistd::pipe().unwrap();
    ReceivedFd::new(read)
}

/// Says that every fd is `/dev/sdb` (8:16) opened with its `OpenMode`,
/// without a system call, and that it has no WWID.
#[derive(Debug)]
pub(super) struct StubInspector(pub(super) OpenMode);

impl FdInspector for StubInspector {
    fn inspect(&self, fd: OwnedFd, _want_wwid: bool) -> (DeviceFd, Option<String>) {
        let info = DeviceInfo {
            kind: DeviceKind::Block,
            open_mode: self.0,
            dev: 0,
            ino: 0,
            rdev: 0x810,
        };
        (DeviceFd { fd, info }, None)
    }
}

/// The default policy and limits, with every fd a disk opened `open_mode`.
pub(super) fn options(open_mode: OpenMode) -> Arc<ServerOptions> {
    Arc::new(ServerOptions::new(Arc::new(StubInspector(open_mode))))
}

/// One read the mock connection answers: bytes and how many fds.
pub(super) enum Chunk {
    Bytes(Vec<u8>, usize),
    Eof,
}

/// A connection that plays `chunks` in order and records what is written.
pub(super) fn scripted(chunks: Vec<Chunk>) -> (MockConnection, Arc<Mutex<Vec<u8>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let mut conn = MockConnection::new();
    let w = Arc::clone(&written);
    conn.expect_write_all().returning(move |b| {
        w.lock().unwrap().extend_from_slice(b);
        Ok(())
    });
    conn.expect_initiator().returning(Initiator::default);
    conn.expect_reply_from_thread().returning(|| None);
    let chunks = Arc::new(Mutex::new(std::collections::VecDeque::from(chunks)));
    let some = Arc::clone(&chunks);
    conn.expect_poll_read_some().returning(move |_, buf, fds| {
        match some.lock().unwrap().pop_front() {
            Some(Chunk::Bytes(bytes, nfds)) => {
                assert_eq!(bytes.len(), buf.len(), "scripted chunk has the wrong size");
                buf.copy_from_slice(&bytes);
                for _ in 0..nfds {
                    fds.push(device());
                }
                std::task::Poll::Ready(Ok(bytes.len()))
            }
            Some(Chunk::Eof) | None => std::task::Poll::Ready(Ok(0)),
        }
    });
    conn.expect_read_exact()
        .returning(move |buf, fds| match chunks.lock().unwrap().pop_front() {
            Some(Chunk::Bytes(bytes, nfds)) => {
                assert_eq!(bytes.len(), buf.len(), "scripted chunk has the wrong size");
                buf.copy_from_slice(&bytes);
                for _ in 0..nfds {
                    fds.push(device());
                }
                Ok(ReadOutcome::Complete)
            }
            Some(Chunk::Eof) | None => Ok(ReadOutcome::Eof { read: 0 }),
        });
    (conn, written)
}

/// The client's answer to the features word: none.
pub(super) fn features() -> Chunk {
    Chunk::Bytes(vec![0; 4], 0)
}
