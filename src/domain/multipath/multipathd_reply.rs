// SPDX-License-Identifier: GPL-2.0-or-later
//! What multipathd's answer to a command means, so that each kind of
//! trouble is reported once, in words an operator can act on.

use super::events::MapEvent;

/// multipathd's answer to one of the commands in
/// [`MapCommand`](super::events::MapCommand), classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultipathdReply {
    /// "ok": done.
    Done,
    /// "fail": understood but refused, e.g. `setprkey` while
    /// `reservation_key` is not `file` in multipath.conf, or an unknown map.
    Refused,
    /// Not root: multipathd answers PR commands for root peers only.
    PermissionDenied,
    /// The command is unknown to this multipathd: multipath-tools 0.9.4
    /// (Debian 12) has no `setprhold`/`unsetprhold` and answers them "fail";
    /// other versions answer an unknown command with their usage text.
    NotUnderstood,
}

impl MultipathdReply {
    /// Classifies the reply text to `event`'s command.
    pub fn classify(event: &MapEvent, reply: &str) -> MultipathdReply {
        let first = reply.lines().next().unwrap_or("").trim();
        let hold = matches!(event, MapEvent::SetHold | MapEvent::UnsetHold);
        if first == "ok" {
            MultipathdReply::Done
        } else if first.starts_with("permission deny") || first.contains("need to be root") {
            MultipathdReply::PermissionDenied
        } else if first == "fail" && hold {
            // A multipathd that knows the hold commands accepts them for
            // any map it manages; the map exists (the command went through
            // it), so "fail" here means the command is unknown.
            MultipathdReply::NotUnderstood
        } else if first == "fail" {
            MultipathdReply::Refused
        } else {
            MultipathdReply::NotUnderstood
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::multipath::events::PathList;
    use crate::domain::service_action::ReservationKey;

    const KEY: MapEvent = MapEvent::SetKey {
        key: ReservationKey(0x1111),
        aptpl: false,
    };

    /// The replies multipath-tools 0.9.4 gave in the real-device tier.
    #[test]
    fn replies_of_multipath_tools() {
        use MultipathdReply::*;
        for event in [
            KEY,
            MapEvent::SetStatus {
                registered: PathList::NONE,
            },
            MapEvent::SetHold,
            MapEvent::UnsetHold,
        ] {
            let event = &event;
            assert_eq!(MultipathdReply::classify(event, "ok\n"), Done);
            assert_eq!(MultipathdReply::classify(event, "ok"), Done);
            assert_eq!(
                MultipathdReply::classify(event, "permission deny: need to be root"),
                PermissionDenied
            );
            assert_eq!(
                MultipathdReply::classify(
                    event,
                    "multipath-tools v0.9.4 (12/19, 2022)\nCLI commands reference:\n"
                ),
                NotUnderstood
            );
            assert_eq!(MultipathdReply::classify(event, ""), NotUnderstood);
            assert_eq!(MultipathdReply::classify(event, "okay"), NotUnderstood);
        }
        // "fail": a refusal of a key or status (reservation_key not "file"),
        // but 0.9.4's answer to the hold commands it does not know.
        assert_eq!(MultipathdReply::classify(&KEY, "fail\n"), Refused);
        assert_eq!(
            MultipathdReply::classify(&MapEvent::UnsetStatus, "fail"),
            Refused
        );
        assert_eq!(
            MultipathdReply::classify(&MapEvent::SetHold, "fail\n"),
            NotUnderstood
        );
        assert_eq!(
            MultipathdReply::classify(&MapEvent::UnsetHold, "fail"),
            NotUnderstood
        );
    }
}
