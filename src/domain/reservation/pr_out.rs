// SPDX-License-Identifier: GPL-2.0-or-later
//! PERSISTENT RESERVE OUT service actions (SPC-4 5.13 and 6.17) on a
//! [`LogicalUnit`].
//!
//! Each method takes the already decoded parameter list and returns what the
//! target answers. The order of the checks follows LIO's
//! `target_core_pr.c`, so the same mistake gets the same answer; where LIO
//! and SPC-4 disagree the model follows SPC-4 (listed in the module doc of
//! [`super`]).

use super::logical_unit::{Holder, LogicalUnit, PersistentReservation, Registration};
use super::nexus::NexusId;
use super::refusal::Refusal;
use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters};
use crate::domain::sense::SenseCode;
use crate::domain::service_action::{ReservationKey, ReservationType};

/// SCOPE value of a logical-unit reservation, the only scope SPC-4 keeps.
pub const LU_SCOPE: u8 = 0;

/// The TYPE field, which must name one of the six types.
fn valid_type(type_code: u8) -> Result<ReservationType, Refusal> {
    ReservationType::from_code(type_code).ok_or(Refusal::Check(SenseCode::INVALID_FIELD_IN_CDB))
}

fn lu_scope(scope: u8) -> Result<(), Refusal> {
    if scope == LU_SCOPE {
        Ok(())
    } else {
        Err(Refusal::Check(SenseCode::INVALID_FIELD_IN_CDB))
    }
}

impl LogicalUnit {
    /// The registered key of `nexus` must equal `key`: RESERVATION CONFLICT
    /// if it is not registered or the key differs.
    /// What RESERVE and PREEMPT check first, in this order: a valid type,
    /// the nexus registered with `key`, LU scope. Returns the type.
    fn reservation_checks(
        &self,
        nexus: &NexusId,
        key: ReservationKey,
        scope: u8,
        type_code: u8,
    ) -> Result<ReservationType, Refusal> {
        let rtype = valid_type(type_code)?;
        self.registered_with(nexus, key)?;
        lu_scope(scope)?;
        Ok(rtype)
    }

    fn registered_with(&self, nexus: &NexusId, key: ReservationKey) -> Result<(), Refusal> {
        match self.registration(nexus) {
            Some(r) if r.key == key => Ok(()),
            _ => Err(Refusal::Conflict),
        }
    }

    /// REGISTER (`ignore_existing_key` false) or REGISTER AND IGNORE EXISTING
    /// KEY (true): register, change or remove the key of `nexus`, and with
    /// SPEC_I_PT register the listed initiators at the same target port.
    pub fn register(
        &mut self,
        nexus: &NexusId,
        params: &PrOutParameters,
        ignore_existing_key: bool,
    ) -> Result<(), Refusal> {
        if params.transport_ids.is_some() && ignore_existing_key {
            return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
        }
        let new_key = params.service_action_key;
        let Some(current) = self.registration(nexus) else {
            if !ignore_existing_key && params.reservation_key.0 != 0 {
                return Err(Refusal::Conflict);
            }
            if new_key.0 == 0 {
                // Unregistering an unregistered nexus: nothing to do.
                return Ok(());
            }
            let mut nexuses = vec![nexus.clone()];
            for tid in params.transport_ids.iter().flatten() {
                if tid.protocol() != nexus.initiator().protocol() {
                    return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
                }
                let other = NexusId::new(tid.clone(), nexus.relative_target_port());
                // SPC-4 5.13.11.2.2, as LIO: a listed I_T nexus that is
                // registered already refuses the whole command.
                if self.registration(&other).is_some() {
                    return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
                }
                if !nexuses.contains(&other) {
                    nexuses.push(other);
                }
            }
            for n in nexuses {
                self.registrations.push(Registration {
                    nexus: n,
                    key: new_key,
                    all_tg_pt: params.all_tg_pt,
                });
            }
            self.aptpl = params.aptpl;
            self.bump_generation();
            return Ok(());
        };
        if !ignore_existing_key && current.key != params.reservation_key {
            return Err(Refusal::Conflict);
        }
        if params.transport_ids.is_some() {
            return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
        }
        if new_key.0 != 0 {
            if let Some(r) = self.registration_mut(nexus) {
                r.key = new_key;
            }
        } else if let Some(released) = self.remove_registration(nexus) {
            // SPC-4 5.13.11.2.3: a holder unregistering releases a Registrants
            // Only reservation and tells the remaining registrants.
            if matches!(
                released,
                ReservationType::WriteExclusiveRegistrantsOnly
                    | ReservationType::ExclusiveAccessRegistrantsOnly
            ) {
                self.notify_registrants(nexus, SenseCode::RESERVATIONS_RELEASED);
            }
        }
        self.aptpl = params.aptpl;
        self.bump_generation();
        Ok(())
    }

