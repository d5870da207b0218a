//! Telling multipathd about reservation changes made through a map, so that
//! it registers the key on paths that are added or restored later.
//!
//! The wire format is multipathd's own: a native-endian `usize` length that
//! counts a trailing NUL, then the text and the NUL; replies come back the
//! same way and start with "ok" on success.
//!
//! multipathd answers only root peers. A daemon that drops privileges (`-u`)
//! must therefore connect while still root: [`MultipathdNotifier::connect`]
//! is called at start-up and the connection is kept. If it is lost later,
//! reconnecting fails, which is logged once, clearly.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::multipath::events::MapEvent;

/// Environment variable naming multipathd's socket, as multipath-tools reads it.
pub const SOCKET_ENV: &str = "MULTIPATH_SOCKET_NAME";
/// The socket systemd creates for multipathd.
pub const DEFAULT_SOCKET_PATH: &str = "/run/multipathd.socket";
/// multipathd's abstract socket name, used when no socket file exists.
pub const ABSTRACT_SOCKET_NAME: &str = "/org/kernel/linux/storage/multipathd";
/// How long one exchange with multipathd may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Replies longer than this are refused rather than allocated.
const MAX_REPLY: usize = 64 * 1024;

/// Where multipathd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipathdAddress {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket name (without the leading NUL).
    Abstract(String),
}

impl MultipathdAddress {
    /// The address from the environment and the file system: `$MULTIPATH_SOCKET_NAME`
    /// (an `@` prefix names an abstract socket), else the socket file if it
    /// exists, else the abstract name.
    pub fn from_env() -> MultipathdAddress {
        MultipathdAddress::resolve(
            std::env::var_os(SOCKET_ENV),
            Path::new(DEFAULT_SOCKET_PATH).exists(),
        )
    }

    /// [`MultipathdAddress::from_env`] with its inputs given, for tests.
    fn resolve(env: Option<OsString>, default_exists: bool) -> MultipathdAddress {
        match env.filter(|v| !v.is_empty()) {
            Some(v) => match v.to_str().and_then(|s| s.strip_prefix('@')) {
                Some(name) => MultipathdAddress::Abstract(name.to_string()),
                None => MultipathdAddress::Path(PathBuf::from(v)),
            },
            None if default_exists => MultipathdAddress::Path(PathBuf::from(DEFAULT_SOCKET_PATH)),
            None => MultipathdAddress::Abstract(ABSTRACT_SOCKET_NAME.to_string()),
        }
    }

    fn connect(&self) -> io::Result<UnixStream> {
        let stream = match self {
            MultipathdAddress::Path(p) => UnixStream::connect(p)?,
            MultipathdAddress::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                UnixStream::connect_addr(&addr)?
            }
        };
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        Ok(stream)
    }
}

