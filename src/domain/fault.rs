// SPDX-License-Identifier: GPL-2.0-or-later
//! Device faults the emulated device can be told to show, as data: each is
//! what SG_IO would report for a real device in trouble, and its answer comes
//! from [`super::sg_io_result`], so the emulator exercises the same mapping
//! as real devices do.

use std::fmt;
use std::str::FromStr;

use super::framing::PrReply;
use super::sense::{SenseBuffer, SenseCode};
use super::sg_io_result::{
    reply_for_completion, reply_for_ioctl_failure, IoctlFailure, SgIoCompletion,
};

/// Linux `EIO`, the errno of a plain I/O failure.
const EIO: i32 = 5;
/// SCSI status CHECK CONDITION, as the device reports it.
const CHECK_CONDITION: u8 = 0x02;
/// Linux `DRIVER_SENSE`: the device returned sense.
const DRIVER_SENSE: u16 = 0x08;
/// Linux `DRIVER_TIMEOUT`: the command never completed.
const DRIVER_TIMEOUT: u16 = 0x06;

/// One way a logical unit can misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFault {
    /// The ioctl fails with this errno class (`"eio"`, `"task_set_full"`, ...).
    Ioctl(IoctlFailure),
    /// SG_IO completes with this Linux host status (`"host_status:0x0e"`).
    HostStatus(u16),
    /// The device never answers: SG_IO gives up after its timeout with
    /// DRIVER_TIMEOUT (`"timeout"`). The caller does the waiting.
    Timeout,
    /// CHECK CONDITION, UNIT ATTENTION / POWER ON, RESET, once per I_T nexus
    /// (`"unit_attention"`), as after a reset of the logical unit.
    UnitAttention,
    /// CHECK CONDITION, NOT READY / LOGICAL UNIT NOT READY (`"not_ready"`).
    NotReady,
}

impl DeviceFault {
    /// The answer the client gets, mapped as an SG_IO outcome would be.
    pub fn reply(self) -> PrReply {
        let device_sense = |code| SenseBuffer::fixed(code).0;
        let completion = |status, host_status, driver_status, sense: &[u8]| {
            reply_for_completion(
                &SgIoCompletion {
                    status,
                    host_status,
                    driver_status,
                    resid: 0,
                    sense,
                },
                Vec::new(),
            )
        };
        match self {
            DeviceFault::Ioctl(failure) => reply_for_ioctl_failure(failure),
            DeviceFault::HostStatus(host) => completion(0, host, 0, &[]),
            DeviceFault::Timeout => completion(0, 0, DRIVER_TIMEOUT, &[]),
            DeviceFault::UnitAttention => completion(
                CHECK_CONDITION,
                0,
                DRIVER_SENSE,
                &device_sense(SenseCode::DEVICE_RESET),
            ),
            DeviceFault::NotReady => completion(
                CHECK_CONDITION,
                0,
                DRIVER_SENSE,
                &device_sense(SenseCode::LUN_NOT_READY),
            ),
        }
    }

    /// Whether the fault shows once per I_T nexus, then the unit behaves
    /// (a unit attention is cleared by being reported).
    pub fn once_per_nexus(self) -> bool {
        self == DeviceFault::UnitAttention
    }

    /// The names [`DeviceFault::from_str`] accepts, for error messages.
    pub const NAMES: &'static str = "eio, timeout, unit_attention, not_ready, \
        task_set_full, reservation_conflict_errno, target_failure, medium_error, \
        no_medium, no_space, host_status:0xNN";
}

/// Why a fault name was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device fault {name:?} (known: {known})", known = DeviceFault::NAMES)]
pub struct UnknownFault {
    /// The name as given.
    pub name: String,
}

