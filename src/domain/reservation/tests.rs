// SPDX-License-Identifier: GPL-2.0-or-later
//! Rule-by-rule tests of the reservation model, driven through
//! [`LogicalUnit::execute`] with real CDBs and parameter lists.

use super::*;
use crate::domain::cdb::PrCdb;
use crate::domain::framing::PrReply;
use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters, TransportId};
use crate::domain::pr_in_data::{
    Capabilities, ReadFullStatus, ReadKeys, ReadReservation, Reservation,
};
use crate::domain::sense::{ScsiStatus, SenseCode};
use crate::domain::service_action::{
    PrInServiceAction as In, PrOutServiceAction as Out, ReservationKey, ReservationType,
};

use ReservationType::*;

const PORT: u16 = 1;

fn tid(i: u64) -> TransportId {
    TransportId::sas(0x5000_0000_0000_0000 + i)
}

fn n(i: u64) -> NexusId {
    NexusId::new(tid(i), PORT)
}

fn k(v: u64) -> ReservationKey {
    ReservationKey(v)
}

fn basic(key: u64, sa_key: u64) -> PrOutParameters {
    PrOutParameters {
        reservation_key: k(key),
        service_action_key: k(sa_key),
        ..Default::default()
    }
}

#[derive(Default)]
struct Lu(LogicalUnit);

impl Lu {
    fn raw(&mut self, who: u64, sa: Out, scope_type: u8, data: &[u8]) -> PrReply {
        let cdb = PrCdb::pr_out(sa, scope_type, data.len() as u16);
        self.0.execute(&n(who), &cdb, data)
    }
    fn out(&mut self, who: u64, sa: Out, t: u8, p: &PrOutParameters) -> PrReply {
        self.raw(who, sa, t, &p.encode())
    }
    fn register(&mut self, who: u64, old: u64, new: u64) -> PrReply {
        self.out(who, Out::Register, 0, &basic(old, new))
    }
    fn register_ignore(&mut self, who: u64, new: u64) -> PrReply {
        self.out(who, Out::RegisterAndIgnoreExistingKey, 0, &basic(0, new))
    }
    fn reserve(&mut self, who: u64, key: u64, t: ReservationType) -> PrReply {
        self.out(who, Out::Reserve, t.code(), &basic(key, 0))
    }
    fn release(&mut self, who: u64, key: u64, t: ReservationType) -> PrReply {
        self.out(who, Out::Release, t.code(), &basic(key, 0))
    }
    fn clear(&mut self, who: u64, key: u64) -> PrReply {
        self.out(who, Out::Clear, 0, &basic(key, 0))
    }
    fn preempt(&mut self, who: u64, key: u64, victim: u64, t: ReservationType) -> PrReply {
        self.out(who, Out::Preempt, t.code(), &basic(key, victim))
    }
    fn preempt_abort(&mut self, who: u64, key: u64, victim: u64, t: ReservationType) -> PrReply {
        self.out(who, Out::PreemptAndAbort, t.code(), &basic(key, victim))
    }
    fn pr_in(&mut self, who: u64, sa: In) -> PrReply {
        self.0.execute(&n(who), &PrCdb::pr_in(sa, 8192), &[])
    }
    fn keys(&mut self, who: u64) -> Vec<u64> {
        let r = good(self.pr_in(who, In::ReadKeys));
        let d = ReadKeys::decode(&r).unwrap();
        d.value.keys.iter().map(|k| k.0).collect()
    }
    fn gen(&self) -> u32 {
        self.0.generation()
    }
    fn held(&self) -> Option<ReservationType> {
        self.0.reservation().map(|r| r.rtype)
    }
    fn ua(&self, who: u64) -> Vec<SenseCode> {
        self.0.pending_unit_attentions(&n(who))
    }
    /// Two nexuses registered with keys 0xa and 0xb; `holder` reserved `t`.
    fn two_with(t: ReservationType, holder: u64) -> Lu {
        let mut lu = Lu::default();
        good(lu.register(1, 0, 0xa));
        good(lu.register(2, 0, 0xb));
        good(lu.reserve(holder, [0, 0xa, 0xb][holder as usize], t));
        lu
    }
}

#[track_caller]
fn good(r: PrReply) -> Vec<u8> {
    assert_eq!(r.status, ScsiStatus::GOOD, "{:?}", r.sense);
    r.payload
}

#[track_caller]
fn conflict(r: PrReply) {
    assert_eq!(r.status, ScsiStatus::RESERVATION_CONFLICT);
    assert!(r.payload.is_empty());
}

#[track_caller]
fn check(r: PrReply, code: SenseCode) {
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(r.sense.code(), Some(code));
}

// ---- REGISTER / REGISTER AND IGNORE EXISTING KEY ----

#[test]
fn register_adds_a_key_and_bumps_prgeneration() {
    let mut lu = Lu::default();
    assert_eq!(lu.keys(1), Vec::<u64>::new());
    good(lu.register(1, 0, 0x1111));
    assert_eq!(lu.gen(), 1);
    good(lu.register(2, 0, 0x2222));
    assert_eq!(lu.gen(), 2);
    assert_eq!(lu.keys(3), vec![0x1111, 0x2222]);
    assert_eq!(lu.0.registration(&n(1)).unwrap().key, k(0x1111));
}

