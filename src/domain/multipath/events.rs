// SPDX-License-Identifier: GPL-2.0-or-later
//! What multipathd is told after a command succeeded through a map, so that
//! paths added or restored later get the key registered by multipathd.

use std::fmt;

use super::path::DevNumber;
use crate::domain::param_list::PrOutParameters;
use crate::domain::service_action::{PrOutServiceAction, ReservationKey};

/// One change to multipathd's record of a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapEvent {
    /// The key registered on every path (with its APTPL flag).
    SetKey {
        /// The key.
        key: ReservationKey,
        /// Registered with APTPL.
        aptpl: bool,
    },
    /// No key registered any more.
    UnsetKey,
    /// The map has registrations.
    SetStatus {
        /// The paths the command registered, which multipathd then need not
        /// register again (`setprstatus map M pathlist "..."`, multipath-tools
        /// 0.14 and later); empty: the plain `setprstatus map M`, after which
        /// multipathd checks every path itself.
        registered: PathList,
    },
    /// The map has no registrations.
    UnsetStatus,
    /// This host holds the reservation.
    SetHold,
    /// This host does not hold the reservation.
    UnsetHold,
}

/// The longest command multipathd reads: 512 bytes with the NUL
/// (`MAX_CMD_LEN`, the same in 0.9.4 and 0.14); a longer one makes it drop
/// the connection.
pub const MAX_COMMAND_LEN: usize = 511;

/// The longest path list between the quotes: what is left of
/// [`MAX_COMMAND_LEN`] beside `setprstatus map `, the longest map name and
/// ` pathlist ""`: 356 bytes, 51 paths of `65:240`, 29 of `259:1048575`.
pub const MAX_PATHLIST_LEN: usize =
    MAX_COMMAND_LEN - "setprstatus map ".len() - MAX_MAP_NAME - " pathlist \"\"".len();

/// The paths a REGISTER put the key on, as `major:minor` (multipathd
/// compares each entry with its paths' `dev_t`; libmpathpersist 0.14 writes
/// the first path by name, which matches none). Distinct entries, in map
/// order, at most [`MAX_PATHLIST_LEN`] bytes written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathList(Vec<DevNumber>);

impl PathList {
    /// No list: the plain `setprstatus map M`.
    pub const NONE: PathList = PathList(Vec::new());

    /// The list of `paths` (repeats dropped). A list that would not fit in
    /// one command with any map name is none at all: multipathd then checks
    /// every path, which is always right, where a shortened list would not
    /// say what was registered.
    pub fn new(paths: impl IntoIterator<Item = DevNumber>) -> PathList {
        let mut list = Vec::new();
        for dev in paths {
            if !list.contains(&dev) {
                list.push(dev);
            }
        }
        let list = PathList(list);
        if list.to_string().len() > MAX_PATHLIST_LEN {
            return PathList::NONE;
        }
        list
    }

    /// Whether there is no list.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The paths.
    pub fn paths(&self) -> &[DevNumber] {
        &self.0
    }

    /// Parses the text between the quotes: `major:minor` entries, one space
    /// apart, in their canonical spelling (no sign, no leading zero).
    fn parse(text: &str) -> Option<PathList> {
        if text.is_empty() || text.len() > MAX_PATHLIST_LEN {
            return None;
        }
        let mut paths = Vec::new();
        for entry in text.split(' ') {
            let (major, minor) = entry.split_once(':')?;
            paths.push(DevNumber {
                major: decimal(major)?,
                minor: decimal(minor)?,
            });
        }
        let list = PathList::new(paths);
        (list.to_string() == text).then_some(list)
    }
}

/// A decimal number of digits only, in canonical form (`0`, or no leading
/// zero), that fits a `u32`.
fn decimal(digits: &str) -> Option<u32> {
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

impl fmt::Display for PathList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, dev) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{dev}")?;
        }
        Ok(())
    }
}

