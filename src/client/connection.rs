// SPDX-License-Identifier: GPL-2.0-or-later
//! The client side of the helper socket: connect, negotiate features, send
//! one request with the device fd over SCM_RIGHTS, read the reply.
//!
//! Blocking std I/O: a client sends one command at a time and waits for it.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::request::{PrRequest, Reply};
use crate::domain::cdb::PrDirection;
use crate::domain::framing::{
    ReplyHeader, ReplyHeaderError, FEATURES_LEN, REPLY_HEADER_LEN, SUPPORTED_FEATURES,
};
use crate::domain::sense::ScsiStatus;

/// Where in the exchange the helper went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before or while sending its features word.
    Negotiation,
    /// While the client was sending the request.
    Request,
    /// After the request, before the reply header was complete.
    Reply,
    /// In the middle of the payload.
    Payload,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Negotiation => "during feature negotiation",
            Phase::Request => "while the request was being sent",
            Phase::Reply => "after the request, before replying",
            Phase::Payload => "in the middle of the reply",
        })
    }
}

impl Phase {
    /// Which rule the helper most likely enforced by closing.
    pub fn hint(self) -> &'static str {
        match self {
            Phase::Negotiation => {
                "it closed before negotiating: it may be at its connection limit or refusing \
                 this peer; see the helper's log"
            }
            Phase::Request | Phase::Reply => {
                "it closes the connection on protocol violations: an opcode other than 5Eh/5Fh, \
                 a transfer length over 8192, a request without exactly one fd, or a features \
                 word it does not support (a read-only device or a bad parameter list is a \
                 CHECK CONDITION, not a disconnect); see the helper's log"
            }
            Phase::Payload => "it stopped in the middle of a reply: it may have crashed",
        }
    }
}

/// Why talking to the helper failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing at the socket path.
    #[error("no helper socket at {0}: is the helper running, and is this its --socket path?")]
    SocketMissing(PathBuf),
    /// The socket exists but this account may not connect to it.
    #[error(
        "permission denied connecting to {0}: this account needs write access to the socket \
         (check its owner, group and mode)"
    )]
    SocketPermission(PathBuf),
    /// The socket exists but nobody listens on it.
    #[error(
        "connection refused on {0}: the socket file is there but no helper is listening on it"
    )]
    ConnectionRefused(PathBuf),
    /// Any other connect failure.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The helper closed the connection.
    #[error("the helper closed the connection {phase}: {}", phase.hint())]
    Closed {
        /// Where in the exchange.
        phase: Phase,
    },
    /// No answer in time.
    #[error("no answer from the helper within {0:?} ({1})")]
    Timeout(Duration, Phase),
    /// Another socket error.
    #[error("socket error {phase}: {source}")]
    Io {
        /// Where in the exchange.
        phase: Phase,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The reply header is not one a conforming helper sends.
    #[error("malformed reply header: {0}")]
    MalformedHeader(#[from] ReplyHeaderError),
    /// The reply breaks a protocol rule on its payload.
    #[error("malformed reply: {0}")]
    MalformedReply(String),
}

impl ClientError {
    /// The failure came before the request went out: the helper has seen
    /// nothing of it (a PR OUT certainly did not take effect).
    pub fn nothing_sent(&self) -> bool {
        match self {
            ClientError::SocketMissing(_)
            | ClientError::SocketPermission(_)
            | ClientError::ConnectionRefused(_)
            | ClientError::Connect { .. } => true,
            ClientError::Closed { phase } | ClientError::Io { phase, .. } => {
                *phase == Phase::Negotiation
            }
            ClientError::Timeout(_, phase) => *phase == Phase::Negotiation,
            ClientError::MalformedHeader(_) | ClientError::MalformedReply(_) => false,
        }
    }

    fn from_connect(path: &Path, e: io::Error) -> ClientError {
        let path = path.to_path_buf();
        match e.kind() {
            io::ErrorKind::NotFound => ClientError::SocketMissing(path),
            io::ErrorKind::PermissionDenied => ClientError::SocketPermission(path),
            io::ErrorKind::ConnectionRefused => ClientError::ConnectionRefused(path),
            _ => ClientError::Connect { path, source: e },
        }
    }

    fn from_io(phase: Phase, timeout: Option<Duration>, e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ClientError::Closed { phase },
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::Timeout(timeout.unwrap_or_default(), phase)
            }
            _ => ClientError::Io { phase, source: e },
        }
    }
}

