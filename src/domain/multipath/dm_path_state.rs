// SPDX-License-Identifier: GPL-2.0-or-later
//! dm's view of the paths, as multipathd reports it: the helper cannot ask
//! the device mapper itself (its status ioctl needs CAP_SYS_ADMIN, which the
//! helper never keeps), but multipathd keeps the table status of every map
//! and answers a query for it through the multipathd relay.

use super::path::DmState;

/// The query, one line per path, `DEV:DM_STATE` (`sdb:active`), without
/// headers or padding. The only query the relay forwards besides the
/// reservation changes of [`MapCommand`](super::events::MapCommand).
pub const PATH_STATES_QUERY: &str = "show paths raw format %d:%t";

/// The dm state of each path in multipathd's reply to [`PATH_STATES_QUERY`],
/// by kernel device name. Lines that are not `DEV:STATE` (an error, the
/// usage text of a multipathd that does not know the query) are skipped, so
/// such a reply means "unknown" for every path.
pub fn parse_path_states(reply: &str) -> Vec<(String, DmState)> {
    reply
        .lines()
        .filter_map(|line| {
            let (dev, state) = line.trim().split_once(':')?;
            let dev = dev.trim();
            if dev.is_empty() || !dev.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return None;
            }
            let state = match state.trim() {
                "active" => DmState::Active,
                "failed" => DmState::Failed,
                _ => DmState::Unknown,
            };
            Some((dev.to_string(), state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_by_device_name() {
        let reply = "sdb:active\nsdc:failed\nsdd:undef\nsde:\n";
        assert_eq!(
            parse_path_states(reply),
            vec![
                ("sdb".to_string(), DmState::Active),
                ("sdc".to_string(), DmState::Failed),
                ("sdd".to_string(), DmState::Unknown),
                ("sde".to_string(), DmState::Unknown),
            ]
        );
    }

    #[test]
    fn anything_else_names_no_path() {
        for reply in [
            "",
            "fail",
            "ok",
            "multipath-tools v0.9.4 (12/19, 2022)\nCLI commands reference:\n list|show paths\n",
            "../sdb:active",
            ":active",
        ] {
            assert!(parse_path_states(reply).is_empty(), "{reply:?}");
        }
    }
}
