// SPDX-License-Identifier: GPL-2.0-or-later
//! The Unix-socket transport: a tokio listener on a path or on a socket handed
//! over by systemd, and connections that receive fds with SCM_RIGHTS.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::{UnixListener, UnixStream};

use super::idle_connections::IdleConnections;
use super::leftovers::{remove_if_same, FileIdentity};
use crate::config::SocketPermissions;
use crate::domain::initiator::Initiator;
use crate::ports::received_fd::ReceivedFd;
use crate::ports::transport::{
    Connection, Incoming, Listener, Parking, ReplyFromThread, TransportError,
};

/// Room for as many fds as the kernel passes in one message (SCM_MAX_FD): a
/// smaller buffer truncates, and the fds the kernel already installed could
/// then not be iterated, so they would never be closed.
const MAX_FDS_PER_MESSAGE: usize = 253;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// The longest socket path the kernel takes: `sun_path` is 108 bytes, and
/// the standard library keeps one for the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A socket file this daemon created, removed when dropped: its one owner,
/// from the rename into place until the daemon stops or fails to start
/// (unless its removal was handed over, see [`BoundSocket::hand_over_removal`]).
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    identity: FileIdentity,
    handed_over: bool,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        if let Err(e) = remove_if_same(&self.path, self.identity) {
            tracing::warn!(path = %self.path.display(), cause = %e, "cannot remove socket file");
        }
    }
}

/// A listening socket made before the async runtime exists (so that the
/// daemon can listen, go to the background and drop privileges first).
/// A file it created is removed if it is dropped before serving.
#[derive(Debug)]
pub struct BoundSocket {
    listener: std::os::unix::net::UnixListener,
    file: Option<SocketFile>,
}

/// The listening socket as the server accepts on it, and the idle
/// connections parked until they have something to read.
#[derive(Debug)]
pub struct UnixSocketListener {
    listener: UnixListener,
    file: Option<SocketFile>,
    idle: IdleConnections,
    /// Parked connections that became readable, not handed out yet.
    resumed: Vec<Incoming<UnixConnection>>,
    /// An fd kept open to be closed when the process runs out of fds, so
    /// that the connections waiting in the backlog can still be accepted
    /// and closed (rather than waiting there, and accept failing in a loop).
    spare: Option<std::fs::File>,
}

/// Binding or adopting the listening socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The socket could not be created, bound or made to listen.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The path does not fit in `sun_path`.
    #[error(
        "socket path {path} is {len} bytes long; Unix sockets allow at most {MAX_SOCKET_PATH}"
    )]
    PathTooLong {
        /// The socket path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// Something listens on the path already: taking it over would leave
    /// that daemon running but unreachable.
    #[error("socket {path} is in use: another qemu-pr-helper is serving on it")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The fd handed over by systemd is not a listening Unix stream socket.
    #[error("socket activation fd {fd} is not a listening Unix stream socket: {reason}")]
    NotAListener {
        /// The fd number.
        fd: RawFd,
        /// What is wrong with it.
        reason: String,
    },
}

impl BoundSocket {
    /// Creates the socket at `path`. The socket is bound and listening under a
    /// temporary name first, given `permissions`, and then renamed into place,
    /// so the path appears only once it accepts and no client ever sees it
    /// with other permissions. A stale socket from a crashed run is replaced
    /// (one that still answers is refused).
    pub fn bind(path: &Path, permissions: SocketPermissions) -> Result<BoundSocket, ListenError> {
        let (listener, identity) = bind_into_place(path, permissions, &mut |_| {})?;
        Ok(BoundSocket {
            listener,
            file: Some(SocketFile {
                path: path.to_path_buf(),
                identity,
                handed_over: false,
            }),
        })
    }

