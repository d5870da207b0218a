// SPDX-License-Identifier: GPL-2.0-or-later
//! `--json`: one line of JSON for every outcome, a failure included, so that a
//! script reads one shape whatever happened. Keys are strings ("0x…") because
//! JSON numbers cannot hold 64 bits exactly.
//!
//! Every object has `exit_status` (the process's exit status). An answer from
//! the helper adds `command` (a token: the long option that asks for it,
//! "read-keys", "reserve", ...), `command_name` (sg_persist's words, "PR in
//! (Read keys)"), `status` (the SCSI status byte, a number) and `status_name`,
//! `payload` (hex), `sense` only when there is sense, and the decoded PR IN
//! data with GOOD; a failure without an answer has `error` (a kind) and
//! `message` instead. A registration has one shape, [`Registration`],
//! whether it comes from READ FULL STATUS or from `--status`.

use serde::Serialize;

use crate::render::{command_name, command_token, hex_string, type_name};
use crate::status::Status;
use qemu_pr_helper::client::exit_status;
use qemu_pr_helper::client::request::{PrRequest, Reply};
use qemu_pr_helper::domain::pr_in_data::{Decoded, PrInData};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseBuffer};
use qemu_pr_helper::domain::service_action::{ReservationKey, ReservationType};

/// An answer from the helper.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// What was sent, as a token: "read-keys", "reserve", ...
    pub command: String,
    /// What was sent, in sg_persist's words: "PR in (Read keys)".
    pub command_name: String,
    /// The SCSI status byte.
    pub status: u8,
    /// Its name: "GOOD", "CHECK CONDITION", ...
    pub status_name: &'static str,
    /// The sense data, with CHECK CONDITION only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sense: Option<Sense>,
    /// The PR IN data as received, in hex ("" for none).
    pub payload: String,
    /// The PR IN data decoded, with GOOD.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// The process's exit status.
    pub exit_status: u8,
}

/// Sense data: the bytes and what they say.
#[derive(Debug, Serialize)]
pub struct Sense {
    /// The sense bytes in hex, up to their own additional length.
    pub hex: String,
    /// SENSE KEY, when the format is recognised (70h-73h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<u8>,
    /// Its name: "ILLEGAL REQUEST", ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<&'static str>,
    /// ADDITIONAL SENSE CODE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asc: Option<u8>,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ascq: Option<u8>,
    /// The name of the ASC/ASCQ pair, when it is a known one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
}

impl Sense {
    /// The sense of a CHECK CONDITION; `None` for an all-zero buffer.
    pub fn of(sense: &SenseBuffer) -> Option<Sense> {
        if sense.0.iter().all(|&b| b == 0) {
            return None;
        }
        let code = sense.code();
        let len = match sense.0[0] & 0x7f {
            0x70..=0x73 => 8 + usize::from(sense.0[7]),
            _ => sense.0.len(),
        };
        Some(Sense {
            hex: hex_string(&sense.0[..len.min(sense.0.len())]),
            key: code.map(|c| c.key.0),
            key_name: code.map(|c| c.key.name()),
            asc: code.map(|c| c.asc),
            ascq: code.map(|c| c.ascq),
            name: code.and_then(|c| c.name()),
        })
    }
}

/// Whether the decoded data is whole.
#[derive(Debug, Serialize)]
pub struct Completeness {
    /// The length field the device sent.
    pub additional_length: u32,
    /// Items are missing: the allocation length was too small.
    pub truncated: bool,
    /// Bytes that formed no whole item (0 from a conforming device).
    pub leftover: usize,
}

impl<T> From<&Decoded<T>> for Completeness {
    fn from(d: &Decoded<T>) -> Completeness {
        Completeness {
            additional_length: d.claimed_len,
            truncated: d.truncated,
            leftover: d.leftover,
        }
    }
}

/// A reservation, one shape from READ RESERVATION, READ FULL STATUS and
/// `--status`: a script reads `.reservation.key` the same from each.
#[derive(Debug, Serialize)]
pub struct Reservation {
    /// The holder's RESERVATION KEY, as READ RESERVATION reports it: 0x0
    /// for an all-registrants type, which every registrant holds.
    pub key: String,
    /// SCOPE (0: LU_SCOPE).
    pub scope: u8,
    /// TYPE.
    #[serde(rename = "type")]
    pub type_code: u8,
    /// Its name: "Write Exclusive", ...
    pub type_name: String,
    /// An all-registrants type: every registrant holds it.
    pub all_registrants: bool,
}

impl Reservation {
    /// The reservation of TYPE `type_code` and SCOPE `scope` held with
    /// `key`.
    pub fn new(key: ReservationKey, scope: u8, type_code: u8) -> Reservation {
        Reservation {
            key: key.to_string(),
            scope,
            type_code,
            type_name: type_name(type_code),
            all_registrants: is_all_registrants(type_code),
        }
    }
}

