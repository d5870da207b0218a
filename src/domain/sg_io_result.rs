// SPDX-License-Identifier: GPL-2.0-or-later
//! Turning the outcome of an SG_IO ioctl into a reply, in the order and with
//! the codes the C helper uses (`docs/protocol.md`, "How an SG_IO outcome
//! becomes an answer"), with one deliberate difference: host
//! statuses the C helper does not know are not reported as GOOD.

use super::framing::PrReply;
use super::sense::{ScsiStatus, SenseBuffer, SenseCode};

/// Why the ioctl itself failed, classified by errno in the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoctlFailure {
    /// `EDOM`: the kernel's way of saying TASK SET FULL.
    TaskSetFull,
    /// `EBADE`: the kernel's way of saying RESERVATION CONFLICT.
    ReservationConflict,
    /// `EREMOTEIO`, `ENODEV` or `ENOMEM`.
    TargetFailure,
    /// `ENODATA`.
    NoData,
    /// `ENOMEDIUM`.
    NoMedium,
    /// `EINVAL`.
    InvalidArgument,
    /// `ENOSPC`.
    NoSpace,
    /// Anything else (`ENOTTY` for a non-SCSI fd, `EPERM` without
    /// CAP_SYS_RAWIO, ...); the errno is kept for the log.
    Other(i32),
}

/// What SG_IO reported when the ioctl itself succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SgIoCompletion<'a> {
    /// SCSI status from the device.
    pub status: u8,
    /// Linux host (transport) status, `DID_*`.
    pub host_status: u16,
    /// Linux driver status, `DRIVER_*` in the low nibble.
    pub driver_status: u16,
    /// Bytes not transferred.
    pub resid: i32,
    /// Sense written by the device (`sb_len_wr` bytes).
    pub sense: &'a [u8],
}

/// Where an answer came from: the device itself, or the path to it. Multipath
/// routing tries another path only when the path, not the device, failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The device answered (any SCSI status, its sense passed through).
    Device,
    /// The command did not complete on the device: the ioctl failed, the
    /// host (transport) reported an error, or the driver timed out.
    Transport,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Device => "device",
            Origin::Transport => "transport",
        })
    }
}

/// The origin of a failed ioctl. `EDOM` and `EBADE` are the kernel relaying
/// the device's TASK SET FULL and RESERVATION CONFLICT, and `EINVAL` is a bad
/// command, which another path would refuse the same way.
pub fn origin_of_ioctl_failure(failure: IoctlFailure) -> Origin {
    match failure {
        IoctlFailure::TaskSetFull
        | IoctlFailure::ReservationConflict
        | IoctlFailure::InvalidArgument => Origin::Device,
        _ => Origin::Transport,
    }
}

/// The origin of a completed SG_IO: any host status but NEXUS_FAILURE (the
/// kernel's RESERVATION CONFLICT) and a driver timeout are the path's doing.
pub fn origin_of_completion(c: &SgIoCompletion<'_>) -> Origin {
    const DID_NEXUS_FAILURE: u16 = 0x11;
    match c.host_status {
        0 if c.driver_status & 0x0f == DRIVER_TIMEOUT => Origin::Transport,
        0 | DID_NEXUS_FAILURE => Origin::Device,
        _ => Origin::Transport,
    }
}

/// Linux `DRIVER_TIMEOUT`.
const DRIVER_TIMEOUT: u16 = 0x06;
/// Linux `DRIVER_SENSE`: the device returned sense.
const DRIVER_SENSE: u16 = 0x08;

/// Maps a failed ioctl to the reply.
pub fn reply_for_ioctl_failure(failure: IoctlFailure) -> PrReply {
    match failure {
        IoctlFailure::TaskSetFull => PrReply::status_only(ScsiStatus::TASK_SET_FULL),
        IoctlFailure::ReservationConflict => PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
        IoctlFailure::TargetFailure => PrReply::check_condition(SenseCode::INTERNAL_TARGET_FAILURE),
        IoctlFailure::NoData => PrReply::check_condition(SenseCode::READ_ERROR),
        IoctlFailure::NoMedium => PrReply::check_condition(SenseCode::NO_MEDIUM),
        IoctlFailure::InvalidArgument => PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB),
        IoctlFailure::NoSpace => PrReply::check_condition(SenseCode::SPACE_ALLOC_FAILED),
        IoctlFailure::Other(_) => PrReply::check_condition(SenseCode::IO_PROCESS_TERMINATED),
    }
}

