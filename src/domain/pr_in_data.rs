// SPDX-License-Identifier: GPL-2.0-or-later
//! PERSISTENT RESERVE IN parameter data: READ KEYS, READ RESERVATION,
//! REPORT CAPABILITIES and READ FULL STATUS (SPC-4 6.16).
//!
//! `encode` writes the whole reply a device would build; the transport cuts it
//! to the ALLOCATION LENGTH. Decoding takes what a client received, which may
//! be cut anywhere: it decodes every item that arrived whole, reports the
//! length the device claimed and whether the data was truncated, and never
//! panics, whatever the lengths inside say.

use super::param_list::TransportId;
use super::service_action::{PrInServiceAction, ReservationKey, ReservationType};

/// PRGENERATION (4) + ADDITIONAL LENGTH (4).
pub const PR_IN_HEADER_LEN: usize = 8;
/// Length of a READ RESERVATION reservation descriptor.
pub const RESERVATION_DESCRIPTOR_LEN: usize = 16;
/// Length of the REPORT CAPABILITIES data (the value of its LENGTH field).
pub const CAPABILITIES_LEN: usize = 8;
/// Length of a READ FULL STATUS descriptor before its TransportID.
pub const FULL_STATUS_DESCRIPTOR_HEADER_LEN: usize = 24;

/// PR IN data too short to decode even its fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrInDataError {
    /// Fewer bytes than the fixed header of the reply.
    #[error("PR IN data of {got} bytes is shorter than its {needed}-byte header")]
    TooShort {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes received.
        got: usize,
    },
}

/// A decoded reply together with what is known about its completeness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<T> {
    /// The items that arrived whole.
    pub value: T,
    /// The length field the device sent: ADDITIONAL LENGTH (bytes after the
    /// 8-byte header), or for REPORT CAPABILITIES its LENGTH (whole data).
    pub claimed_len: u32,
    /// Bytes received.
    pub received: usize,
    /// The data stopped before the claimed length: items are missing.
    pub truncated: bool,
    /// Bytes inside the claimed and received data that formed no whole item
    /// (a length that is not a multiple of the item size, a descriptor that
    /// runs past the claimed end). Zero from a conforming device.
    pub leftover: usize,
}

impl<T> Decoded<T> {
    /// The total length the device claimed for the full reply.
    pub fn claimed_total(&self, header_len: usize) -> u64 {
        header_len as u64 + u64::from(self.claimed_len)
    }
}

/// READ KEYS data: the generation and every registered key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadKeys {
    /// PRGENERATION.
    pub generation: u32,
    /// The registered reservation keys, one per registered I_T nexus.
    pub keys: Vec<ReservationKey>,
}

impl ReadKeys {
    /// The full reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PR_IN_HEADER_LEN + 8 * self.keys.len());
        b.extend_from_slice(&self.generation.to_be_bytes());
        b.extend_from_slice(&len32(8 * self.keys.len()).to_be_bytes());
        for k in &self.keys {
            b.extend_from_slice(&k.0.to_be_bytes());
        }
        b
    }

    /// Decodes possibly truncated data.
    pub fn decode(b: &[u8]) -> Result<Decoded<ReadKeys>, PrInDataError> {
        let (generation, claimed, body) = header(b)?;
        let keys: Vec<ReservationKey> = body
            .chunks_exact(8)
            .map(|c| ReservationKey(be64(c)))
            .collect();
        let leftover = if body.len() == claimed_body_len(claimed) {
            body.len() % 8
        } else {
            0
        };
        Ok(Decoded {
            value: ReadKeys { generation, keys },
            claimed_len: claimed,
            received: b.len(),
            truncated: is_truncated(b.len(), claimed),
            leftover,
        })
    }
}

/// The reservation a READ RESERVATION reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// RESERVATION KEY of the holder (zero for an All Registrants type).
    pub key: ReservationKey,
    /// SCOPE (0 = LU_SCOPE).
    pub scope: u8,
    /// The raw TYPE nibble.
    pub type_code: u8,
}

impl Reservation {
    /// A LU_SCOPE reservation of a given type.
    pub fn new(key: ReservationKey, rtype: ReservationType) -> Reservation {
        Reservation {
            key,
            scope: 0,
            type_code: rtype.code(),
        }
    }

