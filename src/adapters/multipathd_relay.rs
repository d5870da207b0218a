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
//! Protocol over a `SOCK_SEQPACKET` pair, one message each way per command:
//! request = sequence number (u32, native endian) + command text; reply =
//! the same sequence number + [`RelayStatus`] byte + text (multipathd's reply,
//! or why it could not be reached). The sequence number lets the daemon
//! discard a late reply to a command it stopped waiting for. The relay exits
//! when the daemon's end closes, which happens however the daemon ends.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::Pid;

use super::multipathd::{socket_timeout, MultipathdAddress, MultipathdConnection, NotifyError};
use super::seccomp::SeccompMode;
use crate::domain::multipath::dm_path_state::PATH_STATES_QUERY;
use crate::domain::multipath::events::MapCommand;

/// Longest command accepted (a map name of 127 bytes and a key fit easily).
const MAX_REQUEST: usize = 512;
/// Longest reply text carried back; multipathd's answers to PR commands are
/// a word or two, its usage text is cut.
const MAX_REPLY_TEXT: usize = 2048;
/// How long the daemon waits for the relay's answer: the relay itself gives
/// multipathd 5 s per exchange and may reconnect once.
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
}

impl RelayStatus {
    fn from_byte(b: u8) -> Option<RelayStatus> {
        match b {
            0 => Some(RelayStatus::Answered),
            1 => Some(RelayStatus::Unreachable),
            2 => Some(RelayStatus::Rejected),
            _ => None,
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

/// After the relay did not answer in time (multipathd wedged), commands are
/// not sent for this long: a PR command's reply waits for its notification,
/// so a hung multipathd must cost one timeout now and then, not one each.
const BACKOFF: Duration = Duration::from_secs(30);

/// The daemon's end of the relay.
#[derive(Debug)]
pub struct RelayClient {
    socket: OwnedFd,
    pid: Pid,
    /// Held while a command is out, so that commands and replies pair up.
    state: Mutex<RelayState>,
}

/// What the daemon remembers between commands.
#[derive(Debug, Default)]
struct RelayState {
    /// The sequence number of the last command.
    sequence: u32,
    /// No command is sent before this instant.
    quiet_until: Option<std::time::Instant>,
}

/// Starts the relay for multipathd at `address`, its filter in `mode`. Call
/// it while root and before any thread exists (it refuses otherwise).
pub fn spawn(address: MultipathdAddress, mode: SeccompMode) -> Result<RelayClient, RelayError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(RelayError::Threaded(threads));
    }
    let os = |step| move |source| RelayError::Os { step, source };
    let (ours, theirs) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(os("socketpair"))?;
    // Both ends above the standard fds, which -d and the relay point at
    // /dev/null.
    let ours = above_stdio(ours).map_err(os("move the relay socket"))?;
    let theirs = above_stdio(theirs).map_err(os("move the relay socket"))?;
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
                pid: child,
                state: Mutex::default(),
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
        self.pid.as_raw().unsigned_abs()
    }

    /// Sends one command through the relay and returns multipathd's reply.
    pub fn send(&self, command: &str) -> Result<String, NotifyError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if state.quiet_until.is_some_and(|until| now < until) {
            return Err(NotifyError::Unreachable(format!(
                "multipathd did not answer in time; not asked again for up to {} s",
                BACKOFF.as_secs()
            )));
        }
        state.sequence = state.sequence.wrapping_add(1);
        let sequence = state.sequence;
        let mut request = Vec::with_capacity(4 + command.len());
        request.extend_from_slice(&sequence.to_ne_bytes());
        request.extend_from_slice(command.as_bytes());
        if let Err(e) = socket::send(self.socket.as_raw_fd(), &request, MsgFlags::MSG_NOSIGNAL) {
            return Err(self.gone(e));
        }
        let mut buf = vec![0u8; 5 + MAX_REPLY_TEXT];
        loop {
            let n = match socket::recv(self.socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Err(self.gone(Errno::EPIPE)),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e @ (Errno::EAGAIN | Errno::ETIMEDOUT)) => {
                    state.quiet_until = Some(now + REPLY_TIMEOUT + BACKOFF);
                    return Err(NotifyError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer from the multipathd relay: {e}"),
                    )));
                }
                Err(e) => return Err(self.gone(e)),
            };
            if n < 5 || buf[..4] != sequence.to_ne_bytes() {
                // A late answer to a command given up on: not ours.
                continue;
            }
            let text = String::from_utf8_lossy(&buf[5..n]).into_owned();
            return match RelayStatus::from_byte(buf[4]) {
                Some(RelayStatus::Answered) => Ok(text),
                Some(RelayStatus::Unreachable) => Err(NotifyError::Unreachable(text)),
                Some(RelayStatus::Rejected) | None => Err(NotifyError::Rejected),
            };
        }
    }

    /// The relay is not there any more: collect its exit status if it has
    /// one (so that it does not stay a zombie) and say what it was.
    fn gone(&self, cause: Errno) -> NotifyError {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        // Its socket closes while it exits: give the exit a moment to finish.
        for _ in 0..20 {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    return NotifyError::RelayGone(format!("exited with status {code}"))
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return NotifyError::RelayGone(format!("killed by {signal}"))
                }
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
                _ => break,
            }
        }
        NotifyError::RelayGone(cause.desc().to_string())
    }
}

