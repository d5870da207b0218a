// SPDX-License-Identifier: GPL-2.0-or-later
//! The 16-byte CDB of a request: `PrCdb::try_from` on any bytes.
//!
//! Checks: accepted CDBs are PR IN/OUT with a transfer length within the
//! protocol's limit, keep their bytes exactly, and agree with the builders
//! (`PrCdb::pr_in`/`pr_out` of the decoded fields decode to the same fields).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pr_helper::domain::cdb::{
    PrCdb, PrDirection, CDB_LEN, PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT, PR_CDB_LEN,
};
use qemu_pr_helper::domain::framing::{check_client_features, MAX_TRANSFER_LEN};
use qemu_pr_helper::domain::service_action::{PrInServiceAction, PrOutServiceAction};

fuzz_target!(|data: &[u8]| {
    // The features word shares the first bytes of a connection with the CDB.
    if let Some(word) = data.get(..4) {
        let word: [u8; 4] = word.try_into().unwrap();
        assert_eq!(check_client_features(word).is_ok(), word == [0; 4]);
    }
    let mut bytes = [0u8; CDB_LEN];
    let n = data.len().min(CDB_LEN);
    bytes[..n].copy_from_slice(&data[..n]);

    let Ok(cdb) = PrCdb::try_from(&bytes) else {
        assert!(
            bytes[0] != PERSISTENT_RESERVE_IN && bytes[0] != PERSISTENT_RESERVE_OUT
                || transfer_len(&bytes) > u64::from(MAX_TRANSFER_LEN)
        );
        return;
    };
    assert_eq!(cdb.bytes(), &bytes);
    assert_eq!(cdb.command(), &bytes[..PR_CDB_LEN]);
    assert!(cdb.transfer_len() <= MAX_TRANSFER_LEN as usize);
    assert_eq!(cdb.transfer_len() as u64, transfer_len(&bytes));
    assert_eq!(PrCdb::try_from(cdb.bytes()), Ok(cdb));
    assert!(cdb.service_action_code() < 32);
    assert!(cdb.scope() < 16 && cdb.type_code() < 16);
    if let Some(t) = cdb.reservation_type() {
        assert_eq!(t.code(), cdb.type_code());
    }
    let len = u16::try_from(cdb.transfer_len()).unwrap();
    match cdb.direction() {
        PrDirection::In => {
            let action = cdb.pr_in_action().unwrap();
            assert_eq!(cdb.pr_out_action(), None);
            assert_eq!(PrInServiceAction::from_code(action.code()), action);
            let rebuilt = PrCdb::pr_in(action, len);
            assert_eq!(PrCdb::try_from(rebuilt.bytes()), Ok(rebuilt));
            assert_eq!(rebuilt.pr_in_action(), Some(action));
            assert_eq!(rebuilt.transfer_len(), cdb.transfer_len());
        }
        PrDirection::Out => {
            let action = cdb.pr_out_action().unwrap();
            assert_eq!(cdb.pr_in_action(), None);
            assert_eq!(PrOutServiceAction::from_code(action.code()), action);
            let rebuilt = PrCdb::pr_out(action, bytes[2], len);
            assert_eq!(PrCdb::try_from(rebuilt.bytes()), Ok(rebuilt));
            assert_eq!(rebuilt.pr_out_action(), Some(action));
            assert_eq!(rebuilt.transfer_len(), cdb.transfer_len());
            assert_eq!(
                (rebuilt.scope(), rebuilt.type_code()),
                (cdb.scope(), cdb.type_code())
            );
        }
    }
    let _ = format!(
        "{:?} {}",
        cdb,
        cdb.pr_in_action()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
});

/// The transfer length as the protocol defines it, computed independently.
fn transfer_len(b: &[u8; CDB_LEN]) -> u64 {
    if b[0] == PERSISTENT_RESERVE_IN {
        u64::from(b[7]) << 8 | u64::from(b[8])
    } else {
        u64::from(u32::from_be_bytes([b[5], b[6], b[7], b[8]]))
    }
}
