// SPDX-License-Identifier: GPL-2.0-or-later
//! What a PR ioctl returned, as a SCSI answer: status and sense for the
//! return code (as `sg_io_result` does for SG_IO), and PR IN data in SPC-4
//! byte layout built from the ioctl's structures.
//!
//! The return code is 0 (GOOD), a positive `PR_STS_*` (the device's or the
//! path's status, which `sd` reports in place of its sense) or a negative
//! errno. `sd` turns ILLEGAL REQUEST with ASC 24h or 26h into `-EINVAL`, so
//! the precise code is lost: the answer is the closest SPC code.

use crate::domain::framing::PrReply;
use crate::domain::pr_in_data::{Capabilities, ReadReservation, Reservation, PR_IN_HEADER_LEN};
use crate::domain::sense::{ScsiStatus, SenseCode};
use crate::domain::service_action::{ReservationKey, ReservationType};
use crate::domain::sg_io_result::{
    origin_of_ioctl_failure, reply_for_ioctl_failure, IoctlFailure, Origin,
};

use super::pr_type::BlockPrType;
use super::request::IoctlRequest;

/// `PR_STS_IOERR`: the device failed the command (sense not passed on).
pub const PR_STS_IOERR: i32 = 0x2;
/// `PR_STS_RESERVATION_CONFLICT`.
pub const PR_STS_RESERVATION_CONFLICT: i32 = 0x18;
/// `PR_STS_RETRY_PATH_FAILURE`: a path failure that can be retried.
pub const PR_STS_RETRY_PATH_FAILURE: i32 = 0xe0000;
/// `PR_STS_PATH_FAST_FAILED`: failed by the fast-failure timer.
pub const PR_STS_PATH_FAST_FAILED: i32 = 0xf0000;
/// `PR_STS_PATH_FAILED`: the path cannot be reached.
pub const PR_STS_PATH_FAILED: i32 = 0x10000;

/// How the ioctl failed, classified by errno in the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoctlError {
    /// `EINVAL`: the device refused a field (ASC 24h or 26h), or the kernel
    /// an argument.
    InvalidArgument,
    /// `EOPNOTSUPP` or `ENOTTY`: no PR support on this device or kernel.
    NotSupported,
    /// `EPERM` or `EACCES`: a PR OUT on an fd not open for writing, or a
    /// partition.
    NotPermitted,
    /// Anything else, classified as for SG_IO.
    Other(IoctlFailure),
}

/// The answer to a return code other than 0, and where it came from.
pub fn reply_for_failure(request: &IoctlRequest, rc: Result<i32, IoctlError>) -> (PrReply, Origin) {
    match rc {
        Ok(status) => reply_for_status(status),
        Err(IoctlError::InvalidArgument) => (
            PrReply::check_condition(match request {
                // The one ILLEGAL REQUEST a RELEASE with a checked TYPE and
                // SCOPE gets from a device: the type differs from the
                // reservation's.
                IoctlRequest::Release { .. } => {
                    SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION
                }
                _ => SenseCode::INVALID_FIELD_IN_CDB,
            }),
            Origin::Device,
        ),
        Err(IoctlError::NotSupported | IoctlError::NotPermitted) => (
            PrReply::check_condition(SenseCode::INVALID_OPCODE),
            Origin::Device,
        ),
        Err(IoctlError::Other(failure)) => (
            reply_for_ioctl_failure(failure),
            origin_of_ioctl_failure(failure),
        ),
    }
}

/// A positive `PR_STS_*` (0 is GOOD).
fn reply_for_status(status: i32) -> (PrReply, Origin) {
    match status {
        0 => (PrReply::good(Vec::new()), Origin::Device),
        PR_STS_RESERVATION_CONFLICT => (
            PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
            Origin::Device,
        ),
        PR_STS_IOERR => (
            PrReply::check_condition(SenseCode::INTERNAL_TARGET_FAILURE),
            Origin::Device,
        ),
        // DID_TRANSPORT_DISRUPTED, DID_BUS_BUSY: the nexus is gone for now.
        PR_STS_RETRY_PATH_FAILURE | PR_STS_PATH_FAST_FAILED => (
            PrReply::check_condition(SenseCode::I_T_NEXUS_LOSS),
            Origin::Transport,
        ),
        // DID_NO_CONNECT, as SG_IO's host status 01h answers.
        PR_STS_PATH_FAILED => (
            PrReply::check_condition(SenseCode::LUN_NOT_RESPONDING),
            Origin::Transport,
        ),
        _ => (
            PrReply::check_condition(SenseCode::IO_PROCESS_TERMINATED),
            Origin::Transport,
        ),
    }
}

