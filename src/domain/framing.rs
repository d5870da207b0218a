// SPDX-License-Identifier: GPL-2.0-or-later
//! The helper protocol's framing: feature negotiation, request limits and the
//! 104-byte reply header (see `docs/protocol.md`). Everything here is big-endian.

use super::sense::{ScsiStatus, SenseBuffer, SENSE_LEN};

/// Length of the features word exchanged once after accept.
pub const FEATURES_LEN: usize = 4;
/// The features this helper supports: none is defined yet.
pub const SUPPORTED_FEATURES: u32 = 0;
/// The largest ALLOCATION LENGTH or PARAMETER LIST LENGTH accepted.
pub const MAX_TRANSFER_LEN: u32 = 8192;
/// Status (4) + payload size (4) + sense (96).
pub const REPLY_HEADER_LEN: usize = 8 + SENSE_LEN;

/// A request that breaks the wire contract: the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// The client asked for features the helper did not advertise.
    #[error("client requested unsupported features {0:#010x}")]
    UnsupportedFeatures(u32),
    /// The CDB is neither PERSISTENT RESERVE IN nor OUT.
    #[error("opcode {0:#04x} is not PERSISTENT RESERVE IN/OUT")]
    UnsupportedOpcode(u8),
    /// The transfer length exceeds 8192 bytes.
    #[error("transfer length {0} exceeds {MAX_TRANSFER_LEN}")]
    TransferTooLong(u32),
    /// The CDB came without a file descriptor.
    #[error("request carried no file descriptor")]
    MissingFd,
    /// More than one file descriptor came with the request.
    #[error("request carried {0} file descriptors, expected exactly one")]
    TooManyFds(usize),
    /// The client closed the stream in the middle of a request.
    #[error("end of stream in the middle of a request")]
    TruncatedRequest,
}

/// Checks the client's features word.
pub fn check_client_features(word: [u8; FEATURES_LEN]) -> Result<(), ProtocolViolation> {
    let requested = u32::from_be_bytes(word);
    if requested & !SUPPORTED_FEATURES != 0 {
        return Err(ProtocolViolation::UnsupportedFeatures(requested));
    }
    Ok(())
}

/// Checks the number of fds that came with one request.
pub fn check_fd_count(count: usize) -> Result<(), ProtocolViolation> {
    match count {
        0 => Err(ProtocolViolation::MissingFd),
        1 => Ok(()),
        n => Err(ProtocolViolation::TooManyFds(n)),
    }
}

/// The answer to one command: status, sense and (PR IN, GOOD only) payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrReply {
    /// SCSI status.
    pub status: ScsiStatus,
    /// Sense area; meaningful only with CHECK CONDITION.
    pub sense: SenseBuffer,
    /// PR IN data; empty unless status is GOOD.
    pub payload: Vec<u8>,
}

impl PrReply {
    /// GOOD with a payload (empty for PR OUT).
    pub fn good(payload: Vec<u8>) -> PrReply {
        PrReply {
            status: ScsiStatus::GOOD,
            sense: SenseBuffer::empty(),
            payload,
        }
    }

    /// CHECK CONDITION with sense the helper built itself.
    pub fn check_condition(code: super::sense::SenseCode) -> PrReply {
        PrReply {
            status: ScsiStatus::CHECK_CONDITION,
            sense: SenseBuffer::fixed(code),
            payload: Vec::new(),
        }
    }

    /// A bare status (BUSY, RESERVATION CONFLICT, TASK SET FULL).
    pub fn status_only(status: ScsiStatus) -> PrReply {
        PrReply {
            status,
            sense: SenseBuffer::empty(),
            payload: Vec::new(),
        }
    }

    /// Enforces the wire rules on a reply: a payload only with GOOD and never
    /// more than the allocation length the client asked for.
    pub fn fit_to(mut self, allocation_len: usize) -> PrReply {
        if self.status != ScsiStatus::GOOD {
            self.payload.clear();
        }
        self.payload.truncate(allocation_len);
        self
    }

    /// The 104-byte header that precedes the payload.
    pub fn encode_header(&self) -> [u8; REPLY_HEADER_LEN] {
        let mut h = [0u8; REPLY_HEADER_LEN];
        h[..4].copy_from_slice(&u32::from(self.status.0).to_be_bytes());
        // The payload never exceeds MAX_TRANSFER_LEN (fit_to), so it fits in u32.
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        h[4..8].copy_from_slice(&len.to_be_bytes());
        h[8..].copy_from_slice(&self.sense.0);
        h
    }
}

