// SPDX-License-Identifier: GPL-2.0-or-later
//! PERSISTENT RESERVE IN reports of a [`LogicalUnit`] (SPC-4 6.16).
//!
//! The payload formats are those of [`crate::domain::pr_in_data`]: this file
//! only fills them in. Each report is returned whole; the transport cuts it to
//! the ALLOCATION LENGTH, and the ADDITIONAL LENGTH inside still tells the
//! full size.

use super::logical_unit::{Holder, LogicalUnit};
use crate::domain::pr_in_data::{
    Capabilities, FullStatusDescriptor, ReadFullStatus, ReadKeys, ReadReservation, Reservation,
};
use crate::domain::service_action::{ReservationKey, ReservationType};

impl LogicalUnit {
    /// READ KEYS: PRGENERATION and every registered key, oldest first.
    pub fn read_keys(&self) -> ReadKeys {
        ReadKeys {
            generation: self.generation,
            keys: self.registrations.iter().map(|r| r.key).collect(),
        }
    }

    /// READ RESERVATION: the reservation's key and type. For the All
    /// Registrants types the key is zero (SPC-4 6.16.3.2).
    pub fn read_reservation(&self) -> ReadReservation {
        let reservation = self.reservation.as_ref().map(|r| {
            let key = match &r.holder {
                Holder::Nexus(n) => self.registration(n).map(|reg| reg.key),
                Holder::AllRegistrants => None,
            };
            Reservation::new(key.unwrap_or(ReservationKey(0)), r.rtype)
        });
        ReadReservation {
            generation: self.generation,
            reservation,
        }
    }

    /// REPORT CAPABILITIES, as LIO's `core_scsi3_pri_report_capabilities`:
    /// CRH, SIP_C, ATP_C, PTPL_C and TMV set, ALLOW COMMANDS 001b, PTPL_A
    /// while APTPL is active, and all six types in the mask.
    pub fn report_capabilities(&self) -> Capabilities {
        Capabilities {
            rlr_c: false,
            crh: true,
            sip_c: true,
            atp_c: true,
            ptpl_c: true,
            tmv: true,
            allow_commands: 1,
            ptpl_a: self.aptpl,
            type_mask: Capabilities::mask_of(&ReservationType::ALL),
        }
    }

    /// READ FULL STATUS: one descriptor per registration, with its I_T nexus.
    /// R_HOLDER, SCOPE and TYPE are set on holders only; the RELATIVE TARGET
    /// PORT IDENTIFIER is zero for an ALL_TG_PT registration, as in LIO.
    pub fn read_full_status(&self) -> ReadFullStatus {
        let rtype = self.reservation.as_ref().map(|r| r.rtype);
        let descriptors = self
            .registrations
            .iter()
            .map(|reg| {
                let r_holder = self.is_holder(&reg.nexus);
                FullStatusDescriptor {
                    key: reg.key,
                    all_tg_pt: reg.all_tg_pt,
                    r_holder,
                    scope: 0,
                    type_code: match rtype {
                        Some(t) if r_holder => t.code(),
                        _ => 0,
                    },
                    relative_target_port: if reg.all_tg_pt {
                        0
                    } else {
                        reg.nexus.relative_target_port()
                    },
                    transport_id: reg.nexus.initiator().as_bytes().to_vec(),
                }
            })
            .collect();
        ReadFullStatus {
            generation: self.generation,
            descriptors,
        }
    }
}
