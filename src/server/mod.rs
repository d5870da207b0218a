// SPDX-License-Identifier: GPL-2.0-or-later
//! The request-serving logic, written once against the ports, in three
//! rooms:
//!
//! - `accept`: [`run_with`] accepts connections until shutdown, admits
//!   them (peer allowlist, connection caps), counts them, and parks idle
//!   ones with the transport;
//! - `handler`: speaks the protocol on one connection. Protocol violations
//!   end that connection only; everything else is a SCSI answer;
//! - `job`: one command's trip to the blocking pool, with its log and
//!   audit lines.
//!
//! No system call on a client's fd runs on the runtime's thread, which runs
//! every connection's task: `fstat` and `close` on a file of a stuck file
//! system (FUSE) never return. Each command makes one trip to the blocking
//! pool that inspects the fd, screens the command (device allowlist,
//! read-only fd), runs the executor, closes the fd and tries once to write
//! the reply, so that the reply leaves without a second thread hop; fds
//! dropped over a protocol violation are closed there too.
//!
//! No thread ever waits for a client: a reply the socket has no room for is
//! written by the connection's task, with the request timeout. What has to
//! run on a thread is bounded per peer process (`max_commands_per_peer`);
//! a command past the bound waits for a slot, as a task, costing no thread.

mod accept;
mod handler;
mod job;
mod peers;
mod status;
mod stop;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::allowlist::{DeviceAllowlist, PeerPolicy};
use crate::domain::audit::KeyDisplay;
use crate::domain::framing::ProtocolViolation;
use crate::ports::fd_inspector::FdInspector;
use crate::ports::transport::TransportError;
pub use accept::run_with;
pub use status::{status_line, ServerStats};

/// The target of the server's lines (all but the audit trail's), whichever
/// of its files writes them: one name to select with `-T` and to find under
/// the journal's TARGET.
const TARGET: &str = "qemu_pr_helper::server";

/// Once the daemon is stopping, how long a blocked reply write or a pending
/// close of a client's fds may still take before the connection is given up.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a connection stays a task of its own after its last command.
/// Commands on a busy connection never pay for parking; a VM's connection,
/// silent for hours, costs a task only for this long.
pub(crate) const PARK_AFTER: Duration = Duration::from_secs(1);

/// Connections one peer process may have open: one QEMU with a
/// pr-manager-helper object per disk, and room to reconnect, stays far
/// below; a peer that opens connections in a loop leaves the other
/// 16,128 of the default cap to the others.
pub(crate) const MAX_CONNECTIONS_PER_PEER: usize = 256;

/// Commands one peer process may have on the blocking pool at once. QEMU
/// sends one command at a time per pr-manager-helper object, so one QEMU
/// with many disks (a failover that preempts on each of them at once) has
/// at most one per object in flight, and 64 objects make a large VM. It
/// takes 8 peers with every slot stuck on a stalled file system to fill the
/// pool's 512 threads. A command past the bound waits for a slot; it is
/// not refused.
pub(crate) const MAX_COMMANDS_PER_PEER: usize = 64;

/// The policy and limits the server enforces.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Which peers may connect.
    pub peers: PeerPolicy,
    /// Which devices commands may be sent to.
    pub devices: DeviceAllowlist,
    /// Learns what a received fd is, and its WWID when the allowlist or
    /// the audit line needs it.
    pub inspector: Arc<dyn FdInspector>,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections one peer process (SO_PEERCRED pid) may have open; more
    /// are closed at accept.
    pub max_connections_per_peer: usize,
    /// Commands of one peer process on the blocking pool at once; more
    /// wait for a slot.
    pub max_commands_per_peer: usize,
    /// Once a request has started, it must be complete within this time;
    /// a reply must be taken by the client within it too. Idle connections
    /// between commands are not limited.
    pub request_timeout: Duration,
    /// How keys appear in audit lines.
    pub audit_keys: KeyDisplay,
    /// Counts the service manager's status line reads.
    pub stats: Arc<ServerStats>,
    /// A connection idle this long with nothing in flight is handed to the
    /// transport to watch without a task of its own (when the transport can
    /// park connections), and a new one right after negotiation; `None`:
    /// never.
    pub park_after: Option<Duration>,
}

impl ServerOptions {
    /// The default policy and limits, with `inspector` to learn what each
    /// client's fd is: the daemon gives the one that asks the kernel, tests
    /// a stub.
    pub fn new(inspector: Arc<dyn FdInspector>) -> ServerOptions {
        ServerOptions {
            peers: PeerPolicy::default(),
            devices: DeviceAllowlist::default(),
            inspector,
            max_connections: 16384,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_commands_per_peer: MAX_COMMANDS_PER_PEER,
            request_timeout: Duration::from_secs(30),
            audit_keys: KeyDisplay::Full,
            stats: Arc::default(),
            park_after: Some(PARK_AFTER),
        }
    }
}

/// How a connection ended, when it ended without a transport error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionEnd {
    /// The client closed the connection between commands.
    ClientClosed,
    /// The daemon is shutting down and the connection was idle.
    Shutdown,
    /// Idle with nothing in flight: handed to the transport to watch until
    /// it has something to read.
    Idle,
}

impl std::fmt::Display for ConnectionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectionEnd::ClientClosed => "client closed",
            ConnectionEnd::Shutdown => "shutdown",
            ConnectionEnd::Idle => "idle",
        })
    }
}

/// Why a connection was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionError {
    /// The client broke the wire contract.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolViolation),
    /// A request started but was not complete within the request timeout.
    #[error("request stalled for more than {0:?}")]
    Stalled(Duration),
    /// The client did not read its reply in time (within the request
    /// timeout, or within the grace once the daemon stops).
    #[error("reply not read by the client within {0:?}")]
    ReplyStalled(Duration),
    /// The socket failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}
