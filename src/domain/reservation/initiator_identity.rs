// SPDX-License-Identifier: GPL-2.0-or-later
//! Which identity of a client makes it one I_T nexus of the emulated device:
//! a setting (`initiator` in `[executor]`) read by the device itself, so it
//! lives here once rather than as a twin on each side.

use serde::Deserialize;

/// What makes two commands come from the same I_T nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum InitiatorIdentity {
    /// Each client connection is its own nexus (QEMU: one per VM).
    #[default]
    #[serde(rename = "connection")]
    Connection,
    /// Every connection of one peer user is one nexus; a peer whose uid is
    /// unknown falls back to its connection.
    #[serde(rename = "uid")]
    PeerUid,
    /// Every connection from one session (one terminal, or what `setsid`
    /// starts) is one nexus: run commands from two terminals and they are two
    /// cluster nodes. A peer whose session is unknown falls back to its
    /// connection.
    #[serde(rename = "session")]
    PeerSession,
}

impl InitiatorIdentity {
    /// The name as written in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            InitiatorIdentity::Connection => "connection",
            InitiatorIdentity::PeerUid => "uid",
            InitiatorIdentity::PeerSession => "session",
        }
    }
}
