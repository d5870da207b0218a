// SPDX-License-Identifier: GPL-2.0-or-later
//! The audit record: one line per PR OUT (and per refusal) saying who did
//! what to which device and what came of it. Built here, emitted by the
//! server on the `audit` tracing target.

use sha2::{Digest, Sha256};

use super::cdb::{Hex, PrCdb};
use super::framing::PrReply;
use super::param_list::PrOutKeys;
use super::sense::ScsiStatus;
use super::service_action::{ReservationKey, ReservationType};

/// How reservation keys appear in audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDisplay {
    /// The key itself, in hex as `qemu-pr-client` and sg_persist print it
    /// (`0x1111`), so a line can be matched against their output.
    #[default]
    Full,
    /// The first 8 bytes of SHA-256 of the key: correlates lines without
    /// disclosing the key.
    Hashed,
    /// Not shown.
    Omitted,
}

impl KeyDisplay {
    /// Renders `key` as this mode says; `None` when keys are not shown, so
    /// that the field is left out rather than written as a placeholder.
    pub fn render(self, key: ReservationKey) -> Option<String> {
        match self {
            KeyDisplay::Full => Some(key.to_string()),
            KeyDisplay::Hashed => {
                let digest = Sha256::digest(key.0.to_be_bytes());
                Some(format!("sha256:{}", Hex(&digest[..8])))
            }
            KeyDisplay::Omitted => None,
        }
    }
}

/// The name of a SCOPE code, as sg_persist and `qemu-pr-client` print it.
/// SPC-4 defines only LU_SCOPE; 1h and 2h were element and extent scopes.
pub fn scope_name(scope: u8) -> &'static str {
    match scope {
        0 => "LU_SCOPE",
        1 | 2 => "obsolete",
        _ => "reserved",
    }
}

/// The facts of one PR OUT, ready to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrOutAudit {
    /// Service action name.
    pub action: String,
    /// SCOPE nibble.
    pub scope: u8,
    /// SCOPE by name (see [`scope_name`]).
    pub scope_name: &'static str,
    /// TYPE nibble.
    pub type_code: u8,
    /// TYPE by name; `None` when the code names no type (a REGISTER, for
    /// which the field is ignored, sends 0).
    pub type_name: Option<ReservationType>,
    /// RESERVATION KEY as displayed; `None` when the parameter list was too
    /// short to hold it or keys are not shown.
    pub key: Option<String>,
    /// SERVICE ACTION RESERVATION KEY, likewise.
    pub sa_key: Option<String>,
    /// The status answered; `None` when the command never got an answer.
    pub status: Option<ScsiStatus>,
    /// Sense key / ASC / ASCQ of a CHECK CONDITION; `None` without one.
    pub sense: Option<String>,
}

impl PrOutAudit {
    /// Builds the record of `cdb`, whose parameter list held `keys`,
    /// answered by `reply`.
    pub fn new(cdb: &PrCdb, keys: PrOutKeys, reply: &PrReply, shown: KeyDisplay) -> PrOutAudit {
        PrOutAudit::ended(cdb, keys, shown, Some(reply.status), sense_text(reply))
    }

    /// The record of a command that never got an answer (abandoned when the
    /// daemon stopped): whether the device ran it is unknown.
    pub fn abandoned(cdb: &PrCdb, keys: PrOutKeys, shown: KeyDisplay) -> PrOutAudit {
        PrOutAudit::ended(cdb, keys, shown, None, None)
    }

    fn ended(
        cdb: &PrCdb,
        keys: PrOutKeys,
        shown: KeyDisplay,
        status: Option<ScsiStatus>,
        sense: Option<String>,
    ) -> PrOutAudit {
        let render = |key: Option<ReservationKey>| key.and_then(|k| shown.render(k));
        PrOutAudit {
            action: action_name(cdb),
            scope: cdb.scope(),
            scope_name: scope_name(cdb.scope()),
            type_code: cdb.type_code(),
            type_name: cdb.reservation_type(),
            key: render(keys.reservation_key),
            sa_key: render(keys.service_action_key),
            status,
            sense,
        }
    }

    /// The type's name for a log field, absent when the code names none.
    pub fn type_name_text(&self) -> Option<String> {
        self.type_name.map(|t| t.to_string())
    }
}

