// SPDX-License-Identifier: GPL-2.0-or-later
//! Whose reservation is it? The evidence that a reservation held with the
//! map's key is held by an I_T nexus of this host.
//!
//! A key does not identify a host: QEMU's migrate-pr registers the same key
//! on the source and the destination, and some clusters use one key per
//! cluster. So "held with the map's key" is no evidence that the holder is a
//! path of this map, and moving such a reservation (PREEMPT of the map's
//! key) would take another host's reservation and unregister its nexuses.
//!
//! The evidence used is a record of the reservations the helper itself
//! took for the map: after a RESERVE or PREEMPT through the map succeeds on
//! a path, READ FULL STATUS on that path names the holder's TransportID and
//! relative target port, i.e. the nexus of that path. A reservation is
//! moved or followed later only while READ FULL STATUS still shows that
//! same nexus as its holder. Without a record (the helper restarted, or the
//! reservation was taken outside the helper) nothing is moved: the map
//! answers as the device answers a nexus that is not the holder.

use crate::domain::pr_in_data::{FullStatusDescriptor, ReadFullStatus};
use crate::domain::service_action::ReservationKey;

/// The I_T nexus through which the helper took the map's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnHolder {
    /// The initiator port's TransportID, as the device reports it.
    pub transport_id: Vec<u8>,
    /// The target port the nexus goes through; `None` when the holder was
    /// registered through every target port (ALL_TG_PT).
    pub relative_target_port: Option<u16>,
}

impl OwnHolder {
    /// The holder shown by READ FULL STATUS read right after this host took
    /// the reservation with `key`: the one descriptor with R_HOLDER set,
    /// registered with `key`. `None` when there is no such single holder, as
    /// with an All Registrants type (every registrant holds it and releases
    /// it itself: nothing to move).
    pub fn from_full_status(status: &ReadFullStatus, key: ReservationKey) -> Option<OwnHolder> {
        let mut holders = status.descriptors.iter().filter(|d| d.r_holder);
        let holder = holders.next().filter(|d| d.key == key)?;
        if holders.next().is_some() {
            return None;
        }
        Some(OwnHolder::of(holder))
    }

    /// Whether READ FULL STATUS shows this nexus holding the reservation.
    pub fn holds_in(&self, status: &ReadFullStatus) -> bool {
        status
            .descriptors
            .iter()
            .any(|d| d.r_holder && OwnHolder::of(d) == *self)
    }

    fn of(d: &FullStatusDescriptor) -> OwnHolder {
        OwnHolder {
            transport_id: d.transport_id.clone(),
            relative_target_port: (!d.all_tg_pt).then_some(d.relative_target_port),
        }
    }
}

/// What a command through the map did to the record of its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderChange {
    /// The record stays as it was.
    Unchanged,
    /// The helper took (or moved) the reservation: this nexus holds it.
    Took(OwnHolder),
    /// The map no longer holds a reservation the helper can vouch for.
    Forgotten,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus(tid: u8, port: u16, holder: bool) -> FullStatusDescriptor {
        FullStatusDescriptor {
            key: ReservationKey(0x1111),
            all_tg_pt: false,
            r_holder: holder,
            scope: 0,
            type_code: 5,
            relative_target_port: port,
            transport_id: vec![6, 0, 0, 0, 0, 0, 0, 0, 0x50, 1, 2, 3, 4, 5, 6, tid],
        }
    }

    fn status(descriptors: Vec<FullStatusDescriptor>) -> ReadFullStatus {
        ReadFullStatus {
            generation: 1,
            descriptors,
        }
    }

    #[test]
    fn the_single_holder_is_recorded() {
        let s = status(vec![
            nexus(1, 1, false),
            nexus(2, 1, true),
            nexus(3, 2, false),
        ]);
        let own = OwnHolder::from_full_status(&s, ReservationKey(0x1111)).expect("one holder");
        assert_eq!(own, OwnHolder::of(&nexus(2, 1, true)));
        assert!(own.holds_in(&s));
    }

    #[test]
    fn no_holder_another_key_or_all_registrants_records_nothing() {
        let key = ReservationKey(0x1111);
        let none = status(vec![nexus(1, 1, false)]);
        assert_eq!(OwnHolder::from_full_status(&none, key), None);
        let all = status(vec![nexus(1, 1, true), nexus(2, 1, true)]);
        assert_eq!(OwnHolder::from_full_status(&all, key), None);
        let one = status(vec![nexus(1, 1, true)]);
        assert_eq!(
            OwnHolder::from_full_status(&one, ReservationKey(0x2222)),
            None
        );
    }

    #[test]
    fn another_initiator_port_with_the_same_key_is_not_ours() {
        let ours = OwnHolder::of(&nexus(1, 1, true));
        // Another host holds with the same key; our nexus is only registered.
        let s = status(vec![nexus(1, 1, false), nexus(3, 1, true)]);
        assert!(!ours.holds_in(&s));
    }

    #[test]
    fn the_same_initiator_port_through_another_target_port_is_another_nexus() {
        let ours = OwnHolder::of(&nexus(1, 1, true));
        assert!(!ours.holds_in(&status(vec![nexus(1, 2, true)])));
    }
}
