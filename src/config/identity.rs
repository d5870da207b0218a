// SPDX-License-Identifier: GPL-2.0-or-later
//! Users and groups, given by name or number (`-u`, `-g`, `socket_group`),
//! resolved to ids once, while the settings are checked.

use nix::unistd::{Group, User};

use super::ConfigError;

/// Whom the daemon becomes once it listens: ids, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    /// Switch to this user id (`-u`).
    pub uid: Option<u32>,
    /// Switch to this group id (`-g`, or the user's primary group).
    pub gid: Option<u32>,
}

impl Identity {
    /// Resolves `-u`/`-g` (names or numbers). With only `-u`, the user's
    /// primary group is used, so that the daemon never keeps root's group.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Identity, ConfigError> {
        let mut primary_gid = None;
        let uid = match user {
            None => None,
            Some(name) => match User::from_name(name).ok().flatten() {
                Some(u) => {
                    primary_gid = Some(u.gid.as_raw());
                    Some(u.uid.as_raw())
                }
                None => match id_number(name) {
                    Some(n) => {
                        primary_gid = User::from_uid(n.into())
                            .ok()
                            .flatten()
                            .map(|u| u.gid.as_raw());
                        if primary_gid.is_none() && group.is_none() {
                            return Err(ConfigError::UserWithoutGroup(name.to_string()));
                        }
                        Some(n)
                    }
                    None => return Err(ConfigError::InvalidUser(name.to_string())),
                },
            },
        };
        let gid = match group {
            None => primary_gid,
            Some(name) => {
                Some(group_id(name).ok_or_else(|| ConfigError::InvalidGroup(name.to_string()))?)
            }
        };
        Ok(Identity { uid, gid })
    }
}

/// A group's id, from its name or its number.
pub(super) fn group_id(name: &str) -> Option<u32> {
    match Group::from_name(name).ok().flatten() {
        Some(g) => Some(g.gid.as_raw()),
        None => id_number(name),
    }
}

/// A user or group number; `u32::MAX` is `(uid_t)-1`, "no change", never an id.
fn id_number(name: &str) -> Option<u32> {
    name.parse::<u32>().ok().filter(|n| *n != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(user: Option<&str>, group: Option<&str>) -> (Option<u32>, Option<u32>) {
        let id = Identity::resolve(user, group).unwrap();
        (id.uid, id.gid)
    }

    #[test]
    fn identities_by_name_and_number() {
        assert_eq!(ids(None, None), (None, None));
        assert_eq!(ids(Some("root"), None), (Some(0), Some(0)));
        assert_eq!(
            ids(Some("12345"), Some("54321")),
            (Some(12345), Some(54321))
        );
        assert!(matches!(
            Identity::resolve(Some("no-such-user-here"), None),
            Err(ConfigError::InvalidUser(_))
        ));
        assert!(matches!(
            Identity::resolve(None, Some("no-such-group-here")),
            Err(ConfigError::InvalidGroup(_))
        ));
        assert!(matches!(
            Identity::resolve(None, Some("4294967295")),
            Err(ConfigError::InvalidGroup(_))
        ));
    }

    #[test]
    fn a_user_number_without_a_passwd_entry_needs_a_group() {
        assert!(User::from_uid(12345.into()).unwrap().is_none());
        let e = Identity::resolve(Some("12345"), None).unwrap_err();
        assert!(matches!(e, ConfigError::UserWithoutGroup(ref u) if u == "12345"));
        assert!(e.to_string().contains("-g"), "{e}");
        assert_eq!(ids(Some("12345"), Some("0")), (Some(12345), Some(0)));
    }
}
