// SPDX-License-Identifier: GPL-2.0-or-later
//! The connection to multipathd: where it listens, its framing (a
//! native-endian `usize` length that counts a trailing NUL, then the text
//! and the NUL; replies come back the same way and start with "ok" on
//! success), and one blocking connection made again after it restarted.
//! Both the relay and the direct link use it.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming multipathd's socket, as multipath-tools reads it.
pub const SOCKET_ENV: &str = "MULTIPATH_SOCKET_NAME";
/// The socket systemd creates for multipathd.
pub const DEFAULT_SOCKET_PATH: &str = "/run/multipathd.socket";
/// multipathd's abstract socket name, used when no socket file exists.
pub const ABSTRACT_SOCKET_NAME: &str = "/org/kernel/linux/storage/multipathd";
/// How long one step of an exchange with multipathd (connect, send,
/// receive) may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Replies longer than this are refused rather than read: the path-state
/// query lists every path of the host, about 13 bytes each, so this is
/// room for a million paths.
pub const MAX_REPLY: usize = 16 * 1024 * 1024;
/// After multipathd did not answer in time (wedged), it is not asked again
/// for this long: a PR command's reply waits for its notification, so a
/// hung multipathd must cost one timeout now and then, not one per command.
pub const BACKOFF: Duration = Duration::from_secs(30);

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

    /// Connects with the timeouts set first: a wedged multipathd whose
    /// listen queue is full makes `connect` wait, for at most [`TIMEOUT`]
    /// (a Unix socket's connect honours the send timeout).
    fn connect(&self) -> io::Result<UnixStream> {
        use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
        let addr = match self {
            MultipathdAddress::Path(p) => UnixAddr::new(p.as_path())?,
            MultipathdAddress::Abstract(name) => UnixAddr::new_abstract(name.as_bytes())?,
        };
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        socket::setsockopt(&fd, sockopt::SendTimeout, &socket_timeout(TIMEOUT))?;
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &socket_timeout(TIMEOUT))?;
        socket::connect(fd.as_raw_fd(), &addr)?;
        Ok(UnixStream::from(fd))
    }
}

/// `d` as a socket timeout (`SO_RCVTIMEO`, `SO_SNDTIMEO`).
pub(super) fn socket_timeout(d: Duration) -> nix::sys::time::TimeVal {
    nix::sys::time::TimeVal::new(
        d.as_secs().try_into().unwrap_or(i64::MAX),
        d.subsec_micros().into(),
    )
}

/// Why a command could not be delivered to multipathd.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No connection could be made.
    #[error("cannot connect to multipathd at {address}: {source}")]
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
    /// The relay could not reach multipathd (its words).
    #[error("{0}")]
    Unreachable(String),
    /// The relay refused the command: only
    /// [`MapCommand`](crate::domain::multipath::events::MapCommand)s are
    /// forwarded.
    #[error("the multipathd relay refused the command")]
    Rejected,
    /// The relay process is gone.
    #[error("the multipathd relay process is gone ({0})")]
    RelayGone(String),
    /// multipathd (or the relay) did not answer in time: it is wedged.
    #[error("multipathd did not answer in time: {0}")]
    TimedOut(String),
    /// multipathd's reply is longer than [`MAX_REPLY`]; it was not read.
    #[error("multipathd's reply of {0} bytes is longer than the {MAX_REPLY} accepted")]
    TooLong(usize),
    /// Not asked: multipathd did not answer in time a moment ago.
    #[error("multipathd did not answer in time; not asked again for {0} s")]
    Quiet(u64),
}

impl NotifyError {
    /// Whether multipathd did not answer in time (which starts the back-off).
    pub fn is_timeout(&self) -> bool {
        match self {
            NotifyError::TimedOut(_) => true,
            NotifyError::Connect { source, .. } | NotifyError::Io(source) => is_timeout_io(source),
            _ => false,
        }
    }

    /// The error for a failed exchange: a timeout and a reply too long are
    /// told apart from a connection that broke.
    fn from_exchange(e: io::Error) -> NotifyError {
        if let Some(ReplyTooLong(len)) = e.get_ref().and_then(|i| i.downcast_ref()) {
            NotifyError::TooLong(*len)
        } else if is_timeout_io(&e) {
            NotifyError::TimedOut(e.to_string())
        } else {
            NotifyError::Io(e)
        }
    }
}

/// Whether `e` is a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO` expired).
fn is_timeout_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A reply longer than [`MAX_REPLY`] (its length as announced).
#[derive(Debug, thiserror::Error)]
#[error("a reply of {0} bytes is longer than the {MAX_REPLY} accepted")]
struct ReplyTooLong(usize);

impl std::fmt::Display for MultipathdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipathdAddress::Path(p) => write!(f, "{}", p.display()),
            MultipathdAddress::Abstract(name) => write!(f, "@{name}"),
        }
    }
}

/// multipathd's reply text, and which connection to it carried the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The reply.
    pub text: String,
    /// The number of the connection (see [`MultipathdConnection::connection`]):
    /// another number is another connection, maybe another multipathd.
    pub connection: u32,
}

