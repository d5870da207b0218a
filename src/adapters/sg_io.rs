// SPDX-License-Identifier: GPL-2.0-or-later
//! The Linux SG_IO executor: the one home of the SG_IO ioctl.
//!
//! The ioctl runs on the blocking thread the server gives each command, never
//! on the runtime thread that serves every connection, so a device that takes
//! seconds to answer delays only its own client. Only block devices and sg/bsg character devices reach the
//! ioctl: another driver may give number 0x2285 a different meaning, and this
//! process holds CAP_SYS_RAWIO.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;

use crate::domain::cdb::PrDirection;
use crate::domain::command::PrCommand;
use crate::domain::framing::PrReply;
use crate::domain::initiator::Initiator;
use crate::domain::sense::SENSE_LEN;
use crate::domain::sg_io_result::{
    origin_of_completion, origin_of_ioctl_failure, reply_for_completion, reply_for_ioctl_failure,
    IoctlFailure, Origin, SgIoCompletion,
};
use crate::domain::sg_io_timeout::SgIoTimeout;
use crate::ports::executor::{DeviceFd, ScsiExecutor};

mod bindings {
    //! `struct sg_io_hdr` from `<scsi/sg.h>` and the SG_IO request number.

    /// `SG_DXFER_NONE`.
    pub const SG_DXFER_NONE: i32 = -1;
    /// `SG_DXFER_TO_DEV`.
    pub const SG_DXFER_TO_DEV: i32 = -2;
    /// `SG_DXFER_FROM_DEV`.
    pub const SG_DXFER_FROM_DEV: i32 = -3;

    /// `struct sg_io_hdr`, field for field.
    #[repr(C)]
    #[derive(Debug)]
    pub struct SgIoHdr {
        pub interface_id: i32,
        pub dxfer_direction: i32,
        pub cmd_len: u8,
        pub mx_sb_len: u8,
        pub iovec_count: u16,
        pub dxfer_len: u32,
        pub dxferp: *mut libc::c_void,
        pub cmdp: *const u8,
        pub sbp: *mut u8,
        pub timeout: u32,
        pub flags: u32,
        pub pack_id: i32,
        pub usr_ptr: *mut libc::c_void,
        pub status: u8,
        pub masked_status: u8,
        pub msg_status: u8,
        pub sb_len_wr: u8,
        pub host_status: u16,
        pub driver_status: u16,
        pub resid: i32,
        pub duration: u32,
        pub info: u32,
    }

    // SG_IO is 0x2285, a legacy number not encoded with _IOWR.
    nix::ioctl_readwrite_bad!(sg_io, 0x2285, SgIoHdr);
}

/// Runs one PR command through SG_IO on `fd`, blocking, and turns the outcome
/// into a reply. Shared by every executor that talks to real devices.
pub fn send_pr_command(fd: BorrowedFd<'_>, command: &PrCommand, timeout: SgIoTimeout) -> PrReply {
    send_pr_command_with_origin(fd, command, timeout).0
}

/// As [`send_pr_command`], and also says whether the answer came from the
/// device or from the path: multipath fails over to another path on the latter.
pub fn send_pr_command_with_origin(
    fd: BorrowedFd<'_>,
    command: &PrCommand,
    timeout: SgIoTimeout,
) -> (PrReply, Origin) {
    let (reply, origin, _) = send_pr_command_with_failure(fd, command, timeout);
    (reply, origin)
}

/// As [`send_pr_command_with_origin`], and also why the ioctl itself
/// failed, if it did: EINVAL or ENOTTY on a block device says the disk
/// takes no SCSI commands, which the caller explains once.
pub fn send_pr_command_with_failure(
    fd: BorrowedFd<'_>,
    command: &PrCommand,
    timeout: SgIoTimeout,
) -> (PrReply, Origin, Option<IoctlFailure>) {
    let mut sense = [0u8; SENSE_LEN];
    let (mut data, direction) = match command.cdb.direction() {
        PrDirection::In => (
            vec![0u8; command.cdb.transfer_len()],
            bindings::SG_DXFER_FROM_DEV,
        ),
        PrDirection::Out => (command.data_out.clone(), bindings::SG_DXFER_TO_DEV),
    };
    let direction = if data.is_empty() {
        bindings::SG_DXFER_NONE
    } else {
        direction
    };
    let cdb = command.cdb.command();
    let mut hdr = bindings::SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction: direction,
        cmd_len: cdb.len() as u8,
        mx_sb_len: SENSE_LEN as u8,
        iovec_count: 0,
        dxfer_len: data.len() as u32,
        dxferp: data.as_mut_ptr().cast(),
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout.as_millis(),
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `hdr` is a correctly laid out sg_io_hdr whose pointers refer to
    // `cdb` (cmd_len bytes), `data` (dxfer_len bytes) and `sense` (mx_sb_len
    // bytes), all alive and unaliased until the ioctl returns. The caller
    // checked that `fd` is a block, sg or bsg device, whose drivers define
    // SG_IO with exactly this argument.
    let rc = unsafe { bindings::sg_io(fd.as_raw_fd(), &mut hdr) };
    match rc {
        Err(errno) => {
            tracing::debug!(errno = errno as i32, cause = %errno.desc(), "SG_IO failed");
            let failure = classify_errno(errno);
            (
                reply_for_ioctl_failure(failure),
                origin_of_ioctl_failure(failure),
                Some(failure),
            )
        }
        Ok(_) => {
            let completion = SgIoCompletion {
                status: hdr.status,
                host_status: hdr.host_status,
                driver_status: hdr.driver_status,
                resid: hdr.resid,
                sense: &sense[..usize::from(hdr.sb_len_wr).min(SENSE_LEN)],
            };
            tracing::debug!(
                status = hdr.status,
                host_status = hdr.host_status,
                driver_status = hdr.driver_status,
                resid = hdr.resid,
                "SG_IO completed"
            );
            tracing::trace!(
                sense = %crate::domain::cdb::Hex(completion.sense),
                "SG_IO sense bytes"
            );
            if command.cdb.direction() == PrDirection::Out {
                data = Vec::new();
            }
            let origin = origin_of_completion(&completion);
            (reply_for_completion(&completion, data), origin, None)
        }
    }
}

