// SPDX-License-Identifier: GPL-2.0-or-later
//! Which nexus may read or write the medium under which reservation
//! (SPC-4 5.13.1, table 64 for READ and WRITE class commands).

use super::logical_unit::LogicalUnit;
use super::nexus::NexusId;
use crate::domain::service_action::ReservationType;

/// The class of a medium-access command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediumAccess {
    /// READ and other commands that only read the medium.
    Read,
    /// WRITE and other commands that change the medium.
    Write,
}

/// What the device server does with a medium-access command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessDecision {
    /// The command runs.
    Allowed,
    /// The command completes with RESERVATION CONFLICT.
    Conflict,
}

impl LogicalUnit {
    /// Whether `nexus` may `access` the medium now.
    ///
    /// Without a reservation everyone may. A holder always may. Otherwise:
    /// Write Exclusive lets everyone read; Exclusive Access lets nobody else
    /// in; the Registrants Only and All Registrants types let registered
    /// nexuses read and write, and unregistered ones only read under the
    /// Write Exclusive variants.
    pub fn access(&self, nexus: &NexusId, access: MediumAccess) -> AccessDecision {
        let Some(reservation) = self.reservation() else {
            return AccessDecision::Allowed;
        };
        if self.is_holder(nexus) {
            return AccessDecision::Allowed;
        }
        let registered = self.registration(nexus).is_some();
        let allowed = match (reservation.rtype, access) {
            (ReservationType::WriteExclusive, MediumAccess::Read) => true,
            (ReservationType::WriteExclusive, MediumAccess::Write) => false,
            (ReservationType::ExclusiveAccess, _) => false,
            (
                ReservationType::WriteExclusiveRegistrantsOnly
                | ReservationType::WriteExclusiveAllRegistrants,
                MediumAccess::Read,
            ) => true,
            (
                ReservationType::WriteExclusiveRegistrantsOnly
                | ReservationType::WriteExclusiveAllRegistrants
                | ReservationType::ExclusiveAccessRegistrantsOnly
                | ReservationType::ExclusiveAccessAllRegistrants,
                _,
            ) => registered,
        };
        if allowed {
            AccessDecision::Allowed
        } else {
            AccessDecision::Conflict
        }
    }
}
