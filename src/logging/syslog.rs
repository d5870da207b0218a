// SPDX-License-Identifier: GPL-2.0-or-later
//! The syslog socket (`/dev/log`): one datagram per line, RFC 3164 style
//! with the daemon facility and the level as severity.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::writer::{Line, Sink};
use super::IDENTIFIER;

/// How long the writer waits for a syslog daemon whose socket is full
/// before it drops the line. Only the writer thread waits.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// `LOG_DAEMON << 3`.
const DAEMON_FACILITY: u8 = 3 << 3;

/// A connected syslog socket.
#[derive(Debug)]
pub struct Syslog {
    path: PathBuf,
    socket: UnixDatagram,
}

impl Syslog {
    /// Connects to the syslog socket at `path` (made now, before the
    /// system-call filter; reconnecting later needs only socket/connect).
    pub fn connect(path: &Path) -> io::Result<Syslog> {
        Ok(Syslog {
            path: path.to_path_buf(),
            socket: Syslog::open(path)?,
        })
    }

    fn open(path: &Path) -> io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(socket)
    }

    /// The datagram of `line`: priority, identifier and pid, then the line
    /// without its newline or the padding of its level.
    pub fn datagram(line: &Line) -> Vec<u8> {
        let text = line.bytes.strip_suffix(b"\n").unwrap_or(&line.bytes);
        let mut datagram = format!(
            "<{}>{IDENTIFIER}[{}]: ",
            DAEMON_FACILITY + line.severity,
            std::process::id()
        )
        .into_bytes();
        datagram.extend_from_slice(text.trim_ascii_start());
        datagram
    }
}

impl Sink for Syslog {
    /// Sends one line. A syslog daemon that restarted is reconnected to
    /// once; one that is alive but does not read costs this line only
    /// (after `SEND_TIMEOUT`), not a reconnection too.
    fn write(&mut self, line: &Line) -> io::Result<()> {
        let datagram = Syslog::datagram(line);
        match self.socket.send(&datagram) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            Err(_) => {
                self.socket = Syslog::open(&self.path)?;
                self.socket.send(&datagram).map(drop)
            }
        }
    }
}
