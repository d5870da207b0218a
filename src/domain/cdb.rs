// SPDX-License-Identifier: GPL-2.0-or-later
//! The 16-byte CDB that opens every request, and the rules that make it
//! acceptable on the wire.
//!
//! Only PERSISTENT RESERVE IN and OUT travel over the helper protocol, and the
//! transfer length is capped, because the helper sizes its data buffer from it.

use super::framing::{ProtocolViolation, MAX_TRANSFER_LEN};
use super::service_action::{PrInServiceAction, PrOutServiceAction, ReservationType};

/// Length of the CDB field of a request (shorter CDBs are zero-padded).
pub const CDB_LEN: usize = 16;
/// Length of the PERSISTENT RESERVE IN/OUT CDB itself.
pub const PR_CDB_LEN: usize = 10;
/// PERSISTENT RESERVE IN operation code.
pub const PERSISTENT_RESERVE_IN: u8 = 0x5e;
/// PERSISTENT RESERVE OUT operation code.
pub const PERSISTENT_RESERVE_OUT: u8 = 0x5f;

/// Which way the data of a command flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrDirection {
    /// PERSISTENT RESERVE IN: the device returns up to ALLOCATION LENGTH bytes.
    In,
    /// PERSISTENT RESERVE OUT: the client sends PARAMETER LIST LENGTH bytes.
    Out,
}

/// A CDB that passed the protocol's checks: a PR IN or PR OUT whose transfer
/// length fits the helper's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrCdb {
    bytes: [u8; CDB_LEN],
    direction: PrDirection,
    transfer_len: u32,
}

impl TryFrom<&[u8; CDB_LEN]> for PrCdb {
    type Error = ProtocolViolation;

    fn try_from(bytes: &[u8; CDB_LEN]) -> Result<PrCdb, ProtocolViolation> {
        let (direction, transfer_len) = match bytes[0] {
            PERSISTENT_RESERVE_IN => (PrDirection::In, u32::from(be16(bytes, 7))),
            // SPC: PARAMETER LIST LENGTH is bytes 5..8. The C helper reads only
            // 7..8; a non-zero byte 5 or 6 is over the limit either way.
            PERSISTENT_RESERVE_OUT => (PrDirection::Out, be32(bytes, 5)),
            opcode => return Err(ProtocolViolation::UnsupportedOpcode(opcode)),
        };
        if transfer_len > MAX_TRANSFER_LEN {
            return Err(ProtocolViolation::TransferTooLong(transfer_len));
        }
        Ok(PrCdb {
            bytes: *bytes,
            direction,
            transfer_len,
        })
    }
}

impl PrCdb {
    /// Builds a PERSISTENT RESERVE IN CDB.
    pub fn pr_in(action: PrInServiceAction, allocation_len: u16) -> PrCdb {
        let mut b = [0u8; CDB_LEN];
        b[0] = PERSISTENT_RESERVE_IN;
        b[1] = action.code();
        b[7..9].copy_from_slice(&allocation_len.to_be_bytes());
        PrCdb {
            bytes: b,
            direction: PrDirection::In,
            transfer_len: u32::from(allocation_len),
        }
    }

    /// Builds a PERSISTENT RESERVE OUT CDB; `scope_type` is byte 2 as is.
    pub fn pr_out(action: PrOutServiceAction, scope_type: u8, param_len: u16) -> PrCdb {
        let mut b = [0u8; CDB_LEN];
        b[0] = PERSISTENT_RESERVE_OUT;
        b[1] = action.code();
        b[2] = scope_type;
        b[5..9].copy_from_slice(&u32::from(param_len).to_be_bytes());
        PrCdb {
            bytes: b,
            direction: PrDirection::Out,
            transfer_len: u32::from(param_len),
        }
    }

    /// The 16 bytes as received (or as built).
    pub fn bytes(&self) -> &[u8; CDB_LEN] {
        &self.bytes
    }

    /// The 10-byte command handed to the device.
    pub fn command(&self) -> &[u8] {
        &self.bytes[..PR_CDB_LEN]
    }

    /// How many payload bytes a reply may carry: the allocation length of
    /// a PR IN, none for a PR OUT (the transfer length is its parameter
    /// list's).
    pub fn allocation_len(&self) -> usize {
        match self.direction {
            PrDirection::In => self.transfer_len(),
            PrDirection::Out => 0,
        }
    }

