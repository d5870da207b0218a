// SPDX-License-Identifier: GPL-2.0-or-later
//! `--status`: the whole persistent reservation state of a logical unit in
//! one table (generation, reservation type and scope, every registrant's key
//! and TransportID, the holder marked), from READ FULL STATUS, or from READ
//! KEYS and READ RESERVATION on a device without READ FULL STATUS.
//! Pure: the commands are run by the caller.

use std::fmt::Write as _;

use serde::Serialize;

use crate::json::{is_all_registrants, Registration, Reservation};
use crate::render::type_name;
use qemu_pr_helper::client::transport_id;
use qemu_pr_helper::domain::pr_in_data::{Decoded, ReadFullStatus, ReadKeys, ReadReservation};
use qemu_pr_helper::domain::sense::ScsiStatus;
use qemu_pr_helper::domain::service_action::ReservationKey;

/// Where the state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One READ FULL STATUS.
    FullStatus,
    /// READ KEYS then READ RESERVATION (no TransportIDs, no ports).
    KeysAndReservation,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::FullStatus => "READ FULL STATUS",
            Source::KeysAndReservation => "READ KEYS + READ RESERVATION",
        }
    }
}

/// The reservation, if one is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// TYPE.
    pub type_code: u8,
    /// SCOPE (0: LU_SCOPE).
    pub scope: u8,
    /// The holder's key (0 for an all-registrants type, as READ
    /// RESERVATION reports it).
    pub key: ReservationKey,
}

impl Held {
    /// An all-registrants type: every registrant holds the reservation.
    fn all_registrants(&self) -> bool {
        is_all_registrants(self.type_code)
    }
}

/// One registered I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registrant {
    /// Its RESERVATION KEY.
    pub key: ReservationKey,
    /// It holds the reservation.
    pub holder: bool,
    /// ALL_TG_PT (unknown without READ FULL STATUS).
    pub all_tg_pt: Option<bool>,
    /// RELATIVE TARGET PORT IDENTIFIER (unknown without READ FULL STATUS).
    pub relative_target_port: Option<u16>,
    /// The initiator's TransportID (unknown without READ FULL STATUS).
    pub transport_id: Option<Vec<u8>>,
}

/// The state `--status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Which commands it came from.
    pub source: Source,
    /// PRGENERATION.
    pub generation: u32,
    /// The reservation, if any.
    pub reservation: Option<Held>,
    /// Every registration.
    pub registrants: Vec<Registrant>,
    /// Some data was cut off by the allocation length.
    pub truncated: bool,
}

impl Status {
    /// From READ FULL STATUS: the holder is each descriptor with R_HOLDER.
    pub fn from_full_status(d: &Decoded<ReadFullStatus>) -> Status {
        let v = &d.value;
        Status {
            source: Source::FullStatus,
            generation: v.generation,
            reservation: v.descriptors.iter().find(|r| r.r_holder).map(|r| Held {
                type_code: r.type_code,
                scope: r.scope,
                key: if is_all_registrants(r.type_code) {
                    ReservationKey(0)
                } else {
                    r.key
                },
            }),
            registrants: v
                .descriptors
                .iter()
                .map(|r| Registrant {
                    key: r.key,
                    holder: r.r_holder,
                    all_tg_pt: Some(r.all_tg_pt),
                    relative_target_port: Some(r.relative_target_port),
                    transport_id: Some(r.transport_id.clone()),
                })
                .collect(),
            truncated: d.truncated,
        }
    }

    /// From READ KEYS and READ RESERVATION: a registrant holds the
    /// reservation when its key is the reservation's (every registrant, for
    /// an all-registrants type).
    pub fn from_keys_and_reservation(
        keys: &Decoded<ReadKeys>,
        reservation: &Decoded<ReadReservation>,
    ) -> Status {
        let held = reservation.value.reservation.as_ref().map(|r| Held {
            type_code: r.type_code,
            scope: r.scope,
            key: r.key,
        });
        let holder_key = reservation.value.reservation.as_ref().map(|r| r.key);
        let all = held.as_ref().is_some_and(Held::all_registrants);
        Status {
            source: Source::KeysAndReservation,
            generation: keys.value.generation,
            registrants: keys
                .value
                .keys
                .iter()
                .map(|&key| Registrant {
                    key,
                    holder: held.is_some() && (all || Some(key) == holder_key),
                    all_tg_pt: None,
                    relative_target_port: None,
                    transport_id: None,
                })
                .collect(),
            reservation: held,
            truncated: keys.truncated || reservation.truncated,
        }
    }