/// The service action of `cdb` by its SCSI name (`READ KEYS`, `REGISTER`),
/// for the log lines of PR IN and PR OUT alike.
pub fn action_name(cdb: &PrCdb) -> String {
    match (cdb.pr_in_action(), cdb.pr_out_action()) {
        (Some(a), _) => a.to_string(),
        (_, Some(a)) => a.to_string(),
        (None, None) => "PR".to_string(),
    }
}

/// "KEY/ASC/ASCQ" of a CHECK CONDITION; `None` for any other answer, so
/// that the log leaves the field out.
pub fn sense_text(reply: &PrReply) -> Option<String> {
    match (reply.status, reply.sense.code()) {
        (ScsiStatus::CHECK_CONDITION, Some(c)) => {
            Some(format!("{:x}/{:02x}/{:02x}", c.key.0, c.asc, c.ascq))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sense::SenseCode;
    use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};

    #[test]
    fn key_modes() {
        let k = ReservationKey(0xabc);
        assert_eq!(
            KeyDisplay::Full.render(k),
            Some("0xabc".to_string()),
            "as the client prints it"
        );
        let h = KeyDisplay::Hashed.render(k).unwrap();
        assert!(h.starts_with("sha256:") && h.len() == 7 + 16);
        assert_ne!(
            Some(&h),
            KeyDisplay::Hashed.render(ReservationKey(0xabd)).as_ref()
        );
        assert_eq!(Some(h), KeyDisplay::Hashed.render(k), "stable across calls");
        assert_eq!(KeyDisplay::Omitted.render(k), None, "left out, not a dash");
    }

    #[test]
    fn record_names_action_type_keys_and_result() {
        let cdb = PrCdb::pr_out(PrOutServiceAction::Preempt, 0x05, 24);
        let mut data = [0u8; 24];
        data[7] = 1;
        data[15] = 2;
        let reply = PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB);
        let keys = PrOutKeys::from(&data[..]);
        let a = PrOutAudit::new(&cdb, keys, &reply, KeyDisplay::Full);
        assert_eq!((a.action.as_str(), a.scope, a.type_code), ("PREEMPT", 0, 5));
        assert_eq!(
            (a.key.as_deref(), a.sa_key.as_deref()),
            (Some("0x1"), Some("0x2"))
        );
        assert_eq!(a.status, Some(ScsiStatus::CHECK_CONDITION));
        assert_eq!(a.sense.as_deref(), Some("5/24/00"));
        assert_eq!(
            a.type_name_text().as_deref(),
            Some("Write Exclusive, registrants only")
        );
        assert_eq!(a.scope_name, "LU_SCOPE");
        let short = PrOutKeys::from(&data[..4]);
        let short = PrOutAudit::new(&cdb, short, &PrReply::good(vec![]), KeyDisplay::Full);
        assert_eq!(short.key, None, "no key: no field, not a dash");
        assert_eq!(short.sense, None, "no sense: no field, not a dash");
        assert_eq!(short.status, Some(ScsiStatus::GOOD));
        let gone = PrOutAudit::abandoned(&cdb, keys, KeyDisplay::Full);
        assert_eq!(gone.key.as_deref(), Some("0x1"));
        assert_eq!((gone.status, gone.sense), (None, None));
    }

    #[test]
    fn register_has_no_type_name_and_pr_in_actions_are_named() {
        let register = PrCdb::pr_out(PrOutServiceAction::Register, 0, 24);
        let a = PrOutAudit::new(
            &register,
            PrOutKeys::from(&[0u8; 24][..]),
            &PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
            KeyDisplay::Full,
        );
        assert_eq!(a.type_name_text(), None);
        assert_eq!(a.status, Some(ScsiStatus::RESERVATION_CONFLICT));
        assert_eq!(scope_name(2), "obsolete");
        assert_eq!(scope_name(5), "reserved");
        for (code, name) in [
            (0, "READ KEYS"),
            (1, "READ RESERVATION"),
            (2, "REPORT CAPABILITIES"),
            (3, "READ FULL STATUS"),
        ] {
            let cdb = PrCdb::pr_in(PrInServiceAction::from_code(code), 64);
            assert_eq!(action_name(&cdb), name);
        }
    }
}