    /// The command in hex, as SCSI documents write CDBs, for log lines.
    pub fn hex(&self) -> Hex<'_> {
        Hex(self.command())
    }

    /// PR IN or PR OUT.
    pub fn direction(&self) -> PrDirection {
        self.direction
    }

    /// ALLOCATION LENGTH (PR IN) or PARAMETER LIST LENGTH (PR OUT), at most 8192.
    pub fn transfer_len(&self) -> usize {
        // At most MAX_TRANSFER_LEN, checked at construction.
        self.transfer_len as usize
    }

    /// The raw 5-bit service action code.
    pub fn service_action_code(&self) -> u8 {
        self.bytes[1] & 0x1f
    }

    /// The PR IN service action; `None` for a PR OUT CDB.
    pub fn pr_in_action(&self) -> Option<PrInServiceAction> {
        (self.direction == PrDirection::In)
            .then(|| PrInServiceAction::from_code(self.service_action_code()))
    }

    /// The PR OUT service action; `None` for a PR IN CDB.
    pub fn pr_out_action(&self) -> Option<PrOutServiceAction> {
        (self.direction == PrDirection::Out)
            .then(|| PrOutServiceAction::from_code(self.service_action_code()))
    }

    /// SCOPE (bits 7..4 of byte 2) of a PR OUT CDB.
    pub fn scope(&self) -> u8 {
        self.bytes[2] >> 4
    }

    /// TYPE (bits 3..0 of byte 2) of a PR OUT CDB, if it names a valid type.
    pub fn reservation_type(&self) -> Option<ReservationType> {
        ReservationType::from_code(self.bytes[2])
    }

    /// The raw TYPE nibble, valid or not.
    pub fn type_code(&self) -> u8 {
        self.bytes[2] & 0x0f
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Bytes shown as contiguous lower-case hex (`5f01000000000000001800`);
/// formatted only when the log line is written.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdb(prefix: &[u8]) -> [u8; CDB_LEN] {
        let mut b = [0u8; CDB_LEN];
        b[..prefix.len()].copy_from_slice(prefix);
        b
    }

    #[test]
    fn pr_in_takes_allocation_length_from_bytes_7_and_8() {
        let c = PrCdb::try_from(&cdb(&[0x5e, 0x00, 0, 0, 0, 0, 0, 0x01, 0x00, 0])).unwrap();
        assert_eq!(c.direction(), PrDirection::In);
        assert_eq!(c.transfer_len(), 256);
        assert_eq!(c.pr_in_action(), Some(PrInServiceAction::ReadKeys));
        assert_eq!(c.pr_out_action(), None);
    }

    #[test]
    fn logs_show_the_command_in_hex() {
        let cdb = PrCdb::pr_out(PrOutServiceAction::Register, 0x05, 24);
        assert_eq!(cdb.hex().to_string(), "5f000500000000001800");
    }

    #[test]
    fn pr_in_ignores_bytes_5_and_6() {
        let c = PrCdb::try_from(&cdb(&[0x5e, 0x01, 0, 0, 0, 0xff, 0xff, 0x00, 0x08])).unwrap();
        assert_eq!(c.transfer_len(), 8);
    }

    #[test]
    fn transfer_length_8192_is_accepted_and_8193_is_a_violation() {
        let ok = PrCdb::try_from(&cdb(&[0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0x00])).unwrap();
        assert_eq!(ok.transfer_len(), 8192);
        assert_eq!(
            PrCdb::try_from(&cdb(&[0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0x01])),
            Err(ProtocolViolation::TransferTooLong(8193))
        );
        let ok = PrCdb::try_from(&cdb(&[0x5f, 0, 0, 0, 0, 0, 0, 0x20, 0x00])).unwrap();
        assert_eq!(ok.transfer_len(), 8192);
        assert_eq!(
            PrCdb::try_from(&cdb(&[0x5f, 0, 0, 0, 0, 0, 0, 0x20, 0x01])),
            Err(ProtocolViolation::TransferTooLong(8193))
        );
    }

    #[test]
    fn pr_out_length_is_32_bit_so_bytes_5_and_6_count() {
        assert_eq!(
            PrCdb::try_from(&cdb(&[0x5f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x18])),
            Err(ProtocolViolation::TransferTooLong(0x0001_0018))
        );
        assert_eq!(
            PrCdb::try_from(&cdb(&[0x5f, 0, 0, 0, 0, 0x01, 0, 0x00, 0x18])),
            Err(ProtocolViolation::TransferTooLong(0x0100_0018))
        );
        let c = PrCdb::try_from(&cdb(&[0x5f, 0x01, 0x05, 0, 0, 0, 0, 0, 24])).unwrap();
        assert_eq!(c.transfer_len(), 24);
        assert_eq!(c.pr_out_action(), Some(PrOutServiceAction::Reserve));
        assert_eq!(
            c.reservation_type(),
            Some(ReservationType::WriteExclusiveRegistrantsOnly)
        );
        assert_eq!(c.scope(), 0);
    }

    #[test]
    fn any_other_opcode_is_a_violation() {
        for op in [0x00u8, 0x12, 0x28, 0x5d, 0x60, 0xa3, 0xff] {
            assert_eq!(
                PrCdb::try_from(&cdb(&[op])),
                Err(ProtocolViolation::UnsupportedOpcode(op))
            );
        }
    }

    #[test]
    fn builders_produce_what_the_parser_accepts() {
        let c = PrCdb::pr_out(PrOutServiceAction::Preempt, 0x03, 24);
        assert_eq!(PrCdb::try_from(c.bytes()), Ok(c));
        assert_eq!(c.command(), &[0x5f, 0x04, 0x03, 0, 0, 0, 0, 0, 24, 0]);
        let c = PrCdb::pr_in(PrInServiceAction::ReadFullStatus, 8192);
        assert_eq!(PrCdb::try_from(c.bytes()), Ok(c));
    }
}
