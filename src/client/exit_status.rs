// SPDX-License-Identifier: GPL-2.0-or-later
//! Exit status values: sg3_utils' (`man sg3_utils`, EXIT STATUS), so that a
//! script written for `sg_persist` (a fence agent, a cluster validation
//! script) reads the client's answers the same way. The few outcomes that
//! sg3_utils has no value for (the helper is unreachable, or breaks the
//! protocol) take values sg3_utils leaves unused.

use crate::domain::sense::{ScsiStatus, SenseBuffer, SenseKey};

/// The command completed (GOOD; also a RECOVERED ERROR or NO SENSE, which
/// sg3_utils reports as success).
pub const GOOD: u8 = 0;
/// Command line syntax error: an unknown option, a bad value, no device.
pub const SYNTAX_ERROR: u8 = 1;
/// NOT READY.
pub const NOT_READY: u8 = 2;
/// MEDIUM ERROR, HARDWARE ERROR or BLANK CHECK.
pub const MEDIUM_HARD: u8 = 3;
/// ILLEGAL REQUEST, other than an invalid operation code.
pub const ILLEGAL_REQUEST: u8 = 5;
/// UNIT ATTENTION: the command did not run; running it again usually works.
pub const UNIT_ATTENTION: u8 = 6;
/// DATA PROTECT.
pub const DATA_PROTECT: u8 = 7;
/// ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (the helper's answer to
/// PR OUT on a device opened read-only).
pub const INVALID_OPCODE: u8 = 9;
/// COPY ABORTED.
pub const COPY_ABORTED: u8 = 10;
/// NOT READY, asc/ascq 04h/0Bh: the target port is in standby.
pub const NOT_READY_STANDBY: u8 = 12;
/// NOT READY, asc/ascq 04h/0Ch: the target port is unavailable.
pub const NOT_READY_UNAVAILABLE: u8 = 13;
/// ABORTED COMMAND (other than a protection error).
pub const ABORTED_COMMAND: u8 = 11;
/// MISCOMPARE.
pub const MISCOMPARE: u8 = 14;
/// The device cannot be used: not a block or character device.
pub const FILE_ERROR: u8 = 15;
/// ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.
pub const LBA_OUT_OF_RANGE: u8 = 22;
/// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26h/00h): sg3_utils
/// 1.48 tells it apart from the other ILLEGAL REQUESTs.
pub const INVALID_PARAMETER_LIST: u8 = 19;
/// RESERVATION CONFLICT.
pub const RESERVATION_CONFLICT: u8 = 24;
/// CONDITION MET.
pub const CONDITION_MET: u8 = 25;
/// BUSY.
pub const BUSY: u8 = 26;
/// TASK SET FULL.
pub const TASK_SET_FULL: u8 = 27;
/// ACA ACTIVE.
pub const ACA_ACTIVE: u8 = 28;
/// TASK ABORTED.
pub const TASK_ABORTED: u8 = 29;
/// Options that contradict each other (two service actions, `--in` with
/// `--out`, `--unreg` without `--register-move`, ...).
pub const CONTRADICT: u8 = 31;
/// The helper did not answer within `--timeout` after the request was sent.
pub const TIMEOUT: u8 = 33;
/// Ours: the helper could not be reached (no socket, refused, closed or
/// silent before the request went out). Nothing was sent.
pub const HELPER_UNREACHABLE: u8 = 37;
/// Ours: the helper closed the connection or broke the protocol after the
/// request was sent. A PR OUT may or may not have taken effect.
pub const HELPER_PROTOCOL: u8 = 38;
/// ABORTED COMMAND with a protection information error (asc 10h).
pub const PROTECTION: u8 = 40;
/// The device could not be opened: 50 + errno (50 when errno is 47 or more).
pub const OS_ERROR_BASE: u8 = 50;
/// The PR IN data could not be decoded.
pub const MALFORMED: u8 = 97;
/// CHECK CONDITION with sense that fits no other value.
pub const OTHER_SENSE: u8 = 98;
/// Any other SCSI status.
pub const OTHER: u8 = 99;