    /// RESERVE: create a reservation of `type_code` held by `nexus`.
    pub fn reserve(
        &mut self,
        nexus: &NexusId,
        key: ReservationKey,
        scope: u8,
        type_code: u8,
    ) -> Result<(), Refusal> {
        let rtype = self.reservation_checks(nexus, key, scope, type_code)?;
        match &self.reservation {
            None => {
                self.reservation = Some(PersistentReservation::new(nexus, rtype));
                Ok(())
            }
            // The holder asking again for what it holds: GOOD, no change.
            Some(r) if self.is_holder(nexus) && r.rtype == rtype => Ok(()),
            // Another type from the holder, or any RESERVE from a non-holder.
            Some(_) => Err(Refusal::Conflict),
        }
    }

    /// RELEASE: the holder gives the reservation up.
    pub fn release(
        &mut self,
        nexus: &NexusId,
        key: ReservationKey,
        scope: u8,
        type_code: u8,
    ) -> Result<(), Refusal> {
        self.registered_with(nexus, key)?;
        let Some(r) = &self.reservation else {
            return Ok(());
        };
        if !self.is_holder(nexus) {
            // SPC-4 5.13.11.2.2: not an error, and nothing happens.
            return Ok(());
        }
        if scope != LU_SCOPE || type_code != r.rtype.code() {
            return Err(SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION.into());
        }
        let rtype = r.rtype;
        self.reservation = None;
        if rtype.admits_registrants() {
            self.notify_registrants(nexus, SenseCode::RESERVATIONS_RELEASED);
        }
        Ok(())
    }

    /// CLEAR: remove every registration and the reservation.
    pub fn clear(&mut self, nexus: &NexusId, key: ReservationKey) -> Result<(), Refusal> {
        self.registered_with(nexus, key)?;
        self.notify_registrants(nexus, SenseCode::RESERVATIONS_PREEMPTED);
        self.reservation = None;
        self.registrations.clear();
        self.aptpl = false;
        self.bump_generation();
        Ok(())
    }

