// SPDX-License-Identifier: GPL-2.0-or-later
//! How many connections the open-file limit can serve.
//!
//! A connection costs its socket, and while a command is on its way the fd
//! the command brings. Past the limit, the kernel cannot install the fd a
//! client sends (it truncates SCM_RIGHTS) and the client's command fails, so
//! the connection cap must leave room for both, plus the daemon's own fds
//! and the paths a command on a multipath map opens.

/// Fds one connection may hold: its socket and its command's fd (a
/// connection reads its next command only once the last one is over).
pub const FDS_PER_CONNECTION: u64 = 2;

/// Fds kept out of the connections' share: the daemon's own (listener,
/// epoll sets, journal, multipathd relay, the spare fd for running out; a
/// dozen or two) and the paths of multipath maps that commands open while
/// they run (a map of 4 paths costs 4 for the command's duration).
pub const FD_RESERVE: u64 = 256;

/// The connections an open-file limit of `open_file_limit` can serve (at
/// least 1: a daemon that serves no one is of no use, and a limit that low
/// is a mistake the warning names).
pub fn connections_within(open_file_limit: u64) -> usize {
    let share = open_file_limit.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION;
    usize::try_from(share).unwrap_or(usize::MAX).max(1)
}

/// The connection cap to use: `wanted` unless the limit cannot serve that
/// many. `Err` carries the lower cap, for the warning.
pub fn clamp_connections(wanted: usize, open_file_limit: u64) -> Result<usize, usize> {
    let within = connections_within(open_file_limit);
    if wanted <= within {
        Ok(wanted)
    } else {
        Err(within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_limit_leaves_the_cap_as_configured() {
        assert_eq!(clamp_connections(16384, 1 << 20), Ok(16384));
        let exact = 16384 * FDS_PER_CONNECTION + FD_RESERVE;
        assert_eq!(clamp_connections(16384, exact), Ok(16384));
    }

    #[test]
    fn a_low_limit_lowers_the_cap_to_what_it_serves() {
        // The usual soft limit of 1024 and a hard limit of 20,000.
        assert_eq!(clamp_connections(16384, 1024), Err(384));
        assert_eq!(clamp_connections(16384, 20000), Err(9872));
        let exact = 16384 * FDS_PER_CONNECTION + FD_RESERVE;
        assert_eq!(clamp_connections(16384, exact - 1), Err(16383));
    }

    #[test]
    fn a_limit_below_the_reserve_still_serves_one() {
        assert_eq!(connections_within(10), 1);
        assert_eq!(connections_within(0), 1);
        assert!(connections_within(u64::MAX) > 1 << 40);
    }
}