impl MapEvent {
    /// The multipathd command for map `name`.
    pub fn message(&self, name: &str) -> String {
        match self {
            MapEvent::SetKey { key, aptpl } => format!(
                "setprkey map {name} key 0x{:x}{}",
                key.0,
                if *aptpl { ":aptpl" } else { "" }
            ),
            MapEvent::UnsetKey => format!("unsetprkey map {name}"),
            MapEvent::SetStatus { registered } if registered.is_empty() => {
                format!("setprstatus map {name}")
            }
            // Quoted as libmpathpersist quotes it: multipathd reads the
            // quoted text as one parameter.
            MapEvent::SetStatus { registered } => {
                format!("setprstatus map {name} pathlist \"{registered}\"")
            }
            MapEvent::UnsetStatus => format!("unsetprstatus map {name}"),
            MapEvent::SetHold => format!("setprhold map {name}"),
            MapEvent::UnsetHold => format!("unsetprhold map {name}"),
        }
    }

    /// The plain `setprstatus` for a `setprstatus` with a path list, which a
    /// multipathd before 0.14 does not know; `None` for anything else.
    pub fn without_pathlist(&self) -> Option<MapEvent> {
        match self {
            MapEvent::SetStatus { registered } if !registered.is_empty() => {
                Some(MapEvent::SetStatus {
                    registered: PathList::NONE,
                })
            }
            _ => None,
        }
    }

    /// This event with `registered` as the paths a `setprstatus` names.
    pub fn with_registered(self, registered: &PathList) -> MapEvent {
        match self {
            MapEvent::SetStatus { .. } => MapEvent::SetStatus {
                registered: registered.clone(),
            },
            other => other,
        }
    }
}

/// The longest map name accepted in a command (aliases and WWIDs are far
/// shorter; multipathd's own limit is 128 bytes with the NUL).
pub const MAX_MAP_NAME: usize = 127;

/// Whether `c` may be part of a map name in a command: printable ASCII but
/// the characters multipathd's command parser treats specially (`"` opens a
/// quoted string, `!` and `#` a comment that ends the command, `{` and `}`
/// are words of their own), so that a map name is always one word and the
/// words after it are read as written.
fn map_name_byte(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'"' | b'!' | b'#' | b'{' | b'}')
}

/// A command for multipathd, parsed back from its text: the only commands
/// the multipathd relay forwards are those [`MapEvent::message`] makes, so
/// whoever drives the relay cannot make multipathd do anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapCommand {
    /// The map.
    pub map: String,
    /// What changes.
    pub event: MapEvent,
}

impl MapCommand {
    /// Parses `text`; `None` unless it is exactly what
    /// [`MapEvent::message`] would write for some map name of printable
    /// ASCII without spaces or the characters multipathd's parser treats
    /// specially, and at most [`MAX_COMMAND_LEN`] bytes.
    pub fn parse(text: &str) -> Option<MapCommand> {
        if text.len() > MAX_COMMAND_LEN {
            return None;
        }
        let mut words = text.splitn(4, ' ');
        let verb = words.next()?;
        if words.next()? != "map" {
            return None;
        }
        let map = words.next()?;
        if map.is_empty() || map.len() > MAX_MAP_NAME || !map.bytes().all(map_name_byte) {
            return None;
        }
        let rest = words.next();
        let event = match (verb, rest) {
            ("setprkey", Some(rest)) => {
                let value = rest.strip_prefix("key ")?;
                let (hex, aptpl) = match value.strip_suffix(":aptpl") {
                    Some(hex) => (hex, true),
                    None => (value, false),
                };
                let digits = hex.strip_prefix("0x")?;
                if digits.is_empty()
                    || digits.len() > 16
                    || !digits.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return None;
                }
                let key = ReservationKey(u64::from_str_radix(digits, 16).ok()?);
                MapEvent::SetKey { key, aptpl }
            }
            ("setprstatus", Some(rest)) => {
                let quoted = rest.strip_prefix("pathlist \"")?.strip_suffix('"')?;
                MapEvent::SetStatus {
                    registered: PathList::parse(quoted)?,
                }
            }
            ("setprstatus", None) => MapEvent::SetStatus {
                registered: PathList::NONE,
            },
            ("unsetprkey", None) => MapEvent::UnsetKey,
            ("unsetprstatus", None) => MapEvent::UnsetStatus,
            ("setprhold", None) => MapEvent::SetHold,
            ("unsetprhold", None) => MapEvent::UnsetHold,
            _ => return None,
        };
        let command = MapCommand {
            map: map.to_string(),
            event,
        };
        // Only the canonical spelling passes (no upper-case hex, no
        // leading zeros that multipathd might read differently).
        (command.to_string() == text).then_some(command)
    }
}

