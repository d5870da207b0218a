// SPDX-License-Identifier: GPL-2.0-or-later
//! PERSISTENT RESERVE OUT parameter lists: the basic 24-byte list (with
//! optional TransportIDs for SPEC_I_PT) and the REGISTER AND MOVE list.
//!
//! Every length inside a list is attacker-controlled; decoding bounds each one
//! against the bytes actually received and answers with the sense code a real
//! target (LIO) uses.

use super::sense::SenseCode;
use super::service_action::ReservationKey;

/// Length of the basic parameter list without TransportIDs.
pub const BASIC_PARAM_LEN: usize = 24;

/// Why a parameter list cannot be used; each maps to ILLEGAL REQUEST sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParamListError {
    /// The list is shorter (or, without SPEC_I_PT, longer) than its format.
    #[error("parameter list length {0} does not fit the format")]
    Length(usize),
    /// A length or TransportID inside the list is inconsistent.
    #[error("invalid field in parameter list at byte {0}")]
    InvalidField(usize),
}

impl ParamListError {
    /// The sense code a target answers with.
    pub fn sense(self) -> SenseCode {
        match self {
            ParamListError::Length(_) => SenseCode::PARAMETER_LIST_LENGTH_ERROR,
            ParamListError::InvalidField(_) => SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
        }
    }
}

/// One TransportID (SPC-4 7.6.4), kept as its bytes so it compares and
/// re-encodes exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportId(Vec<u8>);

/// PROTOCOL IDENTIFIER values that have a TransportID format.
pub mod protocol_id {
    /// Fibre Channel.
    pub const FC: u8 = 0x0;
    /// Parallel SCSI.
    pub const SPI: u8 = 0x1;
    /// IEEE 1394 (SBP).
    pub const SBP: u8 = 0x3;
    /// SCSI RDMA.
    pub const SRP: u8 = 0x4;
    /// iSCSI.
    pub const ISCSI: u8 = 0x5;
    /// Serial Attached SCSI.
    pub const SAS: u8 = 0x6;
    /// SCSI over PCIe.
    pub const SOP: u8 = 0xa;
}

impl TransportId {
    /// Decodes the TransportID at the start of `bytes`; returns it and its length.
    pub fn decode(bytes: &[u8]) -> Option<(TransportId, usize)> {
        let first = *bytes.first()?;
        let format = first >> 6;
        let len = match (first & 0x0f, format) {
            (protocol_id::ISCSI, 0 | 1) => {
                let additional = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
                if additional < 20 || additional % 4 != 0 {
                    return None;
                }
                4 + additional
            }
            (
                protocol_id::FC
                | protocol_id::SPI
                | protocol_id::SBP
                | protocol_id::SRP
                | protocol_id::SAS
                | protocol_id::SOP,
                0,
            ) => 24,
            _ => return None,
        };
        let tid = bytes.get(..len)?;
        Some((TransportId(tid.to_vec()), len))
    }

    /// Builds a TransportID from raw bytes, if they are exactly one valid one.
    pub fn from_bytes(bytes: &[u8]) -> Option<TransportId> {
        match TransportId::decode(bytes) {
            Some((tid, len)) if len == bytes.len() => Some(tid),
            _ => None,
        }
    }

    /// A SAS TransportID for an address (what the emulated device gives its
    /// initiators, and what LIO's tcm_loop reports).
    pub fn sas(address: u64) -> TransportId {
        let mut b = vec![0u8; 24];
        b[0] = protocol_id::SAS;
        b[4..12].copy_from_slice(&address.to_be_bytes());
        TransportId(b)
    }