#[test]
fn register_from_a_registered_nexus_needs_its_current_key() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    conflict(lu.register(1, 0xdead, 0xb));
    conflict(lu.register(1, 0, 0xb));
    assert_eq!((lu.keys(1), lu.gen()), (vec![0xa], 1));
    good(lu.register(1, 0xa, 0xb));
    assert_eq!((lu.keys(1), lu.gen()), (vec![0xb], 2));
}

#[test]
fn register_with_a_key_from_an_unregistered_nexus_conflicts() {
    let mut lu = Lu::default();
    conflict(lu.register(1, 0xa, 0xb));
    assert_eq!((lu.keys(1), lu.gen()), (vec![], 0));
}

#[test]
fn registering_key_zero_from_an_unregistered_nexus_changes_nothing() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0));
    good(lu.register_ignore(1, 0));
    assert_eq!((lu.keys(1), lu.gen()), (vec![], 0));
}

#[test]
fn unregistering_removes_the_key_and_bumps_prgeneration() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    good(lu.register(2, 0, 0xb));
    good(lu.register(1, 0xa, 0));
    assert_eq!((lu.keys(1), lu.gen()), (vec![0xb], 3));
    assert!(lu.0.registration(&n(1)).is_none());
}

#[test]
fn register_and_ignore_existing_key_ignores_the_reservation_key() {
    let mut lu = Lu::default();
    let p = basic(0x999, 0xa);
    good(lu.out(1, Out::RegisterAndIgnoreExistingKey, 0, &p));
    good(lu.out(1, Out::RegisterAndIgnoreExistingKey, 0, &basic(0x777, 0xc)));
    assert_eq!((lu.keys(1), lu.gen()), (vec![0xc], 2));
    good(lu.register_ignore(1, 0));
    assert_eq!((lu.keys(1), lu.gen()), (vec![], 3));
}

#[test]
fn the_same_key_may_be_registered_by_many_nexuses() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    good(lu.register(2, 0, 0xa));
    assert_eq!(lu.keys(1), vec![0xa, 0xa]);
}

#[test]
fn spec_i_pt_registers_every_listed_initiator_at_the_same_port() {
    let mut lu = Lu::default();
    let p = PrOutParameters {
        service_action_key: k(0xa),
        transport_ids: Some(vec![tid(2), tid(3), tid(2)]),
        ..Default::default()
    };
    good(lu.out(1, Out::Register, 0, &p));
    // Nexus 2 is listed twice and registered once.
    assert_eq!(lu.keys(1), vec![0xa, 0xa, 0xa]);
    assert_eq!(lu.gen(), 1);
    assert_eq!(lu.0.registration(&n(2)).unwrap().key, k(0xa));
    // Nexus 2 may now act with the key.
    good(lu.reserve(2, 0xa, WriteExclusive));
}

