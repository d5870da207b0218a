// SPDX-License-Identifier: GPL-2.0-or-later
//! Which way each command reaches a real device: SG_IO or the block layer's
//! PR ioctls, as configured, or (`auto`) SG_IO while the helper holds
//! CAP_SYS_RAWIO and otherwise the ioctls wherever a probe shows the kernel
//! and the device take them. The first command on a device says in the log
//! which way it took and why.
//!
//! Used for the client's own fd and, by the multipath executor, for each
//! path of a map, so that both go the same way.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;

use nix::errno::Errno;

use crate::adapters::pr_ioctl::{self, Support};
use crate::adapters::sg_io;
use crate::config::DeviceInterface;
use crate::domain::command::PrCommand;
use crate::domain::device::DeviceKind;
use crate::domain::framing::PrReply;
use crate::domain::initiator::Initiator;
use crate::domain::pr_ioctl::request::AptplZero;
use crate::domain::sg_io_result::{reply_for_ioctl_failure, IoctlFailure, Origin};
use crate::domain::sg_io_timeout::SgIoTimeout;
use crate::ports::executor::{DeviceFd, ScsiExecutor};

/// The way one command went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// SG_IO.
    SgIo,
    /// The PR ioctls.
    PrIoctl,
}

impl Via {
    /// The name, as `kind` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Via::SgIo => "sg_io",
            Via::PrIoctl => "pr_ioctl",
        }
    }
}

/// How the way is chosen.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// Always this way, for this reason.
    Fixed(Via, &'static str),
    /// Probed per device.
    Probe,
}

/// Devices remembered; past this the table starts afresh (a device then
/// logs its first use again).
const REMEMBERED: usize = 4096;

/// Chooses the way per device and runs commands through it.
#[derive(Debug)]
pub struct InterfaceSelector {
    policy: Policy,
    timeout: SgIoTimeout,
    aptpl_zero: AptplZero,
    /// Per device (major, minor): the way it takes.
    known: Mutex<HashMap<(u32, u32), Via>>,
    /// Devices already explained to be no SCSI device.
    not_scsi: Mutex<HashSet<(u32, u32)>>,
}

impl InterfaceSelector {
    /// The selector for `interface`; `holds_rawio` is whether the helper
    /// will hold CAP_SYS_RAWIO once it serves (decides `auto`).
    pub fn new(
        interface: DeviceInterface,
        holds_rawio: bool,
        timeout: SgIoTimeout,
        aptpl_zero: AptplZero,
    ) -> InterfaceSelector {
        let policy = match interface {
            DeviceInterface::SgIo => Policy::Fixed(Via::SgIo, "configured (kind = \"sg_io\")"),
            DeviceInterface::PrIoctl => {
                Policy::Fixed(Via::PrIoctl, "configured (kind = \"pr_ioctl\")")
            }
            DeviceInterface::Auto if holds_rawio => Policy::Fixed(
                Via::SgIo,
                "auto: the helper holds CAP_SYS_RAWIO, so SG_IO carries every service action",
            ),
            DeviceInterface::Auto => Policy::Probe,
        };
        InterfaceSelector {
            policy,
            timeout,
            aptpl_zero,
            known: Mutex::default(),
            not_scsi: Mutex::default(),
        }
    }

    /// SG_IO always, as the helper always worked.
    pub fn sg_io(timeout: SgIoTimeout) -> InterfaceSelector {
        InterfaceSelector::new(DeviceInterface::SgIo, true, timeout, AptplZero::default())
    }