/// The relay process's life: shed everything, then serve until the daemon
/// closes its end. Returns the exit status.
fn relay_main(socket: OwnedFd, address: MultipathdAddress, mode: SeccompMode) -> i32 {
    if let Err(why) = confine(&socket, mode) {
        let mut message = vec![FAILED];
        message.extend_from_slice(why.as_bytes());
        let _ = socket::send(socket.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL);
        return 2;
    }
    if socket::send(socket.as_raw_fd(), &READY, MsgFlags::MSG_NOSIGNAL).is_err() {
        return 2;
    }
    let mut multipathd = MultipathdConnection::new(address);
    let mut request = [0u8; MAX_REQUEST];
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
        let command = std::str::from_utf8(&request[4..n]).ok().and_then(|text| {
            if text == PATH_STATES_QUERY {
                Some(PATH_STATES_QUERY.to_string())
            } else {
                MapCommand::parse(text).map(|c| c.to_string())
            }
        });
        let (status, text) = match command {
            None => (RelayStatus::Rejected, String::new()),
            Some(command) => match multipathd.send(&command) {
                Ok(reply) => (RelayStatus::Answered, reply),
                Err(e) => (RelayStatus::Unreachable, e.to_string()),
            },
        };
        let text = text.as_bytes();
        let text = &text[..text.len().min(MAX_REPLY_TEXT)];
        let mut reply = Vec::with_capacity(5 + text.len());
        reply.extend_from_slice(&request[..4]);
        reply.push(status as u8);
        reply.extend_from_slice(text);
        if socket::send(socket.as_raw_fd(), &reply, MsgFlags::MSG_NOSIGNAL).is_err() {
            return 0;
        }
    }
}

/// Closes every inherited fd but the relay socket, points stdio at
/// /dev/null (an inherited pipe would keep a caller of `-d` waiting), drops
/// the supplementary groups and every capability (root's uid stays:
/// multipathd wants it), and installs the relay's system-call filter. The
/// error says which step failed, for the daemon's log.
fn confine(socket: &OwnedFd, mode: SeccompMode) -> Result<(), String> {
    let keep = socket.as_fd().as_raw_fd();
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
    close_inherited_fds(keep).map_err(|e| format!("close inherited fds: {e}"))?;
    // No supplementary groups (needs CAP_SETGID: before the capabilities go).
    if nix::unistd::geteuid().is_root() {
        nix::unistd::setgroups(&[]).map_err(|e| format!("drop supplementary groups: {e}"))?;
    }
    super::privileges::drop_all_capabilities().map_err(|e| format!("drop capabilities: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("set no_new_privs: {e}"))?;
    super::seccomp::install_relay(mode).map_err(|e| format!("install the filter: {e}"))?;
    Ok(())
}

/// Closes every fd above stdio but `keep`: `close_range`, or where the
/// kernel lacks it (before 5.9), each fd `/proc/self/fd` lists.
pub(super) fn close_inherited_fds(keep: i32) -> Result<(), Errno> {
    let keep = keep.unsigned_abs();
    // SAFETY: close_range closes fds of this single-threaded child; the
    // ones kept (stdio and the relay socket) are outside both ranges, and
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
pub(super) fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, Errno> {
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
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}