    /// TYPE, if it names a valid reservation type.
    pub fn reservation_type(&self) -> Option<ReservationType> {
        ReservationType::from_code(self.type_code)
    }

    fn scope_type(&self) -> u8 {
        (self.scope << 4) | (self.type_code & 0x0f)
    }
}

/// READ RESERVATION data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadReservation {
    /// PRGENERATION.
    pub generation: u32,
    /// The reservation; `None` when there is none (or it was cut off: see
    /// [`Decoded::truncated`]).
    pub reservation: Option<Reservation>,
}

impl ReadReservation {
    /// The full reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PR_IN_HEADER_LEN + RESERVATION_DESCRIPTOR_LEN);
        b.extend_from_slice(&self.generation.to_be_bytes());
        match &self.reservation {
            None => b.extend_from_slice(&0u32.to_be_bytes()),
            Some(r) => {
                b.extend_from_slice(&len32(RESERVATION_DESCRIPTOR_LEN).to_be_bytes());
                b.extend_from_slice(&r.key.0.to_be_bytes());
                b.extend_from_slice(&[0, 0, 0, 0, 0, r.scope_type(), 0, 0]);
            }
        }
        b
    }

    /// Decodes possibly truncated data.
    pub fn decode(b: &[u8]) -> Result<Decoded<ReadReservation>, PrInDataError> {
        let (generation, claimed, body) = header(b)?;
        let (reservation, leftover) = if claimed_body_len(claimed) >= RESERVATION_DESCRIPTOR_LEN
            && body.len() >= RESERVATION_DESCRIPTOR_LEN
        {
            let r = Reservation {
                key: ReservationKey(be64(&body[..8])),
                scope: body[13] >> 4,
                type_code: body[13] & 0x0f,
            };
            (Some(r), body.len() - RESERVATION_DESCRIPTOR_LEN)
        } else if body.len() == claimed_body_len(claimed) {
            // Everything claimed arrived, and it is not a whole descriptor.
            (None, body.len())
        } else {
            (None, 0)
        };
        Ok(Decoded {
            value: ReadReservation {
                generation,
                reservation,
            },
            claimed_len: claimed,
            received: b.len(),
            truncated: is_truncated(b.len(), claimed),
            leftover,
        })
    }
}

/// REPORT CAPABILITIES data. Serialized with the field names SPC-4 uses
/// (lower case), as the client's `--json` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    /// RLR_C: REPLACE LOST RESERVATION capable.
    pub rlr_c: bool,
    /// CRH: compatible reservation handling (RESERVE(6)/RELEASE(6) rules).
    pub crh: bool,
    /// SIP_C: SPEC_I_PT capable.
    pub sip_c: bool,
    /// ATP_C: ALL_TG_PT capable.
    pub atp_c: bool,
    /// PTPL_C: persist through power loss capable.
    pub ptpl_c: bool,
    /// TMV: the type mask is valid.
    pub tmv: bool,
    /// ALLOW COMMANDS (3 bits).
    pub allow_commands: u8,
    /// PTPL_A: persist through power loss is activated.
    pub ptpl_a: bool,
    /// PERSISTENT RESERVATION TYPE MASK as the 16-bit big-endian field.
    pub type_mask: u16,
}

impl Capabilities {
    /// The bit of the type mask that stands for a reservation type.
    pub fn type_mask_bit(rtype: ReservationType) -> u16 {
        match rtype {
            ReservationType::WriteExclusiveAllRegistrants => 1 << 15,
            ReservationType::ExclusiveAccessRegistrantsOnly => 1 << 14,
            ReservationType::WriteExclusiveRegistrantsOnly => 1 << 13,
            ReservationType::ExclusiveAccess => 1 << 11,
            ReservationType::WriteExclusive => 1 << 9,
            ReservationType::ExclusiveAccessAllRegistrants => 1 << 0,
        }
    }

    /// The type mask for a set of types.
    pub fn mask_of(types: &[ReservationType]) -> u16 {
        types.iter().fold(0, |m, &t| m | Self::type_mask_bit(t))
    }

    /// The types the mask says are supported, in code order.
    pub fn supported_types(&self) -> Vec<ReservationType> {
        ReservationType::ALL
            .into_iter()
            .filter(|&t| self.type_mask & Self::type_mask_bit(t) != 0)
            .collect()
    }