/// Why a command could not be delivered to multipathd.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No connection could be made.
    #[error("cannot connect to multipathd at {address:?}: {source}")]
    Connect {
        /// Where.
        address: MultipathdAddress,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The exchange broke off.
    #[error("multipathd connection failed: {0}")]
    Io(#[from] io::Error),
}

/// A lazily (re)connecting client for multipathd's control socket.
#[derive(Debug)]
pub struct MultipathdNotifier {
    address: MultipathdAddress,
    connection: Mutex<Option<UnixStream>>,
    /// Whether a connection was ever made: losing it is then worth a
    /// different message than never having one.
    was_connected: AtomicBool,
    /// Whether the "will not register new paths" warning was logged.
    warned: AtomicBool,
    /// Whether a refusal was logged: multipathd refuses keys for every map
    /// when `reservation_key` is not `file` in multipath.conf, so once is enough.
    warned_refusal: AtomicBool,
}

impl MultipathdNotifier {
    /// A notifier for multipathd at `address`; nothing is connected yet.
    pub fn new(address: MultipathdAddress) -> MultipathdNotifier {
        MultipathdNotifier {
            address,
            connection: Mutex::new(None),
            was_connected: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warned_refusal: AtomicBool::new(false),
        }
    }

    /// A notifier for the address [`MultipathdAddress::from_env`] finds.
    pub fn from_env() -> MultipathdNotifier {
        MultipathdNotifier::new(MultipathdAddress::from_env())
    }

    /// Connects now. Call it while still root: multipathd refuses other peers.
    pub fn connect(&self) -> Result<(), NotifyError> {
        let stream = self.open()?;
        *self.lock() = Some(stream);
        Ok(())
    }

    /// Sends one command and returns multipathd's reply text. A kept
    /// connection that turns out dead is replaced once.
    pub fn send(&self, command: &str) -> Result<String, NotifyError> {
        let mut guard = self.lock();
        let reused = guard.is_some();
        let mut stream = match guard.take() {
            Some(s) => s,
            None => self.open()?,
        };
        let reply = match exchange(&mut stream, command) {
            Ok(r) => r,
            Err(e) if reused => {
                tracing::debug!(cause = %e, "multipathd connection went away, reconnecting");
                stream = self.open()?;
                exchange(&mut stream, command)?
            }
            Err(e) => return Err(e.into()),
        };
        *guard = Some(stream);
        Ok(reply)
    }

    /// Sends the events for map `name`. Never fails the caller: reservations
    /// work without multipathd, only new paths go unregistered, which is
    /// logged once.
    pub fn notify(&self, name: &str, events: &[MapEvent]) {
        for event in events {
            let command = event.message(name);
            match self.send(&command) {
                Ok(reply) if reply.starts_with("ok") => {
                    self.warned.store(false, Ordering::Relaxed);
                    tracing::debug!(command = %command, "multipathd updated");
                }
                Ok(reply) if !self.warned_refusal.swap(true, Ordering::Relaxed) => {
                    tracing::warn!(
                        command = %command,
                        reply = %reply,
                        "multipathd refused (is reservation_key set to \"file\" in \
                         multipath.conf?); further refusals are logged at debug level"
                    );
                }
                Ok(reply) => {
                    tracing::debug!(command = %command, reply = %reply, "multipathd refused");
                }
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        if self.was_connected.load(Ordering::Relaxed) {
                            tracing::warn!(
                                cause = %e,
                                "lost the connection to multipathd and cannot reconnect \
                                 (it accepts root only): paths added or restored later will \
                                 not get the reservation key registered automatically"
                            );
                        } else {
                            tracing::warn!(
                                cause = %e,
                                "multipathd is not reachable: paths added or restored later \
                                 will not get the reservation key registered automatically"
                            );
                        }
                    }
                    return;
                }
            }
        }
    }

    fn open(&self) -> Result<UnixStream, NotifyError> {
        let stream = self
            .address
            .connect()
            .map_err(|source| NotifyError::Connect {
                address: self.address.clone(),
                source,
            })?;
        self.was_connected.store(true, Ordering::Relaxed);
        Ok(stream)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<UnixStream>> {
        // A panic while holding the lock leaves at worst a dead stream,
        // which the next send replaces.
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes one framed command and reads one framed reply.
fn exchange(stream: &mut UnixStream, command: &str) -> io::Result<String> {
    let mut message = Vec::with_capacity(size_of::<usize>() + command.len() + 1);
    message.extend_from_slice(&(command.len() + 1).to_ne_bytes());
    message.extend_from_slice(command.as_bytes());
    message.push(0);
    stream.write_all(&message)?;
    let mut len = [0u8; size_of::<usize>()];
    stream.read_exact(&mut len)?;
    let len = usize::from_ne_bytes(len);
    if len > MAX_REPLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reply of {len} bytes"),
        ));
    }
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply)?;
    let text = reply.split(|&b| b == 0).next().unwrap_or(&[]);
    Ok(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::thread;

    /// Reads one framed message, as multipathd does.
    fn read_message(s: &mut UnixStream) -> Option<String> {
        let mut len = [0u8; size_of::<usize>()];
        s.read_exact(&mut len).ok()?;
        let mut text = vec![0u8; usize::from_ne_bytes(len)];
        s.read_exact(&mut text).ok()?;
        assert_eq!(text.pop(), Some(0), "message must end with NUL");
        Some(String::from_utf8(text).unwrap())
    }

    fn write_message(s: &mut UnixStream, text: &str) {
        let mut m = (text.len() + 1).to_ne_bytes().to_vec();
        m.extend_from_slice(text.as_bytes());
        m.push(0);
        s.write_all(&m).unwrap();
    }

    /// A stand-in multipathd: serves `per_connection` messages on each of
    /// `connections` connections, answering "ok", and reports (connection
    /// number, command) for every message.
    fn stand_in(
        path: &Path,
        connections: usize,
        per_connection: usize,
    ) -> (mpsc::Receiver<(usize, String)>, thread::JoinHandle<()>) {
        let listener = UnixListener::bind(path).unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            for n in 0..connections {
                let (mut s, _) = listener.accept().unwrap();
                for _ in 0..per_connection {
                    let Some(m) = read_message(&mut s) else { break };
                    tx.send((n, m)).unwrap();
                    write_message(&mut s, "ok");
                }
            }
        });
        (rx, handle)
    }

    #[test]
    fn events_are_sent_framed_over_one_kept_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in(&sock, 1, 3);
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        n.connect().unwrap();
        n.notify(
            "mpatha",
            &[
                MapEvent::SetKey {
                    key: crate::domain::service_action::ReservationKey(0xabc),
                    aptpl: false,
                },
                MapEvent::SetStatus,
            ],
        );
        n.notify("mpatha", &[MapEvent::SetHold]);
        handle.join().unwrap();
        let got: Vec<(usize, String)> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                (0, "setprkey map mpatha key 0xabc".to_string()),
                (0, "setprstatus map mpatha".to_string()),
                (0, "setprhold map mpatha".to_string()),
            ]
        );
        assert!(!n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn a_lost_connection_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in(&sock, 2, 1);
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        assert_eq!(n.send("show maps").unwrap(), "ok");
        // The stand-in closed the first connection after one message.
        assert_eq!(n.send("unsetprhold map m").unwrap(), "ok");
        handle.join().unwrap();
        let got: Vec<(usize, String)> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                (0, "show maps".to_string()),
                (1, "unsetprhold map m".to_string())
            ]
        );
    }

    #[test]
    fn without_multipathd_notify_warns_once_and_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let n = MultipathdNotifier::new(MultipathdAddress::Path(dir.path().join("absent")));
        assert!(matches!(n.connect(), Err(NotifyError::Connect { .. })));
        n.notify("m", &[MapEvent::SetHold, MapEvent::SetStatus]);
        assert!(n.warned.load(Ordering::Relaxed));
        assert!(!n.was_connected.load(Ordering::Relaxed));
        n.notify("m", &[MapEvent::UnsetHold]);
        assert!(n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn a_refusal_is_not_a_lost_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let m = read_message(&mut s).unwrap();
            write_message(&mut s, "fail");
            m
        });
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        n.notify("m", &[MapEvent::UnsetKey]);
        assert_eq!(handle.join().unwrap(), "unsetprkey map m");
        assert!(!n.warned.load(Ordering::Relaxed));
        assert!(n.warned_refusal.load(Ordering::Relaxed));
    }

    #[test]
    fn address_resolution() {
        use MultipathdAddress::*;
        assert_eq!(
            MultipathdAddress::resolve(Some("/tmp/x.sock".into()), true),
            Path("/tmp/x.sock".into())
        );
        assert_eq!(
            MultipathdAddress::resolve(Some("@/my/name".into()), false),
            Abstract("/my/name".into())
        );
        assert_eq!(
            MultipathdAddress::resolve(None, true),
            Path(DEFAULT_SOCKET_PATH.into())
        );
        assert_eq!(
            MultipathdAddress::resolve(Some("".into()), false),
            Abstract(ABSTRACT_SOCKET_NAME.into())
        );
    }

    #[test]
    fn abstract_addresses_connect() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("qemu-pr-helper-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let m = read_message(&mut s).unwrap();
            write_message(&mut s, "ok\n");
            m
        });
        let n = MultipathdNotifier::new(MultipathdAddress::Abstract(name));
        assert_eq!(n.send("list maps").unwrap(), "ok\n");
        assert_eq!(handle.join().unwrap(), "list maps");
    }
}