#[test]
fn spec_i_pt_naming_a_registered_nexus_is_refused_and_changes_nothing() {
    let mut lu = Lu::default();
    good(lu.register(3, 0, 0x33));
    let p = PrOutParameters {
        service_action_key: k(0xa),
        transport_ids: Some(vec![tid(2), tid(3)]),
        ..Default::default()
    };
    check(
        lu.out(1, Out::Register, 0, &p),
        SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // Neither the sender nor nexus 2 got registered; nexus 3 kept its key.
    assert_eq!((lu.keys(1), lu.gen()), (vec![0x33], 1));
    assert!(lu.0.registration(&n(1)).is_none());
    assert!(lu.0.registration(&n(2)).is_none());
    assert_eq!(lu.0.registration(&n(3)).unwrap().key, k(0x33));
}

#[test]
fn spec_i_pt_is_refused_outside_a_first_register() {
    let mut lu = Lu::default();
    let with = |key, sa_key| PrOutParameters {
        reservation_key: k(key),
        service_action_key: k(sa_key),
        transport_ids: Some(vec![tid(2)]),
        ..Default::default()
    };
    let invalid = SenseCode::INVALID_FIELD_IN_PARAMETER_LIST;
    check(
        lu.out(1, Out::RegisterAndIgnoreExistingKey, 0, &with(0, 0xa)),
        invalid,
    );
    good(lu.register(1, 0, 0xa));
    check(lu.out(1, Out::Register, 0, &with(0xa, 0xb)), invalid);
    // A wrong key is a conflict before SPEC_I_PT is looked at.
    conflict(lu.out(1, Out::Register, 0, &with(0x5, 0xb)));
    let mut b = with(0xa, 0).encode();
    check(lu.raw(1, Out::Reserve, 1, &b), invalid);
    b[20] = 0x08;
    check(lu.raw(1, Out::Clear, 0, &b), invalid);
    assert_eq!(lu.keys(1), vec![0xa]);
}

#[test]
fn spec_i_pt_transport_ids_must_use_the_senders_protocol() {
    let mut lu = Lu::default();
    let mut fc = [0u8; 24];
    fc[8] = 0x21;
    let p = PrOutParameters {
        service_action_key: k(0xa),
        transport_ids: Some(vec![TransportId::from_bytes(&fc).unwrap()]),
        ..Default::default()
    };
    check(
        lu.out(1, Out::Register, 0, &p),
        SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    assert_eq!((lu.keys(1), lu.gen()), (vec![], 0));
}

#[test]
fn aptpl_follows_the_last_register_and_shows_as_ptpl_a() {
    let mut lu = Lu::default();
    let caps = |lu: &mut Lu| {
        let b = good(lu.pr_in(1, In::ReportCapabilities));
        Capabilities::decode(&b).unwrap().value
    };
    assert!(!caps(&mut lu).ptpl_a);
    let p = PrOutParameters {
        service_action_key: k(0xa),
        aptpl: true,
        ..Default::default()
    };
    good(lu.out(1, Out::Register, 0, &p));
    assert!(lu.0.aptpl_active());
    let c = caps(&mut lu);
    assert!(c.ptpl_a && c.ptpl_c);
    good(lu.clear(1, 0xa));
    assert!(!caps(&mut lu).ptpl_a);
}

#[test]
fn all_tg_pt_is_recorded_and_reported() {
    let mut lu = Lu::default();
    let p = PrOutParameters {
        service_action_key: k(0xa),
        all_tg_pt: true,
        ..Default::default()
    };
    good(lu.out(1, Out::Register, 0, &p));
    good(lu.register(2, 0, 0xb));
    let b = good(lu.pr_in(1, In::ReadFullStatus));
    let d = ReadFullStatus::decode(&b).unwrap().value.descriptors;
    assert!(d[0].all_tg_pt && !d[1].all_tg_pt);
    assert_eq!(d[0].relative_target_port, 0);
    assert_eq!(d[1].relative_target_port, PORT);
}

// ---- RESERVE ----

#[test]
fn reserve_needs_a_registration_and_its_key() {
    let mut lu = Lu::default();
    conflict(lu.reserve(1, 0, WriteExclusive));
    conflict(lu.reserve(1, 0xa, WriteExclusive));
    good(lu.register(1, 0, 0xa));
    conflict(lu.reserve(1, 0xb, WriteExclusive));
    assert_eq!(lu.held(), None);
    good(lu.reserve(1, 0xa, WriteExclusive));
    assert_eq!(lu.held(), Some(WriteExclusive));
    assert!(lu.0.is_holder(&n(1)));
}

#[test]
fn reserve_does_not_bump_prgeneration() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    good(lu.reserve(1, 0xa, ExclusiveAccess));
    good(lu.release(1, 0xa, ExclusiveAccess));
    assert_eq!(lu.gen(), 1);
}

#[test]
fn reserve_rejects_bad_types_and_scopes_as_invalid_field_in_cdb() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    for t in [0x0u8, 0x2, 0x4, 0x9, 0xf] {
        check(
            lu.out(1, Out::Reserve, t, &basic(0xa, 0)),
            SenseCode::INVALID_FIELD_IN_CDB,
        );
    }
    // The type is checked before the registration, as LIO does.
    check(
        lu.out(2, Out::Reserve, 0x2, &basic(0, 0)),
        SenseCode::INVALID_FIELD_IN_CDB,
    );
    check(
        lu.out(1, Out::Reserve, 0x11, &basic(0xa, 0)),
        SenseCode::INVALID_FIELD_IN_CDB,
    );
    assert_eq!(lu.held(), None);
}

#[test]
fn reserve_again_by_the_holder_with_the_same_type_is_good_and_another_type_conflicts() {
    let mut lu = Lu::two_with(WriteExclusiveRegistrantsOnly, 1);
    good(lu.reserve(1, 0xa, WriteExclusiveRegistrantsOnly));
    conflict(lu.reserve(1, 0xa, ExclusiveAccess));
    assert_eq!(lu.held(), Some(WriteExclusiveRegistrantsOnly));
}

#[test]
fn reserve_by_another_nexus_conflicts_whatever_the_type() {
    for t in [
        WriteExclusive,
        ExclusiveAccess,
        WriteExclusiveRegistrantsOnly,
    ] {
        let mut lu = Lu::two_with(t, 1);
        conflict(lu.reserve(2, 0xb, t));
        conflict(lu.reserve(2, 0xb, ExclusiveAccessAllRegistrants));
        assert!(lu.0.is_holder(&n(1)) && !lu.0.is_holder(&n(2)));
    }
}

#[test]
fn under_all_registrants_every_registrant_holds_and_may_reserve_the_same_type() {
    for t in [WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants] {
        let mut lu = Lu::two_with(t, 1);
        assert!(lu.0.is_holder(&n(1)) && lu.0.is_holder(&n(2)));
        assert!(!lu.0.is_holder(&n(3)));
        good(lu.reserve(2, 0xb, t));
        conflict(lu.reserve(2, 0xb, WriteExclusive));
        // A nexus registering later is a holder too.
        good(lu.register(3, 0, 0xc));
        assert!(lu.0.is_holder(&n(3)));
    }
}

// ---- holder rules on unregistering ----

#[test]
fn unregistering_the_holder_releases_and_registrants_only_types_tell_the_others() {
    for t in [
        WriteExclusive,
        ExclusiveAccess,
        WriteExclusiveRegistrantsOnly,
        ExclusiveAccessRegistrantsOnly,
    ] {
        let mut lu = Lu::two_with(t, 1);
        good(lu.register(1, 0xa, 0));
        assert_eq!(lu.held(), None, "{t}");
        let expected = if t.admits_registrants() {
            vec![SenseCode::RESERVATIONS_RELEASED]
        } else {
            vec![]
        };
        assert_eq!(lu.ua(2), expected, "{t}");
        assert_eq!(lu.ua(1), vec![]);
    }
}

