// SPDX-License-Identifier: GPL-2.0-or-later
//! What the client sends and what it gets back, built and parsed with the
//! domain's codecs (no second copy of the wire format).

use crate::domain::cdb::PrCdb;
use crate::domain::framing::{
    PrReply, ReplyHeader, ReplyHeaderError, MAX_TRANSFER_LEN, REPLY_HEADER_LEN,
};
use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters, TransportId};
use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction, ReservationKey};

/// A request ready for the wire: the CDB and, for PR OUT, the parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrRequest {
    cdb: PrCdb,
    params: Vec<u8>,
}

/// A request that cannot be built from the options given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The parameter list would exceed the helper's 8192-byte limit.
    #[error("parameter list of {0} bytes exceeds the helper's limit of {MAX_TRANSFER_LEN}")]
    ParamListTooLong(usize),
    /// The allocation length exceeds the helper's limit.
    #[error("allocation length {0} exceeds the helper's limit of {MAX_TRANSFER_LEN}")]
    AllocationTooLong(u32),
    /// REGISTER AND MOVE needs exactly one TransportID.
    #[error("--register-move needs exactly one --transport-id (got {0})")]
    MoveNeedsOneTransportId(usize),
    /// An option only REGISTER AND MOVE uses was given to another action.
    #[error("{0} is only meaningful with --register-move")]
    OnlyWithMove(&'static str),
}

impl PrRequest {
    /// A PERSISTENT RESERVE IN request.
    pub fn pr_in(
        action: PrInServiceAction,
        allocation_len: u16,
    ) -> Result<PrRequest, RequestError> {
        if u32::from(allocation_len) > MAX_TRANSFER_LEN {
            return Err(RequestError::AllocationTooLong(u32::from(allocation_len)));
        }
        Ok(PrRequest {
            cdb: PrCdb::pr_in(action, allocation_len),
            params: Vec::new(),
        })
    }

    /// A PERSISTENT RESERVE OUT request with an already encoded parameter
    /// list; `scope_type` is CDB byte 2 (SCOPE in bits 7..4, TYPE in 3..0).
    pub fn pr_out(
        action: PrOutServiceAction,
        scope_type: u8,
        params: Vec<u8>,
    ) -> Result<PrRequest, RequestError> {
        let len = u16::try_from(params.len())
            .ok()
            .filter(|&l| u32::from(l) <= MAX_TRANSFER_LEN)
            .ok_or(RequestError::ParamListTooLong(params.len()))?;
        Ok(PrRequest {
            cdb: PrCdb::pr_out(action, scope_type, len),
            params,
        })
    }

    /// The CDB.
    pub fn cdb(&self) -> &PrCdb {
        &self.cdb
    }

    /// The PR OUT parameter list (empty for PR IN).
    pub fn params(&self) -> &[u8] {
        &self.params
    }
}

/// The PR OUT options of the command line, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrOutOptions {
    /// The service action.
    pub action: PrOutServiceAction,
    /// TYPE (CDB byte 2, bits 3..0).
    pub type_code: u8,
    /// SCOPE (CDB byte 2, bits 7..4): 0, LU_SCOPE, unless asked otherwise
    /// (the only scope SPC-4 still defines).
    pub scope: u8,
    /// RESERVATION KEY.
    pub reservation_key: u64,
    /// SERVICE ACTION RESERVATION KEY.
    pub service_action_key: u64,
    /// APTPL.
    pub aptpl: bool,
    /// ALL_TG_PT.
    pub all_tg_pt: bool,
    /// TransportIDs: with SPEC_I_PT for REGISTER, the destination for MOVE.
    pub transport_ids: Vec<TransportId>,
    /// RELATIVE TARGET PORT IDENTIFIER (REGISTER AND MOVE).
    pub relative_target_port: Option<u16>,
    /// UNREG (REGISTER AND MOVE).
    pub unreg: bool,
}

impl PrOutOptions {
    /// Options for `action` with every other field empty.
    pub fn new(action: PrOutServiceAction) -> PrOutOptions {
        PrOutOptions {
            action,
            type_code: 0,
            scope: 0,
            reservation_key: 0,
            service_action_key: 0,
            aptpl: false,
            all_tg_pt: false,
            transport_ids: Vec::new(),
            relative_target_port: None,
            unreg: false,
        }
    }

