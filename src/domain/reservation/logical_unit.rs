// SPDX-License-Identifier: GPL-2.0-or-later
//! The persistent-reservation state of one logical unit: registrations,
//! the reservation, PRGENERATION, APTPL and the pending unit attentions.
//!
//! The service actions that change it live in [`super::pr_out`], the reports
//! in [`super::pr_in`], the medium access rules in [`super::medium_access`].

use super::nexus::NexusId;
use super::unit_attention::UnitAttentions;
use crate::domain::sense::SenseCode;
use crate::domain::service_action::{ReservationKey, ReservationType};

/// One registered I_T nexus and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registered nexus.
    pub nexus: NexusId,
    /// Its reservation key (never zero: zero unregisters).
    pub key: ReservationKey,
    /// Registered with ALL_TG_PT set. The model has one target port per
    /// initiator's view, so this is recorded and reported, nothing more.
    pub all_tg_pt: bool,
}

/// Who holds a persistent reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The nexus that reserved (or preempted, or received a REGISTER AND MOVE).
    Nexus(NexusId),
    /// Every registered nexus: the All Registrants types.
    AllRegistrants,
}

/// The persistent reservation of a logical unit (scope is always LU_SCOPE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentReservation {
    /// The holder.
    pub holder: Holder,
    /// The type.
    pub rtype: ReservationType,
}

impl PersistentReservation {
    /// A reservation of `rtype` created through `nexus`.
    pub fn new(nexus: &NexusId, rtype: ReservationType) -> PersistentReservation {
        let holder = if rtype.is_all_registrants() {
            Holder::AllRegistrants
        } else {
            Holder::Nexus(nexus.clone())
        };
        PersistentReservation { holder, rtype }
    }
}

/// The persistent-reservation state of one logical unit.
///
/// Only PR OUT service actions change it. Invariants, kept by every method:
/// a reservation exists only while its holder is registered (for the All
/// Registrants types: while anyone is registered); a nexus has at most one
/// registration; no registered key is zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogicalUnit {
    pub(super) generation: u32,
    pub(super) registrations: Vec<Registration>,
    pub(super) reservation: Option<PersistentReservation>,
    pub(super) aptpl: bool,
    pub(super) unit_attentions: UnitAttentions,
}

impl LogicalUnit {
    /// A logical unit with no registration, no reservation, PRGENERATION 0.
    pub fn new() -> LogicalUnit {
        LogicalUnit::default()
    }

    /// PRGENERATION: bumped by every successful REGISTER, REGISTER AND IGNORE
    /// EXISTING KEY, CLEAR, PREEMPT, PREEMPT AND ABORT and REGISTER AND MOVE.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The registrations, oldest first (the order READ KEYS reports).
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// The registration of `nexus`, if it is registered.
    pub fn registration(&self, nexus: &NexusId) -> Option<&Registration> {
        self.registrations.iter().find(|r| &r.nexus == nexus)
    }

    /// The reservation, if any.
    pub fn reservation(&self) -> Option<&PersistentReservation> {
        self.reservation.as_ref()
    }

    /// Whether `nexus` is a reservation holder: the reserving nexus, or any
    /// registered nexus under an All Registrants reservation.
    pub fn is_holder(&self, nexus: &NexusId) -> bool {
        match &self.reservation {
            None => false,
            Some(r) => match &r.holder {
                Holder::Nexus(n) => n == nexus,
                Holder::AllRegistrants => self.registration(nexus).is_some(),
            },
        }
    }

    /// APTPL was set by the last REGISTER (PTPL_A in REPORT CAPABILITIES).
    pub fn aptpl_active(&self) -> bool {
        self.aptpl
    }

    /// The unit attentions waiting for `nexus`, oldest first.
    pub fn pending_unit_attentions(&self, nexus: &NexusId) -> Vec<SenseCode> {
        self.unit_attentions.pending(nexus)
    }

    /// Takes (and clears) the oldest unit attention pending for `nexus`.
    pub fn take_unit_attention(&mut self, nexus: &NexusId) -> Option<SenseCode> {
        self.unit_attentions.take(nexus)
    }

    /// Checks the model's invariants; used by tests and debug assertions.
    pub fn invariants_hold(&self) -> bool {
        let keys_nonzero = self.registrations.iter().all(|r| r.key.0 != 0);
        let unique = self
            .registrations
            .iter()
            .enumerate()
            .all(|(i, r)| self.registrations[..i].iter().all(|o| o.nexus != r.nexus));
        let holder_registered = match &self.reservation {
            None => true,
            Some(r) => {
                let registered = match &r.holder {
                    Holder::Nexus(n) => self.registration(n).is_some(),
                    Holder::AllRegistrants => !self.registrations.is_empty(),
                };
                registered && (r.holder == Holder::AllRegistrants) == r.rtype.is_all_registrants()
            }
        };
        keys_nonzero && unique && holder_registered
    }

    pub(super) fn bump_generation(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    pub(super) fn registration_mut(&mut self, nexus: &NexusId) -> Option<&mut Registration> {
        self.registrations.iter_mut().find(|r| &r.nexus == nexus)
    }

    /// Queues `code` for every registered nexus except `except`.
    pub(super) fn notify_registrants(&mut self, except: &NexusId, code: SenseCode) {
        let others: Vec<NexusId> = self
            .registrations
            .iter()
            .filter(|r| &r.nexus != except)
            .map(|r| r.nexus.clone())
            .collect();
        for nexus in &others {
            self.unit_attentions.establish(nexus, code);
        }
    }

    /// Removes the registration of `nexus` and releases what it held: the
    /// reservation of a nexus holder, or an All Registrants reservation when
    /// the last registrant goes. Returns the type of the reservation this
    /// released, if it did. No unit attention is established here.
    pub(super) fn remove_registration(&mut self, nexus: &NexusId) -> Option<ReservationType> {
        self.registrations.retain(|r| &r.nexus != nexus);
        let released = match &self.reservation {
            Some(r) => match &r.holder {
                Holder::Nexus(n) => n == nexus,
                Holder::AllRegistrants => self.registrations.is_empty(),
            },
            None => false,
        };
        if released {
            self.reservation.take().map(|r| r.rtype)
        } else {
            None
        }
    }
}
