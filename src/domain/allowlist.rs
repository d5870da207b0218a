// SPDX-License-Identifier: GPL-2.0-or-later
//! Who may use the helper, and for which devices: the administrator's
//! allowlists, decided here without I/O. Empty lists mean "no restriction",
//! which is what the C helper offers (the socket's file mode alone).

use std::fmt;

/// A peer's credentials as read with SO_PEERCRED at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Which peers may talk to the helper.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerPolicy {
    /// Allowed user ids.
    pub uids: Vec<u32>,
    /// Allowed group ids.
    pub gids: Vec<u32>,
}

impl PeerPolicy {
    /// A peer is admitted when both lists are empty, or when its uid or its
    /// gid is listed. Unknown credentials are refused once a list is set.
    pub fn admits(&self, peer: Option<PeerCredentials>) -> bool {
        if self.uids.is_empty() && self.gids.is_empty() {
            return true;
        }
        match peer {
            Some(p) => self.uids.contains(&p.uid) || self.gids.contains(&p.gid),
            None => false,
        }
    }
}

/// One entry of the device allowlist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum DeviceSelector {
    /// A device node number.
    MajorMinor(u32, u32),
    /// A SCSI or device-mapper WWID (sysfs `device/wwid` or `dm/uuid`),
    /// compared case-insensitively.
    Wwid(String),
}

impl std::str::FromStr for DeviceSelector {
    type Err = String;

    /// `wwid:NAME` or `MAJOR:MINOR`.
    fn from_str(s: &str) -> Result<DeviceSelector, String> {
        if let Some(w) = s.strip_prefix("wwid:") {
            let w = w.trim();
            if w.is_empty() {
                return Err("empty WWID".into());
            }
            return Ok(DeviceSelector::Wwid(w.to_string()));
        }
        let (maj, min) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}' is neither MAJOR:MINOR nor wwid:NAME"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("'{s}' is neither MAJOR:MINOR nor wwid:NAME"))
        };
        Ok(DeviceSelector::MajorMinor(parse(maj)?, parse(min)?))
    }
}

impl TryFrom<String> for DeviceSelector {
    type Error = String;

    /// As `FromStr`: lets the configuration file refuse a bad entry at its line.
    fn try_from(s: String) -> Result<DeviceSelector, String> {
        s.parse()
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::MajorMinor(a, b) => write!(f, "{a}:{b}"),
            DeviceSelector::Wwid(w) => write!(f, "wwid:{w}"),
        }
    }
}

/// The devices commands may be sent to; empty means any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceAllowlist(pub Vec<DeviceSelector>);

impl DeviceAllowlist {
    /// Whether the list restricts anything.
    pub fn is_restricted(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether a device with this number and (if known) WWID is allowed.
    pub fn allows(&self, major: u32, minor: u32, wwid: Option<&str>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.0.iter().any(|sel| match sel {
            DeviceSelector::MajorMinor(a, b) => (*a, *b) == (major, minor),
            DeviceSelector::Wwid(w) => wwid.is_some_and(|have| wwid_eq(w, have)),
        })
    }
}

/// WWIDs compare case-insensitively and ignore an `naa.`/`t10.`-style prefix
/// difference in case only; surrounding whitespace from sysfs is ignored.
fn wwid_eq(want: &str, have: &str) -> bool {
    want.trim().eq_ignore_ascii_case(have.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_peer_policy_admits_everyone() {
        let p = PeerPolicy::default();
        assert!(p.admits(None));
        assert!(p.admits(Some(PeerCredentials { uid: 7, gid: 7 })));
    }

    #[test]
    fn listed_uid_or_gid_is_admitted_others_and_unknown_refused() {
        let p = PeerPolicy {
            uids: vec![107],
            gids: vec![36],
        };
        assert!(p.admits(Some(PeerCredentials { uid: 107, gid: 1 })));
        assert!(p.admits(Some(PeerCredentials { uid: 1, gid: 36 })));
        assert!(!p.admits(Some(PeerCredentials { uid: 1, gid: 1 })));
        assert!(!p.admits(None));
    }

    #[test]
    fn selectors_parse_and_match() {
        let list = DeviceAllowlist(vec![
            "8:16".parse().unwrap(),
            "wwid:naa.6001405ABCDEF".parse().unwrap(),
        ]);
        assert!(list.allows(8, 16, None));
        assert!(!list.allows(8, 17, None));
        assert!(list.allows(253, 0, Some("naa.6001405abcdef\n")));
        assert!(!list.allows(253, 0, Some("naa.6001405abcdee")));
        assert!(!list.allows(253, 0, None));
        assert!(DeviceAllowlist::default().allows(1, 2, None));
        assert!("8-16".parse::<DeviceSelector>().is_err());
        assert!("wwid:".parse::<DeviceSelector>().is_err());
        assert!("x:1".parse::<DeviceSelector>().is_err());
        assert_eq!(
            "8:16".parse::<DeviceSelector>().unwrap().to_string(),
            "8:16"
        );
    }
}
