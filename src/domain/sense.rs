// SPDX-License-Identifier: GPL-2.0-or-later
//! SCSI status codes and sense data: the vocabulary every answer is written in.
//!
//! The helper builds fixed-format sense (response code 70h) for the errors it
//! detects itself; sense written by a device is carried through untouched as a
//! [`SenseBuffer`].

use std::fmt;

/// Length of the sense area in every reply on the wire.
pub const SENSE_LEN: usize = 96;

/// SCSI status byte (SAM-5), as sent in the first word of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    /// The command completed.
    pub const GOOD: ScsiStatus = ScsiStatus(0x00);
    /// Sense data describes why the command failed.
    pub const CHECK_CONDITION: ScsiStatus = ScsiStatus(0x02);
    /// The logical unit is busy; the command may be retried.
    pub const BUSY: ScsiStatus = ScsiStatus(0x08);
    /// A persistent (or SPC-2) reservation forbids the command.
    pub const RESERVATION_CONFLICT: ScsiStatus = ScsiStatus(0x18);
    /// The task set is full; the command may be retried.
    pub const TASK_SET_FULL: ScsiStatus = ScsiStatus(0x28);

    /// Human name, for logs and the client's output.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "GOOD",
            0x02 => "CHECK CONDITION",
            0x04 => "CONDITION MET",
            0x08 => "BUSY",
            0x18 => "RESERVATION CONFLICT",
            0x28 => "TASK SET FULL",
            0x30 => "ACA ACTIVE",
            0x40 => "TASK ABORTED",
            _ => "UNKNOWN STATUS",
        }
    }
}

impl fmt::Display for ScsiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:02x}h)", self.name(), self.0)
    }
}

/// Sense key (SPC-4 table 48): the class of a CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseKey(pub u8);

impl SenseKey {
    /// No sense key.
    pub const NO_SENSE: SenseKey = SenseKey(0x0);
    /// The logical unit cannot be accessed now.
    pub const NOT_READY: SenseKey = SenseKey(0x2);
    /// Unrecovered medium error.
    pub const MEDIUM_ERROR: SenseKey = SenseKey(0x3);
    /// Non-recoverable hardware failure.
    pub const HARDWARE_ERROR: SenseKey = SenseKey(0x4);
    /// The CDB or parameter list is wrong.
    pub const ILLEGAL_REQUEST: SenseKey = SenseKey(0x5);
    /// Something changed on the logical unit (reset, preemption, ...).
    pub const UNIT_ATTENTION: SenseKey = SenseKey(0x6);
    /// Writes are forbidden.
    pub const DATA_PROTECT: SenseKey = SenseKey(0x7);
    /// The command was aborted; retrying may succeed.
    pub const ABORTED_COMMAND: SenseKey = SenseKey(0xb);

    /// Human name, for logs and the client's output.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x0 => "NO SENSE",
            0x1 => "RECOVERED ERROR",
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0x8 => "BLANK CHECK",
            0x9 => "VENDOR SPECIFIC",
            0xa => "COPY ABORTED",
            0xb => "ABORTED COMMAND",
            0xd => "VOLUME OVERFLOW",
            0xe => "MISCOMPARE",
            _ => "RESERVED",
        }
    }
}

/// A sense key with its additional sense code and qualifier: one row of the
/// tables in `docs/protocol.md` and `docs/scsi-pr.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseCode {
    /// The sense key.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
}

impl SenseCode {
    const fn new(key: u8, asc: u8, ascq: u8) -> SenseCode {
        SenseCode {
            key: SenseKey(key),
            asc,
            ascq,
        }
    }

    /// The standard name of this code, when it is one the helper, the
    /// emulated device or a PR-capable device commonly uses.
    pub fn name(self) -> Option<&'static str> {
        SenseCode::NAMED
            .iter()
            .find(|(c, _)| *c == self)
            .map(|&(_, n)| n)
    }
}

