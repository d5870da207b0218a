// SPDX-License-Identifier: GPL-2.0-or-later
//! Property tests over every decoder: no input makes one panic, and
//! decode(encode(x)) == x for every encoder.

use proptest::prelude::*;
use qemu_pr_helper::domain::cdb::{PrCdb, CDB_LEN};
use qemu_pr_helper::domain::framing::{ReplyHeader, REPLY_HEADER_LEN};
use qemu_pr_helper::domain::param_list::{PrOutParameters, RegisterAndMoveParameters, TransportId};
use qemu_pr_helper::domain::pr_in_data::{PrInData, ReadKeys};
use qemu_pr_helper::domain::service_action::{PrInServiceAction, ReservationKey};

fn transport_id() -> impl Strategy<Value = TransportId> {
    prop_oneof![
        any::<u64>().prop_map(TransportId::sas),
        // iSCSI names of various lengths, padded as the format requires.
        "[a-z0-9.:-]{1,200}".prop_map(|name| {
            let mut n = name.into_bytes();
            n.push(0);
            while n.len() < 20 || n.len() % 4 != 0 {
                n.push(0);
            }
            let mut b = vec![0x05, 0];
            b.extend_from_slice(&(n.len() as u16).to_be_bytes());
            b.extend_from_slice(&n);
            TransportId::from_bytes(&b).unwrap()
        }),
    ]
}

proptest! {
    #[test]
    fn cdb_decoding_never_panics_and_enforces_the_limit(bytes in any::<[u8; CDB_LEN]>()) {
        if let Ok(cdb) = PrCdb::try_from(&bytes) {
            prop_assert!(cdb.transfer_len() <= 8192);
            prop_assert!(bytes[0] == 0x5e || bytes[0] == 0x5f);
            prop_assert_eq!(cdb.bytes(), &bytes);
        }
    }

    #[test]
    fn reply_header_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), REPLY_HEADER_LEN)) {
        let h: [u8; REPLY_HEADER_LEN] = bytes.try_into().unwrap();
        if let Ok(r) = ReplyHeader::try_from(&h) {
            prop_assert!(r.payload_len <= 8192);
        }
    }

    #[test]
    fn parameter_list_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = PrOutParameters::try_from(&bytes[..]);
        let _ = RegisterAndMoveParameters::try_from(&bytes[..]);
        let _ = TransportId::decode(&bytes);
    }

    #[test]
    fn spec_i_pt_lists_with_lying_lengths_never_panic(
        mut list in proptest::collection::vec(any::<u8>(), 28..400),
        tpdl in any::<u32>(),
    ) {
        list[20] |= 0x08;
        list[24..28].copy_from_slice(&tpdl.to_be_bytes());
        let _ = PrOutParameters::try_from(&list[..]);
    }

    #[test]
    fn basic_parameter_list_round_trips(
        key in any::<u64>(), sa_key in any::<u64>(), all_tg_pt in any::<bool>(), aptpl in any::<bool>(),
        ids in proptest::option::of(proptest::collection::vec(transport_id(), 0..40)),
    ) {
        let p = PrOutParameters {
            reservation_key: ReservationKey(key),
            service_action_key: ReservationKey(sa_key),
            all_tg_pt,
            aptpl,
            transport_ids: ids,
        };
        prop_assert_eq!(PrOutParameters::try_from(&p.encode()[..]), Ok(p));
    }

    #[test]
    fn register_and_move_round_trips(
        key in any::<u64>(), sa_key in any::<u64>(), unreg in any::<bool>(), aptpl in any::<bool>(),
        port in any::<u16>(), tid in transport_id(),
    ) {
        let p = RegisterAndMoveParameters {
            reservation_key: ReservationKey(key),
            service_action_key: ReservationKey(sa_key),
            unreg,
            aptpl,
            relative_target_port: port,
            transport_id: tid,
        };
        prop_assert_eq!(RegisterAndMoveParameters::try_from(&p.encode()[..]), Ok(p));
    }

    #[test]
    fn pr_in_data_decoding_never_panics(sa in 0u8..8, bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = PrInData::decode(PrInServiceAction::from_code(sa), &bytes);
    }

    #[test]
    fn read_keys_round_trips_and_truncates_cleanly(
        generation in any::<u32>(), keys in proptest::collection::vec(any::<u64>(), 0..100), cut in 8usize..900,
    ) {
        let rk = ReadKeys { generation, keys: keys.into_iter().map(ReservationKey).collect() };
        let full = rk.encode();
        let d = ReadKeys::decode(&full).unwrap();
        prop_assert_eq!(&d.value, &rk);
        prop_assert!(!d.truncated);
        let cut = cut.min(full.len());
        let d = ReadKeys::decode(&full[..cut]).unwrap();
        prop_assert_eq!(d.value.keys.len(), (cut - 8) / 8);
        prop_assert_eq!(d.claimed_len as usize, full.len() - 8);
    }
}
