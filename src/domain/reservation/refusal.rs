// SPDX-License-Identifier: GPL-2.0-or-later
//! Why a persistent-reservation command was not carried out.

use crate::domain::framing::PrReply;
use crate::domain::sense::{ScsiStatus, SenseCode};

/// A command the logical unit refuses, as the status a target returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Status RESERVATION CONFLICT (18h): the reservation or the registration
    /// state forbids the command.
    Conflict,
    /// Status CHECK CONDITION with this sense (ILLEGAL REQUEST for bad fields,
    /// UNIT ATTENTION for a pending unit attention).
    Check(SenseCode),
}

impl Refusal {
    /// The reply the client receives.
    pub fn reply(self) -> PrReply {
        match self {
            Refusal::Conflict => PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
            Refusal::Check(code) => PrReply::check_condition(code),
        }
    }
}

impl From<SenseCode> for Refusal {
    fn from(code: SenseCode) -> Refusal {
        Refusal::Check(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_is_a_bare_status_and_check_carries_fixed_sense() {
        let r = Refusal::Conflict.reply();
        assert_eq!(r.status, ScsiStatus::RESERVATION_CONFLICT);
        assert_eq!(r.sense.code(), None);
        let r = Refusal::from(SenseCode::INVALID_FIELD_IN_CDB).reply();
        assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(r.sense.code(), Some(SenseCode::INVALID_FIELD_IN_CDB));
        assert!(r.payload.is_empty());
    }
}
