// SPDX-License-Identifier: GPL-2.0-or-later
//! PR OUT parameter lists as a client sends them: the basic list (with
//! SPEC_I_PT TransportIDs), the REGISTER AND MOVE list and a bare
//! TransportID, all decoded from the same input.
//!
//! Checks: whatever decodes re-encodes to exactly the input, every length
//! the decoders report stays within the input, and errors point inside it (or just past
//! its end, where a TransportID is missing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pr_helper::domain::param_list::{
    ParamListError, PrOutParameters, RegisterAndMoveParameters, TransportId, BASIC_PARAM_LEN,
};

fuzz_target!(|data: &[u8]| {
    match PrOutParameters::try_from(data) {
        Ok(p) => {
            // Bytes outside the decoded fields are reserved; compare the
            // encoding with the input where the format defines bytes.
            let enc = p.encode();
            assert_eq!(enc.len(), data.len());
            assert_eq!(&enc[..16], &data[..16]);
            assert_eq!(enc[20], data[20] & 0x0d);
            assert_eq!(&enc[BASIC_PARAM_LEN..], &data[BASIC_PARAM_LEN..]);
            assert_eq!(PrOutParameters::try_from(&enc[..]), Ok(p.clone()));
            for tid in p.transport_ids.iter().flatten() {
                assert_eq!(TransportId::from_bytes(tid.as_bytes()), Some(tid.clone()));
                assert!(tid.protocol() < 16);
            }
        }
        Err(e) => check_error(e, data.len()),
    }

    match RegisterAndMoveParameters::try_from(data) {
        Ok(p) => {
            let enc = p.encode();
            assert_eq!(enc.len(), data.len());
            assert_eq!(&enc[..16], &data[..16]);
            assert_eq!(enc[17], data[17] & 0x03);
            assert_eq!(&enc[18..], &data[18..]);
            assert_eq!(RegisterAndMoveParameters::try_from(&enc[..]), Ok(p.clone()));
            assert_eq!(
                TransportId::from_bytes(p.transport_id.as_bytes()),
                Some(p.transport_id.clone())
            );
        }
        Err(e) => check_error(e, data.len()),
    }

    if let Some((tid, len)) = TransportId::decode(data) {
        assert!(len >= 24 && len <= data.len());
        assert_eq!(tid.as_bytes(), &data[..len]);
        assert_eq!(TransportId::from_bytes(&data[..len]), Some(tid.clone()));
        assert_eq!(
            TransportId::decode(tid.as_bytes()),
            Some((tid.clone(), len))
        );
        // The nexus identity built from it must be stable.
        let nexus = qemu_pr_helper::domain::reservation::NexusId::new(tid.clone(), 1);
        let again = qemu_pr_helper::domain::reservation::NexusId::new(nexus.initiator().clone(), 1);
        assert_eq!(nexus, again);
    }
});

fn check_error(e: ParamListError, len: usize) {
    match e {
        ParamListError::Length(n) => assert_eq!(n, len),
        // A missing TransportID is reported at the end of the list.
        ParamListError::InvalidField(at) => assert!(at <= len),
    }
    let _ = (e.to_string(), e.sense());
}