    /// The full reply (8 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; CAPABILITIES_LEN];
        b[..2].copy_from_slice(&len16(CAPABILITIES_LEN).to_be_bytes());
        b[2] = flag(self.rlr_c, 7)
            | flag(self.crh, 4)
            | flag(self.sip_c, 3)
            | flag(self.atp_c, 2)
            | flag(self.ptpl_c, 0);
        b[3] = flag(self.tmv, 7) | ((self.allow_commands & 0x07) << 4) | flag(self.ptpl_a, 0);
        b[4..6].copy_from_slice(&self.type_mask.to_be_bytes());
        b
    }

    /// Decodes possibly truncated data. Fields past the cut read as zero
    /// (false, empty mask); [`Decoded::truncated`] says when that happened.
    pub fn decode(b: &[u8]) -> Result<Decoded<Capabilities>, PrInDataError> {
        if b.len() < 2 {
            return Err(PrInDataError::TooShort {
                needed: 2,
                got: b.len(),
            });
        }
        let claimed = u16::from_be_bytes([b[0], b[1]]);
        // Only what lies inside both the claimed and the received length counts.
        let usable = b.len().min(usize::from(claimed)).min(CAPABILITIES_LEN);
        let mut f = [0u8; CAPABILITIES_LEN];
        f[..usable].copy_from_slice(&b[..usable]);
        let bit = |byte: u8, n: u8| byte & (1 << n) != 0;
        let caps = Capabilities {
            rlr_c: bit(f[2], 7),
            crh: bit(f[2], 4),
            sip_c: bit(f[2], 3),
            atp_c: bit(f[2], 2),
            ptpl_c: bit(f[2], 0),
            tmv: bit(f[3], 7),
            allow_commands: (f[3] >> 4) & 0x07,
            ptpl_a: bit(f[3], 0),
            type_mask: u16::from_be_bytes([f[4], f[5]]),
        };
        Ok(Decoded {
            value: caps,
            claimed_len: u32::from(claimed),
            received: b.len(),
            truncated: b.len() < usize::from(claimed),
            leftover: 0,
        })
    }
}

/// One READ FULL STATUS descriptor: a registration and its I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullStatusDescriptor {
    /// The registered RESERVATION KEY.
    pub key: ReservationKey,
    /// ALL_TG_PT: registered through every target port.
    pub all_tg_pt: bool,
    /// R_HOLDER: this nexus holds the reservation.
    pub r_holder: bool,
    /// SCOPE of the reservation (meaningful when `r_holder`).
    pub scope: u8,
    /// Raw TYPE of the reservation (meaningful when `r_holder`).
    pub type_code: u8,
    /// RELATIVE TARGET PORT IDENTIFIER (meaningful unless `all_tg_pt`).
    pub relative_target_port: u16,
    /// The initiator's TransportID, as the device sent it.
    pub transport_id: Vec<u8>,
}

impl FullStatusDescriptor {
    /// TYPE, if it names a valid reservation type.
    pub fn reservation_type(&self) -> Option<ReservationType> {
        ReservationType::from_code(self.type_code)
    }

    /// The TransportID, if it is one the domain can parse exactly.
    pub fn parsed_transport_id(&self) -> Option<TransportId> {
        TransportId::from_bytes(&self.transport_id)
    }

    fn encoded_len(&self) -> usize {
        FULL_STATUS_DESCRIPTOR_HEADER_LEN + self.transport_id.len()
    }

    fn encode_into(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.key.0.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.push(flag(self.all_tg_pt, 1) | flag(self.r_holder, 0));
        b.push((self.scope << 4) | (self.type_code & 0x0f));
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.relative_target_port.to_be_bytes());
        b.extend_from_slice(&len32(self.transport_id.len()).to_be_bytes());
        b.extend_from_slice(&self.transport_id);
    }

    /// Decodes the descriptor at the start of `b`, if it is whole.
    fn decode(b: &[u8]) -> Option<(FullStatusDescriptor, usize)> {
        let h = b.get(..FULL_STATUS_DESCRIPTOR_HEADER_LEN)?;
        let tid_len = usize::try_from(be32(&h[20..24])).ok()?;
        let total = FULL_STATUS_DESCRIPTOR_HEADER_LEN.checked_add(tid_len)?;
        let transport_id = b.get(FULL_STATUS_DESCRIPTOR_HEADER_LEN..total)?.to_vec();
        Some((
            FullStatusDescriptor {
                key: ReservationKey(be64(&h[..8])),
                all_tg_pt: h[12] & 0x02 != 0,
                r_holder: h[12] & 0x01 != 0,
                scope: h[13] >> 4,
                type_code: h[13] & 0x0f,
                relative_target_port: u16::from_be_bytes([h[18], h[19]]),
                transport_id,
            },
            total,
        ))
    }
}

