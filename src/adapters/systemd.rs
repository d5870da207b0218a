//! systemd integration without libsystemd: socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`) and readiness (`NOTIFY_SOCKET`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

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

/// Sends `READY=1` to the service manager if `NOTIFY_SOCKET` is set.
/// Returns whether a notification was sent.
pub fn notify_ready() -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(b"READY=1", &addr)?;
    } else {
        socket.send_to(b"READY=1", &path)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_goes_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // Tests run in threads of one process: only this test sets the var.
        std::env::set_var("NOTIFY_SOCKET", &path);
        let sent = notify_ready().unwrap();
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(sent);
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
