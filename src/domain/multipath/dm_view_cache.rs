// SPDX-License-Identifier: GPL-2.0-or-later
//! dm's view of each map's paths, asked of multipathd for every command on
//! a map but never by the command itself: a wedged multipathd would make
//! every command wait for it, one after the other, while holding the map.
//! A command asks for a view taken after it arrived and waits a moment for
//! it while multipathd answers; otherwise it takes the last view if it is
//! recent, or none. One refresh runs at a time and answers every map that
//! asked before it started.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::path::DmState;

/// How long a view may stand in when no newer one comes in time: dm fails a
/// path within seconds of its I/O errors, and a view older than that could
/// order a dead path first.
pub const DM_VIEW_TTL: Duration = Duration::from_secs(3);

/// A map's paths by kernel name with dm's state of each.
pub type DmView = Vec<(String, DmState)>;

/// A map that asked for a view: its name and its paths' names.
pub type ViewRequest = (String, Vec<String>);

/// The views by map name, and the refresh in flight.
#[derive(Debug)]
pub struct DmViewCache {
    ttl: Duration,
    /// Each view with the time its refresh started: dm's state then or later.
    views: HashMap<String, (DmView, Instant)>,
    /// Maps waiting for the next refresh.
    pending: Vec<ViewRequest>,
    /// Maps the refresh in flight answers, and when it started; a map
    /// forgotten meanwhile is taken out, so an answer older than a path
    /// error is not kept.
    in_flight: Vec<ViewRequest>,
    in_flight_since: Option<Instant>,
    /// Whether a refresh runs (pending maps are answered by it, in turn).
    refreshing: bool,
    /// Whether multipathd answered the last refresh: while it does not,
    /// commands do not wait for the next one.
    answering: bool,
}

impl Default for DmViewCache {
    fn default() -> DmViewCache {
        DmViewCache::new(DM_VIEW_TTL)
    }
}

/// What a command does after [`DmViewCache::ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    /// No refresh runs: the caller starts one.
    pub start_refresh: bool,
    /// multipathd answers: waiting a moment for the new view is worth it.
    pub wait: bool,
}

impl DmViewCache {
    /// Views stand in for newer ones for `ttl`.
    pub fn new(ttl: Duration) -> DmViewCache {
        DmViewCache {
            ttl,
            views: HashMap::new(),
            pending: Vec::new(),
            in_flight: Vec::new(),
            in_flight_since: None,
            refreshing: false,
            answering: true,
        }
    }

    /// A command on `map` (whose paths are `paths`) arrived: the map waits
    /// for the next refresh.
    pub fn ask(&mut self, map: &str, paths: &[String]) -> Asked {
        if !self.pending.iter().any(|(m, _)| m == map) {
            self.pending.push((map.to_string(), paths.to_vec()));
        }
        let start_refresh = !self.refreshing;
        self.refreshing = true;
        Asked {
            start_refresh,
            wait: self.answering,
        }
    }

    /// The view of `map` from a refresh that started at or after `asked`.
    pub fn since(&self, map: &str, asked: Instant) -> Option<DmView> {
        self.views
            .get(map)
            .filter(|(_, at)| *at >= asked)
            .map(|(view, _)| view.clone())
    }