/// Declares each named sense code once: the constant and its entry in the
/// table [`SenseCode::name`] reads, so that the two cannot drift apart.
macro_rules! named_sense_codes {
    ($($(#[$doc:meta])* $id:ident = ($key:literal, $asc:literal, $ascq:literal) $name:literal;)*) => {
        impl SenseCode {
            $($(#[$doc])* pub const $id: SenseCode = SenseCode::new($key, $asc, $ascq);)*

            const NAMED: &'static [(SenseCode, &'static str)] = &[$((SenseCode::$id, $name),)*];
        }
    };
}

named_sense_codes! {
    /// ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (20h/00h).
    INVALID_OPCODE = (0x5, 0x20, 0x00) "INVALID COMMAND OPERATION CODE";
    /// ILLEGAL REQUEST / INVALID FIELD IN CDB (24h/00h).
    INVALID_FIELD_IN_CDB = (0x5, 0x24, 0x00) "INVALID FIELD IN CDB";
    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST (26h/00h).
    INVALID_FIELD_IN_PARAMETER_LIST = (0x5, 0x26, 0x00) "INVALID FIELD IN PARAMETER LIST";
    /// ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR (1Ah/00h).
    PARAMETER_LIST_LENGTH_ERROR = (0x5, 0x1a, 0x00) "PARAMETER LIST LENGTH ERROR";
    /// ILLEGAL REQUEST / INVALID RELEASE OF PERSISTENT RESERVATION (26h/04h).
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = (0x5, 0x26, 0x04)
        "INVALID RELEASE OF PERSISTENT RESERVATION";
    /// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED (25h/00h).
    LOGICAL_UNIT_NOT_SUPPORTED = (0x5, 0x25, 0x00) "LOGICAL UNIT NOT SUPPORTED";
    /// ILLEGAL REQUEST / INSUFFICIENT REGISTRATION RESOURCES (55h/04h).
    INSUFFICIENT_REGISTRATION_RESOURCES = (0x5, 0x55, 0x04) "INSUFFICIENT REGISTRATION RESOURCES";
    /// ABORTED COMMAND / I/O PROCESS TERMINATED (00h/06h).
    IO_PROCESS_TERMINATED = (0xb, 0x00, 0x06) "I/O PROCESS TERMINATED";
    /// ABORTED COMMAND / I_T NEXUS LOSS OCCURRED (29h/07h).
    I_T_NEXUS_LOSS = (0xb, 0x29, 0x07) "I_T NEXUS LOSS OCCURRED";
    /// ABORTED COMMAND / LOGICAL UNIT COMMUNICATION FAILURE (08h/00h).
    LUN_COMM_FAILURE = (0xb, 0x08, 0x00) "LOGICAL UNIT COMMUNICATION FAILURE";
    /// ABORTED COMMAND / COMMAND TIMEOUT DURING PROCESSING (2Eh/02h).
    COMMAND_TIMEOUT = (0xb, 0x2e, 0x02) "COMMAND TIMEOUT DURING PROCESSING";
    /// ABORTED COMMAND with no additional sense (00h/00h).
    COMMAND_ABORTED = (0xb, 0x00, 0x00) "NO ADDITIONAL SENSE INFORMATION";
    /// HARDWARE ERROR / INTERNAL TARGET FAILURE (44h/00h).
    INTERNAL_TARGET_FAILURE = (0x4, 0x44, 0x00) "INTERNAL TARGET FAILURE";
    /// NOT READY / LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE (04h/00h).
    LUN_NOT_READY = (0x2, 0x04, 0x00) "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE";
    /// NOT READY / LOGICAL UNIT NOT RESPONDING TO SELECTION (05h/00h).
    LUN_NOT_RESPONDING = (0x2, 0x05, 0x00) "LOGICAL UNIT NOT RESPONDING TO SELECTION";
    /// NOT READY / MEDIUM NOT PRESENT (3Ah/00h).
    NO_MEDIUM = (0x2, 0x3a, 0x00) "MEDIUM NOT PRESENT";
    /// MEDIUM ERROR / UNRECOVERED READ ERROR (11h/00h).
    READ_ERROR = (0x3, 0x11, 0x00) "UNRECOVERED READ ERROR";
    /// UNIT ATTENTION / POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h).
    DEVICE_RESET = (0x6, 0x29, 0x00) "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED";
    /// UNIT ATTENTION / SCSI BUS RESET OCCURRED (29h/02h).
    SCSI_BUS_RESET = (0x6, 0x29, 0x02) "SCSI BUS RESET OCCURRED";
    /// UNIT ATTENTION / RESERVATIONS PREEMPTED (2Ah/03h).
    RESERVATIONS_PREEMPTED = (0x6, 0x2a, 0x03) "RESERVATIONS PREEMPTED";
    /// UNIT ATTENTION / RESERVATIONS RELEASED (2Ah/04h).
    RESERVATIONS_RELEASED = (0x6, 0x2a, 0x04) "RESERVATIONS RELEASED";
    /// UNIT ATTENTION / REGISTRATIONS PREEMPTED (2Ah/05h).
    REGISTRATIONS_PREEMPTED = (0x6, 0x2a, 0x05) "REGISTRATIONS PREEMPTED";
    /// DATA PROTECT / SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h).
    SPACE_ALLOC_FAILED = (0x7, 0x27, 0x07) "SPACE ALLOCATION FAILED WRITE PROTECT";
}

impl fmt::Display for SenseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:x}h) asc/ascq {:02x}h/{:02x}h",
            self.key.name(),
            self.key.0,
            self.asc,
            self.ascq
        )
    }
}

