// SPDX-License-Identifier: GPL-2.0-or-later
//! One PERSISTENT RESERVE IN/OUT command, from CDB and parameter list to the
//! reply, as a target's device server runs it.

use super::logical_unit::LogicalUnit;
use super::nexus::NexusId;
use super::refusal::Refusal;
use crate::domain::cdb::{PrCdb, PrDirection};
use crate::domain::framing::PrReply;
use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters, BASIC_PARAM_LEN};
use crate::domain::sense::SenseCode;
use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};

/// SPEC_I_PT in byte 20 of the basic parameter list.
const SPEC_I_PT: u8 = 0x08;

impl LogicalUnit {
    /// Runs one command from `nexus` and returns the reply.
    ///
    /// A unit attention pending for `nexus` is reported first, as LIO does for
    /// every command but INQUIRY, REPORT LUNS and REQUEST SENSE: the command
    /// is not carried out, the condition is cleared, and the client retries.
    pub fn execute(&mut self, nexus: &NexusId, cdb: &PrCdb, data_out: &[u8]) -> PrReply {
        if let Some(code) = self.take_unit_attention(nexus) {
            return Refusal::Check(code).reply();
        }
        let result = match cdb.direction() {
            PrDirection::In => self.pr_in(cdb),
            PrDirection::Out => self.pr_out(nexus, cdb, data_out).map(|()| Vec::new()),
        };
        debug_assert!(self.invariants_hold());
        match result {
            Ok(payload) => PrReply::good(payload),
            Err(refusal) => refusal.reply(),
        }
    }

    fn pr_in(&self, cdb: &PrCdb) -> Result<Vec<u8>, Refusal> {
        match PrInServiceAction::from_code(cdb.service_action_code()) {
            PrInServiceAction::ReadKeys => Ok(self.read_keys().encode()),
            PrInServiceAction::ReadReservation => Ok(self.read_reservation().encode()),
            PrInServiceAction::ReportCapabilities => Ok(self.report_capabilities().encode()),
            PrInServiceAction::ReadFullStatus => Ok(self.read_full_status().encode()),
            PrInServiceAction::Unknown(_) => Err(SenseCode::INVALID_FIELD_IN_CDB.into()),
        }
    }

    /// Checks in LIO's order (`target_scsi3_emulate_pr_out`): list length,
    /// SPEC_I_PT outside REGISTER, the list's format, then the service action.
    fn pr_out(&mut self, nexus: &NexusId, cdb: &PrCdb, data: &[u8]) -> Result<(), Refusal> {
        if data.len() < BASIC_PARAM_LEN {
            return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR.into());
        }
        let action = PrOutServiceAction::from_code(cdb.service_action_code());
        if action == PrOutServiceAction::RegisterAndMove {
            let params = RegisterAndMoveParameters::try_from(data).map_err(|e| e.sense())?;
            return self.register_and_move(nexus, &params);
        }
        if data[20] & SPEC_I_PT != 0 && action != PrOutServiceAction::Register {
            return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
        }
        let p = PrOutParameters::try_from(data).map_err(|e| e.sense())?;
        let (scope, type_code) = (cdb.scope(), cdb.type_code());
        match action {
            PrOutServiceAction::Register => self.register(nexus, &p, false),
            PrOutServiceAction::RegisterAndIgnoreExistingKey => self.register(nexus, &p, true),
            PrOutServiceAction::Reserve => self.reserve(nexus, p.reservation_key, scope, type_code),
            PrOutServiceAction::Release => self.release(nexus, p.reservation_key, scope, type_code),
            PrOutServiceAction::Clear => self.clear(nexus, p.reservation_key),
            PrOutServiceAction::Preempt | PrOutServiceAction::PreemptAndAbort => self.preempt(
                nexus,
                p.reservation_key,
                p.service_action_key,
                scope,
                type_code,
            ),
            PrOutServiceAction::RegisterAndMove
            | PrOutServiceAction::ReplaceLostReservation
            | PrOutServiceAction::Unknown(_) => Err(SenseCode::INVALID_FIELD_IN_CDB.into()),
        }
    }
}