/// The exit status for an answer, as sg3_utils categorises it.
pub fn for_reply(status: ScsiStatus, sense: &SenseBuffer) -> u8 {
    match status {
        ScsiStatus::GOOD => GOOD,
        ScsiStatus::CHECK_CONDITION => for_sense(sense),
        ScsiStatus::RESERVATION_CONFLICT => RESERVATION_CONFLICT,
        ScsiStatus::BUSY => BUSY,
        ScsiStatus::TASK_SET_FULL => TASK_SET_FULL,
        ScsiStatus(0x04) => CONDITION_MET,
        ScsiStatus(0x30) => ACA_ACTIVE,
        ScsiStatus(0x40) => TASK_ABORTED,
        _ => OTHER,
    }
}

fn for_sense(sense: &SenseBuffer) -> u8 {
    let Some(code) = sense.code() else {
        return OTHER_SENSE;
    };
    match code.key {
        SenseKey(0x0) | SenseKey(0x1) => GOOD,
        SenseKey::NOT_READY => match (code.asc, code.ascq) {
            (0x04, 0x0b) => NOT_READY_STANDBY,
            (0x04, 0x0c) => NOT_READY_UNAVAILABLE,
            _ => NOT_READY,
        },
        SenseKey::MEDIUM_ERROR | SenseKey::HARDWARE_ERROR | SenseKey(0x8) => MEDIUM_HARD,
        SenseKey::UNIT_ATTENTION => UNIT_ATTENTION,
        SenseKey::ILLEGAL_REQUEST => match (code.asc, code.ascq) {
            (0x20, 0x00) => INVALID_OPCODE,
            (0x21, 0x00) => LBA_OUT_OF_RANGE,
            (0x26, 0x00) => INVALID_PARAMETER_LIST,
            _ => ILLEGAL_REQUEST,
        },
        SenseKey::ABORTED_COMMAND if code.asc == 0x10 => PROTECTION,
        SenseKey::ABORTED_COMMAND => ABORTED_COMMAND,
        SenseKey::DATA_PROTECT => DATA_PROTECT,
        SenseKey(0xa) => COPY_ABORTED,
        SenseKey(0xe) => MISCOMPARE,
        _ => OTHER_SENSE,
    }
}

/// The exit status for an errno from opening the device, as sg3_utils'
/// `sg_convert_errno` gives it.
pub fn for_errno(errno: Option<i32>) -> u8 {
    match errno.and_then(|e| u8::try_from(e).ok()) {
        Some(e) if e > 0 && e < MALFORMED - OS_ERROR_BASE => OS_ERROR_BASE + e,
        _ => OS_ERROR_BASE,
    }
}