/// Whether TYPE `type_code` is held by every registrant.
pub fn is_all_registrants(type_code: u8) -> bool {
    matches!(
        ReservationType::from_code(type_code),
        Some(
            ReservationType::WriteExclusiveAllRegistrants
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    )
}

/// One registered I_T nexus, the same from READ FULL STATUS and from
/// `--status`; null where READ KEYS cannot tell.
#[derive(Debug, Serialize)]
pub struct Registration {
    /// The registered key.
    pub key: String,
    /// It holds the reservation (R_HOLDER).
    pub holder: bool,
    /// ALL_TG_PT.
    pub all_tg_pt: Option<bool>,
    /// RELATIVE TARGET PORT IDENTIFIER.
    pub relative_target_port: Option<u16>,
    /// The TransportID's bytes in hex.
    pub transport_id: Option<String>,
    /// The TransportID as `-X` reads it: "sas,5001405000000001", ...
    pub transport_id_text: Option<String>,
}

/// REPORT CAPABILITIES.
#[derive(Debug, Serialize)]
pub struct Capabilities {
    /// The bits and the type mask, as the device sent them.
    #[serde(flatten)]
    pub bits: qemu_pr_helper::domain::pr_in_data::Capabilities,
    /// The type codes the mask allows.
    pub types: Vec<u8>,
}

/// Decoded PR IN data; its fields sit beside the answer's.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Data {
    /// READ KEYS.
    Keys {
        /// PRGENERATION.
        generation: u32,
        /// The registered keys.
        keys: Vec<String>,
        /// Whether every key arrived.
        #[serde(flatten)]
        completeness: Completeness,
    },
    /// READ RESERVATION.
    Reservation {
        /// PRGENERATION.
        generation: u32,
        /// The reservation, or null.
        reservation: Option<Reservation>,
        /// Whether the reservation arrived.
        #[serde(flatten)]
        completeness: Completeness,
    },
    /// REPORT CAPABILITIES.
    Capabilities {
        /// The capability bits.
        capabilities: Capabilities,
        /// Whether every byte arrived.
        #[serde(flatten)]
        completeness: Completeness,
    },
    /// READ FULL STATUS.
    FullStatus {
        /// PRGENERATION.
        generation: u32,
        /// The reservation, or null.
        reservation: Option<Reservation>,
        /// One entry per registered I_T nexus.
        registrations: Vec<Registration>,
        /// Whether every descriptor arrived.
        #[serde(flatten)]
        completeness: Completeness,
    },
    /// Data too short to decode.
    DecodeError {
        /// Why.
        decode_error: String,
    },
}

impl Data {
    /// Decodes GOOD PR IN data; `None` for an unknown service action.
    pub fn of(request: &PrRequest, payload: &[u8]) -> Option<Data> {
        let action = request.cdb().pr_in_action()?;
        Some(match PrInData::decode(action, payload) {
            Err(e) => Data::DecodeError {
                decode_error: e.to_string(),
            },
            Ok(None) => return None,
            Ok(Some(PrInData::Keys(d))) => Data::Keys {
                generation: d.value.generation,
                keys: d.value.keys.iter().map(|k| k.to_string()).collect(),
                completeness: (&d).into(),
            },
            Ok(Some(PrInData::Reservation(d))) => Data::Reservation {
                generation: d.value.generation,
                reservation: d
                    .value
                    .reservation
                    .as_ref()
                    .map(|r| Reservation::new(r.key, r.scope, r.type_code)),
                completeness: (&d).into(),
            },
            Ok(Some(PrInData::Capabilities(d))) => {
                let c = &d.value;
                Data::Capabilities {
                    capabilities: Capabilities {
                        bits: *c,
                        types: c.supported_types().iter().map(|t| t.code()).collect(),
                    },
                    completeness: (&d).into(),
                }
            }
            Ok(Some(PrInData::FullStatus(d))) => {
                let status = Status::from_full_status(&d);
                Data::FullStatus {
                    generation: d.value.generation,
                    reservation: status.held(),
                    registrations: status.registrations(),
                    completeness: (&d).into(),
                }
            }
        })
    }
}

impl Answer {
    /// The JSON for one answer.
    pub fn new(request: &PrRequest, reply: &Reply, exit_status: u8) -> Answer {
        let status = reply.header.scsi_status();
        Answer {
            command: command_token(request),
            command_name: command_name(request),
            status: status.0,
            status_name: status.name(),
            sense: (status == ScsiStatus::CHECK_CONDITION)
                .then(|| Sense::of(&reply.header.sense))
                .flatten(),
            payload: hex_string(&reply.payload),
            data: (status == ScsiStatus::GOOD)
                .then(|| Data::of(request, &reply.payload))
                .flatten(),
            exit_status,
        }
    }
}

/// A failure with no answer to show.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// What was to be sent, as a token, when the options got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What was to be sent, in sg_persist's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_name: Option<String>,
    /// The kind: "syntax", "contradict", "device", "not_a_device",
    /// "helper_unreachable", "timeout", "helper_protocol".
    pub error: &'static str,
    /// The one-line message the text output prints.
    pub message: String,
    /// The process's exit status.
    pub exit_status: u8,
}

