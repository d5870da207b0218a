//! What the client sends and what it gets back, built and parsed with the
//! domain's codecs (no second copy of the wire format).

use crate::domain::cdb::PrCdb;
use crate::domain::framing::{ReplyHeader, MAX_TRANSFER_LEN, REPLY_HEADER_LEN};
use crate::domain::param_list::{
    protocol_id, PrOutParameters, RegisterAndMoveParameters, TransportId,
};
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

    /// A PERSISTENT RESERVE OUT request with an already encoded parameter list.
    pub fn pr_out(
        action: PrOutServiceAction,
        type_code: u8,
        params: Vec<u8>,
    ) -> Result<PrRequest, RequestError> {
        let len = u16::try_from(params.len())
            .ok()
            .filter(|&l| u32::from(l) <= MAX_TRANSFER_LEN)
            .ok_or(RequestError::ParamListTooLong(params.len()))?;
        Ok(PrRequest {
            cdb: PrCdb::pr_out(action, type_code & 0x0f, len),
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
    /// TYPE (CDB byte 2, bits 3..0); scope is always LU_SCOPE.
    pub type_code: u8,
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
        PrRequest::pr_out(self.action, self.type_code, params)
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

/// Parses a decimal number, or hex with a `0x` prefix.
pub fn parse_number(s: &str) -> Result<u64, String> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    }
    .map_err(|_| format!("'{s}' is not a number"))
}

/// Parses a TransportID given as:
/// - `sas,ADDR` (SAS address in hex),
/// - `fcp,WWN` (Fibre Channel N_PORT_NAME in hex),
/// - an iSCSI name (`iqn.…`, `eui.…`, `naa.…`), optionally `NAME,i,0xISID`,
/// - or its raw bytes in hex (spaces, commas or colons between bytes allowed).
pub fn parse_transport_id(s: &str) -> Result<TransportId, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if let Some(addr) = lower.strip_prefix("sas,") {
        return Ok(TransportId::sas(parse_hex_u64(addr)?));
    }
    if let Some(wwn) = lower.strip_prefix("fcp,") {
        let mut b = vec![0u8; 24];
        b[0] = protocol_id::FC;
        b[8..16].copy_from_slice(&parse_hex_u64(wwn)?.to_be_bytes());
        return TransportId::from_bytes(&b).ok_or_else(|| format!("bad FC TransportID '{s}'"));
    }
    if ["iqn.", "eui.", "naa."]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return iscsi_transport_id(t);
    }
    let hex: String = t
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !matches!(c, ' ' | ',' | ':'))
        .collect();
    if hex.len() % 2 != 0 || hex.is_empty() {
        return Err(format!(
            "'{s}' is not a TransportID: give sas,ADDR, fcp,WWN, an iSCSI name or hex bytes"
        ));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("'{s}' is not hex"))?;
    TransportId::from_bytes(&bytes).ok_or_else(|| {
        format!(
            "'{s}' is not one valid TransportID ({} bytes; FC/SAS/SPI/SRP/SBP/SOP are 24 bytes, \
             iSCSI 4 + its additional length)",
            bytes.len()
        )
    })
}

fn iscsi_transport_id(name: &str) -> Result<TransportId, String> {
    // NAME,i,0xISID is format 01b; a bare name is format 00b.
    let format: u8 = if name.to_ascii_lowercase().contains(",i,0x") {
        1
    } else {
        0
    };
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    while n.len() < 20 || n.len() % 4 != 0 {
        n.push(0);
    }
    let len = u16::try_from(n.len()).map_err(|_| format!("iSCSI name too long: '{name}'"))?;
    let mut b = vec![(format << 6) | protocol_id::ISCSI, 0];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&n);
    TransportId::from_bytes(&b).ok_or_else(|| format!("bad iSCSI TransportID '{name}'"))
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
    fn transport_id_forms() {
        assert_eq!(
            parse_transport_id("sas,5001405000000001"),
            Ok(TransportId::sas(0x5001_4050_0000_0001))
        );
        let hex = "06000000500140500000000100000000000000000000000000000000";
        assert!(parse_transport_id(&hex[..48]).is_ok());
        let spaced = "06 00 00 00 50 01 40 50 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00";
        assert_eq!(
            parse_transport_id(spaced),
            Ok(TransportId::sas(0x5001_4050_0000_0001))
        );
        let fc = parse_transport_id("fcp,0x21000024ff000001").unwrap();
        assert_eq!(fc.protocol(), protocol_id::FC);
        assert_eq!(
            &fc.as_bytes()[8..16],
            &0x2100_0024_ff00_0001u64.to_be_bytes()
        );
        let iscsi = parse_transport_id("iqn.2026-11.example:node1").unwrap();
        assert_eq!(iscsi.protocol(), protocol_id::ISCSI);
        assert_eq!(iscsi.as_bytes().len() % 4, 0);
        let isid = parse_transport_id("iqn.2026-11.example:node1,i,0x23d000000001").unwrap();
        assert_eq!(isid.as_bytes()[0] >> 6, 1);
        assert!(parse_transport_id("0600").is_err());
        assert!(parse_transport_id("zz").is_err());
        assert!(parse_transport_id("").is_err());
    }

    #[test]
    fn numbers_decimal_or_hex() {
        assert_eq!(parse_number("12"), Ok(12));
        assert_eq!(parse_number("0x12"), Ok(18));
        assert!(parse_number("x").is_err());
    }
}