/// Whether SG_IO failing with `failure` on a block device means the disk is
/// not a SCSI device: a loop device answers the unknown ioctl with EINVAL,
/// virtio-blk and NVMe with ENOTTY, where a SCSI disk runs the command.
pub fn means_not_scsi(failure: IoctlFailure) -> bool {
    matches!(failure, IoctlFailure::InvalidArgument)
        || failure == IoctlFailure::Other(Errno::ENOTTY as i32)
}

/// The errno classes `docs/protocol.md` lists; the PR ioctls' errnos outside
/// their own classes are read the same way.
pub(crate) fn classify_errno(errno: Errno) -> IoctlFailure {
    match errno {
        Errno::EDOM => IoctlFailure::TaskSetFull,
        Errno::EBADE => IoctlFailure::ReservationConflict,
        Errno::EREMOTEIO | Errno::ENODEV | Errno::ENOMEM => IoctlFailure::TargetFailure,
        Errno::ENODATA => IoctlFailure::NoData,
        Errno::ENOMEDIUM => IoctlFailure::NoMedium,
        Errno::EINVAL => IoctlFailure::InvalidArgument,
        Errno::ENOSPC => IoctlFailure::NoSpace,
        other => IoctlFailure::Other(other as i32),
    }
}

/// Executes PR commands on the client's own fd with SG_IO.
#[derive(Debug, Clone)]
pub struct SgIoExecutor {
    timeout: SgIoTimeout,
}

impl SgIoExecutor {
    /// An executor whose commands time out after `timeout`.
    pub fn new(timeout: SgIoTimeout) -> SgIoExecutor {
        SgIoExecutor { timeout }
    }

    /// How long each command may take.
    pub fn timeout(&self) -> SgIoTimeout {
        self.timeout
    }
}

impl Default for SgIoExecutor {
    fn default() -> SgIoExecutor {
        SgIoExecutor::new(SgIoTimeout::DEFAULT)
    }
}

impl ScsiExecutor for SgIoExecutor {
    fn execute(&self, device: DeviceFd, command: PrCommand, _initiator: &Initiator) -> PrReply {
        if !device.info.kind.accepts_sg_io() {
            tracing::warn!(
                device = %device.info,
                kind = %device.info.kind,
                "refusing SG_IO on a file that is not a block, sg or bsg device"
            );
            return reply_for_ioctl_failure(IoctlFailure::Other(Errno::ENOTTY as i32));
        }
        send_pr_command(device.fd.as_fd(), &command, self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::fd_inspector::inspect;
    use crate::domain::cdb::PrCdb;
    use crate::domain::sense::{ScsiStatus, SenseCode};
    use crate::domain::service_action::PrInServiceAction;

    #[test]
    fn sg_io_hdr_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<bindings::SgIoHdr>(), 88);
    }

    #[test]
    fn errno_classes() {
        assert_eq!(classify_errno(Errno::EDOM), IoctlFailure::TaskSetFull);
        assert_eq!(
            classify_errno(Errno::EBADE),
            IoctlFailure::ReservationConflict
        );
        assert_eq!(classify_errno(Errno::ENODEV), IoctlFailure::TargetFailure);
        assert_eq!(
            classify_errno(Errno::ENOTTY),
            IoctlFailure::Other(libc::ENOTTY)
        );
    }

    #[test]
    fn a_regular_file_never_reaches_the_ioctl() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let device = inspect(std::fs::File::open(tmp.path()).unwrap().into());
        let command = PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadKeys, 64),
            data_out: Vec::new(),
        };
        let reply = SgIoExecutor::default().execute(device, command, &Initiator::default());
        assert_eq!(reply.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(reply.sense.code(), Some(SenseCode::IO_PROCESS_TERMINATED));
    }

    #[test]
    fn sg_io_on_dev_null_fails_with_enotty_and_maps_to_io_process_terminated() {
        // /dev/null is a char device whose driver has no SG_IO: the ioctl
        // fails harmlessly, which exercises the real call and the errno path.
        let null = std::fs::File::open("/dev/null").unwrap();
        let command = PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadKeys, 64),
            data_out: Vec::new(),
        };
        let reply = send_pr_command(null.as_fd(), &command, SgIoTimeout::DEFAULT);
        assert_eq!(reply.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(reply.sense.code(), Some(SenseCode::IO_PROCESS_TERMINATED));
    }
}