    /// PROTOCOL IDENTIFIER.
    pub fn protocol(&self) -> u8 {
        self.0[0] & 0x0f
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The basic PR OUT parameter list (every service action but REGISTER AND MOVE).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrOutParameters {
    /// RESERVATION KEY: the key the sending nexus is registered with.
    pub reservation_key: ReservationKey,
    /// SERVICE ACTION RESERVATION KEY: the new key, or the key to preempt.
    pub service_action_key: ReservationKey,
    /// ALL_TG_PT: register through every target port.
    pub all_tg_pt: bool,
    /// APTPL: keep registrations through power loss.
    pub aptpl: bool,
    /// With SPEC_I_PT: the additional nexuses to register; `None` without it.
    pub transport_ids: Option<Vec<TransportId>>,
}

const SPEC_I_PT: u8 = 0x08;
const ALL_TG_PT: u8 = 0x04;
const APTPL: u8 = 0x01;

impl TryFrom<&[u8]> for PrOutParameters {
    type Error = ParamListError;

    fn try_from(b: &[u8]) -> Result<PrOutParameters, ParamListError> {
        if b.len() < BASIC_PARAM_LEN {
            return Err(ParamListError::Length(b.len()));
        }
        let flags = b[20];
        let transport_ids = if flags & SPEC_I_PT != 0 {
            if b.len() < BASIC_PARAM_LEN + 4 {
                return Err(ParamListError::Length(b.len()));
            }
            let tpdl = be32(b, 24) as usize;
            if tpdl.checked_add(BASIC_PARAM_LEN + 4) != Some(b.len()) {
                return Err(ParamListError::InvalidField(24));
            }
            let mut ids = Vec::new();
            let mut at = BASIC_PARAM_LEN + 4;
            while at < b.len() {
                let (tid, len) =
                    TransportId::decode(&b[at..]).ok_or(ParamListError::InvalidField(at))?;
                ids.push(tid);
                at += len;
            }
            Some(ids)
        } else {
            if b.len() != BASIC_PARAM_LEN {
                return Err(ParamListError::Length(b.len()));
            }
            None
        };
        Ok(PrOutParameters {
            reservation_key: ReservationKey(be64(b, 0)),
            service_action_key: ReservationKey(be64(b, 8)),
            all_tg_pt: flags & ALL_TG_PT != 0,
            aptpl: flags & APTPL != 0,
            transport_ids,
        })
    }
}

impl PrOutParameters {
    /// Encodes the list as a client sends it.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; BASIC_PARAM_LEN];
        b[0..8].copy_from_slice(&self.reservation_key.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.service_action_key.0.to_be_bytes());
        let mut flags = 0;
        if self.all_tg_pt {
            flags |= ALL_TG_PT;
        }
        if self.aptpl {
            flags |= APTPL;
        }
        if let Some(ids) = &self.transport_ids {
            flags |= SPEC_I_PT;
            let tpdl: usize = ids.iter().map(|t| t.as_bytes().len()).sum();
            b.extend_from_slice(&(tpdl as u32).to_be_bytes());
            for t in ids {
                b.extend_from_slice(t.as_bytes());
            }
        }
        b[20] = flags;
        b
    }
}

/// The two keys every PR OUT parameter list starts with (RESERVATION KEY,
/// then SERVICE ACTION RESERVATION KEY, in the basic and the REGISTER AND
/// MOVE list alike), decoded once when the request arrives so that its audit
/// line names them even when the rest of the list is malformed or the
/// command never runs. A key the list is too short to hold is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrOutKeys {
    /// RESERVATION KEY (bytes 0..8).
    pub reservation_key: Option<ReservationKey>,
    /// SERVICE ACTION RESERVATION KEY (bytes 8..16).
    pub service_action_key: Option<ReservationKey>,
}

impl From<&[u8]> for PrOutKeys {
    fn from(list: &[u8]) -> PrOutKeys {
        let key_at = |at: usize| {
            let bytes: [u8; 8] = list.get(at..at + 8)?.try_into().ok()?;
            Some(ReservationKey(u64::from_be_bytes(bytes)))
        };
        PrOutKeys {
            reservation_key: key_at(0),
            service_action_key: key_at(8),
        }
    }
}

/// The REGISTER AND MOVE parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterAndMoveParameters {
    /// RESERVATION KEY of the sending nexus (the holder).
    pub reservation_key: ReservationKey,
    /// The key to register for the destination nexus.
    pub service_action_key: ReservationKey,
    /// UNREG: unregister the sending nexus afterwards.
    pub unreg: bool,
    /// APTPL.
    pub aptpl: bool,
    /// RELATIVE TARGET PORT IDENTIFIER of the destination.
    pub relative_target_port: u16,
    /// The destination initiator.
    pub transport_id: TransportId,
}

const UNREG: u8 = 0x02;

impl TryFrom<&[u8]> for RegisterAndMoveParameters {
    type Error = ParamListError;

    fn try_from(b: &[u8]) -> Result<RegisterAndMoveParameters, ParamListError> {
        if b.len() < BASIC_PARAM_LEN {
            return Err(ParamListError::Length(b.len()));
        }
        let tid_len = be32(b, 20) as usize;
        if tid_len.checked_add(BASIC_PARAM_LEN) != Some(b.len()) {
            return Err(ParamListError::InvalidField(20));
        }
        let transport_id = TransportId::from_bytes(&b[BASIC_PARAM_LEN..])
            .ok_or(ParamListError::InvalidField(BASIC_PARAM_LEN))?;
        Ok(RegisterAndMoveParameters {
            reservation_key: ReservationKey(be64(b, 0)),
            service_action_key: ReservationKey(be64(b, 8)),
            unreg: b[17] & UNREG != 0,
            aptpl: b[17] & APTPL != 0,
            relative_target_port: u16::from_be_bytes([b[18], b[19]]),
            transport_id,
        })
    }
}