/// READ FULL STATUS data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadFullStatus {
    /// PRGENERATION.
    pub generation: u32,
    /// One descriptor per registered I_T nexus.
    pub descriptors: Vec<FullStatusDescriptor>,
}

impl ReadFullStatus {
    /// The full reply.
    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self.descriptors.iter().map(|d| d.encoded_len()).sum();
        let mut b = Vec::with_capacity(PR_IN_HEADER_LEN + body);
        b.extend_from_slice(&self.generation.to_be_bytes());
        b.extend_from_slice(&len32(body).to_be_bytes());
        for d in &self.descriptors {
            d.encode_into(&mut b);
        }
        b
    }

    /// Decodes possibly truncated data.
    pub fn decode(b: &[u8]) -> Result<Decoded<ReadFullStatus>, PrInDataError> {
        let (generation, claimed, body) = header(b)?;
        let mut descriptors = Vec::new();
        let mut at = 0;
        while let Some((d, len)) = body.get(at..).and_then(FullStatusDescriptor::decode) {
            descriptors.push(d);
            at += len;
        }
        let leftover = if body.len() == claimed_body_len(claimed) {
            body.len() - at
        } else {
            0
        };
        Ok(Decoded {
            value: ReadFullStatus {
                generation,
                descriptors,
            },
            claimed_len: claimed,
            received: b.len(),
            truncated: is_truncated(b.len(), claimed),
            leftover,
        })
    }
}

/// Any PR IN data, decoded according to the service action that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrInData {
    /// READ KEYS.
    Keys(Decoded<ReadKeys>),
    /// READ RESERVATION.
    Reservation(Decoded<ReadReservation>),
    /// REPORT CAPABILITIES.
    Capabilities(Decoded<Capabilities>),
    /// READ FULL STATUS.
    FullStatus(Decoded<ReadFullStatus>),
}

impl PrInData {
    /// Decodes `b` as the reply to `action`; `Ok(None)` for an unknown action.
    pub fn decode(action: PrInServiceAction, b: &[u8]) -> Result<Option<PrInData>, PrInDataError> {
        Ok(Some(match action {
            PrInServiceAction::ReadKeys => PrInData::Keys(ReadKeys::decode(b)?),
            PrInServiceAction::ReadReservation => {
                PrInData::Reservation(ReadReservation::decode(b)?)
            }
            PrInServiceAction::ReportCapabilities => {
                PrInData::Capabilities(Capabilities::decode(b)?)
            }
            PrInServiceAction::ReadFullStatus => PrInData::FullStatus(ReadFullStatus::decode(b)?),
            PrInServiceAction::Unknown(_) => return Ok(None),
        }))
    }

    /// Whether the data stopped before the length the device claimed.
    pub fn truncated(&self) -> bool {
        match self {
            PrInData::Keys(d) => d.truncated,
            PrInData::Reservation(d) => d.truncated,
            PrInData::Capabilities(d) => d.truncated,
            PrInData::FullStatus(d) => d.truncated,
        }
    }
}

/// Splits the 8-byte header off: generation, ADDITIONAL LENGTH, and the body
/// bounded by both the claimed and the received length.
fn header(b: &[u8]) -> Result<(u32, u32, &[u8]), PrInDataError> {
    if b.len() < PR_IN_HEADER_LEN {
        return Err(PrInDataError::TooShort {
            needed: PR_IN_HEADER_LEN,
            got: b.len(),
        });
    }
    let generation = be32(&b[..4]);
    let claimed = be32(&b[4..8]);
    let rest = &b[PR_IN_HEADER_LEN..];
    let body = &rest[..rest.len().min(claimed_body_len(claimed))];
    Ok((generation, claimed, body))
}

fn claimed_body_len(claimed: u32) -> usize {
    usize::try_from(claimed).unwrap_or(usize::MAX)
}

