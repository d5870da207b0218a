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