impl RegisterAndMoveParameters {
    /// Encodes the list as a client sends it.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; BASIC_PARAM_LEN];
        b[0..8].copy_from_slice(&self.reservation_key.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.service_action_key.0.to_be_bytes());
        b[17] = if self.unreg { UNREG } else { 0 } | if self.aptpl { APTPL } else { 0 };
        b[18..20].copy_from_slice(&self.relative_target_port.to_be_bytes());
        let tid = self.transport_id.as_bytes();
        b[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        b.extend_from_slice(tid);
        b
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_any_list_long_enough_to_hold_them() {
        let mut list = [0u8; 20];
        list[7] = 1;
        list[15] = 2;
        let keys = PrOutKeys::from(&list[..]);
        assert_eq!(keys.reservation_key, Some(ReservationKey(1)));
        assert_eq!(keys.service_action_key, Some(ReservationKey(2)));
        assert_eq!(PrOutParameters::try_from(&list[..]).ok(), None);
        let short = PrOutKeys::from(&list[..12]);
        assert_eq!(short.reservation_key, Some(ReservationKey(1)));
        assert_eq!(short.service_action_key, None);
        assert_eq!(PrOutKeys::from(&[][..]), PrOutKeys::default());
    }

    fn iscsi(name: &str) -> Vec<u8> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        while n.len() < 20 || n.len() % 4 != 0 {
            n.push(0);
        }
        let mut b = vec![protocol_id::ISCSI, 0];
        b.extend_from_slice(&(n.len() as u16).to_be_bytes());
        b.extend_from_slice(&n);
        b
    }

    #[test]
    fn basic_list_must_be_exactly_24_without_spec_i_pt() {
        let p = PrOutParameters {
            reservation_key: ReservationKey(0x1122),
            service_action_key: ReservationKey(0xabcd),
            aptpl: true,
            ..Default::default()
        };
        let b = p.encode();
        assert_eq!(b.len(), 24);
        assert_eq!(b[20], 0x01);
        assert_eq!(PrOutParameters::try_from(&b[..]), Ok(p));
        assert_eq!(
            PrOutParameters::try_from(&b[..23]),
            Err(ParamListError::Length(23))
        );
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            PrOutParameters::try_from(&long[..]),
            Err(ParamListError::Length(25))
        );
    }

    #[test]
    fn spec_i_pt_list_round_trips() {
        let p = PrOutParameters {
            reservation_key: ReservationKey(0),
            service_action_key: ReservationKey(7),
            all_tg_pt: false,
            aptpl: false,
            transport_ids: Some(vec![
                TransportId::sas(0x5001405000000001),
                TransportId::from_bytes(&iscsi("iqn.2026-11.example:node1")).unwrap(),
            ]),
        };
        let b = p.encode();
        assert_eq!(b[20], 0x08);
        assert_eq!(PrOutParameters::try_from(&b[..]), Ok(p));
    }

    #[test]
    fn transport_id_lengths_that_lie_are_invalid_fields() {
        let mut p = PrOutParameters {
            transport_ids: Some(vec![TransportId::sas(1)]),
            ..Default::default()
        }
        .encode();
        // TRANSPORTID PARAMETER DATA LENGTH one more than what follows.
        p[27] += 1;
        assert_eq!(
            PrOutParameters::try_from(&p[..]),
            Err(ParamListError::InvalidField(24))
        );
        // Overflowing length.
        p[24..28].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            PrOutParameters::try_from(&p[..]),
            Err(ParamListError::InvalidField(24))
        );
        // An iSCSI TransportID whose additional length runs past the data.
        let mut tid = iscsi("iqn.x");
        tid[3] = 200;
        let mut b = vec![0u8; 24];
        b[20] = 0x08;
        b.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        b.extend_from_slice(&tid);
        assert_eq!(
            PrOutParameters::try_from(&b[..]),
            Err(ParamListError::InvalidField(28))
        );
        // An unknown protocol identifier.
        let mut b = vec![0u8; 24];
        b[20] = 0x08;
        b.extend_from_slice(&24u32.to_be_bytes());
        let mut unknown = vec![0u8; 24];
        unknown[0] = 0x0f;
        b.extend_from_slice(&unknown);
        assert_eq!(
            PrOutParameters::try_from(&b[..]),
            Err(ParamListError::InvalidField(28))
        );
        // SPEC_I_PT with no room for the length field.
        let mut b = [0u8; 27];
        b[20] = 0x08;
        assert_eq!(
            PrOutParameters::try_from(&b[..]),
            Err(ParamListError::Length(27))
        );
    }

    #[test]
    fn register_and_move_round_trips_and_checks_its_length() {
        let p = RegisterAndMoveParameters {
            reservation_key: ReservationKey(1),
            service_action_key: ReservationKey(2),
            unreg: true,
            aptpl: false,
            relative_target_port: 3,
            transport_id: TransportId::sas(0x42),
        };
        let b = p.encode();
        assert_eq!(b.len(), 48);
        assert_eq!(b[17], 0x02);
        assert_eq!(RegisterAndMoveParameters::try_from(&b[..]), Ok(p));
        assert_eq!(
            RegisterAndMoveParameters::try_from(&b[..47]),
            Err(ParamListError::InvalidField(20))
        );
        assert_eq!(
            RegisterAndMoveParameters::try_from(&b[..20]),
            Err(ParamListError::Length(20))
        );
    }

    #[test]
    fn errors_map_to_illegal_request_sense() {
        assert_eq!(
            ParamListError::Length(3).sense(),
            SenseCode::PARAMETER_LIST_LENGTH_ERROR
        );
        assert_eq!(
            ParamListError::InvalidField(3).sense(),
            SenseCode::INVALID_FIELD_IN_PARAMETER_LIST
        );
    }
}
