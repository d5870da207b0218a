// SPDX-License-Identifier: GPL-2.0-or-later
//! The SCSI executor port: run one PERSISTENT RESERVE IN/OUT on a device.
//!
//! An executor never fails in the Rust sense: every outcome, including "the
//! ioctl could not run", is a SCSI answer ([`PrReply`]) for the client.

use std::os::fd::OwnedFd;

use crate::domain::command::PrCommand;
use crate::domain::device::DeviceInfo;
use crate::domain::framing::PrReply;
use crate::domain::initiator::Initiator;

/// The client's device fd, owned: dropping it closes it, on every path.
#[derive(Debug)]
pub struct DeviceFd {
    /// The fd itself.
    pub fd: OwnedFd,
    /// What it is.
    pub info: DeviceInfo,
}

/// Runs PR commands on devices.
///
/// Called on a blocking thread, the one that also inspected the fd and will
/// close it: an executor may block (SG_IO, sysfs, a stuck file system) and
/// holds up only the connection whose command it runs.
#[cfg_attr(test, mockall::automock)]
pub trait ScsiExecutor: Send + Sync {
    /// Runs `command` on `device` for `initiator` and returns the answer. The
    /// fd is consumed, so it is closed, on this thread, when the command is
    /// done. A PR IN payload may be longer than the allocation length; the
    /// caller cuts it.
    fn execute(&self, device: DeviceFd, command: PrCommand, initiator: &Initiator) -> PrReply;
}

impl<T: ScsiExecutor + ?Sized> ScsiExecutor for std::sync::Arc<T> {
    fn execute(&self, device: DeviceFd, command: PrCommand, initiator: &Initiator) -> PrReply {
        (**self).execute(device, command, initiator)
    }
}