/// A connection to multipathd made on demand and made again after
/// multipathd restarted. Used by the relay; blocking.
#[derive(Debug)]
pub struct MultipathdConnection {
    address: MultipathdAddress,
    stream: Option<UnixStream>,
    /// How many connections were made.
    opened: u32,
}

impl MultipathdConnection {
    /// Nothing is connected until the first command.
    pub fn new(address: MultipathdAddress) -> MultipathdConnection {
        MultipathdConnection {
            address,
            stream: None,
            opened: 0,
        }
    }

    /// The number of the connection the last reply came on: it changes
    /// with every new connection, so a restarted multipathd (which the next
    /// command reaches on a new connection) is told apart from the one
    /// before, whose version may differ.
    pub fn connection(&self) -> u32 {
        self.opened
    }

    /// Sends one command and returns multipathd's reply with the number
    /// of the connection it came on.
    pub fn send_answer(&mut self, command: &str) -> Result<Answer, NotifyError> {
        let text = self.send(command)?;
        Ok(Answer {
            text,
            connection: self.connection(),
        })
    }

    /// Sends one command and returns multipathd's reply text. A kept
    /// connection that turns out dead (multipathd restarted) is replaced
    /// once; one that timed out is not tried again (multipathd is wedged:
    /// a second try would only double the wait).
    pub fn send(&mut self, command: &str) -> Result<String, NotifyError> {
        let reused = self.stream.is_some();
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self.open()?,
        };
        let reply = match exchange(&mut stream, command).map_err(NotifyError::from_exchange) {
            Ok(r) => r,
            Err(NotifyError::Io(_)) if reused => {
                stream = self.open()?;
                exchange(&mut stream, command).map_err(NotifyError::from_exchange)?
            }
            Err(e) => return Err(e),
        };
        self.stream = Some(stream);
        Ok(reply)
    }

    fn open(&mut self) -> Result<UnixStream, NotifyError> {
        let stream = self
            .address
            .connect()
            .map_err(|source| NotifyError::Connect {
                address: self.address.clone(),
                source,
            })?;
        self.opened = self.opened.wrapping_add(1);
        Ok(stream)
    }
}

/// Writes one framed command and reads one framed reply.
fn exchange(stream: &mut UnixStream, command: &str) -> io::Result<String> {
    write_message(stream, command)?;
    read_message(stream)
}

/// Writes one message in multipathd's framing: a native-endian `usize`
/// length that counts a trailing NUL, the text, the NUL. Both directions use
/// it, so stand-ins for multipathd in the tests speak it too.
pub fn write_message(w: &mut impl Write, text: &str) -> io::Result<()> {
    let mut message = Vec::with_capacity(size_of::<usize>() + text.len() + 1);
    message.extend_from_slice(&(text.len() + 1).to_ne_bytes());
    message.extend_from_slice(text.as_bytes());
    message.push(0);
    w.write_all(&message)
}

/// Reads one message in multipathd's framing, all of it (its length comes
/// first); the text up to the first NUL. Longer than [`MAX_REPLY`] is
/// refused without being read.
pub fn read_message(r: &mut impl Read) -> io::Result<String> {
    let mut len = [0u8; size_of::<usize>()];
    r.read_exact(&mut len)?;
    let len = usize::from_ne_bytes(len);
    if len > MAX_REPLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            ReplyTooLong(len),
        ));
    }
    // Grown as the bytes come rather than allocated as announced.
    let mut message = Vec::new();
    r.take(len as u64).read_to_end(&mut message)?;
    if message.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let text = message.split(|&b| b == 0).next().unwrap_or(&[]);
    Ok(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_counts_the_nul_and_round_trips() {
        let mut wire = Vec::new();
        super::write_message(&mut wire, "list maps").unwrap();
        assert_eq!(wire.len(), size_of::<usize>() + 10);
        assert_eq!(wire[..size_of::<usize>()], 10usize.to_ne_bytes());
        assert_eq!(wire.last(), Some(&0));
        assert_eq!(super::read_message(&mut &wire[..]).unwrap(), "list maps");
        let mut huge = (MAX_REPLY + 1).to_ne_bytes().to_vec();
        huge.push(0);
        assert!(super::read_message(&mut &huge[..]).is_err());
    }

    /// multipathd's answer to the path-state query on a host with many
    /// paths is long: it is read whole, up to a generous bound, and what is
    /// longer is refused without being read or allocated.
    #[test]
    fn long_replies_are_read_whole_and_the_bound_is_generous() {
        let text = "sdb:active\n".repeat(100_000);
        let mut wire = Vec::new();
        super::write_message(&mut wire, &text).unwrap();
        assert_eq!(super::read_message(&mut &wire[..]).unwrap(), text);
        let mut huge = (16 * 1024 * 1024 + 1usize).to_ne_bytes().to_vec();
        huge.push(0);
        let refused = super::read_message(&mut &huge[..]).unwrap_err();
        assert!(refused.to_string().contains("16777217"), "{refused}");
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
}