/// One JSON line (serde_json cannot fail on these types: no maps with
/// non-string keys, no non-finite floats).
pub fn line(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        format!(
            "{{\"error\":\"internal\",\"message\":\"{e}\",\"exit_status\":{}}}",
            exit_status::OTHER
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_pr_helper::client::request::PrOutOptions;
    use qemu_pr_helper::domain::framing::PrReply;
    use qemu_pr_helper::domain::pr_in_data::{ReadKeys, ReadReservation};
    use qemu_pr_helper::domain::sense::SenseCode;
    use qemu_pr_helper::domain::service_action::{
        PrInServiceAction, PrOutServiceAction, ReservationKey,
    };
    use serde_json::Value;

    fn reply(r: PrReply) -> Reply {
        Reply::from_pr_reply(r).unwrap()
    }

    fn parse(request: &PrRequest, r: PrReply) -> Value {
        let rep = reply(r);
        let code = exit_status::for_reply(rep.header.scsi_status(), &rep.header.sense);
        serde_json::from_str(&line(&Answer::new(request, &rep, code))).unwrap()
    }

    #[test]
    fn good_read_keys_has_no_sense_field() {
        let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 8192).unwrap();
        let data = ReadKeys {
            generation: 3,
            keys: vec![ReservationKey(u64::MAX)],
        };
        let j = parse(&req, PrReply::good(data.encode()));
        assert_eq!(j["command"], "read-keys");
        assert_eq!(j["command_name"], "PR in (Read keys)");
        assert_eq!(j["status"], 0);
        assert!(j.get("sense").is_none(), "{j}");
        assert_eq!(j["generation"], 3);
        assert_eq!(j["keys"][0], "0xffffffffffffffff");
        assert_eq!(j["truncated"], false);
        assert_eq!(j["payload"], "0000000300000008ffffffffffffffff");
        assert_eq!(j["exit_status"], 0);
    }

    #[test]
    fn check_condition_has_decoded_sense_cut_to_its_length() {
        let req = PrOutOptions::new(PrOutServiceAction::Release)
            .build()
            .unwrap();
        let j = parse(
            &req,
            PrReply::check_condition(SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION),
        );
        assert_eq!(j["status_name"], "CHECK CONDITION");
        let s = &j["sense"];
        assert_eq!(s["hex"], "700005000000000a00000000260400000000");
        assert_eq!(s["key"], 5);
        assert_eq!(s["key_name"], "ILLEGAL REQUEST");
        assert_eq!(
            (s["asc"].as_u64(), s["ascq"].as_u64()),
            (Some(0x26), Some(4))
        );
        assert_eq!(s["name"], "INVALID RELEASE OF PERSISTENT RESERVATION");
        assert_eq!(j["exit_status"], 5);
        assert!(j.get("generation").is_none());
    }

    #[test]
    fn capabilities_carry_every_bit_by_its_name_and_the_types() {
        use qemu_pr_helper::domain::pr_in_data::Capabilities as Bits;
        use qemu_pr_helper::domain::service_action::ReservationType;
        let req = PrRequest::pr_in(PrInServiceAction::ReportCapabilities, 8192).unwrap();
        let bits = Bits {
            crh: true,
            atp_c: true,
            ptpl_c: true,
            tmv: true,
            allow_commands: 1,
            type_mask: Bits::mask_of(&[ReservationType::WriteExclusive]),
            ..Bits::default()
        };
        let j = parse(&req, PrReply::good(bits.encode()));
        let c = &j["capabilities"];
        for (name, on) in [
            ("rlr_c", false),
            ("crh", true),
            ("sip_c", false),
            ("atp_c", true),
            ("ptpl_c", true),
            ("tmv", true),
            ("ptpl_a", false),
        ] {
            assert_eq!(c[name], on, "{name}: {c}");
        }
        assert_eq!(c["allow_commands"], 1);
        assert_eq!(
            c["type_mask"],
            Bits::mask_of(&[ReservationType::WriteExclusive])
        );
        assert_eq!(c["types"], serde_json::json!([1]));
    }

    #[test]
    fn conflict_has_neither_sense_nor_data() {
        let req = PrOutOptions::new(PrOutServiceAction::Reserve)
            .build()
            .unwrap();
        let j = parse(&req, PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT));
        assert_eq!(j["status"], 0x18);
        assert!(j.get("sense").is_none());
        assert_eq!(j["exit_status"], 24);
    }

    #[test]
    fn reservation_null_and_decode_error() {
        let req = PrRequest::pr_in(PrInServiceAction::ReadReservation, 8192).unwrap();
        let j = parse(&req, PrReply::good(ReadReservation::default().encode()));
        assert!(j["reservation"].is_null());
        let j = parse(&req, PrReply::good(vec![0, 0]));
        assert!(j["decode_error"].is_string());
    }

    #[test]
    fn failure_is_one_line_with_kind() {
        let f = Failure {
            command: None,
            command_name: None,
            error: "helper_unreachable",
            message: "no helper socket at \"/x\"\n".into(),
            exit_status: exit_status::HELPER_UNREACHABLE,
        };
        let s = line(&f);
        assert!(!s.contains('\n'));
        let j: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(j["exit_status"], 37);
        assert!(j.get("command").is_none());
    }
}
