//! What multipathd's answer to a command means, so that each kind of
//! trouble is reported once, in words an operator can act on.

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
    /// The command is unknown to this multipathd (older multipath-tools
    /// lack `setprhold`/`unsetprhold`): it answers with its usage text.
    NotUnderstood,
}

impl MultipathdReply {
    /// Classifies the reply text.
    pub fn classify(reply: &str) -> MultipathdReply {
        let first = reply.lines().next().unwrap_or("").trim();
        if first == "ok" {
            MultipathdReply::Done
        } else if first.starts_with("permission deny") || first.contains("need to be root") {
            MultipathdReply::PermissionDenied
        } else if first == "fail" || first.starts_with("fail") {
            MultipathdReply::Refused
        } else {
            MultipathdReply::NotUnderstood
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_multipath_tools() {
        assert_eq!(MultipathdReply::classify("ok\n"), MultipathdReply::Done);
        assert_eq!(MultipathdReply::classify("ok"), MultipathdReply::Done);
        assert_eq!(
            MultipathdReply::classify("fail\n"),
            MultipathdReply::Refused
        );
        assert_eq!(
            MultipathdReply::classify("permission deny: need to be root"),
            MultipathdReply::PermissionDenied
        );
        assert_eq!(
            MultipathdReply::classify(
                "multipath-tools v0.9.4 (12/19, 2022)\nCLI commands reference:\n list|show paths\n"
            ),
            MultipathdReply::NotUnderstood
        );
        assert_eq!(
            MultipathdReply::classify(""),
            MultipathdReply::NotUnderstood
        );
        assert_eq!(
            MultipathdReply::classify("okay"),
            MultipathdReply::NotUnderstood
        );
    }
}
