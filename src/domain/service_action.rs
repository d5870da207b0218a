// SPDX-License-Identifier: GPL-2.0-or-later
//! PERSISTENT RESERVE IN/OUT service actions, reservation types and scope.
//!
//! These name the SPC-4 codes so that logs, the emulated device and the
//! multipath router speak of `Register` and `WriteExclusiveRegistrantsOnly`,
//! not of `0` and `5`.

use std::fmt;

/// PERSISTENT RESERVE IN service action (CDB byte 1, bits 4..0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrInServiceAction {
    /// 00h: list the registered keys.
    ReadKeys,
    /// 01h: the current reservation, if any.
    ReadReservation,
    /// 02h: what the device supports.
    ReportCapabilities,
    /// 03h: every registration with its I_T nexus.
    ReadFullStatus,
    /// Any other value: the device answers INVALID FIELD IN CDB.
    Unknown(u8),
}

impl PrInServiceAction {
    /// Decodes the 5-bit field.
    pub fn from_code(code: u8) -> PrInServiceAction {
        match code & 0x1f {
            0x00 => PrInServiceAction::ReadKeys,
            0x01 => PrInServiceAction::ReadReservation,
            0x02 => PrInServiceAction::ReportCapabilities,
            0x03 => PrInServiceAction::ReadFullStatus,
            other => PrInServiceAction::Unknown(other),
        }
    }

    /// The 5-bit code.
    pub fn code(self) -> u8 {
        match self {
            PrInServiceAction::ReadKeys => 0x00,
            PrInServiceAction::ReadReservation => 0x01,
            PrInServiceAction::ReportCapabilities => 0x02,
            PrInServiceAction::ReadFullStatus => 0x03,
            PrInServiceAction::Unknown(c) => c & 0x1f,
        }
    }
}

impl fmt::Display for PrInServiceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrInServiceAction::ReadKeys => f.write_str("READ KEYS"),
            PrInServiceAction::ReadReservation => f.write_str("READ RESERVATION"),
            PrInServiceAction::ReportCapabilities => f.write_str("REPORT CAPABILITIES"),
            PrInServiceAction::ReadFullStatus => f.write_str("READ FULL STATUS"),
            PrInServiceAction::Unknown(c) => write!(f, "PR IN service action {c:02x}h"),
        }
    }
}

/// PERSISTENT RESERVE OUT service action (CDB byte 1, bits 4..0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrOutServiceAction {
    /// 00h: register, change or remove this nexus's key.
    Register,
    /// 01h: take the reservation.
    Reserve,
    /// 02h: give the reservation up.
    Release,
    /// 03h: remove every registration and the reservation.
    Clear,
    /// 04h: remove other registrations (and take their reservation).
    Preempt,
    /// 05h: as PREEMPT, and abort the preempted nexuses' tasks.
    PreemptAndAbort,
    /// 06h: register whatever key this nexus had before.
    RegisterAndIgnoreExistingKey,
    /// 07h: register another nexus and hand it the reservation.
    RegisterAndMove,
    /// 08h: SPC-5 REPLACE LOST RESERVATION.
    ReplaceLostReservation,
    /// Any other value: the device answers INVALID FIELD IN CDB.
    Unknown(u8),
}

impl PrOutServiceAction {
    /// Decodes the 5-bit field.
    pub fn from_code(code: u8) -> PrOutServiceAction {
        match code & 0x1f {
            0x00 => PrOutServiceAction::Register,
            0x01 => PrOutServiceAction::Reserve,
            0x02 => PrOutServiceAction::Release,
            0x03 => PrOutServiceAction::Clear,
            0x04 => PrOutServiceAction::Preempt,
            0x05 => PrOutServiceAction::PreemptAndAbort,
            0x06 => PrOutServiceAction::RegisterAndIgnoreExistingKey,
            0x07 => PrOutServiceAction::RegisterAndMove,
            0x08 => PrOutServiceAction::ReplaceLostReservation,
            other => PrOutServiceAction::Unknown(other),
        }
    }

    /// The 5-bit code.
    pub fn code(self) -> u8 {
        match self {
            PrOutServiceAction::Register => 0x00,
            PrOutServiceAction::Reserve => 0x01,
            PrOutServiceAction::Release => 0x02,
            PrOutServiceAction::Clear => 0x03,
            PrOutServiceAction::Preempt => 0x04,
            PrOutServiceAction::PreemptAndAbort => 0x05,
            PrOutServiceAction::RegisterAndIgnoreExistingKey => 0x06,
            PrOutServiceAction::RegisterAndMove => 0x07,
            PrOutServiceAction::ReplaceLostReservation => 0x08,
            PrOutServiceAction::Unknown(c) => c & 0x1f,
        }
    }
}

