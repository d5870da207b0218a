// SPDX-License-Identifier: GPL-2.0-or-later
//! Rate limiting of repetitive log lines, such as refused connections.
//!
//! A peer that reconnects in a loop after being refused would otherwise write
//! thousands of lines a second, and under journald's rate limit the lines that
//! matter (the PR OUT audit trail) would be the ones dropped. The first lines
//! of each interval are written in full; the rest are only counted and the
//! count is reported once per interval. Time is passed in, so the rule is
//! tested without sleeping.

use std::time::{Duration, Instant};

/// Counts events per interval and says which ones to log in full.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    burst: u32,
    interval: Duration,
    window_start: Option<Instant>,
    logged_in_window: u32,
    suppressed: u64,
}

impl LogThrottle {
    /// Logs at most `burst` events in full per `interval`.
    pub fn new(burst: u32, interval: Duration) -> LogThrottle {
        LogThrottle {
            burst,
            interval,
            window_start: None,
            logged_in_window: 0,
            suppressed: 0,
        }
    }

    /// The interval the summary line covers.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records an event at `now`: `true` if it is to be logged in full,
    /// `false` if it is only counted for the next summary.
    pub fn record(&mut self, now: Instant) -> bool {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if expired {
            self.window_start = Some(now);
            self.logged_in_window = 0;
        }
        if self.logged_in_window < self.burst {
            self.logged_in_window += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// The number of events not logged since the last call, if any: what
    /// the periodic summary line reports.
    pub fn take_suppressed(&mut self) -> Option<u64> {
        match std::mem::take(&mut self.suppressed) {
            0 => None,
            n => Some(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_events_of_an_interval_are_logged_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut throttle = LogThrottle::new(3, TEN_S);
        let logged: Vec<bool> = (0..2000)
            .map(|i| throttle.record(t0 + Duration::from_micros(i)))
            .collect();
        assert_eq!(logged.iter().filter(|&&l| l).count(), 3);
        assert!(logged[..3].iter().all(|&l| l), "the first ones in full");
        assert_eq!(throttle.take_suppressed(), Some(1997));
        assert_eq!(throttle.take_suppressed(), None, "the count restarts");
    }

    #[test]
    fn a_new_interval_logs_in_full_again() {
        let t0 = Instant::now();
        let mut throttle = LogThrottle::new(1, TEN_S);
        assert!(throttle.record(t0));
        assert!(!throttle.record(t0 + Duration::from_secs(9)));
        assert!(throttle.record(t0 + TEN_S));
        assert!(!throttle.record(t0 + TEN_S + Duration::from_secs(1)));
        assert_eq!(throttle.take_suppressed(), Some(2));
    }

    #[test]
    fn nothing_suppressed_means_no_summary() {
        let mut throttle = LogThrottle::new(5, TEN_S);
        assert_eq!(throttle.take_suppressed(), None);
        assert!(throttle.record(Instant::now()));
        assert_eq!(throttle.take_suppressed(), None);
    }

    #[test]
    fn a_clock_that_goes_back_does_not_reopen_the_window() {
        let t0 = Instant::now() + TEN_S;
        let mut throttle = LogThrottle::new(1, TEN_S);
        assert!(throttle.record(t0));
        assert!(!throttle.record(t0 - Duration::from_secs(5)));
    }
}