/// An open, negotiated connection to a helper.
#[derive(Debug)]
pub struct HelperConnection {
    stream: UnixStream,
    server_features: u32,
    timeout: Option<Duration>,
}

impl HelperConnection {
    /// Connects to `path` and negotiates: reads the helper's features word and
    /// requests none of them. `timeout` bounds every read and write.
    pub fn connect(
        path: &Path,
        timeout: Option<Duration>,
    ) -> Result<HelperConnection, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| ClientError::from_connect(path, e))?;
        HelperConnection::negotiate(stream, timeout)
    }

    /// Negotiates on an already connected stream (a socketpair in tests).
    pub fn negotiate(
        mut stream: UnixStream,
        timeout: Option<Duration>,
    ) -> Result<HelperConnection, ClientError> {
        let io_err = |phase| move |e| ClientError::from_io(phase, timeout, e);
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(io_err(Phase::Negotiation))?;
        let mut features = [0u8; FEATURES_LEN];
        stream
            .read_exact(&mut features)
            .map_err(io_err(Phase::Negotiation))?;
        // Request nothing beyond what this client implements (nothing today),
        // whatever the helper advertises.
        stream
            .write_all(&SUPPORTED_FEATURES.to_be_bytes())
            .map_err(io_err(Phase::Negotiation))?;
        Ok(HelperConnection {
            stream,
            server_features: u32::from_be_bytes(features),
            timeout,
        })
    }

    /// The features word the helper advertised.
    pub fn server_features(&self) -> u32 {
        self.server_features
    }

    /// Sends one request with `device` attached and reads the reply.
    pub fn execute(
        &mut self,
        device: BorrowedFd<'_>,
        request: &PrRequest,
    ) -> Result<Reply, ClientError> {
        let timeout = self.timeout;
        let io_err = |phase| move |e| ClientError::from_io(phase, timeout, e);

        self.send_cdb(device, request.cdb().bytes())
            .map_err(io_err(Phase::Request))?;
        if !request.params().is_empty() {
            self.stream
                .write_all(request.params())
                .map_err(io_err(Phase::Request))?;
        }

        let mut raw_header = [0u8; REPLY_HEADER_LEN];
        self.stream
            .read_exact(&mut raw_header)
            .map_err(io_err(Phase::Reply))?;
        let header = ReplyHeader::try_from(&raw_header)?;
        check_payload_rules(&header, request)?;
        // At most MAX_TRANSFER_LEN, checked by ReplyHeader::try_from.
        let mut payload = vec![0u8; header.payload_len as usize];
        self.stream
            .read_exact(&mut payload)
            .map_err(io_err(Phase::Payload))?;
        Ok(Reply {
            raw_header,
            header,
            payload,
        })
    }

    /// Sends the 16 CDB bytes with the device fd as SCM_RIGHTS on the first
    /// chunk; whatever a short send leaves goes without ancillary data.
    fn send_cdb(&mut self, device: BorrowedFd<'_>, cdb: &[u8]) -> io::Result<()> {
        let fds = [device.as_raw_fd()];
        let cmsgs = [ControlMessage::ScmRights(&fds)];
        let sent = loop {
            match sendmsg::<()>(
                self.stream.as_raw_fd(),
                &[IoSlice::new(cdb)],
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        };
        self.stream.write_all(&cdb[sent..])
    }
}

/// A payload only with GOOD, only for PR IN, never over the allocation length.
fn check_payload_rules(header: &ReplyHeader, request: &PrRequest) -> Result<(), ClientError> {
    let len = header.payload_len as usize;
    if len == 0 {
        return Ok(());
    }
    if request.cdb().direction() == PrDirection::Out {
        return Err(ClientError::MalformedReply(format!(
            "{len}-byte payload in the reply to a PR OUT command"
        )));
    }
    if header.scsi_status() != ScsiStatus::GOOD {
        return Err(ClientError::MalformedReply(format!(
            "{len}-byte payload with status {}",
            header.scsi_status()
        )));
    }
    if len > request.cdb().transfer_len() {
        return Err(ClientError::MalformedReply(format!(
            "{len}-byte payload exceeds the allocation length {}",
            request.cdb().transfer_len()
        )));
    }
    Ok(())
}
