// SPDX-License-Identifier: GPL-2.0-or-later
//! An emulated SCSI device: persistent reservations kept in memory, with no
//! SG_IO and no privilege, for testing clusters (fence_scsi, Windows failover
//! clustering, QEMU itself) against the helper without shared storage.
//!
//! # Model
//! - **Logical unit** = the file the client's fd refers to, identified by
//!   `(st_dev, st_ino)`. Any kind of file stands in for a logical unit: a
//!   regular file is the point, so two VMs given the same image file share
//!   one reservation state. The fd itself is never read, written or kept.
//! - **I_T nexus** = by default the client connection
//!   ([`Initiator::connection_id`], [`InitiatorIdentity::Connection`]): QEMU
//!   keeps one connection per VM, so each VM is one initiator port. Its
//!   TransportID is the SAS address [`INITIATOR_SAS_BASE`] + connection id
//!   (what READ FULL STATUS shows, and what SPEC_I_PT and REGISTER AND MOVE
//!   must name), through the one target port [`TARGET_PORT`]. A client that
//!   reconnects is a new nexus: its old registration stays behind, as a real
//!   initiator port's would if it went away without unregistering. A
//!   one-command-per-run tool is therefore a new nexus on every run;
//!   [`InitiatorIdentity::PeerSession`] makes every connection of one
//!   session one nexus instead (SAS address [`SESSION_SAS_BASE`] + session
//!   id), for such tools, and [`InitiatorIdentity::PeerUid`] every
//!   connection of one user (SAS address [`UID_SAS_BASE`] + uid). When such
//!   a tool meets RESERVATION CONFLICT because of a key its own session
//!   registered on an earlier connection, the log says so once, and names
//!   the setting.
//! - **State** lives for the life of the executor (the daemon); APTPL is
//!   accepted and reported but nothing survives a restart.
//! - **Semantics** are those of [`crate::domain::reservation`]: SPC-4 as LIO
//!   implements it, with pending unit attentions reported on the next PR IN
//!   or PR OUT of the nexus they are for.
//!
//! - **Faults** ([`FaultInjection`]) make chosen units misbehave as a real
//!   device can (EIO, a device that never answers, UNIT ATTENTION, NOT
//!   READY, ...). A faulty command never reaches the model; its answer is the
//!   domain's mapping of the SG_IO outcome ([`DeviceFault::reply`]).
//!
//! The server refuses PR OUT on a read-only fd before the executor is asked,
//! as for real devices; this executor does not check the access mode again.
//! The state sits behind a `std::sync::Mutex` that is held only while one
//! command runs, never across an await.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::domain::command::PrCommand;
use crate::domain::fault::DeviceFault;
use crate::domain::framing::PrReply;
use crate::domain::initiator::Initiator;
use crate::domain::param_list::TransportId;
use crate::domain::reservation::{InitiatorIdentity, LogicalUnit, NexusId};
use crate::domain::sense::ScsiStatus;
use crate::domain::service_action::PrOutServiceAction;
use crate::ports::executor::{DeviceFd, ScsiExecutor};

/// SAS address of connection 0's initiator port; connection `n` is this + `n`
/// (NAA 5, so `sg_persist` shows a plausible SAS address).
pub const INITIATOR_SAS_BASE: u64 = 0x5000_0000_0000_0000;

/// RELATIVE TARGET PORT IDENTIFIER of the emulated device's only target port.
pub const TARGET_PORT: u16 = 1;

/// SAS address of uid 0's initiator port under [`InitiatorIdentity::PeerUid`];
/// uid `u` is this + `u`.
pub const UID_SAS_BASE: u64 = 0x5000_0001_0000_0000;

/// SAS address of session 0's initiator port under
/// [`InitiatorIdentity::PeerSession`]; session `s` is this + `s`.
pub const SESSION_SAS_BASE: u64 = 0x5000_0002_0000_0000;

/// `(st_dev, st_ino)`: the identity of an emulated logical unit.
pub type UnitId = (u64, u64);

