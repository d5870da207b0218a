// SPDX-License-Identifier: GPL-2.0-or-later
//! The client that sent a command: for the emulated device the I_T nexus,
//! for real devices the peer named in logs.

/// The client that sent a command. For the emulated device the connection is
/// the I_T nexus; for real devices it identifies the peer in logs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Initiator {
    /// Unique per accepted connection for the life of the daemon.
    pub connection_id: u64,
    /// Peer process id (SO_PEERCRED), when known.
    pub pid: Option<i32>,
    /// Peer user id.
    pub uid: Option<u32>,
    /// Peer group id.
    pub gid: Option<u32>,
}