/// Maps a completed SG_IO to the reply. `data_in` is the PR IN buffer the
/// device wrote into (empty for PR OUT): the payload is its length minus the
/// residual count.
pub fn reply_for_completion(c: &SgIoCompletion<'_>, mut data_in: Vec<u8>) -> PrReply {
    if c.host_status != 0 {
        return reply_for_host_status(c.host_status);
    }
    if c.driver_status & 0x0f == DRIVER_TIMEOUT {
        return PrReply::status_only(ScsiStatus::BUSY);
    }
    let status = if c.driver_status & 0x0f == DRIVER_SENSE {
        ScsiStatus::CHECK_CONDITION
    } else {
        ScsiStatus(c.status)
    };
    let payload_len = if status == ScsiStatus::GOOD {
        let resid = usize::try_from(c.resid.max(0)).unwrap_or(usize::MAX);
        data_in.len().saturating_sub(resid)
    } else {
        0
    };
    data_in.truncate(payload_len);
    PrReply {
        status,
        sense: SenseBuffer::from_device(c.sense),
        payload: data_in,
    }
}

/// Linux `DID_*` host statuses to replies.
fn reply_for_host_status(host_status: u16) -> PrReply {
    match host_status {
        0x01 => PrReply::check_condition(SenseCode::LUN_NOT_RESPONDING),
        0x02 => PrReply::status_only(ScsiStatus::BUSY),
        0x03 => PrReply::check_condition(SenseCode::COMMAND_TIMEOUT),
        0x04 => PrReply::check_condition(SenseCode::LUN_COMM_FAILURE),
        0x05 => PrReply::check_condition(SenseCode::COMMAND_ABORTED),
        0x08 => PrReply::check_condition(SenseCode::DEVICE_RESET),
        0x0e => PrReply::check_condition(SenseCode::I_T_NEXUS_LOSS),
        0x10 => PrReply::check_condition(SenseCode::INTERNAL_TARGET_FAILURE),
        0x11 => PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
        0x12 => PrReply::check_condition(SenseCode::SPACE_ALLOC_FAILED),
        0x13 => PrReply::check_condition(SenseCode::READ_ERROR),
        // The C helper answers GOOD here: a transport error reported as
        // success. We report the nexus as lost so that the initiator retries.
        _ => PrReply::check_condition(SenseCode::I_T_NEXUS_LOSS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(status: u8, host: u16, driver: u16, resid: i32) -> SgIoCompletion<'static> {
        SgIoCompletion {
            status,
            host_status: host,
            driver_status: driver,
            resid,
            sense: &[],
        }
    }

    #[test]
    fn origins_separate_path_failures_from_device_answers() {
        assert_eq!(
            origin_of_ioctl_failure(IoctlFailure::ReservationConflict),
            Origin::Device
        );
        assert_eq!(
            origin_of_ioctl_failure(IoctlFailure::TargetFailure),
            Origin::Transport
        );
        assert_eq!(
            origin_of_ioctl_failure(IoctlFailure::Other(5)),
            Origin::Transport
        );
        assert_eq!(origin_of_completion(&done(0x18, 0, 0, 0)), Origin::Device);
        assert_eq!(origin_of_completion(&done(2, 0, 0x08, 0)), Origin::Device);
        assert_eq!(
            origin_of_completion(&done(0, 0x0e, 0, 0)),
            Origin::Transport
        );
        assert_eq!(
            origin_of_completion(&done(0, 0x01, 0, 0)),
            Origin::Transport
        );
        assert_eq!(origin_of_completion(&done(0, 0x11, 0, 0)), Origin::Device);
        assert_eq!(
            origin_of_completion(&done(0, 0, 0x06, 0)),
            Origin::Transport
        );
    }

    #[test]
    fn errno_classes_map_as_the_c_helper_does() {
        let cases = [
            (IoctlFailure::TaskSetFull, ScsiStatus::TASK_SET_FULL, None),
            (
                IoctlFailure::ReservationConflict,
                ScsiStatus::RESERVATION_CONFLICT,
                None,
            ),
            (
                IoctlFailure::TargetFailure,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::INTERNAL_TARGET_FAILURE),
            ),
            (
                IoctlFailure::NoData,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::READ_ERROR),
            ),
            (
                IoctlFailure::NoMedium,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::NO_MEDIUM),
            ),
            (
                IoctlFailure::InvalidArgument,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::INVALID_FIELD_IN_CDB),
            ),
            (
                IoctlFailure::NoSpace,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::SPACE_ALLOC_FAILED),
            ),
            (
                IoctlFailure::Other(25),
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::IO_PROCESS_TERMINATED),
            ),
        ];
        for (failure, status, code) in cases {
            let r = reply_for_ioctl_failure(failure);
            assert_eq!(r.status, status, "{failure:?}");
            assert_eq!(r.sense.code(), code, "{failure:?}");
            assert!(r.payload.is_empty());
        }
    }

    #[test]
    fn host_status_wins_over_everything_else() {
        let table = [
            (
                0x01,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::LUN_NOT_RESPONDING),
            ),
            (0x02, ScsiStatus::BUSY, None),
            (
                0x03,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::COMMAND_TIMEOUT),
            ),
            (
                0x04,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::LUN_COMM_FAILURE),
            ),
            (
                0x05,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::COMMAND_ABORTED),
            ),
            (
                0x08,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::DEVICE_RESET),
            ),
            (
                0x0e,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::I_T_NEXUS_LOSS),
            ),
            (
                0x10,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::INTERNAL_TARGET_FAILURE),
            ),
            (0x11, ScsiStatus::RESERVATION_CONFLICT, None),
            (
                0x12,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::SPACE_ALLOC_FAILED),
            ),
            (
                0x13,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::READ_ERROR),
            ),
            // DID_ERROR and DID_SOFT_ERROR: GOOD in the C helper, not here.
            (
                0x07,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::I_T_NEXUS_LOSS),
            ),
            (
                0x0b,
                ScsiStatus::CHECK_CONDITION,
                Some(SenseCode::I_T_NEXUS_LOSS),
            ),
        ];
        for (host, status, code) in table {
            let r = reply_for_completion(&done(0, host, 0x06, 0), vec![0xab; 64]);
            assert_eq!(r.status, status, "host {host:#x}");
            assert_eq!(r.sense.code(), code, "host {host:#x}");
            assert!(r.payload.is_empty());
        }
    }

    #[test]
    fn driver_timeout_is_busy() {
        let r = reply_for_completion(&done(0, 0, 0x06, 0), vec![0xab; 64]);
        assert_eq!(r.status, ScsiStatus::BUSY);
    }

    #[test]
    fn device_status_and_sense_pass_through() {
        let sense = [0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 0];
        let c = SgIoCompletion {
            status: 0x02,
            host_status: 0,
            driver_status: 0x08,
            resid: 0,
            sense: &sense,
        };
        let r = reply_for_completion(&c, vec![0xab; 64]);
        assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(&r.sense.0[..8], &sense);
        assert!(r.payload.is_empty());

        let r = reply_for_completion(&done(0x18, 0, 0, 0), vec![0xab; 64]);
        assert_eq!(r.status, ScsiStatus::RESERVATION_CONFLICT);
    }

    #[test]
    fn good_pr_in_payload_is_allocation_minus_residual() {
        assert_eq!(
            reply_for_completion(&done(0, 0, 0, 0), vec![0xab; 64])
                .payload
                .len(),
            64
        );
        let r = reply_for_completion(&done(0, 0, 0, 56), vec![0xab; 64]);
        assert_eq!(r.payload, vec![0xab; 8]);
        assert_eq!(
            reply_for_completion(&done(0, 0, 0, 64), vec![0xab; 64])
                .payload
                .len(),
            0
        );
        assert_eq!(
            reply_for_completion(&done(0, 0, 0, 100), vec![0xab; 64])
                .payload
                .len(),
            0
        );
        assert_eq!(
            reply_for_completion(&done(0, 0, 0, -5), vec![0xab; 64])
                .payload
                .len(),
            64
        );
        assert_eq!(
            reply_for_completion(&done(0, 0, 0, 0), vec![0xab; 0])
                .payload
                .len(),
            0
        );
    }
}