/// The I_T nexus a client is under the rule `identity`. Here, not in the
/// domain, because the session rule asks the kernel for the peer's session.
pub fn nexus_of(identity: InitiatorIdentity, initiator: &Initiator) -> NexusId {
    let session = || u64::try_from(session_of(initiator)?).ok();
    let address = match (identity, initiator.uid) {
        (InitiatorIdentity::PeerUid, Some(uid)) => UID_SAS_BASE + u64::from(uid),
        (InitiatorIdentity::PeerSession, _) => match session() {
            Some(sid) => SESSION_SAS_BASE + sid,
            None => INITIATOR_SAS_BASE.wrapping_add(initiator.connection_id),
        },
        _ => INITIATOR_SAS_BASE.wrapping_add(initiator.connection_id),
    };
    NexusId::new(TransportId::sas(address), TARGET_PORT)
}

/// The session id of a peer process, when it can be known.
fn session_of(initiator: &Initiator) -> Option<i32> {
    let pid = nix::unistd::Pid::from_raw(initiator.pid?);
    Some(nix::unistd::getsid(Some(pid)).ok()?.as_raw())
}

/// A fault to show on one emulated logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultInjection {
    /// The logical unit.
    pub unit: UnitId,
    /// What goes wrong.
    pub fault: DeviceFault,
    /// Show the fault this many times, then heal; `None`: for ever.
    pub count: Option<u32>,
}

/// A fault and how much of it is left.
#[derive(Debug)]
struct ActiveFault {
    fault: DeviceFault,
    remaining: Option<u32>,
    /// Nexuses a once-per-nexus fault was already shown to.
    shown_to: HashSet<NexusId>,
}

/// Serves PR commands from in-memory logical units, one per file.
#[derive(Debug, Default)]
pub struct EmulatedExecutor {
    identity: InitiatorIdentity,
    units: Mutex<HashMap<UnitId, LogicalUnit>>,
    faults: Mutex<HashMap<UnitId, ActiveFault>>,
    /// How long SG_IO would wait for a device that never answers.
    timeout: Duration,
    /// Under [`InitiatorIdentity::Connection`]: the peer session each
    /// registering nexus came from, to explain conflicts a one-shot tool
    /// has with its own earlier runs.
    registered_from: Mutex<HashMap<NexusId, i32>>,
    /// Whether that explanation was logged already (it is, once).
    hinted: AtomicBool,
}

impl EmulatedExecutor {
    /// An executor with no logical unit yet (each appears on first use),
    /// one nexus per connection.
    pub fn new() -> EmulatedExecutor {
        EmulatedExecutor::default()
    }

    /// As [`EmulatedExecutor::new`], telling nexuses apart by `identity`.
    pub fn with_identity(identity: InitiatorIdentity) -> EmulatedExecutor {
        EmulatedExecutor {
            identity,
            ..EmulatedExecutor::default()
        }
    }

    /// Makes the units named in `faults` misbehave; `timeout` is how long a
    /// command to a unit that never answers waits before the client gets
    /// BUSY (the SG_IO timeout). A later entry for a unit replaces an earlier.
    pub fn with_faults(
        mut self,
        faults: impl IntoIterator<Item = FaultInjection>,
        timeout: Duration,
    ) -> EmulatedExecutor {
        let map = self.faults.get_mut().unwrap_or_else(|e| e.into_inner());
        for f in faults {
            map.insert(
                f.unit,
                ActiveFault {
                    fault: f.fault,
                    remaining: f.count,
                    shown_to: HashSet::new(),
                },
            );
        }
        self.timeout = timeout;
        self
    }

    /// The fault this command meets, if any, counting it as shown.
    fn fault_for(&self, unit: UnitId, nexus: &NexusId) -> Option<DeviceFault> {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let active = faults.get_mut(&unit)?;
        if active.remaining == Some(0) {
            return None;
        }
        if active.fault.once_per_nexus() && !active.shown_to.insert(nexus.clone()) {
            return None;
        }
        if let Some(n) = active.remaining.as_mut() {
            *n -= 1;
        }
        Some(active.fault)
    }