/// Where the field an ILLEGAL REQUEST refuses lies (SPC-4 4.5.2.4.2): the
/// sense-key specific bytes that tell the client what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// C/D: the field is in the CDB (true) or in the parameter list.
    pub in_cdb: bool,
    /// FIELD POINTER: the byte the field starts at.
    pub byte: u16,
    /// BIT POINTER: the field's most significant bit, when it is not the
    /// whole byte.
    pub bit: Option<u8>,
}

impl FieldPointer {
    /// A field of the CDB.
    pub const fn cdb(byte: u16, bit: Option<u8>) -> FieldPointer {
        FieldPointer {
            in_cdb: true,
            byte,
            bit,
        }
    }

    /// A field of the parameter list.
    pub const fn param(byte: u16, bit: Option<u8>) -> FieldPointer {
        FieldPointer {
            in_cdb: false,
            byte,
            bit,
        }
    }
}

/// The 96-byte sense area of a reply, exactly as it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct SenseBuffer(pub [u8; SENSE_LEN]);

impl SenseBuffer {
    /// All zeroes: what accompanies a status other than CHECK CONDITION.
    pub const fn empty() -> SenseBuffer {
        SenseBuffer([0; SENSE_LEN])
    }

    /// Fixed-format current sense (70h) for a code the helper detected itself.
    pub fn fixed(code: SenseCode) -> SenseBuffer {
        let mut b = [0u8; SENSE_LEN];
        b[0] = 0x70;
        b[2] = code.key.0;
        b[7] = 10;
        b[12] = code.asc;
        b[13] = code.ascq;
        SenseBuffer(b)
    }

    /// Fixed-format sense for an ILLEGAL REQUEST whose SENSE KEY SPECIFIC
    /// bytes (15..17) point at the field that caused it, as a device does
    /// when it refuses a field it does not support: the client learns which
    /// byte (and bit) to change, not just that something was wrong.
    pub fn fixed_with_pointer(code: SenseCode, pointer: FieldPointer) -> SenseBuffer {
        let mut sense = SenseBuffer::fixed(code);
        let b = &mut sense.0;
        b[15] = 0x80 | if pointer.in_cdb { 0x40 } else { 0 };
        if let Some(bit) = pointer.bit {
            b[15] |= 0x08 | (bit & 0x07);
        }
        b[16..18].copy_from_slice(&pointer.byte.to_be_bytes());
        sense
    }