    /// Encodes the parameter list with the domain's encoders and builds the CDB.
    pub fn build(&self) -> Result<PrRequest, RequestError> {
        let params = if self.action == PrOutServiceAction::RegisterAndMove {
            let [tid] = self.transport_ids.as_slice() else {
                return Err(RequestError::MoveNeedsOneTransportId(
                    self.transport_ids.len(),
                ));
            };
            RegisterAndMoveParameters {
                reservation_key: ReservationKey(self.reservation_key),
                service_action_key: ReservationKey(self.service_action_key),
                unreg: self.unreg,
                aptpl: self.aptpl,
                relative_target_port: self.relative_target_port.unwrap_or(0),
                transport_id: tid.clone(),
            }
            .encode()
        } else {
            if self.unreg {
                return Err(RequestError::OnlyWithMove("--unreg"));
            }
            if self.relative_target_port.is_some() {
                return Err(RequestError::OnlyWithMove("--relative-target-port"));
            }
            PrOutParameters {
                reservation_key: ReservationKey(self.reservation_key),
                service_action_key: ReservationKey(self.service_action_key),
                all_tg_pt: self.all_tg_pt,
                aptpl: self.aptpl,
                transport_ids: (!self.transport_ids.is_empty()).then(|| self.transport_ids.clone()),
            }
            .encode()
        };
        PrRequest::pr_out(
            self.action,
            (self.scope & 0x0f) << 4 | (self.type_code & 0x0f),
            params,
        )
    }
}

/// One reply as read from the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The 104 header bytes as received.
    pub raw_header: [u8; REPLY_HEADER_LEN],
    /// The decoded header.
    pub header: ReplyHeader,
    /// The payload (PR IN data).
    pub payload: Vec<u8>,
}

impl Reply {
    /// The reply a helper would send for `reply`, as the client reads it:
    /// for answers made in this process (`--direct`, tests).
    pub fn from_pr_reply(reply: PrReply) -> Result<Reply, ReplyHeaderError> {
        let raw_header = reply.encode_header();
        Ok(Reply {
            raw_header,
            header: ReplyHeader::try_from(&raw_header)?,
            payload: reply.payload,
        })
    }
}

