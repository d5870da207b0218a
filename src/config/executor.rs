// SPDX-License-Identifier: GPL-2.0-or-later
//! The executor that runs the commands, with the parameters only it reads.

use super::FaultEntry;
use crate::domain::pr_ioctl::request::AptplZero;
use crate::domain::reservation::InitiatorIdentity;
use crate::domain::sg_io_timeout::SgIoTimeout;

/// Which executor runs the commands, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorSettings {
    /// The client's real device (production), through SG_IO or the PR
    /// ioctls.
    Device {
        /// SG_IO, the PR ioctls, or each where it works.
        interface: DeviceInterface,
        /// How long the kernel waits for the device (SG_IO).
        timeout: SgIoTimeout,
        /// Route commands on dm-multipath maps through every path.
        multipath: bool,
        /// What a REGISTER with APTPL=0 gets through the PR ioctls.
        aptpl_zero: AptplZero,
    },
    /// The in-memory SPC-4 device: no real device is touched.
    Emulated {
        /// What one I_T nexus is.
        initiator: InitiatorIdentity,
        /// Units that misbehave.
        faults: Vec<FaultEntry>,
        /// How long a unit that never answers makes a command wait, as
        /// SG_IO would.
        timeout: SgIoTimeout,
    },
}

/// How commands reach a real device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceInterface {
    /// SG_IO: every service action, but only with CAP_SYS_RAWIO.
    SgIo,
    /// The block layer's PR ioctls: no capability at all (CAP_SYS_RAWIO is
    /// dropped even when started as root), fewer service actions.
    PrIoctl,
    /// SG_IO while the helper holds CAP_SYS_RAWIO; without it, the PR
    /// ioctls on every device whose kernel and driver take them.
    Auto,
}

impl DeviceInterface {
    /// The name as `kind` and `--executor` spell it.
    pub fn name(self) -> &'static str {
        match self {
            DeviceInterface::SgIo => "sg_io",
            DeviceInterface::PrIoctl => "pr_ioctl",
            DeviceInterface::Auto => "auto",
        }
    }
}