    /// Adopts the fd systemd passed (fd 3), after checking that it is a
    /// listening Unix stream socket. Its file is systemd's: never removed.
    pub fn adopt(fd: OwnedFd) -> Result<BoundSocket, ListenError> {
        use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
        let raw = fd.as_raw_fd();
        let not_listener = |reason: String| ListenError::NotAListener { fd: raw, reason };
        match getsockopt(&fd, sockopt::SockType) {
            Ok(SockType::Stream) => {}
            Ok(other) => return Err(not_listener(format!("socket type {other:?}"))),
            Err(e) => return Err(not_listener(e.to_string())),
        }
        if getsockname::<UnixAddr>(raw).is_err() {
            return Err(not_listener("not a Unix-domain socket".into()));
        }
        match getsockopt(&fd, sockopt::AcceptConn) {
            Ok(true) => {}
            Ok(false) => return Err(not_listener("not listening".into())),
            Err(e) => return Err(not_listener(e.to_string())),
        }
        Ok(BoundSocket {
            listener: std::os::unix::net::UnixListener::from(fd),
            file: None,
        })
    }

    /// From now on the socket file is not removed by this value: whoever
    /// took [`BoundSocket::owned_file`] does (a daemon that gives up root
    /// may not be allowed to).
    pub fn hand_over_removal(&mut self) {
        if let Some(file) = self.file.as_mut() {
            file.handed_over = true;
        }
    }

    /// The socket file this daemon made, if any, and its identity.
    pub fn owned_file(&self) -> Option<(PathBuf, FileIdentity)> {
        self.file.as_ref().map(|f| (f.path.clone(), f.identity))
    }

    /// Hands the socket to tokio; must be called inside a runtime. On
    /// failure the socket file is removed with the rest.
    pub fn into_listener(self) -> Result<UnixSocketListener, ListenError> {
        let fd = self.listener.as_raw_fd();
        let not_listener = |reason: String| ListenError::NotAListener { fd, reason };
        self.listener
            .set_nonblocking(true)
            .map_err(|e| not_listener(e.to_string()))?;
        let listener =
            UnixListener::from_std(self.listener).map_err(|e| not_listener(e.to_string()))?;
        let idle = IdleConnections::new().map_err(|e| not_listener(e.to_string()))?;
        Ok(UnixSocketListener {
            listener,
            file: self.file,
            idle,
            resumed: Vec::new(),
            spare: open_spare(),
        })
    }
}

impl UnixSocketListener {
    /// The path this daemon created, if any.
    pub fn owned_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }
}

/// The fd set aside for running out of fds: `/dev/null`, which any process
/// can open.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

impl UnixSocketListener {
    /// Out of fds (EMFILE, ENFILE): gives the spare fd up, accepts and
    /// closes every connection waiting, and takes the spare back (as libuv
    /// and nginx do). Returns how many were closed.
    fn shed_backlog(&mut self) -> usize {
        drop(self.spare.take());
        let mut closed = 0;
        // The listener is non-blocking: EAGAIN once the backlog is empty.
        while let Ok(raw) = nix::sys::socket::accept4(
            self.listener.as_raw_fd(),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            // SAFETY: accept4 just returned `raw`, a new fd nothing else
            // refers to: owned here, and closed at once.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
            closed += 1;
        }
        self.spare = open_spare();
        closed
    }
}

