// SPDX-License-Identifier: GPL-2.0-or-later
//! What the daemon is doing, in numbers: connections served, commands in
//! flight and answered. The server counts; the service manager's status
//! line (`sd_notify` STATUS=) reads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live counts for the status line (`sd_notify` STATUS=): plain atomics,
/// read by whoever reports them, so serving a command wakes no one.
#[derive(Debug, Default)]
pub struct ServerStats {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    commands: AtomicU64,
}

impl ServerStats {
    /// Records how many connections are served now.
    pub(crate) fn set_connections(&self, n: usize) {
        self.connections.store(n, Ordering::Relaxed);
    }

    /// Connections being served.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Commands running on a device now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Commands finished since start (answered, or abandoned at shutdown).
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }
}

/// Counts one command in flight while it lives.
pub(crate) struct InFlight<'a>(&'a ServerStats);

impl<'a> InFlight<'a> {
    pub(crate) fn start(stats: &'a ServerStats) -> InFlight<'a> {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.commands.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counts as `systemctl status` shows them under the unit, with the
/// log lines lost if any: a log destination that stopped reading cannot
/// say so in the log itself.
pub fn status_line(stats: &ServerStats) -> String {
    counts_line(stats, crate::logging::dropped_lines())
}

fn counts_line(stats: &ServerStats, log_dropped: u64) -> String {
    let mut line = format!(
        "{} connection{}, {} command{} in flight, {} done",
        stats.connections(),
        if stats.connections() == 1 { "" } else { "s" },
        stats.in_flight(),
        if stats.in_flight() == 1 { "" } else { "s" },
        stats.commands()
    );
    if log_dropped > 0 {
        let s = if log_dropped == 1 { "" } else { "s" };
        line.push_str(&format!(", {log_dropped} log line{s} dropped"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_connections_and_commands() {
        let stats = ServerStats::default();
        stats.set_connections(1);
        let first = InFlight::start(&stats);
        let second = InFlight::start(&stats);
        assert_eq!(
            status_line(&stats),
            "1 connection, 2 commands in flight, 0 done"
        );
        drop(first);
        drop(second);
        stats.set_connections(3);
        assert_eq!(
            status_line(&stats),
            "3 connections, 0 commands in flight, 2 done"
        );
        assert_eq!(
            counts_line(&stats, 7),
            "3 connections, 0 commands in flight, 2 done, 7 log lines dropped"
        );
    }
}