#[test]
fn an_all_registrants_reservation_lasts_until_the_last_registrant_leaves() {
    for t in [WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants] {
        let mut lu = Lu::two_with(t, 1);
        good(lu.register(1, 0xa, 0));
        assert_eq!(lu.held(), Some(t));
        assert!(lu.0.is_holder(&n(2)));
        good(lu.register(2, 0xb, 0));
        assert_eq!(lu.held(), None);
        assert_eq!(lu.ua(2), vec![]);
    }
}

#[test]
fn unregistering_a_non_holder_leaves_the_reservation() {
    let mut lu = Lu::two_with(ExclusiveAccessRegistrantsOnly, 1);
    good(lu.register(2, 0xb, 0));
    assert_eq!(lu.held(), Some(ExclusiveAccessRegistrantsOnly));
    assert_eq!(lu.ua(1), vec![]);
}

// ---- RELEASE ----

#[test]
fn release_by_the_holder_ends_the_reservation_and_keeps_registrations() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    let gen = lu.gen();
    good(lu.release(1, 0xa, WriteExclusive));
    assert_eq!(lu.held(), None);
    assert_eq!(lu.keys(1), vec![0xa, 0xb]);
    assert_eq!(lu.gen(), gen);
    // Write Exclusive and Exclusive Access releases tell nobody.
    assert_eq!(lu.ua(2), vec![]);
}

#[test]
fn release_of_registrants_types_tells_the_other_registrants() {
    for t in [
        WriteExclusiveRegistrantsOnly,
        ExclusiveAccessRegistrantsOnly,
        WriteExclusiveAllRegistrants,
        ExclusiveAccessAllRegistrants,
    ] {
        let mut lu = Lu::two_with(t, 1);
        good(lu.register(3, 0, 0xc));
        good(lu.release(1, 0xa, t));
        assert_eq!(lu.held(), None);
        assert_eq!(lu.ua(1), vec![]);
        assert_eq!(lu.ua(2), vec![SenseCode::RESERVATIONS_RELEASED]);
        assert_eq!(lu.ua(3), vec![SenseCode::RESERVATIONS_RELEASED]);
    }
}

#[test]
fn any_registrant_may_release_an_all_registrants_reservation() {
    let mut lu = Lu::two_with(WriteExclusiveAllRegistrants, 1);
    good(lu.release(2, 0xb, WriteExclusiveAllRegistrants));
    assert_eq!(lu.held(), None);
    assert_eq!(lu.ua(1), vec![SenseCode::RESERVATIONS_RELEASED]);
}

#[test]
fn release_with_the_wrong_type_is_an_invalid_release() {
    let mut lu = Lu::two_with(ExclusiveAccess, 1);
    check(
        lu.release(1, 0xa, WriteExclusive),
        SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
    );
    check(
        lu.out(1, Out::Release, 0x13, &basic(0xa, 0)),
        SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
    );
    assert_eq!(lu.held(), Some(ExclusiveAccess));
}

#[test]
fn release_by_a_non_holder_or_without_reservation_is_good_and_changes_nothing() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    good(lu.release(2, 0xb, WriteExclusive));
    good(lu.release(2, 0xb, ExclusiveAccess));
    assert_eq!(lu.held(), Some(WriteExclusive));
    good(lu.release(1, 0xa, WriteExclusive));
    good(lu.release(1, 0xa, WriteExclusive));
    assert_eq!(lu.held(), None);
}

#[test]
fn release_from_an_unregistered_nexus_or_with_a_wrong_key_conflicts() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    conflict(lu.release(3, 0, WriteExclusive));
    conflict(lu.release(1, 0xb, WriteExclusive));
    assert_eq!(lu.held(), Some(WriteExclusive));
}

// ---- CLEAR ----

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let mut lu = Lu::two_with(ExclusiveAccessRegistrantsOnly, 2);
    good(lu.register(3, 0, 0xc));
    let gen = lu.gen();
    good(lu.clear(1, 0xa));
    assert_eq!(lu.gen(), gen + 1);
    assert_eq!(lu.held(), None);
    assert!(lu.0.registrations().is_empty());
    assert_eq!(lu.ua(1), vec![]);
    assert_eq!(lu.ua(2), vec![SenseCode::RESERVATIONS_PREEMPTED]);
    assert_eq!(lu.ua(3), vec![SenseCode::RESERVATIONS_PREEMPTED]);
}

#[test]
fn clear_needs_a_registration_and_its_key() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    conflict(lu.clear(3, 0));
    conflict(lu.clear(2, 0xa));
    assert_eq!(lu.keys(1).len(), 2);
    assert_eq!(lu.gen(), 2);
}

// ---- PREEMPT / PREEMPT AND ABORT ----

