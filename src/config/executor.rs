//! The executor that runs the commands, with the parameters only it reads.

use super::FaultEntry;
use crate::domain::reservation::InitiatorIdentity;
use crate::domain::sg_io_timeout::SgIoTimeout;

/// Which executor runs the commands, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorSettings {
    /// SG_IO on the client's device (production).
    SgIo {
        /// How long the kernel waits for the device.
        timeout: SgIoTimeout,
        /// Route commands on dm-multipath maps through every path.
        multipath: bool,
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
