// SPDX-License-Identifier: GPL-2.0-or-later
//! PR IN parameter data as a client receives it, possibly cut anywhere:
//! the first input byte picks the service action, the rest is the data.
//!
//! Checks: decoding never panics; the reported lengths are consistent with
//! the input; what decoded re-encodes to a reply that decodes to the same
//! items, and a reply that was complete and clean (not truncated, no
//! leftover) re-encodes to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pr_helper::domain::pr_in_data::{
    Capabilities, Decoded, PrInData, PrInDataError, ReadFullStatus, ReadKeys, ReadReservation,
    CAPABILITIES_LEN, PR_IN_HEADER_LEN,
};
use qemu_pr_helper::domain::service_action::PrInServiceAction;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    // Mostly the four defined actions; now and then an unknown one.
    let action = PrInServiceAction::from_code(selector % 5);
    let decoded = match PrInData::decode(action, data) {
        Ok(Some(d)) => d,
        Ok(None) => {
            assert!(matches!(action, PrInServiceAction::Unknown(_)));
            return;
        }
        Err(PrInDataError::TooShort { needed, got }) => {
            assert_eq!(got, data.len());
            assert!(got < needed);
            return;
        }
    };
    let _ = decoded.truncated();
    match decoded {
        PrInData::Keys(d) => {
            check_common(&d, data, PR_IN_HEADER_LEN);
            let enc = d.value.encode();
            let again = ReadKeys::decode(&enc).unwrap();
            assert_eq!(again.value, d.value);
            assert!(!again.truncated && again.leftover == 0);
            if clean(&d, data) {
                assert_eq!(enc, data);
            }
        }
        PrInData::Reservation(d) => {
            check_common(&d, data, PR_IN_HEADER_LEN);
            let enc = d.value.encode();
            let again = ReadReservation::decode(&enc).unwrap();
            assert_eq!(again.value, d.value);
            assert!(!again.truncated && again.leftover == 0);
            if let Some(r) = d.value.reservation {
                assert!(r.scope < 16 && r.type_code < 16);
                if let Some(t) = r.reservation_type() {
                    assert_eq!(t.code(), r.type_code);
                }
            }
        }
        PrInData::Capabilities(d) => {
            check_common(&d, data, 0);
            let enc = d.value.encode();
            assert_eq!(enc.len(), CAPABILITIES_LEN);
            let again = Capabilities::decode(&enc).unwrap();
            assert_eq!(again.value, d.value);
            assert!(!again.truncated);
            let types = d.value.supported_types();
            assert_eq!(
                Capabilities::mask_of(&types),
                d.value.type_mask & Capabilities::mask_of(&types_all())
            );
        }
        PrInData::FullStatus(d) => {
            check_common(&d, data, PR_IN_HEADER_LEN);
            let enc = d.value.encode();
            let again = ReadFullStatus::decode(&enc).unwrap();
            assert_eq!(again.value, d.value);
            assert!(!again.truncated && again.leftover == 0);
            for desc in &d.value.descriptors {
                let _ = (desc.reservation_type(), desc.parsed_transport_id());
            }
        }
    }
});

fn types_all() -> Vec<qemu_pr_helper::domain::service_action::ReservationType> {
    qemu_pr_helper::domain::service_action::ReservationType::ALL.to_vec()
}

fn check_common<T>(d: &Decoded<T>, data: &[u8], header_len: usize) {
    assert_eq!(d.received, data.len());
    assert!(d.leftover <= data.len());
    assert_eq!(
        d.truncated,
        (data.len() as u64) < d.claimed_total(header_len)
    );
}

/// Everything claimed arrived, nothing beyond it, and it was all items.
fn clean<T>(d: &Decoded<T>, data: &[u8]) -> bool {
    !d.truncated && d.leftover == 0 && d.claimed_total(PR_IN_HEADER_LEN) == data.len() as u64
}
