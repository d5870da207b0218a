// SPDX-License-Identifier: GPL-2.0-or-later
//! dm's view of a map's paths for a command, without making the command
//! ask multipathd: each command asks for a view taken after it arrived
//! ([`DmViewCache`]), which a thread of its own fetches (started when a map
//! asks, ended when no map waits). A command waits for it at most [`WAIT`],
//! never with its map's lock held, and only while multipathd answers; a
//! late answer leaves it the last view if that is recent, or none: with
//! multipathd wedged, every command on every map is then answered at once
//! instead of one multipathd timeout after the other.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::multipathd::MultipathdNotifier;
use crate::domain::multipath::dm_view_cache::{DmView, DmViewCache};

/// How long a command waits for a refresh it asked for: multipathd answers
/// in milliseconds when it is well, so a fresh view is usually there in
/// time; when it is not, a command loses this much once.
pub const WAIT: Duration = Duration::from_millis(250);

/// dm's view of each map's paths, refreshed in the background.
#[derive(Debug)]
pub struct DmPathViews {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    notifier: Arc<MultipathdNotifier>,
    cache: Mutex<DmViewCache>,
    /// Signalled when a refresh answered (or gave up).
    answered: Condvar,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, DmViewCache> {
        // The cache stays consistent across a panic (each step is a few
        // assignments): a poisoned lock is used as it is.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DmPathViews {
    /// Views from `notifier`'s multipathd; one may stand in for a late
    /// answer for `ttl`.
    pub fn new(notifier: Arc<MultipathdNotifier>, ttl: Duration) -> DmPathViews {
        DmPathViews {
            shared: Arc::new(Shared {
                notifier,
                cache: Mutex::new(DmViewCache::new(ttl)),
                answered: Condvar::new(),
            }),
        }
    }

    /// dm's view of `map`'s `paths`: the one a refresh started after this
    /// call brings within [`WAIT`], or else the last one if recent, or none
    /// (empty). Err: none, and the refresh could not be started (no thread).
    pub fn view(&self, map: &str, paths: &[String]) -> io::Result<DmView> {
        let mut cache = self.shared.cache();
        let asked = Instant::now();
        let ask = cache.ask(map, paths);
        if ask.start_refresh {
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("dm-path-views".into())
                .spawn(move || refresh(&shared));
            if let Err(e) = started {
                cache.abandon();
                return Err(e);
            }
        }
        if ask.wait {
            let deadline = asked + WAIT;
            loop {
                if let Some(view) = cache.since(map, asked) {
                    return Ok(view);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || !cache.refreshing() {
                    break;
                }
                cache = self
                    .shared
                    .answered
                    .wait_timeout(cache, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        Ok(cache.recent(map, Instant::now()).unwrap_or_default())
    }

    /// Drops `map`'s view: one of its paths failed, so dm's view of it is
    /// about to change.
    pub fn forget(&self, map: &str) {
        self.shared.cache().forget(map);
    }
}

/// The refresh thread: asks multipathd (without the cache's lock) until no
/// map waits.
fn refresh(shared: &Shared) {
    loop {
        let maps = shared.cache().start_refresh(Instant::now());
        if maps.is_empty() {
            shared.answered.notify_all();
            return;
        }
        let states = shared.notifier.dm_path_states(&maps.join(" "));
        shared.cache().answered(states.as_deref(), Instant::now());
        shared.answered.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::multipathd::connection::{read_message, write_message, MultipathdAddress};
    use crate::domain::multipath::path::DmState;
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    /// A stand-in multipathd answering every query with `reply`; it counts
    /// the queries.
    fn multipathd(path: &Path, reply: String) -> Arc<std::sync::atomic::AtomicUsize> {
        let listener = UnixListener::bind(path).unwrap();
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                while read_message(&mut s).is_ok() {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if write_message(&mut s, &reply).is_err() {
                        break;
                    }
                }
            }
        });
        asked
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// A host with 5,000 paths: the map's two are found in multipathd's
    /// long answer, asked again for each command (dm's view can change
    /// without any error the helper sees: multipathd `fail path`).
    #[test]
    fn each_command_gets_a_view_from_multipathd_taken_after_it_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("multipathd.sock");
        let mut reply: String = (0..4998).map(|i| format!("sdx{i}:active\n")).collect();
        reply.push_str("sdb:failed\nsdc:active\n");
        let asked = multipathd(&sock, reply);
        let notifier = Arc::new(MultipathdNotifier::new(MultipathdAddress::Path(sock)));
        let views = DmPathViews::new(notifier, Duration::from_secs(60));
        let paths = names(&["sdb", "sdc"]);
        let expected = vec![
            ("sdb".to_string(), DmState::Failed),
            ("sdc".to_string(), DmState::Active),
        ];
        assert_eq!(views.view("mpatha", &paths).unwrap(), expected);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(views.view("mpatha", &paths).unwrap(), expected);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
        views.forget("mpatha");
        assert_eq!(views.view("mpatha", &paths).unwrap(), expected);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// The refresh thread runs under the daemon's system-call filter: a
    /// call missing from the allowlist would kill a release build's daemon
    /// on its first multipath command. It runs in a child test process with
    /// the kill filter installed; the stand-in multipathd is the parent's.
    #[test]
    fn the_refresh_is_allowed_by_the_seccomp_filter() {
        const CHILD: &str = "QEMU_PR_HELPER_TEST_SECCOMP_DM_VIEWS";
        if let Ok(sock) = std::env::var(CHILD) {
            use crate::adapters::seccomp::{install, SeccompMode};
            install(SeccompMode::Kill).unwrap();
            let notifier = Arc::new(MultipathdNotifier::new(MultipathdAddress::Path(
                sock.into(),
            )));
            let views = DmPathViews::new(notifier, Duration::from_secs(60));
            let mut view = Vec::new();
            for _ in 0..20 {
                view = views.view("mpatha", &names(&["sdb"])).unwrap();
                if !view.is_empty() {
                    break;
                }
            }
            assert_eq!(view, vec![("sdb".to_string(), DmState::Active)]);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("multipathd.sock");
        multipathd(&sock, "sdb:active\n".to_string());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "adapters::dm_path_views::tests::the_refresh_is_allowed_by_the_seccomp_filter",
                "--test-threads=1",
            ])
            .env(CHILD, &sock)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the refresh under the kill filter ended with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