    /// A copy of the state of the logical unit `unit`, if it was ever used.
    pub fn unit(&self, unit: UnitId) -> Option<LogicalUnit> {
        self.lock().get(&unit).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<UnitId, LogicalUnit>> {
        // A panic while the lock was held cannot leave a unit half-changed
        // in a way later commands could not cope with: every unit is a plain
        // value, and the model's invariants are checked on each command in
        // debug builds. Keep serving rather than fail every later command.
        self.units
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ScsiExecutor for EmulatedExecutor {
    fn execute(&self, device: DeviceFd, command: PrCommand, initiator: &Initiator) -> PrReply {
        let unit = (device.info.dev, device.info.ino);
        let name = device.info;
        // The fd only names the unit: close it now.
        drop(device);
        let nexus = nexus_of(self.identity, initiator);
        if let Some(fault) = self.fault_for(unit, &nexus) {
            tracing::info!(device = %name, %fault, "emulated device fault");
            if fault == DeviceFault::Timeout {
                // Only this command's blocking thread waits: every other
                // connection goes on.
                std::thread::sleep(self.timeout);
            }
            return fault.reply();
        }
        let reply = {
            let mut units = self.lock();
            let lu = units.entry(unit).or_default();
            let reply = lu.execute(&nexus, &command.cdb, &command.data_out);
            // The server's line gives the command and its status; this one
            // the unit as the command left it, which only the emulation knows
            // (the reservation's TYPE code as the audit line gives it; no
            // field when nothing is reserved).
            tracing::debug!(
                device = %name,
                generation = lu.generation(),
                registrations = lu.registrations().len(),
                reservation_type = lu.reservation().map(|r| r.rtype.code()),
                "emulated unit after the command"
            );
            reply
        };
        if self.identity == InitiatorIdentity::Connection
            && self.conflicts_with_own_session(unit, &nexus, &command, &reply, initiator)
            && !self.hinted.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "emulated device: RESERVATION CONFLICT with a key this peer's session registered \
                 on an earlier connection; each connection is its own initiator (as QEMU keeps \
                 one per VM), so a tool that runs one command per process is a new, unregistered \
                 initiator every time: for such tools set initiator = \"session\" in [executor] \
                 (config/emulated.toml does)"
            );
        }
        reply
    }
}

impl EmulatedExecutor {
    /// Under one nexus per connection: remembers which session a
    /// registration came from, and whether `reply` is a RESERVATION
    /// CONFLICT explained by a key the same session registered on another
    /// connection (a tool that runs one command per process is a new
    /// initiator each time).
    fn conflicts_with_own_session(
        &self,
        unit: UnitId,
        nexus: &NexusId,
        command: &PrCommand,
        reply: &PrReply,
        initiator: &Initiator,
    ) -> bool {
        let registers = matches!(
            command.cdb.pr_out_action(),
            Some(PrOutServiceAction::Register | PrOutServiceAction::RegisterAndIgnoreExistingKey)
        );
        let registered = registers && reply.status == ScsiStatus::GOOD;
        if !registered && reply.status != ScsiStatus::RESERVATION_CONFLICT {
            // The common case (PR IN, a GOOD reservation) takes no lock.
            return false;
        }
        let mut registered_from = self
            .registered_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if registered {
            if let Some(session) = session_of(initiator) {
                registered_from.insert(nexus.clone(), session);
            }
            // Only nexuses that still hold a registration are remembered, so
            // the map does not grow with every connection the daemon serves.
            let units = self.lock();
            registered_from.retain(|n, _| units.values().any(|lu| lu.registration(n).is_some()));
            return false;
        }
        let Some(session) = session_of(initiator) else {
            return false;
        };
        self.lock().get(&unit).is_some_and(|lu| {
            lu.registrations()
                .iter()
                .any(|r| r.nexus != *nexus && registered_from.get(&r.nexus) == Some(&session))
        })
    }
}

#[cfg(test)]
mod tests;