/// Parses a key in hex, with or without `0x`, as sg_persist does.
pub fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits = digits
        .strip_suffix('h')
        .or_else(|| digits.strip_suffix('H'))
        .unwrap_or(digits);
    let s = super::shown::shown(s);
    if digits.is_empty() || digits.len() > 16 {
        return Err(format!("'{s}' is not a hex number of at most 16 digits"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| format!("'{s}' is not a hex number"))
}

/// Parses an allocation length: hex like sg_persist (`2000` is 8192 bytes).
pub fn parse_alloc_len(s: &str) -> Result<u16, String> {
    let v = parse_hex_u64(s)?;
    u16::try_from(v)
        .ok()
        .filter(|&l| u32::from(l) <= MAX_TRANSFER_LEN)
        .ok_or_else(|| {
            format!("allocation length {v:#x} exceeds the helper's limit of 0x2000 (8192)")
        })
}

/// Parses `--maxlen` as sg3_utils' `sg_get_num` does for the values that
/// fit: decimal, hex with `0x` or a trailing `h`, or decimal with `k`/`K`/`KiB`
/// (1024) or `KB` (1000).
pub fn parse_maxlen(s: &str) -> Result<u16, String> {
    let t = s.trim();
    let bad = || {
        let s = super::shown::shown(s);
        format!("'{s}' is not a length (decimal, 0xHEX, HEXh, or Nk)")
    };
    let value = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).map_err(|_| bad())?
    } else if let Some(h) = t.strip_suffix('h').or_else(|| t.strip_suffix('H')) {
        u64::from_str_radix(h, 16).map_err(|_| bad())?
    } else {
        let (digits, scale) = [("KiB", 1024), ("KB", 1000), ("k", 1024), ("K", 1024)]
            .iter()
            .find_map(|&(suffix, scale)| t.strip_suffix(suffix).map(|d| (d, scale)))
            .unwrap_or((t, 1));
        digits
            .parse::<u64>()
            .map_err(|_| bad())?
            .checked_mul(scale)
            .ok_or_else(bad)?
    };
    u16::try_from(value)
        .ok()
        .filter(|&l| u32::from(l) <= MAX_TRANSFER_LEN)
        .ok_or_else(|| format!("maxlen {value} exceeds the helper's limit of 8192"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cdb::PrDirection;

    #[test]
    fn keys_are_hex_with_or_without_prefix() {
        assert_eq!(parse_hex_u64("1234"), Ok(0x1234));
        assert_eq!(parse_hex_u64("0x1234"), Ok(0x1234));
        assert_eq!(parse_hex_u64("0XABCDEF"), Ok(0xabcdef));
        assert_eq!(parse_hex_u64("ffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_hex_u64("1ffffffffffffffff").is_err());
        assert!(parse_hex_u64("").is_err());
        assert!(parse_hex_u64("0x").is_err());
        assert!(parse_hex_u64("xyz").is_err());
    }

    #[test]
    fn alloc_length_is_hex_and_capped() {
        assert_eq!(parse_alloc_len("2000"), Ok(8192));
        assert_eq!(parse_alloc_len("0x10"), Ok(16));
        assert!(parse_alloc_len("2001").is_err());
        assert!(parse_alloc_len("ffff").is_err());
    }

    #[test]
    fn pr_in_request_has_no_parameter_list() {
        let r = PrRequest::pr_in(PrInServiceAction::ReadReservation, 0x2000).unwrap();
        assert_eq!(
            r.cdb().command(),
            &[0x5e, 0x01, 0, 0, 0, 0, 0, 0x20, 0x00, 0]
        );
        assert!(r.params().is_empty());
        assert!(PrRequest::pr_in(PrInServiceAction::ReadKeys, 8193).is_err());
    }

    #[test]
    fn register_builds_a_24_byte_list() {
        let mut o = PrOutOptions::new(PrOutServiceAction::Register);
        o.service_action_key = 0x1234;
        o.aptpl = true;
        let r = o.build().unwrap();
        assert_eq!(r.cdb().direction(), PrDirection::Out);
        assert_eq!(r.cdb().command(), &[0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0]);
        let p = PrOutParameters::try_from(r.params()).unwrap();
        assert_eq!(p.service_action_key, ReservationKey(0x1234));
        assert!(p.aptpl);
        assert_eq!(p.transport_ids, None);
    }

    #[test]
    fn reserve_puts_the_type_in_byte_2() {
        let mut o = PrOutOptions::new(PrOutServiceAction::Reserve);
        o.type_code = 5;
        o.reservation_key = 0xabc;
        let r = o.build().unwrap();
        assert_eq!(r.cdb().command()[..3], [0x5f, 0x01, 0x05]);
        assert_eq!(&r.params()[..8], &0xabcu64.to_be_bytes());
    }

    #[test]
    fn transport_ids_set_spec_i_pt() {
        let mut o = PrOutOptions::new(PrOutServiceAction::Register);
        o.transport_ids = vec![TransportId::sas(1), TransportId::sas(2)];
        let r = o.build().unwrap();
        assert_eq!(r.params().len(), 24 + 4 + 48);
        assert_eq!(r.params()[20], 0x08);
        assert_eq!(r.cdb().transfer_len(), 76);
    }

    #[test]
    fn register_and_move_needs_one_transport_id() {
        let mut o = PrOutOptions::new(PrOutServiceAction::RegisterAndMove);
        assert_eq!(o.build(), Err(RequestError::MoveNeedsOneTransportId(0)));
        o.transport_ids = vec![TransportId::sas(0x42)];
        o.relative_target_port = Some(2);
        o.unreg = true;
        o.type_code = 1;
        let r = o.build().unwrap();
        assert_eq!(r.cdb().command()[1..3], [0x07, 0x01]);
        let p = RegisterAndMoveParameters::try_from(r.params()).unwrap();
        assert!(p.unreg);
        assert_eq!(p.relative_target_port, 2);
        assert_eq!(p.transport_id, TransportId::sas(0x42));
    }

    #[test]
    fn move_only_options_refused_elsewhere() {
        let mut o = PrOutOptions::new(PrOutServiceAction::Release);
        o.unreg = true;
        assert_eq!(o.build(), Err(RequestError::OnlyWithMove("--unreg")));
        let mut o = PrOutOptions::new(PrOutServiceAction::Release);
        o.relative_target_port = Some(1);
        assert!(o.build().is_err());
    }

    #[test]
    fn too_many_transport_ids_exceed_the_limit() {
        let mut o = PrOutOptions::new(PrOutServiceAction::Register);
        o.transport_ids = vec![TransportId::sas(1); 400];
        assert_eq!(
            o.build(),
            Err(RequestError::ParamListTooLong(24 + 4 + 9600))
        );
    }

    #[test]
    fn maxlen_is_decimal_by_default() {
        assert_eq!(parse_maxlen("8192"), Ok(8192));
        assert_eq!(parse_maxlen("8k"), Ok(8192));
        assert_eq!(parse_maxlen("2000h"), Ok(8192));
        assert_eq!(parse_maxlen("0x100"), Ok(256));
        assert_eq!(parse_maxlen("100"), Ok(100));
        assert!(parse_maxlen("8193").is_err());
        assert!(parse_maxlen("9k").is_err());
        assert!(parse_maxlen("x").is_err());
    }
}
