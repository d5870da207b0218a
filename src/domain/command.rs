// SPDX-License-Identifier: GPL-2.0-or-later
//! One PERSISTENT RESERVE IN/OUT command: a checked CDB and its parameter
//! list. The server builds it from a request; executors run it; multipath
//! routing makes new ones (SPEC_I_PT dropped after the first path,
//! rollbacks, the READ RESERVATION check) and sends them down paths.

use crate::domain::cdb::PrCdb;
use crate::domain::param_list::PrOutParameters;
use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};

/// Allocation length of the READ RESERVATION that checks a RELEASE.
pub const READ_RESERVATION_LEN: u16 = 24;

/// Allocation length of the READ FULL STATUS that names a reservation's
/// holder: the largest the CDB allows, so that no descriptor is cut.
pub const READ_FULL_STATUS_LEN: u16 = u16::MAX;

/// One command to run: the validated CDB and, for PR OUT, its parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrCommand {
    /// The CDB, already checked against the protocol rules.
    pub cdb: PrCdb,
    /// PR OUT parameter list (empty for PR IN).
    pub data_out: Vec<u8>,
}

impl PrCommand {
    /// READ RESERVATION, to see who holds the reservation after a RELEASE.
    pub fn read_reservation() -> PrCommand {
        PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadReservation, READ_RESERVATION_LEN),
            data_out: Vec::new(),
        }
    }

    /// READ FULL STATUS, to learn which I_T nexus holds the reservation.
    pub fn read_full_status() -> PrCommand {
        PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadFullStatus, READ_FULL_STATUS_LEN),
            data_out: Vec::new(),
        }
    }

    /// A PR OUT with a basic parameter list, its length set from the list.
    pub fn pr_out(
        action: PrOutServiceAction,
        scope_type: u8,
        params: &PrOutParameters,
    ) -> PrCommand {
        let data_out = params.encode();
        // A list built here holds at most what the client sent, which fits
        // in 8192 bytes.
        let len = u16::try_from(data_out.len()).unwrap_or(u16::MAX);
        PrCommand {
            cdb: PrCdb::pr_out(action, scope_type, len),
            data_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::service_action::ReservationKey;

    #[test]
    fn pr_out_length_follows_the_list() {
        let p = PrOutParameters {
            service_action_key: ReservationKey(7),
            ..Default::default()
        };
        let c = PrCommand::pr_out(PrOutServiceAction::Register, 0, &p);
        assert_eq!(c.cdb.transfer_len(), 24);
        assert_eq!(PrOutParameters::try_from(&c.data_out[..]), Ok(p));
        assert_eq!(PrCommand::read_reservation().cdb.transfer_len(), 24);
    }
}