    /// The table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "  PR generation=0x{:x} (from {})\n",
            self.generation,
            self.source.name()
        );
        match &self.reservation {
            None => out.push_str("  reservation: none\n"),
            Some(r) => {
                let scope = match r.scope {
                    0 => "LU_SCOPE".to_string(),
                    s => format!("scope {s}"),
                };
                let _ = writeln!(
                    out,
                    "  reservation: {}, {scope}; holder marked *",
                    type_name(r.type_code)
                );
            }
        }
        if self.registrants.is_empty() {
            out.push_str("  no registrants\n");
            return out;
        }
        let _ = writeln!(
            out,
            "  {:<6}  {:<18}  {:<5}  TRANSPORT ID",
            "HOLDER", "KEY", "PORT"
        );
        for r in &self.registrants {
            let port = match (r.all_tg_pt, r.relative_target_port) {
                (Some(true), _) => "all".to_string(),
                (_, Some(p)) => p.to_string(),
                _ => "-".to_string(),
            };
            let tid = r
                .transport_id
                .as_deref()
                .map_or_else(|| "-".to_string(), transport_id::to_text);
            let mark = if r.holder { "*" } else { "" };
            let _ = writeln!(
                out,
                "  {mark:<6}  {:<18}  {port:<5}  {tid}",
                r.key.to_string()
            );
        }
        out
    }

    /// The reservation in JSON.
    pub fn held(&self) -> Option<Reservation> {
        self.reservation
            .as_ref()
            .map(|r| Reservation::new(r.key, r.scope, r.type_code))
    }

    /// Every registration in JSON.
    pub fn registrations(&self) -> Vec<Registration> {
        self.registrants
            .iter()
            .map(|r| Registration {
                key: r.key.to_string(),
                holder: r.holder,
                all_tg_pt: r.all_tg_pt,
                relative_target_port: r.relative_target_port,
                transport_id: r.transport_id.as_deref().map(crate::render::hex_string),
                transport_id_text: r.transport_id.as_deref().map(transport_id::to_text),
            })
            .collect()
    }

    /// The `--json` form: a GOOD answer, shaped as READ FULL STATUS's.
    pub fn json(&self, exit_status: u8) -> Json {
        Json {
            command: "status",
            command_name: "status",
            status: ScsiStatus::GOOD.0,
            status_name: ScsiStatus::GOOD.name(),
            source: self.source.name(),
            generation: self.generation,
            reservation: self.held(),
            registrations: self.registrations(),
            truncated: self.truncated,
            exit_status,
        }
    }
}

/// `--status --json`.
#[derive(Debug, Serialize)]
pub struct Json {
    /// Always "status".
    pub command: &'static str,
    /// Always "status".
    pub command_name: &'static str,
    /// The SCSI status of the commands read: GOOD (a failure is shown as
    /// that command's answer instead).
    pub status: u8,
    /// Its name.
    pub status_name: &'static str,
    /// "READ FULL STATUS" or "READ KEYS + READ RESERVATION".
    pub source: &'static str,
    /// PRGENERATION.
    pub generation: u32,
    /// The reservation, or null.
    pub reservation: Option<Reservation>,
    /// Every registration, holders marked.
    pub registrations: Vec<Registration>,
    /// Some data was cut off by the allocation length.
    pub truncated: bool,
    /// The process's exit status.
    pub exit_status: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_pr_helper::domain::param_list::TransportId;
    use qemu_pr_helper::domain::pr_in_data::{FullStatusDescriptor, Reservation};
    use qemu_pr_helper::domain::service_action::ReservationType;

    /// Shared with the client's test against a fake helper.
    mod full_status {
        use super::*;
        include!("../../../tests/common/full_status.rs");
    }
    use full_status::{full_status_of_two, TABLE_OF_TWO};

    #[test]
    fn full_status_table_marks_the_holder() {
        let fs = full_status_of_two();
        let s = Status::from_full_status(&ReadFullStatus::decode(&fs.encode()).unwrap());
        assert_eq!(s.table(), TABLE_OF_TWO);
        let j = serde_json::to_value(s.json(0)).unwrap();
        assert_eq!(j["registrations"][0]["holder"], true);
        assert_eq!(
            j["registrations"][1]["transport_id_text"],
            "sas,5000000200000002"
        );
        assert_eq!(j["reservation"]["type"], 5);
    }