/// READ KEYS data: `total` is the count the device reported (ADDITIONAL
/// LENGTH / 8), `keys` the ones that fit; the caller cuts to the allocation
/// length, and ADDITIONAL LENGTH still tells the full size, as a device's
/// reply does.
pub fn read_keys_data(generation: u32, total: u32, keys: &[u64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(PR_IN_HEADER_LEN + 8 * keys.len());
    b.extend_from_slice(&generation.to_be_bytes());
    b.extend_from_slice(&total.saturating_mul(8).to_be_bytes());
    for k in keys.iter().take(total as usize) {
        b.extend_from_slice(&k.to_be_bytes());
    }
    b
}

/// READ RESERVATION data from `struct pr_read_reservation`; type 0 with key
/// 0 is no reservation. A key with type 0 (a type the kernel cannot name)
/// or an unknown type cannot be told truthfully: `None`.
pub fn read_reservation_data(generation: u32, key: u64, pr_type: BlockPrType) -> Option<Vec<u8>> {
    let reservation = match (pr_type.scsi(), pr_type.0, key) {
        (Some(t), _, _) => Some(Reservation::new(ReservationKey(key), t)),
        (None, 0, 0) => None,
        (None, _, _) => return None,
    };
    Some(
        ReadReservation {
            generation,
            reservation,
        }
        .encode(),
    )
}

/// What this executor can do: the six types, persist-through-power-loss
/// capable and active (`sd` registers with APTPL=1), no SPEC_I_PT, no
/// ALL_TG_PT, no REPLACE LOST RESERVATION, no RESERVE(6)/RELEASE(6)
/// handling.
pub fn capabilities() -> Capabilities {
    Capabilities {
        rlr_c: false,
        crh: false,
        sip_c: false,
        atp_c: false,
        ptpl_c: true,
        tmv: true,
        allow_commands: 0,
        ptpl_a: true,
        type_mask: Capabilities::mask_of(&ReservationType::ALL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pr_in_data::ReadKeys;

    const RESERVE: IoctlRequest = IoctlRequest::Reserve {
        key: 1,
        pr_type: BlockPrType(1),
    };

    fn answer(
        request: IoctlRequest,
        rc: Result<i32, IoctlError>,
    ) -> (u8, Option<SenseCode>, Origin) {
        let (reply, origin) = reply_for_failure(&request, rc);
        assert!(reply.payload.is_empty());
        (reply.status.0, reply.sense.code(), origin)
    }

    #[test]
    fn pr_sts_values_are_the_headers() {
        // <linux/pr.h> of linux-libc-dev 7.2.13-1.
        assert_eq!(PR_STS_IOERR, 0x2);
        assert_eq!(PR_STS_RESERVATION_CONFLICT, 0x18);
        assert_eq!(PR_STS_RETRY_PATH_FAILURE, 0xe0000);
        assert_eq!(PR_STS_PATH_FAST_FAILED, 0xf0000);
        assert_eq!(PR_STS_PATH_FAILED, 0x10000);
    }

    #[test]
    fn statuses_map_to_scsi_answers_and_path_failures_to_transport() {
        let cases = [
            (0, 0x00, None, Origin::Device),
            (0x18, 0x18, None, Origin::Device),
            (
                0x2,
                0x02,
                Some(SenseCode::INTERNAL_TARGET_FAILURE),
                Origin::Device,
            ),
            (
                0xe0000,
                0x02,
                Some(SenseCode::I_T_NEXUS_LOSS),
                Origin::Transport,
            ),
            (
                0xf0000,
                0x02,
                Some(SenseCode::I_T_NEXUS_LOSS),
                Origin::Transport,
            ),
            (
                0x10000,
                0x02,
                Some(SenseCode::LUN_NOT_RESPONDING),
                Origin::Transport,
            ),
            (
                0x7,
                0x02,
                Some(SenseCode::IO_PROCESS_TERMINATED),
                Origin::Transport,
            ),
        ];
        for (sts, status, code, origin) in cases {
            assert_eq!(answer(RESERVE, Ok(sts)), (status, code, origin), "{sts:#x}");
        }
    }

    #[test]
    fn errnos_map_to_illegal_request_or_as_for_sg_io() {
        assert_eq!(
            answer(RESERVE, Err(IoctlError::InvalidArgument)),
            (0x02, Some(SenseCode::INVALID_FIELD_IN_CDB), Origin::Device)
        );
        let release = IoctlRequest::Release {
            key: 1,
            pr_type: BlockPrType(1),
        };
        assert_eq!(
            answer(release, Err(IoctlError::InvalidArgument)),
            (
                0x02,
                Some(SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION),
                Origin::Device
            )
        );
        for e in [IoctlError::NotSupported, IoctlError::NotPermitted] {
            assert_eq!(
                answer(IoctlRequest::ReadReservation, Err(e)),
                (0x02, Some(SenseCode::INVALID_OPCODE), Origin::Device),
                "{e:?}"
            );
        }
        assert_eq!(
            answer(RESERVE, Err(IoctlError::Other(IoctlFailure::TargetFailure))),
            (
                0x02,
                Some(SenseCode::INTERNAL_TARGET_FAILURE),
                Origin::Transport
            )
        );
        assert_eq!(
            answer(RESERVE, Err(IoctlError::Other(IoctlFailure::Other(5)))),
            (
                0x02,
                Some(SenseCode::IO_PROCESS_TERMINATED),
                Origin::Transport
            )
        );
    }

    #[test]
    fn read_keys_data_has_the_spc_layout_and_the_full_length() {
        let b = read_keys_data(7, 2, &[0x1122, 0x3344]);
        assert_eq!(
            b,
            [
                &[0, 0, 0, 7, 0, 0, 0, 16][..],
                &0x1122u64.to_be_bytes(),
                &0x3344u64.to_be_bytes()
            ]
            .concat()
        );
        let decoded = ReadKeys::decode(&b).unwrap();
        assert_eq!(decoded.value.keys.len(), 2);
        // More keys on the device than asked for: the length says so.
        let b = read_keys_data(9, 5, &[1]);
        assert_eq!(&b[..8], &[0, 0, 0, 9, 0, 0, 0, 40]);
        assert_eq!(b.len(), 16);
        // The kernel never hands more than it reported; if it did, they
        // are not shown.
        assert_eq!(read_keys_data(1, 0, &[1, 2]).len(), 8);
    }

    #[test]
    fn an_allocation_length_inside_a_key_gets_its_first_bytes() {
        // Allocation length 12: the ioctl was asked for one key, and the
        // reply is cut inside it, as a device cuts its parameter data.
        let data = read_keys_data(3, 2, &[0x0102_0304_0506_0708]);
        let reply = PrReply::good(data).fit_to(12);
        assert_eq!(reply.payload, [0, 0, 0, 3, 0, 0, 0, 16, 1, 2, 3, 4]);
    }

    #[test]
    fn read_reservation_data_has_the_spc_layout() {
        let b = read_reservation_data(3, 0xabcd, BlockPrType(3)).unwrap();
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..8], &[0, 0, 0, 3, 0, 0, 0, 16]);
        assert_eq!(&b[8..16], &0xabcdu64.to_be_bytes());
        assert_eq!(b[21], 0x05, "LU_SCOPE, Write Exclusive - Registrants Only");
        let none = read_reservation_data(4, 0, BlockPrType(0)).unwrap();
        assert_eq!(none, vec![0, 0, 0, 4, 0, 0, 0, 0]);
        // All Registrants: key zero, type known.
        let all = read_reservation_data(4, 0, BlockPrType(6)).unwrap();
        assert_eq!(all[21], 0x08);
        assert_eq!(read_reservation_data(4, 5, BlockPrType(0)), None);
        assert_eq!(read_reservation_data(4, 0, BlockPrType(9)), None);
    }

    #[test]
    fn capabilities_say_what_the_ioctls_can_do() {
        let b = capabilities().encode();
        // LENGTH 8; PTPL_C; TMV, PTPL_A; WR_EX_AR EX_AC_RO WR_EX_RO EX_AC
        // WR_EX, EX_AC_AR.
        assert_eq!(b, vec![0, 8, 0x01, 0x81, 0xea, 0x01, 0, 0]);
    }
}