impl FromStr for DeviceFault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<DeviceFault, UnknownFault> {
        let fault = match s {
            "eio" => DeviceFault::Ioctl(IoctlFailure::Other(EIO)),
            "timeout" => DeviceFault::Timeout,
            "unit_attention" => DeviceFault::UnitAttention,
            "not_ready" => DeviceFault::NotReady,
            "task_set_full" => DeviceFault::Ioctl(IoctlFailure::TaskSetFull),
            "reservation_conflict_errno" => DeviceFault::Ioctl(IoctlFailure::ReservationConflict),
            "target_failure" => DeviceFault::Ioctl(IoctlFailure::TargetFailure),
            "medium_error" => DeviceFault::Ioctl(IoctlFailure::NoData),
            "no_medium" => DeviceFault::Ioctl(IoctlFailure::NoMedium),
            "no_space" => DeviceFault::Ioctl(IoctlFailure::NoSpace),
            other => {
                let host = other
                    .strip_prefix("host_status:")
                    .and_then(|n| match n.strip_prefix("0x") {
                        Some(hex) => u16::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    })
                    .filter(|&h| h != 0);
                match host {
                    Some(h) => DeviceFault::HostStatus(h),
                    None => {
                        return Err(UnknownFault {
                            name: s.to_string(),
                        })
                    }
                }
            }
        };
        Ok(fault)
    }
}

impl fmt::Display for DeviceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceFault::Ioctl(failure) => match failure {
                IoctlFailure::Other(EIO) => f.write_str("eio"),
                IoctlFailure::Other(errno) => write!(f, "errno {errno}"),
                IoctlFailure::TaskSetFull => f.write_str("task_set_full"),
                IoctlFailure::ReservationConflict => f.write_str("reservation_conflict_errno"),
                IoctlFailure::TargetFailure => f.write_str("target_failure"),
                IoctlFailure::NoData => f.write_str("medium_error"),
                IoctlFailure::NoMedium => f.write_str("no_medium"),
                IoctlFailure::NoSpace => f.write_str("no_space"),
                IoctlFailure::InvalidArgument => f.write_str("errno EINVAL"),
            },
            DeviceFault::HostStatus(h) => write!(f, "host_status:{h:#04x}"),
            DeviceFault::Timeout => f.write_str("timeout"),
            DeviceFault::UnitAttention => f.write_str("unit_attention"),
            DeviceFault::NotReady => f.write_str("not_ready"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sense::ScsiStatus;

    fn answer(name: &str) -> (ScsiStatus, Option<SenseCode>) {
        let r = name.parse::<DeviceFault>().unwrap().reply();
        assert!(r.payload.is_empty(), "{name}");
        (r.status, r.sense.code())
    }

    #[test]
    fn each_fault_answers_as_protocol_md_prescribes() {
        let cc = ScsiStatus::CHECK_CONDITION;
        assert_eq!(answer("eio"), (cc, Some(SenseCode::IO_PROCESS_TERMINATED)));
        assert_eq!(answer("timeout"), (ScsiStatus::BUSY, None));
        assert_eq!(
            answer("unit_attention"),
            (cc, Some(SenseCode::DEVICE_RESET))
        );
        assert_eq!(answer("not_ready"), (cc, Some(SenseCode::LUN_NOT_READY)));
        assert_eq!(answer("task_set_full"), (ScsiStatus::TASK_SET_FULL, None));
        assert_eq!(
            answer("reservation_conflict_errno"),
            (ScsiStatus::RESERVATION_CONFLICT, None)
        );
        assert_eq!(
            answer("target_failure"),
            (cc, Some(SenseCode::INTERNAL_TARGET_FAILURE))
        );
        assert_eq!(answer("medium_error"), (cc, Some(SenseCode::READ_ERROR)));
        assert_eq!(answer("no_medium"), (cc, Some(SenseCode::NO_MEDIUM)));
        assert_eq!(
            answer("no_space"),
            (cc, Some(SenseCode::SPACE_ALLOC_FAILED))
        );
        assert_eq!(
            answer("host_status:0x0e"),
            (cc, Some(SenseCode::I_T_NEXUS_LOSS))
        );
        assert_eq!(answer("host_status:2"), (ScsiStatus::BUSY, None));
    }

    #[test]
    fn unknown_names_are_refused_with_the_known_ones() {
        for bad in ["EIO", "", "host_status:0", "host_status:0xzz", "slow"] {
            let e = bad.parse::<DeviceFault>().unwrap_err();
            assert!(e.to_string().contains("unit_attention"), "{e}");
        }
    }

    #[test]
    fn names_round_trip_for_the_log() {
        let names = DeviceFault::NAMES.replace("0xNN", "0x0e");
        for name in names.split(", ") {
            assert_eq!(name.parse::<DeviceFault>().unwrap().to_string(), name);
        }
        assert!(DeviceFault::UnitAttention.once_per_nexus());
        assert!(!DeviceFault::NotReady.once_per_nexus());
    }
}
