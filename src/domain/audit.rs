//! The audit record: one line per PR OUT (and per refusal) saying who did
//! what to which device and what came of it. Built here, emitted by the
//! server on the `audit` tracing target.

use std::fmt;

use sha2::{Digest, Sha256};

use super::cdb::{Hex, PrCdb};
use super::framing::PrReply;
use super::param_list::PrOutKeys;
use super::service_action::ReservationKey;

/// How reservation keys appear in audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDisplay {
    /// The key itself, in hex.
    #[default]
    Full,
    /// The first 8 bytes of SHA-256 of the key: correlates lines without
    /// disclosing the key.
    Hashed,
    /// Not shown.
    Omitted,
}

impl KeyDisplay {
    /// Renders `key` as this mode says.
    pub fn render(self, key: ReservationKey) -> String {
        match self {
            KeyDisplay::Full => format!("0x{:016x}", key.0),
            KeyDisplay::Hashed => {
                let digest = Sha256::digest(key.0.to_be_bytes());
                format!("sha256:{}", Hex(&digest[..8]))
            }
            KeyDisplay::Omitted => "-".to_string(),
        }
    }
}

/// The facts of one PR OUT, ready to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrOutAudit {
    /// Service action name.
    pub action: String,
    /// SCOPE nibble.
    pub scope: u8,
    /// TYPE nibble.
    pub type_code: u8,
    /// RESERVATION KEY as displayed.
    pub key: String,
    /// SERVICE ACTION RESERVATION KEY as displayed.
    pub sa_key: String,
    /// Status name and code.
    pub status: String,
    /// Sense key / ASC / ASCQ, or "-".
    pub sense: String,
}

impl PrOutAudit {
    /// Builds the record of `cdb`, whose parameter list held `keys`,
    /// answered by `reply`.
    pub fn new(cdb: &PrCdb, keys: PrOutKeys, reply: &PrReply, shown: KeyDisplay) -> PrOutAudit {
        PrOutAudit::ended(
            cdb,
            keys,
            shown,
            reply.status.to_string(),
            sense_text(reply),
        )
    }

    /// The record of a command that never got an answer (abandoned when the
    /// daemon stopped): whether the device ran it is unknown.
    pub fn abandoned(cdb: &PrCdb, keys: PrOutKeys, shown: KeyDisplay) -> PrOutAudit {
        PrOutAudit::ended(cdb, keys, shown, "abandoned".to_string(), "-".to_string())
    }

    fn ended(
        cdb: &PrCdb,
        keys: PrOutKeys,
        shown: KeyDisplay,
        status: String,
        sense: String,
    ) -> PrOutAudit {
        let render = |key: Option<ReservationKey>| key.map_or("-".to_string(), |k| shown.render(k));
        PrOutAudit {
            action: cdb
                .pr_out_action()
                .map_or_else(|| "PR IN".to_string(), |a| a.to_string()),
            scope: cdb.scope(),
            type_code: cdb.type_code(),
            key: render(keys.reservation_key),
            sa_key: render(keys.service_action_key),
            status,
            sense,
        }
    }
}

/// "KEY/ASC/ASCQ" of a CHECK CONDITION, or "-".
pub fn sense_text(reply: &PrReply) -> String {
    match (reply.status, reply.sense.code()) {
        (super::sense::ScsiStatus::CHECK_CONDITION, Some(c)) => {
            format!("{:x}/{:02x}/{:02x}", c.key.0, c.asc, c.ascq)
        }
        _ => "-".to_string(),
    }
}

impl fmt::Display for PrOutAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} scope={} type={} key={} sa_key={} -> {} sense={}",
            self.action, self.scope, self.type_code, self.key, self.sa_key, self.status, self.sense
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sense::SenseCode;
    use crate::domain::service_action::PrOutServiceAction;

    #[test]
    fn key_modes() {
        let k = ReservationKey(0xabc);
        assert_eq!(KeyDisplay::Full.render(k), "0x0000000000000abc");
        let h = KeyDisplay::Hashed.render(k);
        assert!(h.starts_with("sha256:") && h.len() == 7 + 16);
        assert_ne!(h, KeyDisplay::Hashed.render(ReservationKey(0xabd)));
        assert_eq!(h, KeyDisplay::Hashed.render(k), "stable across calls");
        assert_eq!(KeyDisplay::Omitted.render(k), "-");
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
        assert_eq!(
            a.to_string(),
            "PREEMPT scope=0 type=5 key=0x0000000000000001 sa_key=0x0000000000000002 \
             -> CHECK CONDITION (02h) sense=5/24/00"
        );
        let short = PrOutKeys::from(&data[..4]);
        let short = PrOutAudit::new(&cdb, short, &PrReply::good(vec![]), KeyDisplay::Full);
        assert_eq!(short.key, "-");
        assert_eq!(short.sense, "-");
        let gone = PrOutAudit::abandoned(&cdb, keys, KeyDisplay::Full);
        assert_eq!(
            gone.to_string(),
            "PREEMPT scope=0 type=5 key=0x0000000000000001 sa_key=0x0000000000000002 \
             -> abandoned sense=-"
        );
    }
}
