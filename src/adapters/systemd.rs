// SPDX-License-Identifier: GPL-2.0-or-later
//! systemd integration without libsystemd: socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`) and state notifications (`NOTIFY_SOCKET`:
//! READY=1, STATUS=, STOPPING=1).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The first fd systemd passes.
const SD_LISTEN_FDS_START: i32 = 3;

/// Socket activation was requested but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS={0:?} is not a number")]
    BadCount(String),
    /// More than one socket was passed: the helper listens on one.
    #[error("socket activation passed {0} file descriptors; exactly one is supported")]
    TooMany(u32),
    /// `LISTEN_FDS=0`.
    #[error("socket activation passed no file descriptor")]
    None,
    /// LISTEN_FDS=1 but fd 3 is not open.
    #[error("socket activation fd 3 is not open")]
    NotOpen,
}

/// Takes the listening fd if this process was socket-activated (LISTEN_PID is
/// our pid). The variables are removed so that no child inherits them.
pub fn take_activation_fd() -> Result<Option<OwnedFd>, ActivationError> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !pid_matches {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(count.clone()))?;
    match count {
        0 => Err(ActivationError::None),
        1 => {
            let open = nix::fcntl::fcntl(SD_LISTEN_FDS_START, nix::fcntl::FcntlArg::F_GETFD);
            if open.is_err() {
                return Err(ActivationError::NotOpen);
            }
            // Not for children (there are none, but stay tidy).
            let _ = nix::fcntl::fcntl(
                SD_LISTEN_FDS_START,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            // SAFETY: fd 3 is open (checked above) and systemd's protocol hands
            // it to this process (LISTEN_PID matched our pid); nothing else in
            // the process has claimed it.
            let fd = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
            Ok(Some(fd))
        }
        n => Err(ActivationError::TooMany(n)),
    }
}

/// Whether socket activation variables are present for this process, without
/// consuming them (to refuse `-k` together with activation early).
pub fn activation_requested() -> bool {
    std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id())
}

/// The service manager's notification socket, opened once (before the
/// system-call filter) and used for every state change.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The socket `NOTIFY_SOCKET` names (a path, or `@` and an abstract
    /// name); `None` when the variable is not set.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let bytes = path.as_encoded_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(&path)?,
        };
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            address,
        }))
    }

    /// Sends newline-separated assignments such as `READY=1\nSTATUS=...`.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_go_to_a_path_socket_and_to_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let abstract_name = format!("qemu-pr-helper-test-{}", std::process::id());
        let abstract_rx = {
            use std::os::linux::net::SocketAddrExt;
            let addr = SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
            UnixDatagram::bind_addr(&addr).unwrap()
        };
        // Tests run in threads of one process: only this test sets the var.
        std::env::set_var("NOTIFY_SOCKET", &path);
        let to_path = Notifier::from_env().unwrap().unwrap();
        std::env::set_var("NOTIFY_SOCKET", format!("@{abstract_name}"));
        let to_abstract = Notifier::from_env().unwrap().unwrap();
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(Notifier::from_env().unwrap().is_none());
        to_path.send("READY=1\nSTATUS=x").unwrap();
        to_abstract.send("STOPPING=1").unwrap();
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=x");
        let n = abstract_rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
