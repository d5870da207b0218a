//! What multipathd is told after a command succeeded through a map, so that
//! paths added or restored later get the key registered by multipathd.

use std::fmt;

use crate::domain::param_list::PrOutParameters;
use crate::domain::service_action::{PrOutServiceAction, ReservationKey};

/// One change to multipathd's record of a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    SetStatus,
    /// The map has no registrations.
    UnsetStatus,
    /// This host holds the reservation.
    SetHold,
    /// This host does not hold the reservation.
    UnsetHold,
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
            MapEvent::SetStatus => format!("setprstatus map {name}"),
            MapEvent::UnsetStatus => format!("unsetprstatus map {name}"),
            MapEvent::SetHold => format!("setprhold map {name}"),
            MapEvent::UnsetHold => format!("unsetprhold map {name}"),
        }
    }
}

/// The longest map name accepted in a command (aliases and WWIDs are far
/// shorter; multipathd's own limit is 128 bytes with the NUL).
pub const MAX_MAP_NAME: usize = 127;

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
    /// ASCII without spaces.
    pub fn parse(text: &str) -> Option<MapCommand> {
        let mut words = text.split(' ');
        let verb = words.next()?;
        if words.next()? != "map" {
            return None;
        }
        let map = words.next()?;
        if map.is_empty() || map.len() > MAX_MAP_NAME || !map.bytes().all(|b| b.is_ascii_graphic())
        {
            return None;
        }
        let event = match verb {
            "setprkey" => {
                if words.next()? != "key" {
                    return None;
                }
                let value = words.next()?;
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
            "unsetprkey" => MapEvent::UnsetKey,
            "setprstatus" => MapEvent::SetStatus,
            "unsetprstatus" => MapEvent::UnsetStatus,
            "setprhold" => MapEvent::SetHold,
            "unsetprhold" => MapEvent::UnsetHold,
            _ => return None,
        };
        if words.next().is_some() {
            return None;
        }
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
            MapEvent::SetStatus => "setprstatus",
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
                    MapEvent::SetStatus,
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
        assert_eq!(MapEvent::SetStatus.message("m"), "setprstatus map m");
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
            MapEvent::SetStatus,
            MapEvent::UnsetStatus,
            MapEvent::SetHold,
            MapEvent::UnsetHold,
        ];
        for event in events {
            let text = event.message("mpatha");
            assert_eq!(
                MapCommand::parse(&text),
                Some(MapCommand {
                    map: "mpatha".into(),
                    event
                }),
                "{text}"
            );
            assert!(text.starts_with(event.verb()));
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
        ] {
            assert_eq!(MapCommand::parse(bad), None, "{bad:?}");
        }
        let long = "m".repeat(MAX_MAP_NAME + 1);
        assert_eq!(MapCommand::parse(&format!("setprhold map {long}")), None);
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
                    MapEvent::SetStatus
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
