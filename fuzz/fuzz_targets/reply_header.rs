// SPDX-License-Identifier: GPL-2.0-or-later
//! The 104-byte reply header a client reads: `ReplyHeader::try_from`.
//!
//! Checks: accepted headers have a status byte and a payload length within
//! the limit, and re-encode (`PrReply::encode_header`) to the same bytes;
//! the sense area decodes and formats without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pr_helper::domain::framing::{
    PrReply, ReplyHeader, ReplyHeaderError, MAX_TRANSFER_LEN, REPLY_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    let mut h = [0u8; REPLY_HEADER_LEN];
    let n = data.len().min(REPLY_HEADER_LEN);
    h[..n].copy_from_slice(&data[..n]);
    let status = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let payload_len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);

    match ReplyHeader::try_from(&h) {
        Ok(header) => {
            assert!(status <= 0xff && payload_len <= MAX_TRANSFER_LEN);
            assert_eq!((header.status, header.payload_len), (status, payload_len));
            assert_eq!(&header.sense.0[..], &h[8..]);
            let _ = format!("{:?} {:?}", header.sense, header.sense.code());
            if let Some(code) = header.sense.code() {
                let _ = code.to_string();
            }
            let _ = header.scsi_status().name();
            // Round trip through the encoder the helper uses.
            let reply = PrReply {
                status: header.scsi_status(),
                sense: header.sense.clone(),
                payload: vec![0; payload_len as usize],
            };
            assert_eq!(reply.encode_header(), h);
            // fit_to never lets a payload through with a status but GOOD, nor
            // past the allocation length.
            let alloc = usize::from(h[8]) * 33;
            let fitted = reply.clone().fit_to(alloc);
            assert!(fitted.payload.len() <= alloc);
            if !fitted.payload.is_empty() {
                assert_eq!(fitted.status.0, 0);
            }
        }
        Err(ReplyHeaderError::BadStatus(s)) => assert!(s == status && s > 0xff),
        Err(ReplyHeaderError::PayloadTooLong(l)) => {
            assert!(status <= 0xff && l == payload_len && l > MAX_TRANSFER_LEN)
        }
    }
});