    /// Runs `command` on `fd`, device `dev` of kind `kind`, blocking: the
    /// answer, where it came from, and the way it went.
    pub fn send(
        &self,
        fd: BorrowedFd<'_>,
        kind: DeviceKind,
        dev: (u32, u32),
        command: &PrCommand,
    ) -> (PrReply, Origin, Via) {
        let via = self.choose(fd, kind, dev);
        let (reply, origin) = match via {
            Via::SgIo if !kind.accepts_sg_io() => {
                tracing::warn!(
                    device = %format_args!("{}:{}", dev.0, dev.1),
                    kind = %kind,
                    "refusing SG_IO on a file that is not a block, sg or bsg device"
                );
                (not_a_device(), Origin::Device)
            }
            Via::SgIo => {
                let (reply, origin, failure) =
                    sg_io::send_pr_command_with_failure(fd, command, self.timeout);
                if kind == DeviceKind::Block && failure.is_some_and(sg_io::means_not_scsi) {
                    self.explain_not_scsi(dev, failure);
                }
                (reply, origin)
            }
            Via::PrIoctl if kind != DeviceKind::Block => {
                tracing::warn!(
                    device = %format_args!("{}:{}", dev.0, dev.1),
                    kind = %kind,
                    "refusing the PR ioctls on a file that is not a block device"
                );
                (not_a_device(), Origin::Device)
            }
            Via::PrIoctl => pr_ioctl::send_pr_command_with_origin(fd, command, self.aptpl_zero),
        };
        (reply, origin, via)
    }

    /// The way for `dev`, logged at its first use.
    fn choose(&self, fd: BorrowedFd<'_>, kind: DeviceKind, dev: (u32, u32)) -> Via {
        if let Some(&via) = self.lock().get(&dev) {
            return via;
        }
        let (via, reason) = match self.policy {
            Policy::Fixed(Via::PrIoctl, reason) if kind == DeviceKind::Block => {
                let support = pr_ioctl::probe(fd);
                if !matches!(support, Support::Supported | Support::Undecided(_)) {
                    tracing::warn!(
                        device = %format_args!("{}:{}", dev.0, dev.1),
                        cause = support.reason(),
                        "the PR ioctls do not work on this device: its commands get ILLEGAL \
                         REQUEST (kind = \"auto\" or \"sg_io\" would use SG_IO)"
                    );
                }
                (Via::PrIoctl, reason)
            }
            Policy::Fixed(via, reason) => (via, reason),
            Policy::Probe if kind != DeviceKind::Block => (
                Via::SgIo,
                "auto: not a block device, and the PR ioctls are the block layer's (SG_IO \
                 without CAP_SYS_RAWIO is refused by the kernel)",
            ),
            Policy::Probe => match pr_ioctl::probe(fd) {
                Support::Supported => (
                    Via::PrIoctl,
                    "auto: no CAP_SYS_RAWIO, and READ RESERVATION through the PR ioctls \
                     reached the device",
                ),
                Support::Undecided(errno) => {
                    tracing::debug!(
                        device = %format_args!("{}:{}", dev.0, dev.1),
                        errno,
                        "auto: the probe failed on the way; the PR ioctls run this command \
                         and the next one probes again"
                    );
                    return Via::PrIoctl;
                }
                other => (Via::SgIo, other.reason()),
            },
        };
        let mut known = self.lock();
        if known.len() >= REMEMBERED {
            known.clear();
        }
        if known.insert(dev, via).is_none() {
            tracing::info!(
                device = %format_args!("{}:{}", dev.0, dev.1),
                executor = via.name(),
                reason,
                "first command on this device"
            );
        }
        via
    }

