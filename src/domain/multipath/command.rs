//! A command for one path: a CDB and its parameter list. Routing rewrites
//! commands (SPEC_I_PT dropped after the first path, rollbacks, the
//! READ RESERVATION check), so it owns its own copy of both.

use crate::domain::cdb::PrCdb;
use crate::domain::param_list::PrOutParameters;
use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};

/// Allocation length of the READ RESERVATION that checks a RELEASE.
pub const READ_RESERVATION_LEN: u16 = 24;

/// One PR command to send down one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCommand {
    /// The CDB.
    pub cdb: PrCdb,
    /// The PR OUT parameter list (empty for PR IN).
    pub data_out: Vec<u8>,
}

impl PathCommand {
    /// READ RESERVATION, to see who holds the reservation after a RELEASE.
    pub fn read_reservation() -> PathCommand {
        PathCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadReservation, READ_RESERVATION_LEN),
            data_out: Vec::new(),
        }
    }

    /// A PR OUT with a basic parameter list, its length set from the list.
    pub fn pr_out(
        action: PrOutServiceAction,
        scope_type: u8,
        params: &PrOutParameters,
    ) -> PathCommand {
        let data_out = params.encode();
        // A list built here holds at most what the client sent, which fits
        // in 8192 bytes.
        let len = u16::try_from(data_out.len()).unwrap_or(u16::MAX);
        PathCommand {
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
        let c = PathCommand::pr_out(PrOutServiceAction::Register, 0, &p);
        assert_eq!(c.cdb.transfer_len(), 24);
        assert_eq!(PrOutParameters::try_from(&c.data_out[..]), Ok(p));
        assert_eq!(PathCommand::read_reservation().cdb.transfer_len(), 24);
    }
}