/// Binds, applies `permissions` and renames into place (see
/// [`BoundSocket::bind`]); `after_bind` sees the path bound first.
///
/// The socket directory may be writable by others (not sticky): then any
/// name in it can be swapped for a link between two calls. So the socket is
/// bound in a directory of its own, made with `mkdtemp` (mode 0700, root's)
/// and reached through an fd from then on; its mode comes from the umask at
/// bind time and its group from `fchownat` without following links. Nothing
/// done by path after the bind can be redirected onto another file.
fn bind_into_place(
    path: &Path,
    permissions: SocketPermissions,
    after_bind: &mut dyn FnMut(&Path),
) -> Result<(std::os::unix::net::UnixListener, FileIdentity), ListenError> {
    let bind_err = |source| ListenError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(ListenError::PathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    if is_served(path) {
        return Err(ListenError::InUse {
            path: path.to_path_buf(),
        });
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(bind_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        )));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // The directory itself is the administrator's choice: followed.
    let parent = open_dir(dir, 0).map_err(bind_err)?;
    let private = PrivateDir::create(dir, parent.as_fd()).map_err(bind_err)?;
    let listener = bind_in(&private, permissions.mode).map_err(bind_err)?;
    after_bind(&private.path.join(PRIVATE_NAME));
    let placed = (|| {
        use nix::sys::stat::{fstatat, SFlag};
        use nix::unistd::{fchownat, Gid};
        let at = Some(private.fd.as_raw_fd());
        if let Some(gid) = permissions.gid {
            fchownat(
                at,
                PRIVATE_NAME,
                None,
                Some(Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        let st = fstatat(at, PRIVATE_NAME, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
            return Err(Errno::EEXIST);
        }
        nix::fcntl::renameat(at, PRIVATE_NAME, Some(parent.as_raw_fd()), name)?;
        Ok(FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    })()
    .map_err(|e| bind_err(e.into()))?;
    Ok((listener, placed))
}

/// The name the socket has in its private directory.
const PRIVATE_NAME: &str = "s";

/// A directory only this process can write to, beside the socket path (so
/// that the rename out of it is atomic); removed on drop, with the socket
/// if it is still there.
struct PrivateDir {
    /// Its path when made (another user can rename it: used only to bind).
    path: PathBuf,
    /// Its name in `parent`.
    name: std::ffi::OsString,
    /// The directory itself, whatever its name becomes.
    fd: OwnedFd,
    /// The socket directory.
    parent: RawFd,
}

impl PrivateDir {
    /// Makes `dir/.prhXXXXXX` and opens it without following a link; refuses
    /// it if what was opened is not the 0700 directory of this user just made.
    fn create(dir: &Path, parent: std::os::fd::BorrowedFd<'_>) -> io::Result<PrivateDir> {
        use std::os::unix::fs::MetadataExt;
        let path = nix::unistd::mkdtemp(&dir.join(".prhXXXXXX"))?;
        let name = path.file_name().unwrap_or_default().to_os_string();
        let made = PrivateDir {
            fd: open_dir(&path, libc::O_NOFOLLOW)?,
            path,
            name,
            parent: parent.as_raw_fd(),
        };
        let meta = std::fs::File::from(made.fd.try_clone()?).metadata()?;
        if !meta.is_dir()
            || meta.uid() != nix::unistd::geteuid().as_raw()
            || meta.mode() & 0o7777 != 0o700
        {
            return Err(io::Error::other(format!(
                "{} was replaced while the socket was made",
                made.path.display()
            )));
        }
        Ok(made)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        use nix::unistd::{unlinkat, UnlinkatFlags};
        let _ = unlinkat(
            Some(self.fd.as_raw_fd()),
            PRIVATE_NAME,
            UnlinkatFlags::NoRemoveDir,
        );
        // If another user renamed it, this name is theirs now (then it is
        // not an empty directory of ours, and stays).
        let _ = unlinkat(
            Some(self.parent),
            self.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        );
    }
}

/// An `O_PATH` fd on the directory `dir`, with `flags` added.
fn open_dir(dir: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | flags)
        .open(dir)?
        .into())
}

/// Binds the socket in `private`, its mode `mode` (through the umask, so the
/// file never has another). When the path is too long for `sun_path`
/// although the final one is not, the directory is reached through its fd
/// (`/proc/self/fd/N/s`), which is always short.
fn bind_in(
    private: &PrivateDir,
    mode: Option<u32>,
) -> io::Result<std::os::unix::net::UnixListener> {
    use nix::sys::stat::{umask, Mode};
    let tmp = private.path.join(PRIVATE_NAME);
    let tmp = if tmp.as_os_str().len() <= MAX_SOCKET_PATH {
        tmp
    } else {
        PathBuf::from(format!(
            "/proc/self/fd/{}/{PRIVATE_NAME}",
            private.fd.as_raw_fd()
        ))
    };
    // The process has one thread here: the umask is nobody else's.
    let old = mode.map(|m| umask(Mode::from_bits_truncate(!m & 0o777)));
    let bound = std::os::unix::net::UnixListener::bind(&tmp);
    if let Some(old) = old {
        umask(old);
    }
    bound
}

/// Whether a listening socket answers at `path`. A refused connection is a
/// stale socket from a run that ended without removing it; a full backlog
/// is a live daemon too. The probe never blocks.
fn is_served(path: &Path) -> bool {
    use nix::errno::Errno;
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let Ok(addr) = UnixAddr::new(path) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    matches!(connect(fd.as_raw_fd(), &addr), Ok(()) | Err(Errno::EAGAIN))
}

#[async_trait]
impl Listener for UnixSocketListener {
    type Conn = UnixConnection;

    async fn accept(&mut self) -> Result<Incoming<UnixConnection>, TransportError> {
        loop {
            if let Some(resumed) = self.resumed.pop() {
                return Ok(resumed);
            }
            let ready = tokio::select! {
                accepted = self.listener.accept() => {
                    return match accepted {
                        Ok((stream, _)) => Ok(Incoming::New(UnixConnection::new(stream))),
                        Err(cause) if is_out_of_fds(&cause) => Err(TransportError::FdsExhausted {
                            cause,
                            closed: self.shed_backlog(),
                        }),
                        Err(e) => Err(TransportError::Accept(e)),
                    };
                }
                ready = self.idle.ready() => ready.map_err(TransportError::Accept)?,
            };
            for (stream, initiator) in ready {
                // Either way the server hears of it: it counts parked
                // connections.
                self.resumed.push(match UnixStream::from_std(stream) {
                    Ok(stream) => Incoming::Resumed(UnixConnection::serving(stream, initiator)),
                    Err(e) => {
                        tracing::warn!(
                            conn_id = initiator.connection_id,
                            cause = %e,
                            "cannot serve an idle connection again: closed"
                        );
                        Incoming::Lost(initiator, TransportError::Receive(e))
                    }
                });
            }
        }
    }

    fn can_park(&self) -> bool {
        true
    }

    fn park(&mut self, conn: UnixConnection) -> Parking<UnixConnection> {
        let UnixConnection { socket, initiator } = conn;
        // A thread that wrote the last reply may still hold the socket for
        // a moment: then it is not parked this time.
        let socket = match Arc::try_unwrap(socket) {
            Ok(socket) => socket,
            Err(socket) => return Parking::Kept(UnixConnection { socket, initiator }),
        };
        let parked = socket
            .0
            .into_std()
            .and_then(|stream| self.idle.park(stream, initiator));
        match parked {
            Ok(()) => Parking::Parked,
            Err(e) => Parking::Closed(TransportError::Receive(e)),
        }
    }
}

/// Whether accepting failed for want of an fd (per process or system-wide).
fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One accepted client.
#[derive(Debug)]
pub struct UnixConnection {
    /// Shared with the blocking thread that writes a reply, so that the
    /// socket stays open until that thread is done with it.
    socket: Arc<ClientSocket>,
    initiator: Initiator,
}

/// The client's stream, as the blocking side writes to it.
#[derive(Debug)]
struct ClientSocket(UnixStream);

impl UnixConnection {
    /// Wraps an accepted stream, reading the peer's credentials once.
    pub fn new(stream: UnixStream) -> UnixConnection {
        let cred = stream.peer_cred().ok();
        let initiator = Initiator {
            connection_id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            pid: cred.as_ref().and_then(|c| c.pid()),
            uid: cred.as_ref().map(|c| c.uid()),
            gid: cred.as_ref().map(|c| c.gid()),
        };
        UnixConnection::serving(stream, initiator)
    }

    /// `stream` as the connection of `initiator`: a new one, or a parked one
    /// served again as the peer it was accepted as.
    fn serving(stream: UnixStream, initiator: Initiator) -> UnixConnection {
        UnixConnection {
            socket: Arc::new(ClientSocket(stream)),
            initiator,
        }
    }
}

impl ReplyFromThread for ClientSocket {
    /// One non-blocking `sendmsg` of all parts at once: one system call for
    /// a client that waits for its reply, and no wait for one that does not
    /// read. The async side's readiness for writing is not used, so no
    /// wake-up of the runtime is needed.
    fn try_write_parts(&self, parts: &[&[u8]]) -> io::Result<usize> {
        let iov: Vec<IoSlice<'_>> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| IoSlice::new(p))
            .collect();
        if iov.is_empty() {
            return Ok(0);
        }
        loop {
            match sendmsg::<()>(
                self.0.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One non-blocking `recvmsg`: returns the bytes read and appends the fds
/// that came with them, owned but not inspected: `fstat` on a client's fd can
/// block, so it runs later on a blocking thread. Sets `truncated`
/// when the kernel had to drop fds that did not fit.
fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<ReceivedFd>,
    truncated: &mut bool,
) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    *truncated |= msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
            for raw in raw_fds {
                // SAFETY: SCM_RIGHTS just installed `raw` in this process and
                // nothing else refers to it: we take sole ownership here.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fds.push(ReceivedFd::new(owned));
            }
        }
    }
    Ok(msg.bytes)
}

#[async_trait]
impl Connection for UnixConnection {
    fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        fds: &mut Vec<ReceivedFd>,
    ) -> Poll<Result<usize, TransportError>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let stream = &self.socket.0;
        let raw = stream.as_raw_fd();
        let mut truncated = false;
        let n = loop {
            match stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(TransportError::Receive(e))),
                Poll::Ready(Ok(())) => {}
            }
            // A read that would block clears tokio's readiness, so stale
            // readiness only costs one extra `recvmsg`.
            match stream.try_io(Interest::READABLE, || {
                recv_with_fds(raw, buf, fds, &mut truncated)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(TransportError::Receive(e))),
            }
        };
        if truncated {
            return Poll::Ready(Err(TransportError::FdsTruncated));
        }
        Poll::Ready(Ok(n))
    }

    async fn read_some(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<ReceivedFd>,
    ) -> Result<usize, TransportError> {
        std::future::poll_fn(|cx| self.poll_read_some(cx, buf, fds)).await
    }

    async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), TransportError> {
        let stream = &self.socket.0;
        while !buf.is_empty() {
            stream.writable().await.map_err(TransportError::Send)?;
            match stream.try_write(buf) {
                Ok(0) => return Err(TransportError::Send(io::ErrorKind::WriteZero.into())),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransportError::Send(e)),
            }
        }
        Ok(())
    }

    fn initiator(&self) -> Initiator {
        self.initiator.clone()
    }

    fn reply_from_thread(&self) -> Option<Arc<dyn ReplyFromThread>> {
        Some(Arc::clone(&self.socket) as Arc<dyn ReplyFromThread>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    #[test]
    fn a_bound_socket_file_lives_as_long_as_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let bound = BoundSocket::bind(&path, SocketPermissions::default()).unwrap();
        assert!(path.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.sock"], "the directory it was bound in is gone");
        assert!(matches!(
            BoundSocket::bind(&path, SocketPermissions::default()),
            Err(ListenError::InUse { .. })
        ));
        drop(bound);
        assert!(
            !path.exists(),
            "a start that fails before serving removes it"
        );

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let bound = BoundSocket::bind(&path, SocketPermissions::default()).unwrap();
        let listener = rt.block_on(async { bound.into_listener() }).unwrap();
        assert_eq!(listener.owned_path(), Some(path.as_path()));
        drop(listener);
        assert!(!path.exists(), "the listener removes it when serving ends");
    }

    /// An attacker (nobody) who may write to the socket directory (not
    /// sticky) swaps what was just bound for a link to a victim file, and
    /// the directory it was bound in (if not the socket directory) for a
    /// link to a directory holding a victim of the same name, in the window
    /// before the socket gets its mode and group. Neither victim may change,
    /// and the socket that appears has the mode and group asked for.
    #[test]
    fn socket_permissions_never_follow_a_link_swapped_in_after_bind() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        use std::os::unix::process::CommandExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("*** SKIPPED: needs root (the attacker is nobody) ***");
            return;
        }
        let victims = tempfile::tempdir().unwrap();
        let plant = |name: &str| {
            let victim = victims.path().join(name);
            std::fs::write(&victim, "root's").unwrap();
            std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&victim, Some(0), Some(0)).unwrap();
            victim
        };
        let mut planted = vec![plant("victim")];
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("pr.sock");
        let permissions = SocketPermissions {
            mode: Some(0o666),
            gid: Some(6),
        };
        let mut attacked = false;
        let bound = bind_into_place(&path, permissions, &mut |bound| {
            let name = bound.file_name().unwrap().to_str().unwrap();
            planted.push(plant(name));
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(
                    r#"rm -f "$1"; ln -s "$2" "$1"
                    d=$(dirname "$1")
                    [ "$d" = "$3" ] || { mv "$d" "$d.moved"; ln -s "$4" "$d"; }
                    true"#,
                )
                .args(["sh", bound.to_str().unwrap()])
                .arg(&planted[0])
                .arg(dir.path())
                .arg(victims.path())
                .uid(65534)
                .gid(65534)
                .status()
                .unwrap();
            assert!(status.success());
            attacked = true;
        });
        assert!(attacked);
        for victim in &planted {
            let meta = std::fs::metadata(victim).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o600, "{} chmodded", victim.display());
            assert_eq!(meta.gid(), 0, "{} chgrped", victim.display());
            assert_eq!(std::fs::read_to_string(victim).unwrap(), "root's");
        }
        let (listener, _) = bound.unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o666);
        assert_eq!(meta.gid(), 6);
        drop(listener);
    }

    #[test]
    fn an_adopted_socket_file_is_left_to_its_creator() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let std = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let adopted = BoundSocket::adopt(OwnedFd::from(std)).unwrap();
        drop(adopted);
        assert!(path.exists());
    }

    /// A registered socket and its peer. The runtime is returned only to
    /// outlive the socket: writes from the blocking side do not use it.
    fn pair() -> (
        ClientSocket,
        std::os::unix::net::UnixStream,
        tokio::runtime::Runtime,
    ) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let a = rt.block_on(async { UnixStream::from_std(a).unwrap() });
        (ClientSocket(a), b, rt)
    }

    #[test]
    fn parts_arrive_whole_and_in_order() {
        let (sock, mut peer, _rt) = pair();
        let header = [7u8; 104];
        let payload: Vec<u8> = (0..=255).collect();
        let n = sock.try_write_parts(&[&header, &[], &payload]).unwrap();
        assert_eq!(n, 104 + 256);
        let mut got = vec![0u8; 104 + 256];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got[..104], &header[..]);
        assert_eq!(&got[104..], &payload[..]);
    }

    /// Fills the peer's receive side until a write would block.
    fn fill(sock: &ClientSocket) {
        let chunk = [0u8; 65536];
        let fd = sock.0.as_raw_fd();
        while nix::sys::socket::send(fd, &chunk, MsgFlags::MSG_DONTWAIT).is_ok() {}
    }

    #[test]
    fn a_reply_the_client_does_not_take_is_not_waited_for() {
        let (sock, _peer, _rt) = pair();
        fill(&sock);
        let started = Instant::now();
        assert_eq!(sock.try_write_parts(&[&[1u8; 104]]).unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_client_that_went_away_is_an_error_not_a_wait() {
        let (sock, peer, _rt) = pair();
        drop(peer);
        assert!(sock.try_write_parts(&[&[1u8; 104]]).is_err());
    }
}
