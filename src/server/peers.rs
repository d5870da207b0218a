// SPDX-License-Identifier: GPL-2.0-or-later
//! What each peer process (SO_PEERCRED pid) holds: its open connections,
//! under a cap, and the slots its commands take on the blocking pool.
//!
//! A command's blocking part (fd inspection, SG_IO, the close of its fd)
//! can block for as long as a file system stalls. Bounded per peer, one
//! process sending fds of a stuck file system, or opening thousands of
//! connections, ties up its own share and leaves the threads and the
//! connection slots to the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;

/// A peer process, by pid; connections whose peer is unknown share one.
type PeerKey = Option<i32>;

/// One peer's open connections and command slots.
struct Peer {
    connections: usize,
    slots: Arc<Semaphore>,
}

/// The peers with a connection open, and their limits.
pub(super) struct Peers {
    peers: Mutex<HashMap<PeerKey, Peer>>,
    max_connections: usize,
    max_commands: usize,
}

/// One connection of a peer, counted until dropped, and the slots its
/// commands take. A connection parked with the listener stays counted: it is
/// [`PeerConnection::parked`] and counted again as [`Peers::resumed`].
pub(super) struct PeerConnection {
    peers: Arc<Peers>,
    key: PeerKey,
    slots: Arc<Semaphore>,
    counted: bool,
}

impl Peers {
    pub(super) fn new(max_connections: usize, max_commands: usize) -> Peers {
        Peers {
            peers: Mutex::new(HashMap::new()),
            max_connections,
            max_commands,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerKey, Peer>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection of `pid`; `None` when that peer has as many open
    /// as it may.
    pub(super) fn open(this: &Arc<Peers>, pid: PeerKey) -> Option<PeerConnection> {
        let mut peers = this.lock();
        let peer = peers.entry(pid).or_insert_with(|| Peer {
            connections: 0,
            slots: Arc::new(Semaphore::new(this.max_commands)),
        });
        if peer.connections >= this.max_connections {
            return None;
        }
        peer.connections += 1;
        let slots = Arc::clone(&peer.slots);
        drop(peers);
        Some(PeerConnection {
            peers: Arc::clone(this),
            key: pid,
            slots,
            counted: true,
        })
    }

    /// A parked connection of `pid` served again: counted since it was
    /// opened.
    pub(super) fn resumed(this: &Arc<Peers>, pid: PeerKey) -> PeerConnection {
        let mut peers = this.lock();
        let peer = peers.entry(pid).or_insert_with(|| Peer {
            // Not counted (only after a count was lost): count it now.
            connections: 1,
            slots: Arc::new(Semaphore::new(this.max_commands)),
        });
        let slots = Arc::clone(&peer.slots);
        drop(peers);
        PeerConnection {
            peers: Arc::clone(this),
            key: pid,
            slots,
            counted: true,
        }
    }

    /// A connection of `pid` closed while parked.
    pub(super) fn close(&self, pid: PeerKey) {
        let mut peers = self.lock();
        if let Some(peer) = peers.get_mut(&pid) {
            peer.connections = peer.connections.saturating_sub(1);
            if peer.connections == 0 {
                peers.remove(&pid);
            }
        }
    }

    /// Peers with a connection open.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().len()
    }
}

impl PeerConnection {
    /// The slots of this peer's commands on the blocking pool.
    pub(super) fn slots(&self) -> &Arc<Semaphore> {
        &self.slots
    }

    /// Handed to the listener: still open, counted until it closes there or
    /// is served again.
    pub(super) fn parked(mut self) {
        self.counted = false;
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        if self.counted {
            self.peers.close(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_has_its_own_connection_cap() {
        let peers = Arc::new(Peers::new(2, 4));
        let a1 = Peers::open(&peers, Some(1)).unwrap();
        let _a2 = Peers::open(&peers, Some(1)).unwrap();
        assert!(Peers::open(&peers, Some(1)).is_none(), "over the cap");
        let _b = Peers::open(&peers, Some(2)).expect("another peer is not");
        drop(a1);
        assert!(Peers::open(&peers, Some(1)).is_some(), "a closed one frees");
    }

    #[test]
    fn a_peer_is_forgotten_with_its_last_connection_even_parked() {
        let peers = Arc::new(Peers::new(2, 4));
        let a = Peers::open(&peers, Some(1)).unwrap();
        a.parked();
        assert_eq!(peers.count(), 1, "a parked connection is still open");
        let a = Peers::resumed(&peers, Some(1));
        drop(a);
        assert_eq!(peers.count(), 0);
        Peers::open(&peers, Some(1)).unwrap().parked();
        peers.close(Some(1));
        assert_eq!(peers.count(), 0, "closed while parked");
    }

    #[test]
    fn the_connections_of_one_peer_share_its_command_slots() {
        let peers = Arc::new(Peers::new(8, 2));
        let a1 = Peers::open(&peers, Some(1)).unwrap();
        let a2 = Peers::open(&peers, Some(1)).unwrap();
        let b = Peers::open(&peers, Some(2)).unwrap();
        let _p1 = Arc::clone(a1.slots()).try_acquire_owned().unwrap();
        let _p2 = Arc::clone(a2.slots()).try_acquire_owned().unwrap();
        assert!(Arc::clone(a1.slots()).try_acquire_owned().is_err());
        assert!(Arc::clone(b.slots()).try_acquire_owned().is_ok());
    }
}
