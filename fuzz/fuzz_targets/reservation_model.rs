// SPDX-License-Identifier: GPL-2.0-or-later
//! The SPC-4 reservation model driven by a sequence of commands from
//! several I_T nexuses against one logical unit.
//!
//! Each command is: a nexus byte (one of four fixed nexuses, or one of the
//! nexuses registered so far, which includes those a SPEC_I_PT REGISTER or
//! a REGISTER AND MOVE created), an opcode byte (bit 0: PR IN or OUT, bits
//! 5..1: service action), the CDB's SCOPE/TYPE byte, a length byte, then
//! the parameter list (PR OUT: that many bytes; PR IN: the length byte sets
//! the allocation length). The CDB is built as bytes and goes through
//! `PrCdb::try_from`, as on the wire.
//!
//! Checks after every command: `LogicalUnit::invariants_hold`; PRGENERATION
//! moves only as documented; a refused command changes nothing but the
//! unit attention it reported; PR IN changes nothing; a GOOD PR IN payload
//! decodes cleanly, re-encodes to itself, and agrees with the model's state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pr_helper::domain::cdb::{PrCdb, CDB_LEN, PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT};
use qemu_pr_helper::domain::framing::MAX_TRANSFER_LEN;
use qemu_pr_helper::domain::param_list::TransportId;
use qemu_pr_helper::domain::pr_in_data::{
    Capabilities, ReadFullStatus, ReadKeys, ReadReservation, CAPABILITIES_LEN,
};
use qemu_pr_helper::domain::reservation::{Holder, LogicalUnit, NexusId};
use qemu_pr_helper::domain::sense::ScsiStatus;
use qemu_pr_helper::domain::service_action::{PrInServiceAction, PrOutServiceAction};

const MAX_COMMANDS: usize = 64;