#[test]
fn preempting_the_holder_takes_the_reservation_and_removes_its_registration() {
    let mut lu = Lu::two_with(WriteExclusiveRegistrantsOnly, 1);
    good(lu.register(3, 0, 0xc));
    let gen = lu.gen();
    good(lu.preempt(2, 0xb, 0xa, WriteExclusiveRegistrantsOnly));
    assert_eq!(lu.gen(), gen + 1);
    assert!(lu.0.is_holder(&n(2)));
    assert_eq!(lu.keys(2), vec![0xb, 0xc]);
    assert_eq!(lu.ua(1), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
    // Same type: the bystander hears nothing.
    assert_eq!(lu.ua(3), vec![]);
}

#[test]
fn preempting_with_a_new_type_tells_the_remaining_registrants() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    good(lu.register(3, 0, 0xc));
    good(lu.preempt(2, 0xb, 0xa, ExclusiveAccess));
    assert_eq!(lu.held(), Some(ExclusiveAccess));
    assert_eq!(lu.ua(3), vec![SenseCode::RESERVATIONS_RELEASED]);
    assert_eq!(lu.ua(1), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
    assert_eq!(lu.ua(2), vec![]);
}

#[test]
fn preempt_removes_every_nexus_registered_with_the_victim_key() {
    // One host, two paths, one key: both paths lose their registration.
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    good(lu.register(2, 0, 0xa));
    good(lu.register(3, 0, 0xc));
    good(lu.reserve(1, 0xa, WriteExclusiveRegistrantsOnly));
    good(lu.preempt(3, 0xc, 0xa, WriteExclusiveRegistrantsOnly));
    assert_eq!(lu.keys(3), vec![0xc]);
    assert_eq!(lu.ua(1), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
    assert_eq!(lu.ua(2), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
}

#[test]
fn preempting_a_non_holder_removes_registrations_only() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    good(lu.register(3, 0, 0xc));
    good(lu.preempt(1, 0xa, 0xc, ExclusiveAccess));
    // TYPE is ignored: the reservation is untouched.
    assert_eq!(lu.held(), Some(WriteExclusive));
    assert_eq!(lu.keys(1), vec![0xa, 0xb]);
    assert_eq!(lu.ua(3), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
    // Without any reservation, too.
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    good(lu.register(2, 0, 0xb));
    good(lu.preempt(1, 0xa, 0xb, WriteExclusive));
    assert_eq!(lu.held(), None);
    assert_eq!(lu.keys(1), vec![0xa]);
}

#[test]
fn preempting_an_unregistered_key_conflicts() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    let gen = lu.gen();
    conflict(lu.preempt(2, 0xb, 0x77, WriteExclusive));
    assert_eq!(lu.gen(), gen);
    assert_eq!(lu.keys(1), vec![0xa, 0xb]);
}

#[test]
fn preempt_needs_a_registration_and_its_key() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    conflict(lu.preempt(3, 0, 0xa, WriteExclusive));
    conflict(lu.preempt(2, 0xa, 0xa, WriteExclusive));
    assert!(lu.0.is_holder(&n(1)));
}

#[test]
fn preempt_with_key_zero_is_invalid_unless_all_registrants() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    check(
        lu.preempt(2, 0xb, 0, WriteExclusive),
        SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    check(
        lu.preempt(1, 0xa, 0, WriteExclusive),
        SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
    );
}

#[test]
fn preempt_checks_type_and_scope_in_the_cdb() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    check(
        lu.out(2, Out::Preempt, 0x2, &basic(0xb, 0xa)),
        SenseCode::INVALID_FIELD_IN_CDB,
    );
    check(
        lu.out(2, Out::PreemptAndAbort, 0x21, &basic(0xb, 0xa)),
        SenseCode::INVALID_FIELD_IN_CDB,
    );
    assert!(lu.0.is_holder(&n(1)));
}

#[test]
fn preempting_an_all_registrants_reservation_with_key_zero_takes_it_alone() {
    let mut lu = Lu::two_with(ExclusiveAccessAllRegistrants, 1);
    good(lu.register(3, 0, 0xc));
    good(lu.preempt(2, 0xb, 0, WriteExclusive));
    assert_eq!(lu.keys(2), vec![0xb]);
    assert_eq!(lu.held(), Some(WriteExclusive));
    assert!(lu.0.is_holder(&n(2)));
    assert_eq!(lu.ua(1), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
    assert_eq!(lu.ua(3), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
    // Alone, key zero still preempts (and changes the type).
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0xa));
    good(lu.reserve(1, 0xa, WriteExclusiveAllRegistrants));
    good(lu.preempt(1, 0xa, 0, ExclusiveAccess));
    assert_eq!(lu.held(), Some(ExclusiveAccess));
}

#[test]
fn preempting_a_key_under_all_registrants_only_removes_that_key() {
    let mut lu = Lu::two_with(WriteExclusiveAllRegistrants, 1);
    good(lu.register(3, 0, 0xc));
    good(lu.preempt(1, 0xa, 0xc, ExclusiveAccess));
    assert_eq!(lu.held(), Some(WriteExclusiveAllRegistrants));
    assert_eq!(lu.keys(1), vec![0xa, 0xb]);
    assert_eq!(lu.ua(3), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
}

#[test]
fn the_holder_may_preempt_itself_to_change_the_type() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    good(lu.preempt(1, 0xa, 0xa, ExclusiveAccessRegistrantsOnly));
    assert_eq!(lu.held(), Some(ExclusiveAccessRegistrantsOnly));
    assert!(lu.0.is_holder(&n(1)));
    assert_eq!(lu.keys(1), vec![0xa, 0xb]);
    assert_eq!(lu.ua(2), vec![SenseCode::RESERVATIONS_RELEASED]);
}