    /// Sense written by a device: copied as is, cut or zero-filled to 96 bytes.
    pub fn from_device(bytes: &[u8]) -> SenseBuffer {
        let mut b = [0u8; SENSE_LEN];
        let n = bytes.len().min(SENSE_LEN);
        b[..n].copy_from_slice(&bytes[..n]);
        SenseBuffer(b)
    }

    /// The sense key and codes, in fixed (70h/71h) or descriptor (72h/73h)
    /// format; `None` when the buffer holds no recognisable sense.
    pub fn code(&self) -> Option<SenseCode> {
        let b = &self.0;
        match b[0] & 0x7f {
            0x70 | 0x71 => Some(SenseCode {
                key: SenseKey(b[2] & 0x0f),
                asc: b[12],
                ascq: b[13],
            }),
            0x72 | 0x73 => Some(SenseCode {
                key: SenseKey(b[1] & 0x0f),
                asc: b[2],
                ascq: b[3],
            }),
            _ => None,
        }
    }
}

impl fmt::Debug for SenseBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            Some(code) => write!(f, "SenseBuffer({code})"),
            None if self.0.iter().all(|&b| b == 0) => write!(f, "SenseBuffer(empty)"),
            None => write!(f, "SenseBuffer(unrecognised {:02x?})", &self.0[..18]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sense_puts_key_and_codes_where_protocol_md_says() {
        let s = SenseBuffer::fixed(SenseCode::INVALID_OPCODE);
        assert_eq!(s.0[0], 0x70);
        assert_eq!(s.0[2], 0x05);
        assert_eq!(s.0[7], 10);
        assert_eq!(s.0[12], 0x20);
        assert_eq!(s.0[13], 0x00);
        assert!(s.0[14..].iter().all(|&b| b == 0));
        assert!(s.0[1] == 0 && s.0[3..7].iter().all(|&b| b == 0));
        assert_eq!(s.code(), Some(SenseCode::INVALID_OPCODE));
    }

    #[test]
    fn device_sense_is_kept_byte_for_byte_and_cut_at_96() {
        let long: Vec<u8> = (0..200u8).collect();
        let s = SenseBuffer::from_device(&long);
        assert_eq!(&s.0[..], &long[..96]);
        let short = [0x72, 0x06, 0x2a, 0x03];
        let s = SenseBuffer::from_device(&short);
        assert_eq!(&s.0[..4], &short);
        assert!(s.0[4..].iter().all(|&b| b == 0));
        assert_eq!(s.code(), Some(SenseCode::RESERVATIONS_PREEMPTED));
    }

    #[test]
    fn every_named_code_is_unique_and_the_release_error_has_its_name() {
        for (i, (a, _)) in SenseCode::NAMED.iter().enumerate() {
            assert!(SenseCode::NAMED[i + 1..].iter().all(|(b, _)| a != b), "{a}");
        }
        assert_eq!(
            SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION.name(),
            Some("INVALID RELEASE OF PERSISTENT RESERVATION")
        );
        assert_eq!(SenseCode::new(0x5, 0x26, 0x05).name(), None);
    }

    #[test]
    fn field_pointers_fill_the_sense_key_specific_bytes() {
        let s = SenseBuffer::fixed_with_pointer(
            SenseCode::INVALID_FIELD_IN_CDB,
            FieldPointer::cdb(1, Some(4)),
        );
        assert_eq!(s.code(), Some(SenseCode::INVALID_FIELD_IN_CDB));
        // SKSV, C/D, BPV, bit 4; field pointer 0001h.
        assert_eq!(&s.0[15..18], &[0xcc, 0x00, 0x01]);
        let s = SenseBuffer::fixed_with_pointer(
            SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
            FieldPointer::param(22, None),
        );
        assert_eq!(&s.0[15..18], &[0x80, 0x00, 0x16]);
        assert_eq!(s.0[7], 10, "the additional length covers byte 17");
    }

    #[test]
    fn empty_buffer_has_no_code() {
        assert_eq!(SenseBuffer::empty().code(), None);
    }
}
