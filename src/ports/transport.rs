// SPDX-License-Identifier: GPL-2.0-or-later
//! The transport port: accept connections, read request bytes with the fds
//! that come with them, write replies.

use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;

use super::received_fd::ReceivedFd;
use crate::domain::initiator::Initiator;

/// How a read of an exact number of bytes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The buffer was filled.
    Complete,
    /// The peer closed the stream after `read` bytes of this buffer.
    Eof {
        /// Bytes of the buffer that did arrive.
        read: usize,
    },
}

/// A transport failure (not a protocol violation): the connection is dropped.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Reading from the peer failed.
    #[error("receive failed: {0}")]
    Receive(#[source] std::io::Error),
    /// Writing to the peer failed (it went away, typically).
    #[error("send failed: {0}")]
    Send(#[source] std::io::Error),
    /// Accepting a connection failed.
    #[error("accept failed: {0}")]
    Accept(#[source] std::io::Error),
    /// The peer sent more fds in one message than the helper makes room for;
    /// the kernel closed the ones that did not fit.
    #[error("control data truncated: too many file descriptors in one message")]
    FdsTruncated,
    /// The process ran out of fds: the connections waiting to be accepted
    /// were accepted and closed at once, so that they do not wait in the
    /// backlog and accepting does not spin.
    #[error("out of file descriptors ({cause}): {closed} connection(s) closed at accept")]
    FdsExhausted {
        /// Why accepting failed (EMFILE or ENFILE).
        #[source]
        cause: std::io::Error,
        /// How many connections were closed.
        closed: usize,
    },
}

/// Writes a reply from the blocking thread that ran the command, so that a
/// reply the socket has room for leaves without waking the connection's
/// async task. The thread never waits for the client: what does not fit is
/// left to the connection's task.
pub trait ReplyFromThread: Send + Sync {
    /// Writes as much of `parts`, in order, as the socket takes at once,
    /// without waiting: the number of bytes written (0 when the socket is
    /// full).
    fn try_write_parts(&self, parts: &[&[u8]]) -> std::io::Result<usize>;
}

/// One client connection.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Connection: Send {
    /// [`Connection::read_some`] as a poll: reads what has arrived, or
    /// registers `cx` to be woken when something may have. Needs no future
    /// of its own, so that a connection waiting for its next command holds
    /// nothing but this call's arguments.
    fn poll_read_some<'a>(
        &mut self,
        cx: &mut Context<'a>,
        buf: &mut [u8],
        fds: &mut Vec<ReceivedFd>,
    ) -> Poll<Result<usize, TransportError>>;

    /// Reads what has arrived, waiting as long as it takes for at least one
    /// byte: returns how many bytes, 0 when the peer closed. Every fd that
    /// arrives with them is appended to `fds`, owned and not looked at: no
    /// system call but `recvmsg` touches it here.
    async fn read_some(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<ReceivedFd>,
    ) -> Result<usize, TransportError>;

    /// Fills `buf` completely unless the peer closes first, collecting fds
    /// as [`Connection::read_some`] does.
    async fn read_exact(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<ReceivedFd>,
    ) -> Result<ReadOutcome, TransportError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_some(&mut buf[filled..], fds).await? {
                0 => return Ok(ReadOutcome::Eof { read: filled }),
                n => filled += n,
            }
        }
        Ok(ReadOutcome::Complete)
    }

    /// Writes all of `buf`.
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), TransportError>;

    /// Who is on the other end.
    fn initiator(&self) -> Initiator;

    /// A writer for replies from a blocking thread, if the transport has one;
    /// without it replies are written with [`Connection::write_all`].
    fn reply_from_thread(&self) -> Option<Arc<dyn ReplyFromThread>>;
}

/// What [`Listener::accept`] yields.
#[derive(Debug)]
pub enum Incoming<C> {
    /// A new client: admission and negotiation come first.
    New(C),
    /// A connection given to [`Listener::park`] that has something to read
    /// (its next request, or the client closing): served again from there.
    Resumed(C),
    /// A parked connection that could not be served again: it is closed.
    /// Its initiator, so that the server stops counting it for its peer.
    Lost(Initiator, TransportError),
}

/// What became of a connection given to [`Listener::park`].
#[derive(Debug)]
pub enum Parking<C> {
    /// The transport watches it until it has something to read.
    Parked,
    /// Not parked (the transport cannot, or not now): serve it on.
    Kept(C),
    /// Lost on the way: the connection is closed.
    Closed(TransportError),
}

/// A source of connections.
#[async_trait]
pub trait Listener: Send {
    /// The connection type it yields.
    type Conn: Connection + 'static;

    /// Waits for the next client, or for a parked connection that has
    /// something to read.
    async fn accept(&mut self) -> Result<Incoming<Self::Conn>, TransportError>;

    /// Whether [`Listener::park`] can take connections at all.
    fn can_park(&self) -> bool {
        false
    }

    /// Takes a negotiated connection that has been idle, with no command in
    /// flight, to watch it without a task of its own: an open, silent
    /// connection per VM then costs a few dozen bytes instead of a task.
    /// It comes back from [`Listener::accept`] as [`Incoming::Resumed`].
    fn park(&mut self, conn: Self::Conn) -> Parking<Self::Conn> {
        Parking::Kept(conn)
    }
}