#[test]
fn preempt_and_abort_acts_as_preempt() {
    let mut lu = Lu::two_with(WriteExclusiveRegistrantsOnly, 1);
    good(lu.preempt_abort(2, 0xb, 0xa, WriteExclusiveRegistrantsOnly));
    assert!(lu.0.is_holder(&n(2)));
    assert_eq!(lu.keys(2), vec![0xb]);
    assert_eq!(lu.gen(), 3);
    assert_eq!(lu.ua(1), vec![SenseCode::REGISTRATIONS_PREEMPTED]);
}

// ---- REGISTER AND MOVE ----

fn moving(key: u64, sa_key: u64, to: u64, unreg: bool) -> RegisterAndMoveParameters {
    RegisterAndMoveParameters {
        reservation_key: k(key),
        service_action_key: k(sa_key),
        unreg,
        aptpl: false,
        relative_target_port: PORT,
        transport_id: tid(to),
    }
}

impl Lu {
    fn r#move(&mut self, who: u64, p: &RegisterAndMoveParameters) -> PrReply {
        self.raw(who, Out::RegisterAndMove, 0, &p.encode())
    }
}

#[test]
fn register_and_move_registers_the_destination_and_hands_it_the_reservation() {
    let mut lu = Lu::two_with(ExclusiveAccess, 1);
    let gen = lu.gen();
    good(lu.r#move(1, &moving(0xa, 0xd, 3, false)));
    assert_eq!(lu.gen(), gen + 1);
    assert!(lu.0.is_holder(&n(3)) && !lu.0.is_holder(&n(1)));
    assert_eq!(lu.held(), Some(ExclusiveAccess));
    assert_eq!(lu.keys(1), vec![0xa, 0xb, 0xd]);
}

#[test]
fn register_and_move_with_unreg_drops_the_sender() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    good(lu.r#move(1, &moving(0xa, 0xd, 2, true)));
    // Nexus 2 was registered: it gets the new key.
    assert_eq!(lu.keys(2), vec![0xd]);
    assert!(lu.0.is_holder(&n(2)));
    good(lu.reserve(2, 0xd, WriteExclusive));
}

#[test]
fn register_and_move_refusals() {
    let field = SenseCode::INVALID_FIELD_IN_PARAMETER_LIST;
    let mut lu = Lu::two_with(WriteExclusive, 1);
    conflict(lu.r#move(3, &moving(0, 0xd, 2, false)));
    conflict(lu.r#move(1, &moving(0xb, 0xd, 3, false)));
    check(lu.r#move(1, &moving(0xa, 0, 3, false)), field);
    check(lu.r#move(1, &moving(0xa, 0xd, 1, false)), field);
    let mut other_port = moving(0xa, 0xd, 3, false);
    other_port.relative_target_port = 2;
    check(lu.r#move(1, &other_port), field);
    // Only the holder may move.
    conflict(lu.r#move(2, &moving(0xb, 0xd, 3, false)));
    assert!(lu.0.is_holder(&n(1)));
    assert_eq!(lu.gen(), 2);
    // Nothing to move.
    good(lu.release(1, 0xa, WriteExclusive));
    check(
        lu.r#move(1, &moving(0xa, 0xd, 3, false)),
        SenseCode::INVALID_FIELD_IN_CDB,
    );
    // All Registrants reservations do not move.
    good(lu.reserve(1, 0xa, WriteExclusiveAllRegistrants));
    conflict(lu.r#move(1, &moving(0xa, 0xd, 3, false)));
    // A list whose TransportID length lies.
    let mut b = moving(0xa, 0xd, 3, false).encode();
    b[23] += 4;
    check(lu.raw(1, Out::RegisterAndMove, 0, &b), field);
}

// ---- PR OUT framing ----

#[test]
fn parameter_list_length_errors() {
    let mut lu = Lu::default();
    let plle = SenseCode::PARAMETER_LIST_LENGTH_ERROR;
    check(lu.raw(1, Out::Register, 0, &[0; 23]), plle);
    check(lu.raw(1, Out::Register, 0, &[]), plle);
    check(lu.raw(1, Out::Reserve, 1, &[0; 25]), plle);
    check(lu.raw(1, Out::RegisterAndMove, 0, &[0; 20]), plle);
    check(lu.raw(1, Out::Unknown(0x1f), 0, &[0; 4]), plle);
}

#[test]
fn unknown_service_actions_are_invalid_fields_in_cdb() {
    let mut lu = Lu::default();
    for sa in [
        Out::ReplaceLostReservation,
        Out::Unknown(0x09),
        Out::Unknown(0x1f),
    ] {
        check(lu.raw(1, sa, 0, &[0; 24]), SenseCode::INVALID_FIELD_IN_CDB);
    }
    check(
        lu.pr_in(1, In::Unknown(0x04)),
        SenseCode::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn pr_out_from_an_unregistered_nexus_conflicts_except_register() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    for sa in [
        Out::Reserve,
        Out::Release,
        Out::Clear,
        Out::Preempt,
        Out::PreemptAndAbort,
    ] {
        conflict(lu.out(3, sa, 1, &basic(0, 0xa)));
    }
    conflict(lu.r#move(3, &moving(0, 0xd, 2, false)));
    good(lu.register(3, 0, 0xc));
}

// ---- PR IN payloads ----

#[test]
fn read_keys_encoding() {
    let mut lu = Lu::default();
    good(lu.register(1, 0, 0x0102_0304_0506_0708));
    let b = good(lu.pr_in(2, In::ReadKeys));
    assert_eq!(b, [0, 0, 0, 1, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8].to_vec());
}

#[test]
fn read_reservation_reports_holder_key_and_type() {
    let mut lu = Lu::default();
    assert_eq!(good(lu.pr_in(1, In::ReadReservation)), vec![0; 8]);
    good(lu.register(1, 0, 0xa));
    good(lu.reserve(1, 0xa, ExclusiveAccessRegistrantsOnly));
    let b = good(lu.pr_in(2, In::ReadReservation));
    assert_eq!(b.len(), 24);
    assert_eq!(&b[..8], &[0, 0, 0, 1, 0, 0, 0, 16]);
    assert_eq!(&b[8..16], &0xau64.to_be_bytes());
    assert_eq!(b[21], 0x06);
    let d = ReadReservation::decode(&b).unwrap().value;
    assert_eq!(
        d.reservation,
        Some(Reservation::new(k(0xa), ExclusiveAccessRegistrantsOnly))
    );
}

#[test]
fn read_reservation_of_all_registrants_shows_key_zero() {
    let mut lu = Lu::two_with(WriteExclusiveAllRegistrants, 1);
    let b = good(lu.pr_in(1, In::ReadReservation));
    let d = ReadReservation::decode(&b).unwrap().value;
    assert_eq!(
        d.reservation,
        Some(Reservation::new(k(0), WriteExclusiveAllRegistrants))
    );
}

#[test]
fn report_capabilities_matches_lio() {
    let mut lu = Lu::default();
    assert_eq!(
        good(lu.pr_in(1, In::ReportCapabilities)),
        vec![0x00, 0x08, 0x1d, 0x90, 0xea, 0x01, 0x00, 0x00]
    );
}

#[test]
fn read_full_status_names_each_nexus_and_the_holders() {
    let mut lu = Lu::two_with(WriteExclusive, 2);
    let b = good(lu.pr_in(1, In::ReadFullStatus));
    assert_eq!(&b[4..8], &(2u32 * (24 + 24)).to_be_bytes());
    let d = ReadFullStatus::decode(&b).unwrap().value;
    assert_eq!(d.generation, 2);
    assert_eq!(d.descriptors.len(), 2);
    let (one, two) = (&d.descriptors[0], &d.descriptors[1]);
    assert_eq!((one.key, one.r_holder, one.type_code), (k(0xa), false, 0));
    assert_eq!((two.key, two.r_holder, two.type_code), (k(0xb), true, 1));
    assert_eq!(one.parsed_transport_id(), Some(tid(1)));
    assert_eq!(two.parsed_transport_id(), Some(tid(2)));
    assert_eq!(two.relative_target_port, PORT);
    // All Registrants: everyone is a holder.
    let mut lu = Lu::two_with(ExclusiveAccessAllRegistrants, 2);
    let b = good(lu.pr_in(1, In::ReadFullStatus));
    let d = ReadFullStatus::decode(&b).unwrap().value;
    assert!(d.descriptors.iter().all(|d| d.r_holder && d.type_code == 8));
}

#[test]
fn a_cut_reply_keeps_the_full_additional_length() {
    let mut lu = Lu::default();
    for i in 1..=5 {
        good(lu.register(i, 0, i));
    }
    let r = lu.pr_in(1, In::ReadKeys).fit_to(12);
    assert_eq!(r.payload.len(), 12);
    assert_eq!(&r.payload[4..8], &40u32.to_be_bytes());
    let d = ReadKeys::decode(&r.payload).unwrap();
    assert!(d.truncated);
    assert_eq!(d.claimed_len, 40);
    let r = lu.pr_in(1, In::ReadFullStatus).fit_to(8);
    assert_eq!(&r.payload[4..8], &(5u32 * 48).to_be_bytes());
}

// ---- unit attentions ----

#[test]
fn a_unit_attention_answers_the_next_command_once_instead_of_running_it() {
    let mut lu = Lu::two_with(WriteExclusive, 1);
    good(lu.preempt(2, 0xb, 0xa, WriteExclusive));
    // Nexus 1 tries to re-register: the UA comes first, nothing happens.
    let gen = lu.gen();
    check(lu.register(1, 0, 0xa), SenseCode::REGISTRATIONS_PREEMPTED);
    assert_eq!((lu.gen(), lu.keys(2)), (gen, vec![0xb]));
    good(lu.register(1, 0, 0xa));
    assert_eq!(lu.keys(1), vec![0xb, 0xa]);
}

#[test]
fn pr_in_reports_pending_unit_attentions_too() {
    let mut lu = Lu::two_with(ExclusiveAccessRegistrantsOnly, 1);
    good(lu.register(3, 0, 0xc));
    good(lu.preempt(2, 0xb, 0xa, ExclusiveAccess));
    check(
        lu.pr_in(3, In::ReportCapabilities),
        SenseCode::RESERVATIONS_RELEASED,
    );
    good(lu.pr_in(3, In::ReportCapabilities));
    check(
        lu.pr_in(1, In::ReadKeys),
        SenseCode::REGISTRATIONS_PREEMPTED,
    );
    assert_eq!(lu.keys(1), vec![0xb, 0xc]);
}

#[test]
fn several_unit_attentions_come_one_per_command_oldest_first() {
    let mut lu = Lu::two_with(WriteExclusiveRegistrantsOnly, 1);
    good(lu.release(1, 0xa, WriteExclusiveRegistrantsOnly));
    good(lu.clear(1, 0xa));
    check(lu.pr_in(2, In::ReadKeys), SenseCode::RESERVATIONS_RELEASED);
    check(lu.pr_in(2, In::ReadKeys), SenseCode::RESERVATIONS_PREEMPTED);
    good(lu.pr_in(2, In::ReadKeys));
}

// ---- medium access ----

#[test]
fn access_rules_for_every_type() {
    use AccessDecision::{Allowed as A, Conflict as C};
    use MediumAccess::{Read, Write};
    // (type, [holder r/w, other registrant r/w, unregistered r/w])
    let table = [
        (WriteExclusive, [A, A, A, C, A, C]),
        (ExclusiveAccess, [A, A, C, C, C, C]),
        (WriteExclusiveRegistrantsOnly, [A, A, A, A, A, C]),
        (ExclusiveAccessRegistrantsOnly, [A, A, A, A, C, C]),
        (WriteExclusiveAllRegistrants, [A, A, A, A, A, C]),
        (ExclusiveAccessAllRegistrants, [A, A, A, A, C, C]),
    ];
    for (t, expected) in table {
        let lu = Lu::two_with(t, 1);
        let got = [
            lu.0.access(&n(1), Read),
            lu.0.access(&n(1), Write),
            lu.0.access(&n(2), Read),
            lu.0.access(&n(2), Write),
            lu.0.access(&n(3), Read),
            lu.0.access(&n(3), Write),
        ];
        assert_eq!(got, expected, "{t}");
    }
    let lu = Lu::default();
    assert_eq!(lu.0.access(&n(3), Write), A);
}

// ---- invariants under random command sequences ----

/// xorshift64*: a fixed, dependency-free source of command sequences.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn invariants_hold_over_random_command_sequences() {
    let types = [0u8, 1, 3, 5, 6, 7, 8, 0xf];
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut lu = Lu::default();
        for _ in 0..60 {
            let who = 1 + rng.below(4);
            // Mostly well-formed commands, so that most of them get past the
            // key checks: the current key of the sender, a registered victim.
            let own = lu.0.registration(&n(who)).map_or(0, |r| r.key.0);
            let key = if rng.below(4) != 0 { own } else { rng.below(4) };
            let registered: Vec<u64> = lu.0.registrations().iter().map(|r| r.key.0).collect();
            let sa_key = match rng.below(8) {
                0 => 0,
                1..=4 if !registered.is_empty() => {
                    registered[rng.below(registered.len() as u64) as usize]
                }
                _ => 1 + rng.below(3),
            };
            let t = types[rng.below(types.len() as u64) as usize];
            const WEIGHTED: [u8; 18] = [0, 0, 0, 6, 6, 6, 1, 1, 1, 2, 2, 3, 4, 4, 5, 5, 7, 7];
            let sa = if rng.below(40) == 0 {
                Out::from_code(8 + rng.below(24) as u8)
            } else {
                Out::from_code(WEIGHTED[rng.below(WEIGHTED.len() as u64) as usize])
            };
            let before = lu.0.clone();
            let reply = if sa == Out::RegisterAndMove {
                lu.r#move(
                    who,
                    &moving(key, sa_key, 1 + rng.below(4), rng.below(2) == 1),
                )
            } else {
                lu.out(who, sa, t, &basic(key, sa_key))
            };
            assert!(lu.0.invariants_hold(), "seed {seed}: {sa} broke {:?}", lu.0);
            assert!(lu.gen() >= before.generation(), "seed {seed}");
            let bumps = matches!(
                sa,
                Out::Register
                    | Out::RegisterAndIgnoreExistingKey
                    | Out::Clear
                    | Out::Preempt
                    | Out::PreemptAndAbort
                    | Out::RegisterAndMove
            );
            if reply.status != ScsiStatus::GOOD || !bumps {
                assert_eq!(lu.gen(), before.generation(), "seed {seed}: {sa}");
            }
            if reply.status != ScsiStatus::GOOD {
                // A refused command changes nothing but the UA it reported.
                let mut expected = before.clone();
                expected.take_unit_attention(&n(who));
                assert_eq!(lu.0, expected, "seed {seed}: refused {sa} changed state");
            }
            if bumps
                && reply.status == ScsiStatus::GOOD
                && lu.0.registrations() != before.registrations()
            {
                assert!(lu.gen() > before.generation(), "seed {seed}: {sa}");
            }
        }
    }
}
