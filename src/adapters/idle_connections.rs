// SPDX-License-Identifier: GPL-2.0-or-later
//! Idle connections put aside. QEMU keeps one connection per VM open for the
//! VM's whole life and sends a command now and then; served by a task each,
//! a silent connection costs a task and a runtime registration (about 1.4
//! KiB). Parked here it is a socket in one epoll set of its own and an entry
//! in a map, until it has something to read again.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::domain::initiator::Initiator;

/// How long after connections were parked the memory their tasks freed is
/// handed back to the kernel: a batch of parkings is trimmed once.
pub const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Parkings that make a batch worth trimming for: a few VMs whose
/// connections park and wake now and then do not cost a trim each time.
pub const TRIM_BATCH: usize = 32;

/// The epoll instance, as tokio watches it (it is readable when one of its
/// sockets is).
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// The parked connections and the epoll set that watches their sockets.
pub struct IdleConnections {
    epoll: AsyncFd<EpollFd>,
    /// By connection id, which is also each socket's epoll token.
    parked: HashMap<u64, (UnixStream, Initiator)>,
    /// When free memory should next be returned to the kernel.
    trim_due: Option<tokio::time::Instant>,
    /// Parkings since memory was last returned.
    parked_since_trim: usize,
}

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleConnections")
            .field("parked", &self.parked.len())
            .finish()
    }
}

impl IdleConnections {
    /// An empty set; must be called inside a runtime.
    pub fn new() -> io::Result<IdleConnections> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // SAFETY: `EpollFd` owns the epoll fd and always returns it from
        // `as_raw_fd`; it is closed only when the `AsyncFd` drops it.
        let epoll = unsafe { AsyncFd::register_with_interest(EpollFd(epoll), Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(IdleConnections {
            epoll,
            parked: HashMap::new(),
            trim_due: None,
            parked_since_trim: 0,
        })
    }

    /// Watches `stream`, already out of the runtime, until it has something
    /// to read (bytes, or the peer closing).
    pub fn park(&mut self, stream: UnixStream, initiator: Initiator) -> io::Result<()> {
        let token = initiator.connection_id;
        // One-shot: once reported, a socket is never reported again, even
        // if removing it from the set should fail.
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        self.epoll
            .get_ref()
            .0
            .add(&stream, EpollEvent::new(interest, token))?;
        self.parked.insert(token, (stream, initiator));
        self.parked_since_trim += 1;
        if self.parked_since_trim == TRIM_BATCH {
            self.trim_due = Some(tokio::time::Instant::now() + TRIM_AFTER);
        }
        Ok(())
    }

    /// Waits until parked connections have something to read and takes them
    /// out of the set; meanwhile returns the memory freed by the tasks of
    /// connections parked, [`TRIM_AFTER`] after the [`TRIM_BATCH`]th parking
    /// since the last time. Pending for ever while nothing
    /// is parked. Cancel-safe: nothing is taken before the last await.
    pub async fn ready(&mut self) -> io::Result<Vec<(UnixStream, Initiator)>> {
        loop {
            let trim = async {
                match self.trim_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            let watched = !self.parked.is_empty();
            let mut guard = tokio::select! {
                guard = self.epoll.readable(), if watched => guard?,
                () = trim => {
                    self.trim_due = None;
                    self.parked_since_trim = 0;
                    tokio::task::spawn_blocking(release_free_memory);
                    continue;
                }
            };
            let mut events = [EpollEvent::empty(); 64];
            let n = guard.get_inner().0.wait(&mut events, EpollTimeout::ZERO)?;
            if n == 0 {
                guard.clear_ready();
                continue;
            }
            let mut ready = Vec::with_capacity(n);
            for event in &events[..n] {
                if let Some((stream, initiator)) = self.parked.remove(&event.data()) {
                    // It stays open, for tokio. Should this fail, the
                    // one-shot entry stays disabled until the socket closes.
                    let _ = guard.get_inner().0.delete(&stream);
                    ready.push((stream, initiator));
                }
            }
            return Ok(ready);
        }
    }
}

/// Hands free heap memory back to the kernel. glibc keeps what thousands of
/// tasks freed inside the heap, where it would still count as the daemon's
/// memory; the parked connections need a small part of it.
fn release_free_memory() {
    // SAFETY: malloc_trim only gives whole free pages of malloc's own
    // arenas back (madvise/brk), under malloc's locks; it touches no memory
    // that is allocated.
    unsafe {
        libc::malloc_trim(0);
    }
}