    /// Says once per device, at INFO, why SG_IO fails on a disk that is
    /// not SCSI (a loop, virtio-blk or NVMe disk) and what to do: without
    /// it, every command only shows an ILLEGAL REQUEST or an aborted
    /// command in the audit trail. Whether this call logged.
    fn explain_not_scsi(&self, dev: (u32, u32), failure: Option<IoctlFailure>) -> bool {
        let mut explained = self.not_scsi.lock().unwrap_or_else(|e| e.into_inner());
        if explained.len() >= REMEMBERED {
            explained.clear();
        }
        if !explained.insert(dev) {
            return false;
        }
        let errno = match failure {
            Some(IoctlFailure::InvalidArgument) => "EINVAL",
            _ => "ENOTTY",
        };
        tracing::info!(
            device = %format_args!("{}:{}", dev.0, dev.1),
            errno = %errno,
            "not a SCSI device: the disk refuses SG_IO (a loop, virtio-blk or NVMe disk takes \
             no SCSI commands), so its PR commands fail; if its driver has PR operations, \
             kind = \"pr_ioctl\" (--executor pr_ioctl) runs them through the block layer"
        );
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u32), Via>> {
        // A poisoned table still maps devices to ways correctly.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a file that is not a device gets: the C helper's answer to a fd
/// SG_IO refuses.
fn not_a_device() -> PrReply {
    reply_for_ioctl_failure(IoctlFailure::Other(Errno::ENOTTY as i32))
}

impl ScsiExecutor for InterfaceSelector {
    fn execute(&self, device: DeviceFd, command: PrCommand, _initiator: &Initiator) -> PrReply {
        let dev = (device.info.major(), device.info.minor());
        self.send(device.fd.as_fd(), device.info.kind, dev, &command)
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::fd_inspector::inspect;
    use crate::domain::cdb::PrCdb;
    use crate::domain::sense::SenseCode;
    use crate::domain::service_action::PrInServiceAction;

    fn read_keys() -> PrCommand {
        PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadKeys, 64),
            data_out: Vec::new(),
        }
    }

    fn selector(interface: DeviceInterface, rawio: bool) -> InterfaceSelector {
        InterfaceSelector::new(interface, rawio, SgIoTimeout::DEFAULT, AptplZero::Persist)
    }

    #[test]
    fn fixed_ways_and_auto_with_rawio_never_probe() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let cases = [
            (DeviceInterface::SgIo, false, Via::SgIo),
            (DeviceInterface::PrIoctl, true, Via::PrIoctl),
            (DeviceInterface::Auto, true, Via::SgIo),
        ];
        for (interface, rawio, via) in cases {
            let s = selector(interface, rawio);
            let (_, _, went) = s.send(null.as_fd(), DeviceKind::Block, (1, 3), &read_keys());
            assert_eq!(went, via, "{interface:?}");
        }
    }

    #[test]
    fn a_block_device_refusing_sg_io_is_explained_once() {
        // /dev/null, taken for a block device, refuses SG_IO with ENOTTY
        // as a virtio-blk disk does.
        let null = std::fs::File::open("/dev/null").unwrap();
        let s = selector(DeviceInterface::SgIo, true);
        for _ in 0..2 {
            let (reply, _, _) = s.send(null.as_fd(), DeviceKind::Block, (1, 3), &read_keys());
            assert_eq!(reply.sense.code(), Some(SenseCode::IO_PROCESS_TERMINATED));
        }
        let explained = s.not_scsi.lock().unwrap();
        assert!(explained.contains(&(1, 3)));
        drop(explained);
        assert!(!s.explain_not_scsi((1, 3), Some(IoctlFailure::InvalidArgument)));
        assert!(s.explain_not_scsi((7, 0), Some(IoctlFailure::InvalidArgument)));
        assert!(sg_io::means_not_scsi(IoctlFailure::InvalidArgument));
        assert!(sg_io::means_not_scsi(IoctlFailure::Other(libc::ENOTTY)));
        assert!(!sg_io::means_not_scsi(IoctlFailure::Other(libc::EPERM)));
        assert!(!sg_io::means_not_scsi(IoctlFailure::ReservationConflict));
    }

    #[test]
    fn auto_without_rawio_probes_and_remembers() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let s = selector(DeviceInterface::Auto, false);
        // /dev/null answers the probe with ENOTTY: no read ioctls, SG_IO.
        let (_, _, via) = s.send(null.as_fd(), DeviceKind::Block, (1, 3), &read_keys());
        assert_eq!(via, Via::SgIo);
        assert_eq!(s.lock().get(&(1, 3)), Some(&Via::SgIo));
        // Not a block device: SG_IO without a probe.
        let (_, _, via) = s.send(null.as_fd(), DeviceKind::ScsiGeneric, (21, 0), &read_keys());
        assert_eq!(via, Via::SgIo);
    }

    #[test]
    fn files_that_are_not_devices_get_the_c_helpers_answer_either_way() {
        for interface in [
            DeviceInterface::SgIo,
            DeviceInterface::PrIoctl,
            DeviceInterface::Auto,
        ] {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            let device = inspect(std::fs::File::open(tmp.path()).unwrap().into());
            let reply =
                selector(interface, false).execute(device, read_keys(), &Initiator::default());
            assert_eq!(
                reply.sense.code(),
                Some(SenseCode::IO_PROCESS_TERMINATED),
                "{interface:?}"
            );
        }
    }
}