    #[test]
    fn status_json_and_read_full_status_json_agree_on_registrations() {
        use qemu_pr_helper::client::request::{PrRequest, Reply};
        use qemu_pr_helper::domain::framing::PrReply;
        use qemu_pr_helper::domain::service_action::PrInServiceAction;
        let data = full_status_of_two().encode();
        let s = Status::from_full_status(&ReadFullStatus::decode(&data).unwrap());
        let status = serde_json::to_value(s.json(0)).unwrap();
        let request = PrRequest::pr_in(PrInServiceAction::ReadFullStatus, 8192).unwrap();
        let reply = Reply::from_pr_reply(PrReply::good(data)).unwrap();
        let answer = serde_json::to_value(crate::json::Answer::new(&request, &reply, 0)).unwrap();
        assert_eq!(answer["registrations"], status["registrations"]);
        assert_eq!(answer["reservation"], status["reservation"]);
        assert_eq!(answer["generation"], status["generation"]);
        for j in [&answer, &status] {
            assert_eq!(j["status"], 0);
            assert_eq!(j["status_name"], "GOOD");
        }
        assert_eq!(answer["command"], "read-full-status");
        assert_eq!(status["command"], "status");
        // The reservation has READ RESERVATION's shape, holder's key included.
        let rr = ReadReservation {
            generation: 4,
            reservation: Some(Reservation {
                key: ReservationKey(0xabc),
                scope: 0,
                type_code: 5,
            }),
        };
        let request = PrRequest::pr_in(PrInServiceAction::ReadReservation, 8192).unwrap();
        let reply = Reply::from_pr_reply(PrReply::good(rr.encode())).unwrap();
        let read = serde_json::to_value(crate::json::Answer::new(&request, &reply, 0)).unwrap();
        assert_eq!(read["reservation"], status["reservation"]);
        assert_eq!(status["reservation"]["key"], "0xabc");
        let keys: Vec<&String> = status["registrations"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            keys,
            [
                "all_tg_pt",
                "holder",
                "key",
                "relative_target_port",
                "transport_id",
                "transport_id_text"
            ]
        );
    }

    /// The status from READ KEYS listing keys 1 and 2 and READ RESERVATION
    /// of `key` with `rtype`, each read back from its encoding.
    fn keys_1_and_2_reserved_by(key: u64, rtype: ReservationType) -> Status {
        let keys = ReadKeys {
            generation: 2,
            keys: vec![ReservationKey(1), ReservationKey(2)],
        };
        let res = ReadReservation {
            generation: 2,
            reservation: Some(Reservation::new(ReservationKey(key), rtype)),
        };
        Status::from_keys_and_reservation(
            &ReadKeys::decode(&keys.encode()).unwrap(),
            &ReadReservation::decode(&res.encode()).unwrap(),
        )
    }

    #[test]
    fn keys_and_reservation_mark_by_key_and_leave_transport_ids_unknown() {
        let s = keys_1_and_2_reserved_by(2, ReservationType::WriteExclusive);
        let t = s.table();
        assert!(t.contains("(from READ KEYS + READ RESERVATION)"), "{t}");
        assert!(
            t.contains("\n          0x1                 -      -\n"),
            "{t}"
        );
        assert!(
            t.contains("\n  *       0x2                 -      -\n"),
            "{t}"
        );
        let j = serde_json::to_value(s.json(0)).unwrap();
        assert!(j["registrations"][0]["transport_id"].is_null());
    }

    #[test]
    fn all_registrants_type_makes_everyone_holder() {
        let s = keys_1_and_2_reserved_by(0, ReservationType::ExclusiveAccessAllRegistrants);
        assert!(s.registrants.iter().all(|r| r.holder));
    }

    #[test]
    fn nothing_registered() {
        let s = Status::from_full_status(
            &ReadFullStatus::decode(&ReadFullStatus::default().encode()).unwrap(),
        );
        assert_eq!(
            s.table(),
            "  PR generation=0x0 (from READ FULL STATUS)\n  reservation: none\n  no registrants\n"
        );
    }
}