impl fmt::Display for PrOutServiceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrOutServiceAction::Register => f.write_str("REGISTER"),
            PrOutServiceAction::Reserve => f.write_str("RESERVE"),
            PrOutServiceAction::Release => f.write_str("RELEASE"),
            PrOutServiceAction::Clear => f.write_str("CLEAR"),
            PrOutServiceAction::Preempt => f.write_str("PREEMPT"),
            PrOutServiceAction::PreemptAndAbort => f.write_str("PREEMPT AND ABORT"),
            PrOutServiceAction::RegisterAndIgnoreExistingKey => {
                f.write_str("REGISTER AND IGNORE EXISTING KEY")
            }
            PrOutServiceAction::RegisterAndMove => f.write_str("REGISTER AND MOVE"),
            PrOutServiceAction::ReplaceLostReservation => f.write_str("REPLACE LOST RESERVATION"),
            PrOutServiceAction::Unknown(c) => write!(f, "PR OUT service action {c:02x}h"),
        }
    }
}

/// Persistent reservation type (CDB byte 2, bits 3..0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationType {
    /// 1h: only the holder may write; anyone may read.
    WriteExclusive,
    /// 3h: only the holder may read or write.
    ExclusiveAccess,
    /// 5h: every registered nexus may write; the holder is the reserving nexus.
    WriteExclusiveRegistrantsOnly,
    /// 6h: every registered nexus may read and write.
    ExclusiveAccessRegistrantsOnly,
    /// 7h: every registered nexus may write and every one is a holder.
    WriteExclusiveAllRegistrants,
    /// 8h: every registered nexus may read and write and every one is a holder.
    ExclusiveAccessAllRegistrants,
}

impl ReservationType {
    /// Decodes the 4-bit field; `None` for reserved or obsolete values.
    pub fn from_code(code: u8) -> Option<ReservationType> {
        match code & 0x0f {
            0x1 => Some(ReservationType::WriteExclusive),
            0x3 => Some(ReservationType::ExclusiveAccess),
            0x5 => Some(ReservationType::WriteExclusiveRegistrantsOnly),
            0x6 => Some(ReservationType::ExclusiveAccessRegistrantsOnly),
            0x7 => Some(ReservationType::WriteExclusiveAllRegistrants),
            0x8 => Some(ReservationType::ExclusiveAccessAllRegistrants),
            _ => None,
        }
    }

    /// The 4-bit code.
    pub fn code(self) -> u8 {
        match self {
            ReservationType::WriteExclusive => 0x1,
            ReservationType::ExclusiveAccess => 0x3,
            ReservationType::WriteExclusiveRegistrantsOnly => 0x5,
            ReservationType::ExclusiveAccessRegistrantsOnly => 0x6,
            ReservationType::WriteExclusiveAllRegistrants => 0x7,
            ReservationType::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// Every type, in code order.
    pub const ALL: [ReservationType; 6] = [
        ReservationType::WriteExclusive,
        ReservationType::ExclusiveAccess,
        ReservationType::WriteExclusiveRegistrantsOnly,
        ReservationType::ExclusiveAccessRegistrantsOnly,
        ReservationType::WriteExclusiveAllRegistrants,
        ReservationType::ExclusiveAccessAllRegistrants,
    ];

    /// All Registrants types make every registered nexus a holder.
    pub fn is_all_registrants(self) -> bool {
        matches!(
            self,
            ReservationType::WriteExclusiveAllRegistrants
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants Only and All Registrants types grant access to registrants.
    pub fn admits_registrants(self) -> bool {
        !matches!(
            self,
            ReservationType::WriteExclusive | ReservationType::ExclusiveAccess
        )
    }
}

impl fmt::Display for ReservationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservationType::WriteExclusive => "Write Exclusive",
            ReservationType::ExclusiveAccess => "Exclusive Access",
            ReservationType::WriteExclusiveRegistrantsOnly => "Write Exclusive, registrants only",
            ReservationType::ExclusiveAccessRegistrantsOnly => "Exclusive Access, registrants only",
            ReservationType::WriteExclusiveAllRegistrants => "Write Exclusive, all registrants",
            ReservationType::ExclusiveAccessAllRegistrants => "Exclusive Access, all registrants",
        })
    }
}

/// An 8-byte reservation key. Zero means "no key" in REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReservationKey(pub u64);

impl fmt::Display for ReservationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_action_codes_round_trip_and_ignore_high_bits() {
        for code in 0..=0x1f {
            assert_eq!(PrInServiceAction::from_code(code).code(), code);
            assert_eq!(PrOutServiceAction::from_code(code).code(), code);
        }
        assert_eq!(
            PrOutServiceAction::from_code(0xe7),
            PrOutServiceAction::RegisterAndMove
        );
        assert_eq!(
            PrInServiceAction::from_code(4),
            PrInServiceAction::Unknown(4)
        );
    }

    #[test]
    fn only_six_reservation_types_exist() {
        let valid: Vec<u8> = (0..16)
            .filter(|&c| ReservationType::from_code(c).is_some())
            .collect();
        assert_eq!(valid, vec![1, 3, 5, 6, 7, 8]);
        for t in ReservationType::ALL {
            assert_eq!(ReservationType::from_code(t.code()), Some(t));
        }
    }
}