    /// The view of `map` if it is recent at `now` (no newer came in time).
    pub fn recent(&self, map: &str, now: Instant) -> Option<DmView> {
        self.views
            .get(map)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(view, _)| view.clone())
    }

    /// Whether a refresh runs.
    pub fn refreshing(&self) -> bool {
        self.refreshing
    }

    /// The refresh, starting at `now`, takes the maps waiting; none left
    /// ends it.
    pub fn start_refresh(&mut self, now: Instant) -> Vec<String> {
        self.in_flight = std::mem::take(&mut self.pending);
        self.in_flight_since = Some(now);
        if self.in_flight.is_empty() {
            self.refreshing = false;
        }
        self.in_flight.iter().map(|(m, _)| m.clone()).collect()
    }

    /// multipathd's answer (`states`, every path it knows, at `now`) for
    /// the maps the refresh took; `None` when it could not be asked. Views
    /// past their time are dropped here, so maps that went away do not stay.
    pub fn answered(&mut self, states: Option<&[(String, DmState)]>, now: Instant) {
        let ttl = self.ttl;
        self.views
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
        let since = self.in_flight_since.take().unwrap_or(now);
        let Some(states) = states else {
            self.answering = false;
            self.in_flight.clear();
            return;
        };
        self.answering = true;
        for (map, paths) in std::mem::take(&mut self.in_flight) {
            let view = states
                .iter()
                .filter(|(dev, _)| paths.contains(dev))
                .cloned()
                .collect();
            self.views.insert(map, (view, since));
        }
    }

    /// Drops `map`'s view (a path failed: dm's view is about to change),
    /// and any answer for it in flight.
    pub fn forget(&mut self, map: &str) {
        self.views.remove(map);
        self.in_flight.retain(|(m, _)| m != map);
    }

    /// The refresh could not be started: the maps waiting go without.
    pub fn abandon(&mut self) {
        self.pending.clear();
        self.in_flight.clear();
        self.in_flight_since = None;
        self.refreshing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn states() -> Vec<(String, DmState)> {
        vec![
            ("sdb".into(), DmState::Active),
            ("sdc".into(), DmState::Failed),
            ("sdd".into(), DmState::Active),
        ]
    }

    const START: Asked = Asked {
        start_refresh: true,
        wait: true,
    };
    const JOIN: Asked = Asked {
        start_refresh: false,
        wait: true,
    };

    #[test]
    fn one_refresh_answers_every_map_that_asked_with_its_own_paths() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb", "sdc"]);
        let b = paths(&["sdd", "sdz"]);
        assert_eq!(cache.ask("a", &a), START);
        // A refresh runs: the next map waits for it, none is started.
        assert_eq!(cache.ask("b", &b), JOIN);
        assert_eq!(cache.ask("a", &a), JOIN);
        assert_eq!(cache.start_refresh(t), vec!["a", "b"]);
        cache.answered(Some(&states()), t + Duration::from_millis(5));
        assert_eq!(
            cache.since("a", t),
            Some(vec![
                ("sdb".into(), DmState::Active),
                ("sdc".into(), DmState::Failed)
            ])
        );
        assert_eq!(
            cache.since("b", t),
            Some(vec![("sdd".into(), DmState::Active)])
        );
        // Nobody waits: the refresh ends.
        assert!(cache.start_refresh(t).is_empty());
        assert!(!cache.refreshing());
    }

    /// multipathd `fail path` changes dm's view without any I/O error the
    /// helper could see: a command must not take a view from before it.
    #[test]
    fn a_command_takes_no_view_older_than_itself_while_multipathd_answers() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.ask("a", &a);
        cache.start_refresh(t);
        cache.answered(Some(&states()), t);
        assert!(cache.start_refresh(t).is_empty());
        // A second command, one second later: a new refresh, and the view
        // from before is no answer for it (it may still stand in).
        let later = t + Duration::from_secs(1);
        assert_eq!(cache.ask("a", &a), START);
        assert_eq!(cache.since("a", later), None);
        assert!(cache.recent("a", later).is_some());
        cache.start_refresh(later);
        cache.answered(Some(&states()), later);
        assert!(cache.since("a", later).is_some());
    }

    #[test]
    fn a_refresh_that_started_before_the_command_does_not_answer_it() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.ask("a", &a);
        cache.start_refresh(t);
        // The command arrives while that refresh runs.
        let later = t + Duration::from_millis(10);
        assert_eq!(cache.ask("a", &a), JOIN);
        cache.answered(Some(&states()), later);
        assert_eq!(cache.since("a", later), None);
        // The next round answers it.
        assert_eq!(cache.start_refresh(later), vec!["a"]);
        cache.answered(Some(&states()), later);
        assert!(cache.since("a", later).is_some());
    }

    #[test]
    fn a_view_stands_in_only_briefly() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.ask("a", &a);
        cache.start_refresh(t);
        cache.answered(Some(&states()), t);
        assert!(cache.recent("a", t + Duration::from_millis(2999)).is_some());
        assert!(cache.recent("a", t + Duration::from_secs(3)).is_none());
    }

    #[test]
    fn a_path_error_drops_the_view_and_the_answer_in_flight() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.ask("a", &a);
        cache.start_refresh(t);
        cache.answered(Some(&states()), t);
        cache.start_refresh(t);
        cache.forget("a");
        assert!(cache.recent("a", t).is_none());
        // Asked again; the answer in flight predates a path error.
        cache.ask("a", &a);
        cache.start_refresh(t);
        cache.forget("a");
        cache.answered(Some(&states()), t);
        assert!(cache.recent("a", t).is_none());
    }

    /// A multipathd that did not answer costs a command no wait until it
    /// answers again; no answer leaves no view.
    #[test]
    fn after_multipathd_failed_to_answer_commands_do_not_wait() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.ask("a", &a);
        cache.start_refresh(t);
        cache.answered(None, t);
        assert!(cache.recent("a", t).is_none());
        assert!(cache.start_refresh(t).is_empty());
        assert_eq!(
            cache.ask("a", &a),
            Asked {
                start_refresh: true,
                wait: false
            }
        );
        cache.start_refresh(t);
        cache.answered(Some(&states()), t);
        cache.start_refresh(t);
        assert!(cache.ask("a", &a).wait);
    }

    #[test]
    fn a_refresh_that_cannot_start_leaves_nothing_waiting() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let a = paths(&["sdb"]);
        cache.ask("a", &a);
        cache.abandon();
        assert!(!cache.refreshing());
        assert_eq!(cache.ask("a", &a), START);
    }
}
