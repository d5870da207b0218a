// SPDX-License-Identifier: GPL-2.0-or-later
//! The multipathd relay: a small process, forked at start-up while the
//! daemon is still root and single-threaded, that carries reservation
//! changes to multipathd for the rest of the daemon's life.
//!
//! Why a process: multipathd answers PR commands only from peers with uid 0,
//! and it restarts (package upgrades, crashes, a boot order that starts it
//! after us). The daemon itself gives up root (`-u`) and runs under a seccomp
//! filter, so it could neither reconnect nor be let to. The relay keeps uid 0
//! but drops every capability, sets no_new_privs, and installs a filter of
//! its own that allows little more than connect, read and write; it forwards
//! only the commands [`MapCommand::parse`] accepts and the one read-only
//! query for dm's path states ([`PATH_STATES_QUERY`]), so a daemon taken
//! over by a client could make multipathd do nothing it would not do anyway.
//!
//! Protocol over a `SOCK_SEQPACKET` pair: request = sequence number (u32,
//! native endian) + command text, one message; reply = one or more messages
//! of the same sequence number + [`RelayStatus`] byte + a byte that is 1
//! when more follow + the number of the connection to multipathd that
//! carried the answer (u32, native endian; it changes when multipathd
//! restarted) + text (multipathd's reply, up to [`MAX_REPLY`] in pieces of
//! `CHUNK` bytes, or why it could not be reached). The sequence
//! number lets the daemon discard a late reply to a command it stopped
//! waiting for. The relay exits when the daemon's end closes, which happens
//! however the daemon ends; the daemon learns of the relay's end by its
//! socket ([`RelayWatch`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, MsgFlags};
use nix::unistd::Pid;

use super::connection::{
    socket_timeout, Answer, MultipathdAddress, MultipathdConnection, NotifyError, MAX_REPLY,
};
use crate::adapters::forked_child::{self, ChildError};
use crate::adapters::seccomp::SeccompMode;
use crate::domain::multipath::dm_path_state::PATH_STATES_QUERY;
use crate::domain::multipath::events::{MapCommand, MAX_COMMAND_LEN};

/// Longest request accepted: the sequence number and the longest command
/// multipathd reads. A longer one is refused, never cut.
const MAX_REQUEST: usize = 4 + MAX_COMMAND_LEN;
/// The longest piece of a reply in one message: well under the socket's
/// send buffer, which bounds a `SOCK_SEQPACKET` message.
const CHUNK: usize = 32 * 1024;
/// Bytes before a piece of reply text: sequence number, status, "more",
/// connection number.
const REPLY_HEADER: usize = 10;
/// How long the daemon waits for the relay's answer: the relay itself gives
/// multipathd 5 s per step and does not try again after a timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(12);
/// How long the daemon waits to hand a command over.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The relay's first message: confined and serving.
const READY: [u8; 1] = *b"R";
/// The relay's first byte when it could not confine itself; the reason follows.
const FAILED: u8 = b'E';

/// What became of a relayed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RelayStatus {
    /// multipathd answered; its reply text follows.
    Answered = 0,
    /// multipathd could not be reached; the reason follows.
    Unreachable = 1,
    /// Not a command the relay forwards.
    Rejected = 2,
    /// multipathd did not answer in time; the reason follows.
    TimedOut = 3,
    /// multipathd's reply was too long to carry; its length follows.
    TooLong = 4,
}

impl RelayStatus {
    fn from_byte(b: u8) -> Option<RelayStatus> {
        match b {
            0 => Some(RelayStatus::Answered),
            1 => Some(RelayStatus::Unreachable),
            2 => Some(RelayStatus::Rejected),
            3 => Some(RelayStatus::TimedOut),
            4 => Some(RelayStatus::TooLong),
            _ => None,
        }
    }