fn is_truncated(received: usize, claimed: u32) -> bool {
    (received as u64) < PR_IN_HEADER_LEN as u64 + u64::from(claimed)
}

fn flag(set: bool, bit: u8) -> u8 {
    u8::from(set) << bit
}

/// A length for a 32-bit field; PR IN data never comes near the limit.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Callers pass exactly 4 bytes.
fn be32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_be_bytes(w)
}

/// Callers pass at least 8 bytes.
fn be64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_be_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ReadKeys {
        ReadKeys {
            generation: 3,
            keys: vec![ReservationKey(0x1234), ReservationKey(0x5678)],
        }
    }

    fn full_status() -> ReadFullStatus {
        let mut iscsi = vec![0x05, 0, 0, 20];
        iscsi.extend_from_slice(b"iqn.2026-11.x:node1\0");
        ReadFullStatus {
            generation: 9,
            descriptors: vec![
                FullStatusDescriptor {
                    key: ReservationKey(0xabc),
                    all_tg_pt: false,
                    r_holder: true,
                    scope: 0,
                    type_code: 5,
                    relative_target_port: 1,
                    transport_id: TransportId::sas(0x5001_4050_0000_0001).as_bytes().to_vec(),
                },
                FullStatusDescriptor {
                    key: ReservationKey(0xdef),
                    all_tg_pt: true,
                    r_holder: false,
                    scope: 0,
                    type_code: 0,
                    relative_target_port: 0,
                    transport_id: iscsi,
                },
            ],
        }
    }

    #[test]
    fn read_keys_round_trips() {
        let b = keys().encode();
        assert_eq!(
            b,
            [0, 0, 0, 3, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0x56, 0x78]
        );
        let d = ReadKeys::decode(&b).unwrap();
        assert_eq!(d.value, keys());
        assert_eq!(d.claimed_len, 16);
        assert!(!d.truncated);
        assert_eq!(d.leftover, 0);
        let empty = ReadKeys::default().encode();
        assert_eq!(empty, [0; 8]);
        assert_eq!(ReadKeys::decode(&empty).unwrap().value, ReadKeys::default());
    }

    #[test]
    fn read_keys_truncated_at_every_length() {
        let full = keys().encode();
        for n in 0..=full.len() {
            let r = ReadKeys::decode(&full[..n]);
            if n < 8 {
                assert_eq!(r, Err(PrInDataError::TooShort { needed: 8, got: n }));
                continue;
            }
            let d = r.unwrap();
            assert_eq!(d.value.generation, 3);
            assert_eq!(d.claimed_len, 16, "the claim survives the cut");
            assert_eq!(d.truncated, n < full.len());
            assert_eq!(d.value.keys, keys().keys[..(n - 8) / 8]);
            assert_eq!(d.received, n);
            assert_eq!(d.leftover, 0);
        }
    }

    #[test]
    fn read_keys_hostile_lengths() {
        // Claims 4 GiB, sends one key.
        let mut b = keys().encode();
        b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let d = ReadKeys::decode(&b).unwrap();
        assert!(d.truncated);
        assert_eq!(d.value.keys.len(), 2);
        assert_eq!(d.claimed_total(8), 8 + u64::from(u32::MAX));
        // Claims 12: one key and four stray bytes.
        b[4..8].copy_from_slice(&12u32.to_be_bytes());
        let d = ReadKeys::decode(&b).unwrap();
        assert!(!d.truncated);
        assert_eq!(d.value.keys, vec![ReservationKey(0x1234)]);
        assert_eq!(d.leftover, 4);
        // Claims 0 but sends keys: the claim wins.
        b[4..8].copy_from_slice(&0u32.to_be_bytes());
        let d = ReadKeys::decode(&b).unwrap();
        assert!(d.value.keys.is_empty());
        assert!(!d.truncated);
    }

    #[test]
    fn read_reservation_round_trips_with_and_without_one() {
        let none = ReadReservation {
            generation: 7,
            reservation: None,
        };
        assert_eq!(none.encode(), [0, 0, 0, 7, 0, 0, 0, 0]);
        assert_eq!(ReadReservation::decode(&none.encode()).unwrap().value, none);

        let some = ReadReservation {
            generation: 7,
            reservation: Some(Reservation::new(
                ReservationKey(0x1122_3344_5566_7788),
                ReservationType::ExclusiveAccessRegistrantsOnly,
            )),
        };
        let b = some.encode();
        assert_eq!(b.len(), 24);
        assert_eq!(&b[4..8], &[0, 0, 0, 16]);
        assert_eq!(b[21], 0x06);
        let d = ReadReservation::decode(&b).unwrap();
        assert_eq!(d.value, some);
        assert_eq!(
            d.value.reservation.unwrap().reservation_type(),
            Some(ReservationType::ExclusiveAccessRegistrantsOnly)
        );
        for n in 0..b.len() {
            match ReadReservation::decode(&b[..n]) {
                Err(e) => {
                    assert!(n < 8);
                    assert_eq!(e, PrInDataError::TooShort { needed: 8, got: n });
                }
                Ok(d) => {
                    assert!(d.truncated);
                    assert_eq!(d.value.reservation, None);
                    assert_eq!(d.claimed_len, 16);
                }
            }
        }
    }

    #[test]
    fn read_reservation_hostile_lengths() {
        let mut b = ReadReservation {
            generation: 1,
            reservation: Some(Reservation::new(
                ReservationKey(5),
                ReservationType::WriteExclusive,
            )),
        }
        .encode();
        // A claimed length that is no descriptor.
        b[4..8].copy_from_slice(&8u32.to_be_bytes());
        let d = ReadReservation::decode(&b).unwrap();
        assert_eq!(d.value.reservation, None);
        assert_eq!(d.leftover, 8);
        assert!(!d.truncated);
        // A huge claim with a whole descriptor present.
        b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let d = ReadReservation::decode(&b).unwrap();
        assert_eq!(d.value.reservation.unwrap().key, ReservationKey(5));
        assert!(d.truncated);
    }

    #[test]
    fn capabilities_round_trip_and_bit_positions() {
        let c = Capabilities {
            rlr_c: true,
            crh: true,
            sip_c: true,
            atp_c: true,
            ptpl_c: true,
            tmv: true,
            allow_commands: 0b101,
            ptpl_a: true,
            type_mask: Capabilities::mask_of(&ReservationType::ALL),
        };
        let b = c.encode();
        assert_eq!(b, [0, 8, 0x9d, 0xd1, 0xea, 0x01, 0, 0]);
        let d = Capabilities::decode(&b).unwrap();
        assert_eq!(d.value, c);
        assert!(!d.truncated);
        assert_eq!(d.value.supported_types(), ReservationType::ALL.to_vec());

        let only_we = Capabilities {
            tmv: true,
            type_mask: Capabilities::mask_of(&[ReservationType::WriteExclusive]),
            ..Default::default()
        };
        assert_eq!(&only_we.encode()[3..6], &[0x80, 0x02, 0x00]);
        for t in ReservationType::ALL {
            let c = Capabilities {
                type_mask: Capabilities::type_mask_bit(t),
                ..Default::default()
            };
            assert_eq!(c.supported_types(), vec![t]);
        }
    }

    #[test]
    fn capabilities_truncated_at_every_length() {
        let c = Capabilities {
            sip_c: true,
            atp_c: true,
            tmv: true,
            allow_commands: 1,
            type_mask: 0xffff,
            ..Default::default()
        };
        let b = c.encode();
        for n in 0..=b.len() {
            match Capabilities::decode(&b[..n]) {
                Err(e) => {
                    assert!(n < 2);
                    assert_eq!(e, PrInDataError::TooShort { needed: 2, got: n });
                }
                Ok(d) => {
                    assert_eq!(d.truncated, n < 8);
                    assert_eq!(d.claimed_len, 8);
                    assert_eq!(d.value.sip_c, n > 2);
                    assert_eq!(d.value.tmv, n > 3);
                    if n >= 6 {
                        assert_eq!(d.value.type_mask, 0xffff);
                    }
                }
            }
        }
    }

    #[test]
    fn capabilities_hostile_lengths() {
        // LENGTH says 3: only byte 2 counts, the rest is not trusted.
        let d = Capabilities::decode(&[0, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(d.value.rlr_c);
        assert!(!d.value.tmv);
        assert_eq!(d.value.type_mask, 0);
        assert!(!d.truncated);
        // LENGTH says 65535.
        let d = Capabilities::decode(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]).unwrap();
        assert!(d.truncated);
    }

    #[test]
    fn full_status_round_trips() {
        let fs = full_status();
        let b = fs.encode();
        assert_eq!(b.len(), 8 + 24 + 24 + 24 + 24);
        assert_eq!(&b[4..8], &(96u32).to_be_bytes());
        // First descriptor: R_HOLDER, type 5, port 1, TransportID length 24.
        assert_eq!(b[8 + 12], 0x01);
        assert_eq!(b[8 + 13], 0x05);
        assert_eq!(&b[8 + 18..8 + 24], &[0, 1, 0, 0, 0, 24]);
        // Second: ALL_TG_PT.
        assert_eq!(b[8 + 48 + 12], 0x02);
        let d = ReadFullStatus::decode(&b).unwrap();
        assert_eq!(d.value, fs);
        assert!(!d.truncated);
        assert_eq!(d.leftover, 0);
        let first = &d.value.descriptors[0];
        assert_eq!(
            first.parsed_transport_id(),
            Some(TransportId::sas(0x5001_4050_0000_0001))
        );
        assert_eq!(
            first.reservation_type(),
            Some(ReservationType::WriteExclusiveRegistrantsOnly)
        );
        assert!(d.value.descriptors[1].parsed_transport_id().is_some());
        assert_eq!(ReadFullStatus::default().encode(), [0; 8]);
    }

    #[test]
    fn full_status_truncated_at_every_length() {
        let fs = full_status();
        let b = fs.encode();
        for n in 0..=b.len() {
            let r = ReadFullStatus::decode(&b[..n]);
            if n < 8 {
                assert!(r.is_err());
                continue;
            }
            let d = r.unwrap();
            let whole = if n >= b.len() {
                2
            } else if n >= 8 + 48 {
                1
            } else {
                0
            };
            assert_eq!(d.value.descriptors, fs.descriptors[..whole]);
            assert_eq!(d.truncated, n < b.len());
            assert_eq!(d.claimed_len, 96);
            assert_eq!(d.leftover, 0);
        }
    }

    #[test]
    fn full_status_hostile_lengths() {
        let mut b = full_status().encode();
        // ADDITIONAL DESCRIPTOR LENGTH of the first descriptor: 4 GiB.
        b[8 + 20..8 + 24].copy_from_slice(&u32::MAX.to_be_bytes());
        let d = ReadFullStatus::decode(&b).unwrap();
        assert!(d.value.descriptors.is_empty());
        assert_eq!(d.leftover, 96);
        assert!(!d.truncated);
        // A descriptor that runs past the claimed end is not decoded even
        // though its bytes arrived.
        let mut b = full_status().encode();
        b[4..8].copy_from_slice(&60u32.to_be_bytes());
        let d = ReadFullStatus::decode(&b).unwrap();
        assert_eq!(d.value.descriptors.len(), 1);
        assert_eq!(d.leftover, 12);
        // ADDITIONAL LENGTH of 4 GiB.
        let mut b = full_status().encode();
        b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let d = ReadFullStatus::decode(&b).unwrap();
        assert_eq!(d.value.descriptors.len(), 2);
        assert!(d.truncated);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator: no dependency, same cases each run.
        let mut state: u32 = 0x1234_5678;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 160) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Make plausible lengths common so the inner paths run.
            if len >= 8 && next() % 2 == 0 {
                let claim = next() % 200;
                b[4..8].copy_from_slice(&claim.to_be_bytes());
            }
            if len >= 32 && next() % 2 == 0 {
                let claim = next() % 64;
                b[28..32].copy_from_slice(&claim.to_be_bytes());
            }
            for code in 0..5 {
                let _ = PrInData::decode(PrInServiceAction::from_code(code), &b);
            }
        }
    }

    #[test]
    fn dispatch_by_service_action() {
        let b = keys().encode();
        match PrInData::decode(PrInServiceAction::ReadKeys, &b).unwrap() {
            Some(PrInData::Keys(d)) => assert_eq!(d.value, keys()),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            PrInData::decode(PrInServiceAction::Unknown(9), &b).unwrap(),
            None
        );
        let d = PrInData::decode(PrInServiceAction::ReadFullStatus, &b[..12])
            .unwrap()
            .unwrap();
        assert!(d.truncated());
    }
}