/// A reply header as read by a client, before its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHeader {
    /// SCSI status word.
    pub status: u32,
    /// Number of payload bytes that follow.
    pub payload_len: u32,
    /// Sense area.
    pub sense: SenseBuffer,
}

/// A reply header that no conforming helper would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyHeaderError {
    /// The status word does not fit a SCSI status byte.
    #[error("status word {0:#x} is not a SCSI status")]
    BadStatus(u32),
    /// The payload is longer than the protocol allows.
    #[error("payload length {0} exceeds {MAX_TRANSFER_LEN}")]
    PayloadTooLong(u32),
}

impl TryFrom<&[u8; REPLY_HEADER_LEN]> for ReplyHeader {
    type Error = ReplyHeaderError;

    fn try_from(h: &[u8; REPLY_HEADER_LEN]) -> Result<ReplyHeader, ReplyHeaderError> {
        let status = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let payload_len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if status > 0xff {
            return Err(ReplyHeaderError::BadStatus(status));
        }
        if payload_len > MAX_TRANSFER_LEN {
            return Err(ReplyHeaderError::PayloadTooLong(payload_len));
        }
        Ok(ReplyHeader {
            status,
            payload_len,
            sense: SenseBuffer::from_device(&h[8..]),
        })
    }
}

impl ReplyHeader {
    /// The status as a SCSI status byte (checked at decode).
    pub fn scsi_status(&self) -> ScsiStatus {
        ScsiStatus(self.status as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sense::SenseCode;
    use super::*;

    #[test]
    fn zero_features_accepted_anything_else_refused() {
        assert_eq!(check_client_features([0; 4]), Ok(()));
        assert_eq!(
            check_client_features([0, 0, 0, 1]),
            Err(ProtocolViolation::UnsupportedFeatures(1))
        );
        assert_eq!(
            check_client_features([0x80, 0, 0, 0]),
            Err(ProtocolViolation::UnsupportedFeatures(0x8000_0000))
        );
    }

    #[test]
    fn exactly_one_fd() {
        assert_eq!(check_fd_count(0), Err(ProtocolViolation::MissingFd));
        assert_eq!(check_fd_count(1), Ok(()));
        assert_eq!(check_fd_count(2), Err(ProtocolViolation::TooManyFds(2)));
    }

    #[test]
    fn header_is_status_length_sense_big_endian() {
        let r = PrReply::good(vec![1, 2, 3]);
        let h = r.encode_header();
        assert_eq!(&h[..8], &[0, 0, 0, 0, 0, 0, 0, 3]);
        assert!(h[8..].iter().all(|&b| b == 0));

        let r = PrReply::check_condition(SenseCode::INVALID_OPCODE);
        let h = r.encode_header();
        assert_eq!(&h[..8], &[0, 0, 0, 2, 0, 0, 0, 0]);
        assert_eq!(h[8], 0x70);
        assert_eq!(h[10], 0x05);
        assert_eq!(h[20], 0x20);
        assert_eq!(h.len(), 104);
    }

    #[test]
    fn fit_to_cuts_payload_and_drops_it_unless_good() {
        let r = PrReply::good(vec![7; 20]).fit_to(8);
        assert_eq!(r.payload.len(), 8);
        let mut r = PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT);
        r.payload = vec![1, 2];
        assert!(r.fit_to(100).payload.is_empty());
    }

    #[test]
    fn header_decodes_what_encode_wrote() {
        let r = PrReply::check_condition(SenseCode::I_T_NEXUS_LOSS);
        let h = ReplyHeader::try_from(&r.encode_header()).unwrap();
        assert_eq!(h.scsi_status(), ScsiStatus::CHECK_CONDITION);
        assert_eq!(h.payload_len, 0);
        assert_eq!(h.sense, r.sense);
        let mut bad = r.encode_header();
        bad[4..8].copy_from_slice(&8193u32.to_be_bytes());
        assert_eq!(
            ReplyHeader::try_from(&bad),
            Err(ReplyHeaderError::PayloadTooLong(8193))
        );
        bad[..4].copy_from_slice(&0x100u32.to_be_bytes());
        assert_eq!(
            ReplyHeader::try_from(&bad),
            Err(ReplyHeaderError::BadStatus(0x100))
        );
    }
}