fn fixed_nexus(i: u8) -> NexusId {
    match i % 4 {
        0 => NexusId::new(TransportId::sas(0x5000_0000_0000_0001), 1),
        1 => NexusId::new(TransportId::sas(0x5000_0000_0000_0002), 1),
        2 => NexusId::new(TransportId::sas(0x5000_0000_0000_0001), 2),
        _ => {
            let mut b = vec![0x05, 0, 0, 20];
            b.extend_from_slice(b"iqn.2026-11.x:node1\0");
            NexusId::new(TransportId::from_bytes(&b).unwrap(), 1)
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let mut lu = LogicalUnit::new();
    let mut rest = input;
    for _ in 0..MAX_COMMANDS {
        let [who, op, scope_type, len, tail @ ..] = rest else {
            break;
        };
        let nexus = if *who < 4 || lu.registrations().is_empty() {
            fixed_nexus(*who)
        } else {
            let regs = lu.registrations();
            regs[usize::from(*who - 4) % regs.len()].nexus.clone()
        };
        let out = op & 1 == 1;
        let mut cdb = [0u8; CDB_LEN];
        cdb[1] = (op >> 1) & 0x1f;
        let data: &[u8] = if out {
            let n = usize::from(*len).min(tail.len());
            cdb[0] = PERSISTENT_RESERVE_OUT;
            cdb[2] = *scope_type;
            cdb[5..9].copy_from_slice(&(n as u32).to_be_bytes());
            let (data, r) = tail.split_at(n);
            rest = r;
            data
        } else {
            cdb[0] = PERSISTENT_RESERVE_IN;
            let alloc = (u32::from(*len) * 33).min(MAX_TRANSFER_LEN) as u16;
            cdb[7..9].copy_from_slice(&alloc.to_be_bytes());
            rest = tail;
            &[]
        };
        let cdb = PrCdb::try_from(&cdb).expect("built within the protocol's limits");

        let before = lu.clone();
        let had_ua = !lu.pending_unit_attentions(&nexus).is_empty();
        let reply = lu.execute(&nexus, &cdb, data).fit_to(cdb.transfer_len());

        assert!(lu.invariants_hold(), "{lu:?}");
        let good = reply.status == ScsiStatus::GOOD;
        if !good {
            assert!(reply.payload.is_empty());
            let mut expected = before.clone();
            expected.take_unit_attention(&nexus);
            assert_eq!(lu, expected, "a refused command changed the state");
            continue;
        }
        assert!(!had_ua, "GOOD despite a pending unit attention");
        if !out {
            assert_eq!(lu, before, "PR IN changed the state");
            check_pr_in(&lu, &cdb, &reply.payload);
            continue;
        }
        assert!(reply.payload.is_empty());
        let action = cdb.pr_out_action().unwrap();
        let bumps = matches!(
            action,
            PrOutServiceAction::Register
                | PrOutServiceAction::RegisterAndIgnoreExistingKey
                | PrOutServiceAction::Clear
                | PrOutServiceAction::Preempt
                | PrOutServiceAction::PreemptAndAbort
                | PrOutServiceAction::RegisterAndMove
        );
        let step = lu.generation().wrapping_sub(before.generation());
        if bumps {
            assert!(step <= 1, "{action} bumped PRGENERATION by {step}");
            if lu.registrations() != before.registrations() {
                assert_eq!(step, 1, "{action} changed registrations without a bump");
            }
        } else {
            assert_eq!(step, 0, "{action} bumped PRGENERATION");
        }
    }
});

/// A GOOD PR IN reply, checked against the model's state.
fn check_pr_in(lu: &LogicalUnit, cdb: &PrCdb, payload: &[u8]) {
    let alloc = cdb.transfer_len();
    assert!(payload.len() <= alloc);
    match cdb.pr_in_action().unwrap() {
        PrInServiceAction::ReadKeys => {
            let d = ReadKeys::decode(payload);
            let Ok(d) = d else {
                assert!(alloc < 8);
                return;
            };
            assert_eq!(d.value.generation, lu.generation());
            assert_eq!(d.claimed_len as usize, 8 * lu.registrations().len());
            let keys: Vec<_> = lu.registrations().iter().map(|r| r.key).collect();
            assert!(keys.starts_with(&d.value.keys));
            if !d.truncated {
                assert_eq!(d.value.keys, keys);
                assert_eq!(d.value.encode(), payload);
            }
        }
        PrInServiceAction::ReadReservation => {
            let Ok(d) = ReadReservation::decode(payload) else {
                assert!(alloc < 8);
                return;
            };
            assert_eq!(d.value.generation, lu.generation());
            assert_eq!(d.claimed_len == 0, lu.reservation().is_none());
            if !d.truncated {
                assert_eq!(d.leftover, 0);
                assert_eq!(d.value.encode(), payload);
                match (d.value.reservation, lu.reservation()) {
                    (None, None) => {}
                    (Some(r), Some(res)) => {
                        assert_eq!(r.reservation_type(), Some(res.rtype));
                        assert_eq!(r.scope, 0);
                        match &res.holder {
                            Holder::Nexus(n) => {
                                assert_eq!(Some(r.key), lu.registration(n).map(|g| g.key))
                            }
                            Holder::AllRegistrants => assert_eq!(r.key.0, 0),
                        }
                    }
                    other => panic!("READ RESERVATION disagrees with the model: {other:?}"),
                }
            }
        }
        PrInServiceAction::ReportCapabilities => {
            let Ok(d) = Capabilities::decode(payload) else {
                assert!(alloc < 2);
                return;
            };
            assert_eq!(d.claimed_len as usize, CAPABILITIES_LEN);
            if !d.truncated {
                assert_eq!(d.value.ptpl_a, lu.aptpl_active());
                assert_eq!(d.value.encode(), payload);
            }
        }
        PrInServiceAction::ReadFullStatus => {
            let Ok(d) = ReadFullStatus::decode(payload) else {
                assert!(alloc < 8);
                return;
            };
            assert_eq!(d.value.generation, lu.generation());
            assert!(d.value.descriptors.len() <= lu.registrations().len());
            for (desc, reg) in d.value.descriptors.iter().zip(lu.registrations()) {
                assert_eq!(desc.key, reg.key);
                assert_eq!(desc.r_holder, lu.is_holder(&reg.nexus));
                assert_eq!(
                    desc.parsed_transport_id().as_ref(),
                    Some(reg.nexus.initiator())
                );
            }
            if !d.truncated {
                assert_eq!(d.leftover, 0);
                assert_eq!(d.value.descriptors.len(), lu.registrations().len());
                assert_eq!(d.value.encode(), payload);
            }
        }
        PrInServiceAction::Unknown(c) => panic!("GOOD for unknown PR IN action {c:#x}"),
    }
}