impl fmt::Display for MapCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.event.message(&self.map))
    }
}

impl MapEvent {
    /// The command word multipathd knows this change by (`setprkey`, ...).
    pub fn verb(&self) -> &'static str {
        match self {
            MapEvent::SetKey { .. } => "setprkey",
            MapEvent::UnsetKey => "unsetprkey",
            MapEvent::SetStatus { .. } => "setprstatus",
            MapEvent::UnsetStatus => "unsetprstatus",
            MapEvent::SetHold => "setprhold",
            MapEvent::UnsetHold => "unsetprhold",
        }
    }
}

impl fmt::Display for MapEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message("MAP"))
    }
}

/// The events that follow a successful `action` with `params`.
pub fn events_after(action: PrOutServiceAction, params: &PrOutParameters) -> Vec<MapEvent> {
    match action {
        PrOutServiceAction::Register | PrOutServiceAction::RegisterAndIgnoreExistingKey => {
            if params.service_action_key.0 == 0 {
                vec![MapEvent::UnsetKey, MapEvent::UnsetStatus]
            } else {
                vec![
                    MapEvent::SetKey {
                        key: params.service_action_key,
                        aptpl: params.aptpl,
                    },
                    MapEvent::SetStatus {
                        registered: PathList::NONE,
                    },
                ]
            }
        }
        PrOutServiceAction::Reserve => vec![MapEvent::SetHold],
        PrOutServiceAction::Release => vec![MapEvent::UnsetHold],
        PrOutServiceAction::Clear => vec![
            MapEvent::UnsetKey,
            MapEvent::UnsetStatus,
            MapEvent::UnsetHold,
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: MapEvent = MapEvent::SetStatus {
        registered: PathList::NONE,
    };

    fn dev(major: u32, minor: u32) -> DevNumber {
        DevNumber { major, minor }
    }

    fn listed(devs: &[(u32, u32)]) -> MapEvent {
        MapEvent::SetStatus {
            registered: PathList::new(devs.iter().map(|&(a, b)| dev(a, b))),
        }
    }

    fn params(key: u64, aptpl: bool) -> PrOutParameters {
        PrOutParameters {
            service_action_key: ReservationKey(key),
            aptpl,
            ..Default::default()
        }
    }

    #[test]
    fn messages_are_multipathd_commands() {
        let e = MapEvent::SetKey {
            key: ReservationKey(0x1a2b),
            aptpl: true,
        };
        assert_eq!(e.message("mpatha"), "setprkey map mpatha key 0x1a2b:aptpl");
        let e = MapEvent::SetKey {
            key: ReservationKey(0xff),
            aptpl: false,
        };
        assert_eq!(e.message("m"), "setprkey map m key 0xff");
        assert_eq!(MapEvent::UnsetKey.message("m"), "unsetprkey map m");
        assert_eq!(PLAIN.message("m"), "setprstatus map m");
        assert_eq!(MapEvent::UnsetStatus.message("m"), "unsetprstatus map m");
        assert_eq!(MapEvent::SetHold.message("m"), "setprhold map m");
        assert_eq!(MapEvent::UnsetHold.message("m"), "unsetprhold map m");
    }

    #[test]
    fn commands_parse_back_from_their_messages_only() {
        let events = [
            MapEvent::SetKey {
                key: ReservationKey(0x1a2b),
                aptpl: true,
            },
            MapEvent::SetKey {
                key: ReservationKey(u64::MAX),
                aptpl: false,
            },
            MapEvent::UnsetKey,
            PLAIN,
            listed(&[(8, 16)]),
            listed(&[(8, 16), (8, 32), (65, 240), (0, 0), (4095, 1048575)]),
            MapEvent::UnsetStatus,
            MapEvent::SetHold,
            MapEvent::UnsetHold,
        ];
        for event in events {
            let text = event.message("mpatha");
            assert!(text.starts_with(event.verb()));
            assert_eq!(
                MapCommand::parse(&text),
                Some(MapCommand {
                    map: "mpatha".into(),
                    event
                }),
                "{text}"
            );
        }
        for bad in [
            "",
            "shutdown",
            "del map mpatha",
            "setprkey map mpatha",
            "setprkey map mpatha key 1234",
            "setprkey map mpatha key 0x",
            "setprkey map mpatha key 0xABC",
            "setprkey map mpatha key 0x0abc",
            "setprkey map mpatha key 0x11112222333344445",
            "setprkey map mpatha key 0xab:apt",
            "setprstatus map",
            "setprstatus map mpatha extra",
            "setprstatus map  mpatha",
            "setprstatus map mpatha\nshutdown",
            "setprstatus map mpatha\n",
            "setprstatus maps mpatha",
            "getprkey map mpatha",
            "setprhold map mpatha extra",
            "unsetprkey map mpatha key 0x1",
        ] {
            assert_eq!(MapCommand::parse(bad), None, "{bad:?}");
        }
        let long = "m".repeat(MAX_MAP_NAME + 1);
        assert_eq!(MapCommand::parse(&format!("setprhold map {long}")), None);
    }

    /// The path list as libmpathpersist 0.14 quotes it, every entry
    /// `major:minor`.
    #[test]
    fn the_path_list_is_quoted_and_names_paths_by_device_number() {
        assert_eq!(
            listed(&[(8, 16), (8, 32)]).message("mpatha"),
            r#"setprstatus map mpatha pathlist "8:16 8:32""#
        );
        assert_eq!(
            listed(&[(65, 240)]).message("3600140512"),
            r#"setprstatus map 3600140512 pathlist "65:240""#
        );
        // Repeats are dropped; an empty list is the plain command.
        assert_eq!(listed(&[(8, 16), (8, 16)]), listed(&[(8, 16)]));
        assert_eq!(listed(&[]), PLAIN);
        assert_eq!(
            listed(&[(8, 16)]).without_pathlist(),
            Some(PLAIN),
            "the fallback for a multipathd before 0.14"
        );
        assert_eq!(PLAIN.without_pathlist(), None);
        assert_eq!(MapEvent::SetHold.without_pathlist(), None);
        let registered = PathList::new([dev(8, 48)]);
        assert_eq!(PLAIN.with_registered(&registered), listed(&[(8, 48)]));
        assert_eq!(
            MapEvent::UnsetKey.with_registered(&registered),
            MapEvent::UnsetKey
        );
    }

    /// A list longer than a command can carry with the longest map name is
    /// no list at all (multipathd then checks every path), never cut.
    #[test]
    fn a_path_list_too_long_for_one_command_is_none() {
        let fits: Vec<DevNumber> = (0..MAX_PATHLIST_LEN / 9)
            .map(|i| dev(65, 1000 + i as u32))
            .collect();
        let list = PathList::new(fits.iter().copied());
        assert_eq!(list.paths(), &fits[..]);
        let longest = "m".repeat(MAX_MAP_NAME);
        let text = MapEvent::SetStatus { registered: list }.message(&longest);
        assert!(text.len() <= MAX_COMMAND_LEN, "{}", text.len());
        assert!(MapCommand::parse(&text).is_some());
        let many = (0..200).map(|i| dev(259, 100_000 + i));
        assert!(PathList::new(many).is_empty());
    }

    /// The relay takes only the canonical list: `digits:digits` entries one
    /// space apart between the quotes, nothing after, bounded; no map name or
    /// list can end the quoted string early or add a word multipathd would
    /// read.
    #[test]
    fn only_the_canonical_path_list_parses() {
        assert_eq!(
            MapCommand::parse(r#"setprstatus map mpatha pathlist "8:16 8:32""#),
            Some(MapCommand {
                map: "mpatha".into(),
                event: listed(&[(8, 16), (8, 32)])
            })
        );
        let long_list = vec!["259:1048575"; 40].join(" ");
        for bad in [
            r#"setprstatus map mpatha pathlist """#,
            r#"setprstatus map mpatha pathlist"#,
            r#"setprstatus map mpatha pathlist "#,
            r#"setprstatus map mpatha pathlist 8:16"#,
            r#"setprstatus map mpatha pathlist "8:16"#,
            r#"setprstatus map mpatha pathlist 8:16""#,
            r#"setprstatus map mpatha pathlist  "8:16""#,
            r#"setprstatus map mpatha pathlist "8:16 ""#,
            r#"setprstatus map mpatha pathlist " 8:16""#,
            r#"setprstatus map mpatha pathlist "8:16  8:32""#,
            r#"setprstatus map mpatha pathlist "8:16	8:32""#,
            r#"setprstatus map mpatha pathlist "sdb 8:32""#,
            r#"setprstatus map mpatha pathlist "8:016""#,
            r#"setprstatus map mpatha pathlist "08:16""#,
            r#"setprstatus map mpatha pathlist "+8:16""#,
            r#"setprstatus map mpatha pathlist "8:-16""#,
            r#"setprstatus map mpatha pathlist "8:16:1""#,
            r#"setprstatus map mpatha pathlist "8:""#,
            r#"setprstatus map mpatha pathlist ":16""#,
            r#"setprstatus map mpatha pathlist "4294967296:0""#,
            r#"setprstatus map mpatha pathlist "8:16 8:16""#,
            r#"setprstatus map mpatha pathlist "8:16" extra"#,
            r#"setprstatus map mpatha pathlist "8:16" "8:32""#,
            r#"setprstatus map mpatha pathlist "8:16"" shutdown"#,
            r#"setprstatus map mpatha pathlist "8:16" # comment"#,
            "setprstatus map mpatha pathlist \"8:16\"\n",
            "setprstatus map mpatha pathlist \"8:16\nshutdown\"",
            r#"setprstatus map mpatha PATHLIST "8:16""#,
            r#"setprstatus map mpatha path "8:16""#,
            r#"setprstatus map mpatha key "8:16""#,
            r#"setprkey map mpatha pathlist "8:16""#,
            r#"setprhold map mpatha pathlist "8:16""#,
            r#"unsetprstatus map mpatha pathlist "8:16""#,
            // A map name that would open or close the quoted string, start
            // a comment or add a word of its own.
            r#"setprstatus map m" pathlist "8:16""#,
            r#"setprstatus map "shutdown" pathlist "8:16""#,
            r#"setprstatus map m#x pathlist "8:16""#,
            r#"setprstatus map m! pathlist "8:16""#,
            r#"setprstatus map {m} pathlist "8:16""#,
            r#"setprstatus map m""#,
            "setprstatus map m#",
            "setprkey map m\"x key 0x1",
        ] {
            assert_eq!(MapCommand::parse(bad), None, "{bad:?}");
        }
        let too_long = format!(r#"setprstatus map mpatha pathlist "{long_list}""#);
        assert!(long_list.len() > MAX_PATHLIST_LEN);
        assert_eq!(MapCommand::parse(&too_long), None);
        let over = format!("setprstatus map {}", "m".repeat(MAX_COMMAND_LEN));
        assert_eq!(MapCommand::parse(&over), None);
        // Map names multipathd makes still pass.
        for map in ["mpatha", "36001405a1b2c3d4e5f6", "my-db_01.lun:2", "a/b"] {
            let text = format!("setprstatus map {map}");
            assert!(MapCommand::parse(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn register_sets_key_and_status_unregister_unsets_them() {
        use PrOutServiceAction::*;
        for action in [Register, RegisterAndIgnoreExistingKey] {
            assert_eq!(
                events_after(action, &params(5, true)),
                vec![
                    MapEvent::SetKey {
                        key: ReservationKey(5),
                        aptpl: true
                    },
                    PLAIN
                ]
            );
            assert_eq!(
                events_after(action, &params(0, false)),
                vec![MapEvent::UnsetKey, MapEvent::UnsetStatus]
            );
        }
    }

    #[test]
    fn reservation_changes() {
        use PrOutServiceAction::*;
        let p = params(5, false);
        assert_eq!(events_after(Reserve, &p), vec![MapEvent::SetHold]);
        assert_eq!(events_after(Release, &p), vec![MapEvent::UnsetHold]);
        assert_eq!(
            events_after(Clear, &p),
            vec![
                MapEvent::UnsetKey,
                MapEvent::UnsetStatus,
                MapEvent::UnsetHold
            ]
        );
        assert!(events_after(Preempt, &p).is_empty());
        assert!(events_after(RegisterAndMove, &p).is_empty());
    }
}