    /// The status and text the daemon gets for multipathd's `outcome`.
    fn of(outcome: Result<String, NotifyError>) -> (RelayStatus, String) {
        match outcome {
            Ok(reply) => (RelayStatus::Answered, reply),
            Err(NotifyError::TooLong(len)) => (RelayStatus::TooLong, len.to_string()),
            Err(e) if e.is_timeout() => (RelayStatus::TimedOut, e.to_string()),
            Err(e) => (RelayStatus::Unreachable, e.to_string()),
        }
    }
}

/// Why the relay could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Forking is only sound while the process has one thread.
    #[error("the process already runs {0} threads")]
    Threaded(usize),
    /// The relay did not come up confined.
    #[error("the relay did not start: {0}")]
    NotReady(String),
    /// A system call failed.
    #[error("{step}: {source}")]
    Os {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: Errno,
    },
}

/// The daemon's end of the relay.
#[derive(Debug)]
pub struct RelayClient {
    socket: OwnedFd,
    life: Arc<RelayLife>,
    /// Held while a command is out, so that commands and replies pair up;
    /// the sequence number of the last command.
    sequence: Mutex<u32>,
}

/// The relay process, and how it ended once that is known.
#[derive(Debug)]
struct RelayLife {
    pid: Pid,
    /// How it ended, once collected (its exit status can be collected once).
    ended: Mutex<Option<String>>,
}

impl RelayLife {
    /// The relay is not there any more (its socket said `cause`): collect
    /// its exit status if it has one (so that it does not stay a zombie)
    /// and say how it ended.
    fn ended(&self, cause: Errno) -> String {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(how) = ended.as_ref() {
            return how.clone();
        }
        // Its socket closes while it exits: give the exit a moment to finish.
        let mut how = None;
        for _ in 0..20 {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    how = Some(format!("exited with status {code}"));
                    break;
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    how = Some(format!("killed by {signal}"));
                    break;
                }
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
                // Not our child (the daemon went to the background after
                // forking it): only its socket tells.
                _ => break,
            }
        }
        let how = how.unwrap_or_else(|| cause.desc().to_string());
        *ended = Some(how.clone());
        how
    }
}

/// Starts the relay for multipathd at `address`, its filter in `mode`. Call
/// it while root and before any thread exists (it refuses otherwise).
pub fn spawn(address: MultipathdAddress, mode: SeccompMode) -> Result<RelayClient, RelayError> {
    let (ours, theirs) = forked_child::socket_pair().map_err(|e| match e {
        ChildError::Threaded(n) => RelayError::Threaded(n),
        ChildError::Os { step, source } => RelayError::Os { step, source },
    })?;
    let os = |step| move |source| RelayError::Os { step, source };
    socket::setsockopt(
        &ours,
        sockopt::ReceiveTimeout,
        &socket_timeout(REPLY_TIMEOUT),
    )
    .map_err(os("set the relay's receive timeout"))?;
    socket::setsockopt(&ours, sockopt::SendTimeout, &socket_timeout(SEND_TIMEOUT))
        .map_err(os("set the relay's send timeout"))?;
    // SAFETY: the process has exactly one thread (checked above), so the
    // child is a complete copy with no lock held by a vanished thread; it
    // runs `relay_main` and leaves with `_exit`, never returning here.
    match unsafe { nix::unistd::fork() }.map_err(os("fork"))? {
        nix::unistd::ForkResult::Child => {
            // A panic in the relay must neither unwind into the daemon's
            // copied frames nor abort through calls its filter forbids:
            // it ends the relay at once, with a status the daemon reports.
            std::panic::set_hook(Box::new(|_| {
                // SAFETY: _exit ends the relay at once; nothing is shared.
                unsafe { libc::_exit(101) }
            }));
            drop(ours);
            let code = relay_main(theirs, address, mode);
            // SAFETY: _exit ends the child at once, without running the
            // daemon's exit handlers or destructors on the copied state.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let relay = RelayClient {
                socket: ours,
                life: Arc::new(RelayLife {
                    pid: child,
                    ended: Mutex::new(None),
                }),
                sequence: Mutex::new(0),
            };
            // The relay says when it is confined; until then it holds root's
            // capabilities, and if confining fails it says why and exits.
            let mut ready = [0u8; 256];
            match socket::recv(relay.socket.as_raw_fd(), &mut ready, MsgFlags::empty()) {
                Ok(1) if ready[..1] == READY => Ok(relay),
                Ok(n) if n > 1 && ready[0] == FAILED => Err(RelayError::NotReady(
                    String::from_utf8_lossy(&ready[1..n]).into_owned(),
                )),
                Ok(_) => Err(RelayError::NotReady(relay.gone(Errno::EPIPE).to_string())),
                Err(e) => Err(RelayError::NotReady(relay.gone(e).to_string())),
            }
        }
    }
}