/// The table `--help` prints, as `docs/client.md` does.
pub const HELP: &str = "\
Exit status (sg3_utils' values, as sg_persist returns them):
  0   GOOD (also RECOVERED ERROR)
  1   syntax error: unknown option, bad value, no device
  2   NOT READY
  3   MEDIUM ERROR or HARDWARE ERROR
  5   ILLEGAL REQUEST (a bad field in the CDB, an unsupported service action, ...)
  6   UNIT ATTENTION (the command did not run; run it again)
  7   DATA PROTECT
  9   INVALID COMMAND OPERATION CODE (from the helper: PR OUT on a read-only open)
  11  ABORTED COMMAND
  12  NOT READY, target port in standby
  13  NOT READY, target port unavailable
  15  DEVICE is not a block or character device (see --emulated)
  19  ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST
  24  RESERVATION CONFLICT
  26  BUSY
  27  TASK SET FULL
  31  contradicting options (two service actions, --in with --out, ...)
  33  no answer within --timeout after the request was sent
  37  helper unreachable: no socket, refused, or closed before the request was
      sent; nothing was sent (qemu-pr-client only)
  38  the helper closed the connection or broke the protocol after the request
      was sent: a PR OUT may or may not have taken effect (qemu-pr-client only)
  50+ the device could not be opened: 50 + errno (52 no such file, 63 permission
      denied)
  97  the PR IN data could not be decoded
  98  CHECK CONDITION with other or unrecognisable sense
  99  other SCSI status
  Others as in sg3_utils(8): 10 COPY ABORTED, 14 MISCOMPARE, 22 LBA OUT OF RANGE,
  25 CONDITION MET, 28 ACA ACTIVE, 29 TASK ABORTED, 40 protection error.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sense::SenseCode;

    fn cc(code: SenseCode) -> u8 {
        for_reply(ScsiStatus::CHECK_CONDITION, &SenseBuffer::fixed(code))
    }

    #[test]
    fn statuses_as_sg3_utils() {
        let none = SenseBuffer::empty();
        assert_eq!(for_reply(ScsiStatus::GOOD, &none), 0);
        assert_eq!(for_reply(ScsiStatus::RESERVATION_CONFLICT, &none), 24);
        assert_eq!(for_reply(ScsiStatus::BUSY, &none), 26);
        assert_eq!(for_reply(ScsiStatus::TASK_SET_FULL, &none), 27);
        assert_eq!(for_reply(ScsiStatus(0x40), &none), 29);
        assert_eq!(for_reply(ScsiStatus(0x22), &none), 99);
        assert_eq!(for_reply(ScsiStatus::CHECK_CONDITION, &none), 98);
    }

    #[test]
    fn sense_keys_as_sg3_utils() {
        assert_eq!(cc(SenseCode::LUN_NOT_READY), 2);
        assert_eq!(cc(SenseCode::READ_ERROR), 3);
        assert_eq!(cc(SenseCode::INTERNAL_TARGET_FAILURE), 3);
        assert_eq!(cc(SenseCode::INVALID_FIELD_IN_CDB), 5);
        assert_eq!(cc(SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION), 5);
        assert_eq!(cc(SenseCode::DEVICE_RESET), 6);
        assert_eq!(cc(SenseCode::REGISTRATIONS_PREEMPTED), 6);
        assert_eq!(cc(SenseCode::SPACE_ALLOC_FAILED), 7);
        assert_eq!(cc(SenseCode::INVALID_OPCODE), 9);
        assert_eq!(cc(SenseCode::IO_PROCESS_TERMINATED), 11);
        let mut pi = SenseBuffer::fixed(SenseCode::COMMAND_ABORTED);
        pi.0[12] = 0x10;
        assert_eq!(for_reply(ScsiStatus::CHECK_CONDITION, &pi), 40);
        let mut recovered = SenseBuffer::fixed(SenseCode::COMMAND_ABORTED);
        recovered.0[2] = 0x1;
        assert_eq!(for_reply(ScsiStatus::CHECK_CONDITION, &recovered), 0);
        // sg3_utils 1.48 tells these apart by asc/ascq.
        assert_eq!(cc(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST), 19);
        let not_ready = |ascq| {
            let mut s = SenseBuffer::fixed(SenseCode::LUN_NOT_READY);
            s.0[13] = ascq;
            for_reply(ScsiStatus::CHECK_CONDITION, &s)
        };
        assert_eq!(
            (not_ready(0x0b), not_ready(0x0c), not_ready(0x01)),
            (12, 13, 2)
        );
        // Descriptor format (72h) reads the same.
        let d = SenseBuffer::from_device(&[0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 0]);
        assert_eq!(for_reply(ScsiStatus::CHECK_CONDITION, &d), 6);
    }

    #[test]
    fn errno_as_sg_convert_errno() {
        assert_eq!(for_errno(Some(libc::ENOENT)), 52);
        assert_eq!(for_errno(Some(libc::EACCES)), 63);
        assert_eq!(for_errno(Some(46)), 96);
        assert_eq!(for_errno(Some(47)), 50);
        assert_eq!(for_errno(None), 50);
    }

    #[test]
    fn our_values_are_holes_in_sg3_utils() {
        // sg3_utils 1.47 defines 35, 36, 40, 41, 47 ... but nothing at 37 or 38.
        for ours in [HELPER_UNREACHABLE, HELPER_PROTOCOL] {
            assert!(!matches!(ours, 0..=36 | 40 | 41 | 47..=99));
        }
    }
}
