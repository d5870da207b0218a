//! dm's view of each map's paths, kept for a few seconds so that a command
//! on a map never asks multipathd itself: a wedged multipathd would make
//! every command wait for it, one after the other, while holding the map.
//! A command takes the view that is fresh or none; the cache says when a
//! refresh should start (one at a time, answering every map that asked).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::path::DmState;

/// How long a view is used: dm fails a path within seconds of its I/O
/// errors, and a view older than that could order a dead path first.
pub const DM_VIEW_TTL: Duration = Duration::from_secs(3);

/// A map's paths by kernel name with dm's state of each.
pub type DmView = Vec<(String, DmState)>;

/// A map that asked for a view: its name and its paths' names.
pub type ViewRequest = (String, Vec<String>);

/// The views by map name, and the refresh in flight.
#[derive(Debug)]
pub struct DmViewCache {
    ttl: Duration,
    views: HashMap<String, (DmView, Instant)>,
    /// Maps waiting for the next refresh.
    pending: Vec<ViewRequest>,
    /// Maps the refresh in flight answers; a map forgotten meanwhile is
    /// taken out, so an answer older than a path error is not kept.
    in_flight: Vec<ViewRequest>,
    /// Whether a refresh runs (pending maps are answered by it, in turn).
    refreshing: bool,
}

impl Default for DmViewCache {
    fn default() -> DmViewCache {
        DmViewCache::new(DM_VIEW_TTL)
    }
}

/// What [`DmViewCache::view`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh view.
    Fresh(DmView),
    /// None: the map waits for a refresh, which the caller starts if
    /// `start_refresh` (no refresh runs yet).
    Missing {
        /// Whether the caller must start the refresh.
        start_refresh: bool,
    },
}

impl DmViewCache {
    /// Views are used for `ttl`.
    pub fn new(ttl: Duration) -> DmViewCache {
        DmViewCache {
            ttl,
            views: HashMap::new(),
            pending: Vec::new(),
            in_flight: Vec::new(),
            refreshing: false,
        }
    }

    /// The view of `map` (whose paths are `paths`) at `now`, or a request
    /// for one.
    pub fn view(&mut self, map: &str, paths: &[String], now: Instant) -> Lookup {
        if let Some(view) = self.fresh(map, now) {
            return Lookup::Fresh(view);
        }
        self.views.remove(map);
        if !self.pending.iter().any(|(m, _)| m == map) {
            self.pending.push((map.to_string(), paths.to_vec()));
        }
        let start_refresh = !self.refreshing;
        self.refreshing = true;
        Lookup::Missing { start_refresh }
    }

    /// The view of `map` if it is fresh at `now`.
    pub fn fresh(&self, map: &str, now: Instant) -> Option<DmView> {
        self.views
            .get(map)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(view, _)| view.clone())
    }

    /// Whether a refresh runs.
    pub fn refreshing(&self) -> bool {
        self.refreshing
    }

    /// The refresh takes the maps waiting; none left ends it.
    pub fn start_refresh(&mut self) -> Vec<String> {
        self.in_flight = std::mem::take(&mut self.pending);
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
        let Some(states) = states else {
            self.in_flight.clear();
            return;
        };
        for (map, paths) in std::mem::take(&mut self.in_flight) {
            let view = states
                .iter()
                .filter(|(dev, _)| paths.contains(dev))
                .cloned()
                .collect();
            self.views.insert(map, (view, now));
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

    #[test]
    fn one_refresh_answers_every_map_that_asked_with_its_own_paths() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb", "sdc"]);
        let b = paths(&["sdd", "sdz"]);
        assert_eq!(
            cache.view("a", &a, t),
            Lookup::Missing {
                start_refresh: true
            }
        );
        // A refresh runs: the next map waits for it, none is started.
        assert_eq!(
            cache.view("b", &b, t),
            Lookup::Missing {
                start_refresh: false
            }
        );
        assert_eq!(
            cache.view("a", &a, t),
            Lookup::Missing {
                start_refresh: false
            }
        );
        assert_eq!(cache.start_refresh(), vec!["a", "b"]);
        cache.answered(Some(&states()), t);
        assert_eq!(
            cache.view("a", &a, t + Duration::from_secs(1)),
            Lookup::Fresh(vec![
                ("sdb".into(), DmState::Active),
                ("sdc".into(), DmState::Failed)
            ])
        );
        assert_eq!(
            cache.view("b", &b, t),
            Lookup::Fresh(vec![("sdd".into(), DmState::Active)])
        );
        // Nobody waits: the refresh ends.
        assert!(cache.start_refresh().is_empty());
        assert!(!cache.refreshing());
    }

    #[test]
    fn a_view_is_short_lived() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.view("a", &a, t);
        cache.start_refresh();
        cache.answered(Some(&states()), t);
        assert!(cache.start_refresh().is_empty());
        assert!(cache.fresh("a", t + Duration::from_millis(2999)).is_some());
        assert_eq!(
            cache.view("a", &a, t + Duration::from_secs(3)),
            Lookup::Missing {
                start_refresh: true
            }
        );
    }

    #[test]
    fn a_path_error_drops_the_view_and_the_answer_in_flight() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.view("a", &a, t);
        cache.start_refresh();
        cache.answered(Some(&states()), t);
        cache.start_refresh();
        cache.forget("a");
        assert!(cache.fresh("a", t).is_none());
        // Asked again; the answer in flight predates a path error.
        cache.view("a", &a, t);
        cache.start_refresh();
        cache.forget("a");
        cache.answered(Some(&states()), t);
        assert!(cache.fresh("a", t).is_none());
    }

    #[test]
    fn no_answer_or_no_refresh_leaves_no_view() {
        let mut cache = DmViewCache::new(Duration::from_secs(3));
        let t = Instant::now();
        let a = paths(&["sdb"]);
        cache.view("a", &a, t);
        cache.start_refresh();
        cache.answered(None, t);
        assert!(cache.fresh("a", t).is_none());
        assert!(cache.start_refresh().is_empty());
        cache.view("a", &a, t);
        cache.abandon();
        assert!(!cache.refreshing());
        assert_eq!(
            cache.view("a", &a, t),
            Lookup::Missing {
                start_refresh: true
            }
        );
    }
}