impl RelayClient {
    /// The relay's process id, for the log.
    pub fn pid(&self) -> u32 {
        self.life.pid.as_raw().unsigned_abs()
    }

    /// Sends one command through the relay and returns multipathd's reply
    /// and the number of the connection it came on. A timeout, the relay's
    /// or multipathd's, is [`NotifyError::TimedOut`].
    pub fn send(&self, command: &str) -> Result<Answer, NotifyError> {
        let mut sequence = self.sequence.lock().unwrap_or_else(|e| e.into_inner());
        *sequence = sequence.wrapping_add(1);
        let sequence = *sequence;
        let mut request = Vec::with_capacity(4 + command.len());
        request.extend_from_slice(&sequence.to_ne_bytes());
        request.extend_from_slice(command.as_bytes());
        if let Err(e) = socket::send(self.socket.as_raw_fd(), &request, MsgFlags::MSG_NOSIGNAL) {
            return Err(self.gone(e));
        }
        let mut buf = vec![0u8; REPLY_HEADER + CHUNK];
        let mut text = Vec::new();
        loop {
            let n = match socket::recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(self.gone(Errno::EPIPE)),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN | Errno::ETIMEDOUT) => {
                    return Err(NotifyError::TimedOut(format!(
                        "no answer from the multipathd relay within {} s",
                        REPLY_TIMEOUT.as_secs()
                    )));
                }
                Err(e) => return Err(self.gone(e)),
            };
            if n < REPLY_HEADER || buf[..4] != sequence.to_ne_bytes() {
                // A late answer to a command given up on: not ours.
                continue;
            }
            if text.len() + (n - REPLY_HEADER) > MAX_REPLY {
                return Err(NotifyError::TooLong(text.len() + n - REPLY_HEADER));
            }
            text.extend_from_slice(&buf[REPLY_HEADER..n]);
            if buf[5] != 0 {
                continue;
            }
            let text = String::from_utf8_lossy(&text).into_owned();
            let connection = u32::from_ne_bytes([buf[6], buf[7], buf[8], buf[9]]);
            return match RelayStatus::from_byte(buf[4]) {
                Some(RelayStatus::Answered) => Ok(Answer { text, connection }),
                Some(RelayStatus::Unreachable) => Err(NotifyError::Unreachable(text)),
                Some(RelayStatus::TimedOut) => Err(NotifyError::TimedOut(text)),
                Some(RelayStatus::TooLong) => {
                    Err(NotifyError::TooLong(text.trim().parse().unwrap_or(0)))
                }
                Some(RelayStatus::Rejected) | None => Err(NotifyError::Rejected),
            };
        }
    }

    /// The relay is not there any more: say how it ended.
    fn gone(&self, cause: Errno) -> NotifyError {
        NotifyError::RelayGone(self.life.ended(cause))
    }

    /// A watch on the relay's life, for the daemon's loop.
    pub fn watch(&self) -> io::Result<RelayWatch> {
        Ok(RelayWatch {
            socket: self.socket.try_clone()?,
            life: Arc::clone(&self.life),
        })
    }
}

/// Tells when the relay has ended, by its socket: the daemon cannot fork
/// another one (it is no longer root), so without it reservation changes
/// and dm's path states stop reaching multipathd for good.
#[derive(Debug)]
pub struct RelayWatch {
    /// A duplicate of the daemon's end: it reports the relay's end hanging
    /// up, however the relay ended.
    socket: OwnedFd,
    life: Arc<RelayLife>,
}