    /// PREEMPT, and PREEMPT AND ABORT: the model has no task set, so aborting
    /// the preempted nexuses' tasks has nothing to do and both act alike.
    /// `victim_key` is the SERVICE ACTION RESERVATION KEY.
    pub fn preempt(
        &mut self,
        nexus: &NexusId,
        key: ReservationKey,
        victim_key: ReservationKey,
        scope: u8,
        type_code: u8,
    ) -> Result<(), Refusal> {
        let rtype = self.reservation_checks(nexus, key, scope, type_code)?;
        let all_registrants = self
            .reservation
            .as_ref()
            .is_some_and(|r| r.rtype.is_all_registrants());
        if victim_key.0 == 0 && !all_registrants {
            return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
        }

        if all_registrants && victim_key.0 == 0 {
            // SPC-4 5.13.11.4.3: preempting an All Registrants reservation
            // removes every other registration and reserves anew.
            let others: Vec<NexusId> = self
                .registrations
                .iter()
                .filter(|r| &r.nexus != nexus)
                .map(|r| r.nexus.clone())
                .collect();
            for n in &others {
                self.unit_attentions
                    .establish(n, SenseCode::REGISTRATIONS_PREEMPTED);
            }
            self.registrations.retain(|r| &r.nexus == nexus);
            self.reservation = Some(PersistentReservation::new(nexus, rtype));
            self.bump_generation();
            return Ok(());
        }

        let victim_holds = match &self.reservation {
            Some(PersistentReservation {
                holder: Holder::Nexus(h),
                ..
            }) => self.registration(h).is_some_and(|r| r.key == victim_key),
            _ => false,
        };
        if !victim_holds {
            // SPC-4 5.13.11.4.4: the key names no holder: remove the
            // registrations with that key, ignore TYPE and SCOPE. Under an
            // All Registrants reservation the preempting nexus keeps its own.
            let victims: Vec<NexusId> = self
                .registrations
                .iter()
                .filter(|r| r.key == victim_key && !(all_registrants && &r.nexus == nexus))
                .map(|r| r.nexus.clone())
                .collect();
            if victims.is_empty() {
                return Err(Refusal::Conflict);
            }
            for v in &victims {
                self.remove_registration(v);
                if v != nexus {
                    self.unit_attentions
                        .establish(v, SenseCode::REGISTRATIONS_PREEMPTED);
                }
            }
            self.bump_generation();
            return Ok(());
        }

        // The key names the holder (possibly the preempting nexus itself):
        // remove every other registration with it, take the reservation.
        let old_type = self.reservation.as_ref().map(|r| r.rtype);
        let victims: Vec<NexusId> = self
            .registrations
            .iter()
            .filter(|r| r.key == victim_key && &r.nexus != nexus)
            .map(|r| r.nexus.clone())
            .collect();
        self.reservation = None;
        for v in &victims {
            self.registrations.retain(|r| &r.nexus != v);
            self.unit_attentions
                .establish(v, SenseCode::REGISTRATIONS_PREEMPTED);
        }
        self.reservation = Some(PersistentReservation::new(nexus, rtype));
        if old_type != Some(rtype) {
            self.notify_registrants(nexus, SenseCode::RESERVATIONS_RELEASED);
        }
        self.bump_generation();
        Ok(())
    }

    /// REGISTER AND MOVE: register the nexus named by the TransportID (at
    /// RELATIVE TARGET PORT IDENTIFIER `params.relative_target_port`, which
    /// must be the port `nexus` came through: the model knows no other) with
    /// the service action key and hand it the reservation `nexus` holds.
    pub fn register_and_move(
        &mut self,
        nexus: &NexusId,
        params: &RegisterAndMoveParameters,
    ) -> Result<(), Refusal> {
        self.registered_with(nexus, params.reservation_key)?;
        if params.service_action_key.0 == 0
            || params.relative_target_port != nexus.relative_target_port()
            || params.transport_id.protocol() != nexus.initiator().protocol()
        {
            return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
        }
        let dest = NexusId::new(params.transport_id.clone(), params.relative_target_port);
        if &dest == nexus {
            return Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST.into());
        }
        let Some(r) = &self.reservation else {
            // LIO: no reservation to move is an invalid request.
            return Err(SenseCode::INVALID_FIELD_IN_CDB.into());
        };
        if !self.is_holder(nexus) || r.rtype.is_all_registrants() {
            return Err(Refusal::Conflict);
        }
        let rtype = r.rtype;
        match self.registration_mut(&dest) {
            Some(existing) => existing.key = params.service_action_key,
            None => self.registrations.push(Registration {
                nexus: dest.clone(),
                key: params.service_action_key,
                all_tg_pt: false,
            }),
        }
        self.reservation = Some(PersistentReservation::new(&dest, rtype));
        if params.unreg {
            self.registrations.retain(|r| &r.nexus != nexus);
        }
        self.aptpl = params.aptpl;
        self.bump_generation();
        Ok(())
    }
}