impl RelayWatch {
    /// The relay's process id, for the log.
    pub fn pid(&self) -> u32 {
        self.life.pid.as_raw().unsigned_abs()
    }

    /// Completes when the relay has ended, with how it ended. The socket is
    /// only watched, never read (commands read their replies themselves):
    /// a reply arriving wakes this up, finds the socket open and waits on.
    pub async fn ended(self) -> io::Result<String> {
        use tokio::io::unix::AsyncFd;
        use tokio::io::Interest;
        // SAFETY: the OwnedFd owns the duplicate and always returns it from
        // `as_raw_fd`; it is closed only when the `AsyncFd` drops it.
        let socket = unsafe { AsyncFd::register_with_interest(self.socket, Interest::READABLE) }
            .map_err(io::Error::from)?;
        loop {
            let mut ready = socket.readable().await?;
            if ready.ready().is_read_closed() {
                break;
            }
            ready.clear_ready();
        }
        Ok(self.life.ended(Errno::EPIPE))
    }
}

/// The relay process's life: shed everything, then serve until the daemon
/// closes its end. Returns the exit status.
fn relay_main(socket: OwnedFd, address: MultipathdAddress, mode: SeccompMode) -> i32 {
    if let Err(why) = forked_child::confine(socket.as_fd(), || {
        crate::adapters::seccomp::install_relay(mode)
    }) {
        let mut message = vec![FAILED];
        message.extend_from_slice(why.as_bytes());
        let _ = socket::send(socket.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL);
        return 2;
    }
    if socket::send(socket.as_raw_fd(), &READY, MsgFlags::MSG_NOSIGNAL).is_err() {
        return 2;
    }
    let mut multipathd = MultipathdConnection::new(address);
    // One byte more than the longest request: a request that fills it was
    // longer, and is refused rather than read cut.
    let mut request = [0u8; MAX_REQUEST + 1];
    loop {
        let n = match socket::recv(socket.as_raw_fd(), &mut request, MsgFlags::empty()) {
            Ok(0) => return 0,
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(_) => return 0,
        };
        if n < 4 {
            continue;
        }
        let whole = n <= MAX_REQUEST;
        let command = std::str::from_utf8(&request[4..n])
            .ok()
            .filter(|_| whole)
            .and_then(|text| {
                if text == PATH_STATES_QUERY {
                    Some(PATH_STATES_QUERY.to_string())
                } else {
                    MapCommand::parse(text).map(|c| c.to_string())
                }
            });
        let (status, text) = match command {
            None => (RelayStatus::Rejected, String::new()),
            Some(command) => RelayStatus::of(multipathd.send(&command)),
        };
        let header = Header {
            sequence: [request[0], request[1], request[2], request[3]],
            status,
            connection: multipathd.connection(),
        };
        if send_reply(&socket, &header, text.as_bytes()).is_err() {
            return 0;
        }
    }
}

/// What every piece of a reply starts with.
struct Header {
    /// The request's sequence number, as it came.
    sequence: [u8; 4],
    /// What became of the command.
    status: RelayStatus,
    /// The number of the connection to multipathd.
    connection: u32,
}

/// Sends `text` back in pieces of [`CHUNK`], each with the header; all but
/// the last say more follow.
fn send_reply(socket: &OwnedFd, header: &Header, text: &[u8]) -> Result<(), Errno> {
    let mut pieces = text.chunks(CHUNK).peekable();
    let mut message = Vec::with_capacity(REPLY_HEADER + CHUNK.min(text.len()));
    loop {
        let piece = pieces.next().unwrap_or_default();
        message.clear();
        message.extend_from_slice(&header.sequence);
        message.push(header.status as u8);
        message.push(u8::from(pieces.peek().is_some()));
        message.extend_from_slice(&header.connection.to_ne_bytes());
        message.extend_from_slice(piece);
        socket::send(socket.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL)?;
        if pieces.peek().is_none() {
            return Ok(());
        }
    }
}
