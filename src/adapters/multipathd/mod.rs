// SPDX-License-Identifier: GPL-2.0-or-later
//! Telling multipathd about reservation changes made through a map, so that
//! it registers the key on paths that are added or restored later.
//!
//! multipathd answers PR commands from root peers only, and it comes and
//! goes (a package upgrade restarts it; at boot it may start after us). The
//! daemon drops root (`-u`) and runs under a seccomp filter, so in
//! production it does not talk to multipathd itself: the relay process
//! ([`relay`]) keeps root's uid without any capability, forwards only the
//! commands [`MapCommand`] accepts and reconnects whenever multipathd is
//! back. [`MultipathdNotifier`], here, is the daemon's side: it decides what
//! to send and how to report trouble, once per kind.
//!
//! The three parts depend one way: this file on [`relay`] and
//! [`connection`], the relay on [`connection`] (multipathd's socket and
//! framing), which depends on neither.

pub mod connection;
pub mod relay;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::domain::multipath::dm_path_state::{parse_path_states, PATH_STATES_QUERY};
use crate::domain::multipath::events::{MapCommand, MapEvent};
use crate::domain::multipath::multipathd_reply::MultipathdReply;
use crate::domain::multipath::path::DmState;
use connection::{
    Answer, MultipathdAddress, MultipathdConnection, NotifyError, BACKOFF, MAX_REPLY,
};
use relay::RelayClient;

/// How the notifier reaches multipathd.
#[derive(Debug)]
enum Link {
    /// Through the relay process (production).
    Relay(RelayClient),
    /// Directly (tests, and when the relay cannot be started).
    Direct(Mutex<MultipathdConnection>),
}

/// Sends [`MapEvent`]s to multipathd and reports trouble once per kind;
/// never fails the PR command that caused them.
#[derive(Debug)]
pub struct MultipathdNotifier {
    link: Link,
    /// Held for each exchange, so that commands waiting for one in flight
    /// see its outcome: until when multipathd is not asked (it did not
    /// answer in time), whichever side timed out.
    quiet_until: Mutex<Option<Instant>>,
    /// Whether the back-off was logged since the last answer.
    warned_timeout: AtomicBool,
    /// Whether a reply too long was logged.
    warned_too_long: AtomicBool,
    /// Whether the "cannot reach multipathd" warning was logged since the
    /// last success.
    warned: AtomicBool,
    /// Whether a refusal was logged: multipathd refuses keys for every map
    /// when `reservation_key` is not `file` in multipath.conf, so once is enough.
    warned_refusal: AtomicBool,
    /// Whether "root only" was logged.
    warned_permission: AtomicBool,
    /// The command words this multipathd did not know, each logged once.
    not_understood: Mutex<Vec<&'static str>>,
    /// The connection on which multipathd did not take `setprstatus` with a
    /// path list (multipath-tools before 0.14): the plain command is sent
    /// while answers come on it; an answer on another connection (a
    /// restarted multipathd, maybe a newer one) forgets it.
    no_pathlist_on: Mutex<Option<u32>>,
    /// Whether the fallback to the plain `setprstatus` was logged.
    told_no_pathlist: AtomicBool,
}

impl MultipathdNotifier {
    /// A notifier that talks to multipathd at `address` itself.
    pub fn new(address: MultipathdAddress) -> MultipathdNotifier {
        MultipathdNotifier::with_link(Link::Direct(Mutex::new(MultipathdConnection::new(address))))
    }

    /// A notifier that goes through the relay process.
    pub fn with_relay(relay: RelayClient) -> MultipathdNotifier {
        MultipathdNotifier::with_link(Link::Relay(relay))
    }

    fn with_link(link: Link) -> MultipathdNotifier {
        MultipathdNotifier {
            link,
            quiet_until: Mutex::new(None),
            warned_timeout: AtomicBool::new(false),
            warned_too_long: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            warned_refusal: AtomicBool::new(false),
            warned_permission: AtomicBool::new(false),
            not_understood: Mutex::new(Vec::new()),
            no_pathlist_on: Mutex::new(None),
            told_no_pathlist: AtomicBool::new(false),
        }
    }

    /// Sends one command and returns multipathd's reply text.
    pub fn send(&self, command: &MapCommand) -> Result<String, NotifyError> {
        self.exchange(&command.to_string()).map(|a| a.text)
    }

    /// Asks multipathd for dm's state of every path
    /// ([`PATH_STATES_QUERY`]) and returns its reply text.
    pub fn path_states(&self) -> Result<String, NotifyError> {
        self.exchange(PATH_STATES_QUERY).map(|a| a.text)
    }

    /// dm's state of every path from multipathd, for the views of `maps`
    /// (named in the log); `None`, logged, when multipathd cannot say.
    pub fn dm_path_states(&self, maps: &str) -> Option<Vec<(String, DmState)>> {
        match self.path_states() {
            Ok(reply) => Some(parse_path_states(&reply)),
            Err(NotifyError::TooLong(bytes))
                if !self.warned_too_long.swap(true, Ordering::Relaxed) =>
            {
                tracing::warn!(
                    maps = %maps,
                    bytes,
                    limit = MAX_REPLY,
                    "multipathd's list of path states is too long and is ignored: paths are \
                     routed by their SCSI device state alone; logged once"
                );
                None
            }
            Err(e) => {
                tracing::debug!(maps = %maps, cause = %e,
                    "no dm path states from multipathd: routing by SCSI device state");
                None
            }
        }
    }

    /// One exchange with multipathd, unless it is being left alone after a
    /// timeout; a timeout (of multipathd, reported by the relay, or of the
    /// relay itself) starts [`BACKOFF`].
    fn exchange(&self, text: &str) -> Result<Answer, NotifyError> {
        // Held during the exchange: commands queued behind a wedged one
        // then see its back-off instead of waiting a timeout each.
        let mut quiet_until = self.quiet_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = *quiet_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(NotifyError::Quiet(left.as_secs().max(1)));
            }
            *quiet_until = None;
        }
        let result = match &self.link {
            Link::Relay(relay) => relay.send(text),
            Link::Direct(connection) => connection
                .lock()
                // A panic while holding the lock leaves at worst a dead
                // stream, which the next send replaces.
                .unwrap_or_else(|e| e.into_inner())
                .send_answer(text),
        };
        match &result {
            Err(e) if e.is_timeout() => {
                *quiet_until = Some(Instant::now() + BACKOFF);
                if !self.warned_timeout.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        command = %text,
                        cause = %e,
                        backoff_s = BACKOFF.as_secs(),
                        "multipathd is wedged: it is not asked again for 30 s (reservation \
                         changes are not passed on and paths are routed by their SCSI device \
                         state meanwhile); logged again after the next answer"
                    );
                } else {
                    tracing::debug!(command = %text, cause = %e, "multipathd still wedged");
                }
            }
            Ok(answer) => {
                self.warned_timeout.store(false, Ordering::Relaxed);
                let mut no_pathlist = self
                    .no_pathlist_on
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if no_pathlist.is_some_and(|c| c != answer.connection) {
                    *no_pathlist = None;
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Whether `setprstatus` goes without its path list: the multipathd
    /// answering now did not take one.
    fn no_pathlist(&self) -> bool {
        self.no_pathlist_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// `command` was answered with `answer`. A `setprstatus` with a path list
    /// that multipathd did not take gets the plain `setprstatus` after it:
    /// multipath-tools before 0.14 (Debian 12's 0.9.4) does not know
    /// `pathlist` and answers "fail", the same word as for a map it does not
    /// know. If the plain command is taken on the same connection, that
    /// multipathd is remembered as one without path lists until an answer
    /// comes on another connection. Returns the command whose answer counts.
    fn without_pathlist(
        &self,
        command: MapCommand,
        answer: Answer,
    ) -> Result<(MapCommand, Answer), NotifyError> {
        let Some(plain) = command.event.without_pathlist() else {
            return Ok((command, answer));
        };
        match MultipathdReply::classify(&command.event, &answer.text) {
            MultipathdReply::Refused | MultipathdReply::NotUnderstood => {}
            MultipathdReply::Done | MultipathdReply::PermissionDenied => {
                return Ok((command, answer));
            }
        }
        let plain = MapCommand {
            map: command.map.clone(),
            event: plain,
        };
        let second = self.exchange(&plain.to_string())?;
        if MultipathdReply::classify(&plain.event, &second.text) == MultipathdReply::Done
            && second.connection == answer.connection
        {
            *self
                .no_pathlist_on
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(second.connection);
            let reply = answer.text.lines().next().unwrap_or("").trim();
            if !self.told_no_pathlist.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    map = %command.map,
                    reply = %reply,
                    "multipathd does not take setprstatus with a pathlist (multipath-tools \
                     before 0.14): sending the plain setprstatus, after which it checks every \
                     path itself, until multipathd restarts; logged once"
                );
            } else {
                tracing::debug!(map = %command.map, reply = %reply,
                    "multipathd does not take setprstatus with a pathlist");
            }
        }
        Ok((plain, second))
    }

    /// Sends the events for map `name`. Never fails the caller: reservations
    /// work without multipathd, only new paths go unregistered, which is
    /// logged once.
    pub fn notify(&self, name: &str, events: &[MapEvent]) {
        for event in events {
            let mut command = MapCommand {
                map: name.to_string(),
                event: event.clone(),
            };
            if let Some(plain) = event.without_pathlist().filter(|_| self.no_pathlist()) {
                command.event = plain;
            }
            let answered = self
                .exchange(&command.to_string())
                .and_then(|answer| self.without_pathlist(command.clone(), answer));
            match answered {
                Ok((command, answer)) => self.report(&command, &answer.text),
                Err(e) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            command = %command,
                            cause = %e,
                            "cannot reach multipathd: paths added or restored later will not get \
                             the reservation key registered automatically (retried with every \
                             command; logged again after the next success)"
                        );
                    } else {
                        tracing::debug!(command = %command, cause = %e, "multipathd not reached");
                    }
                    return;
                }
            }
        }
    }

    /// Logs what multipathd's `reply` to `command` means.
    fn report(&self, command: &MapCommand, reply: &str) {
        self.warned.store(false, Ordering::Relaxed);
        let first_line = reply.lines().next().unwrap_or("").trim();
        match MultipathdReply::classify(&command.event, reply) {
            MultipathdReply::Done => {
                tracing::debug!(command = %command, "multipathd updated");
            }
            MultipathdReply::Refused if !self.warned_refusal.swap(true, Ordering::Relaxed) => {
                tracing::warn!(
                    command = %command,
                    reply = %first_line,
                    "multipathd refused (is reservation_key set to \"file\" in \
                     multipath.conf?); further refusals are logged at debug level"
                );
            }
            MultipathdReply::PermissionDenied
                if !self.warned_permission.swap(true, Ordering::Relaxed) =>
            {
                tracing::warn!(
                    command = %command,
                    reply = %first_line,
                    "multipathd answers root only: start the helper as root (it drops \
                     privileges itself with -u/-g)"
                );
            }
            MultipathdReply::NotUnderstood if self.first_not_understood(command.event.verb()) => {
                tracing::warn!(
                    command = %command.event.verb(),
                    reply = %first_line,
                    "this multipathd does not know the command (multipath-tools 0.9.4 has no \
                     setprhold/unsetprhold); the PR command is not affected; further ones are \
                     logged at debug level"
                );
            }
            _ => tracing::debug!(command = %command, reply = %first_line, "multipathd refused"),
        }
    }

    /// Whether `verb` was not known before (and remembers it).
    fn first_not_understood(&self, verb: &'static str) -> bool {
        let mut seen = self
            .not_understood
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.contains(&verb) {
            return false;
        }
        seen.push(verb);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::multipath::events::PathList;
    use connection::MultipathdAddress;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;
    use std::sync::mpsc;
    use std::thread;

    /// Reads one framed message, as multipathd does.
    fn read_message(s: &mut UnixStream) -> Option<String> {
        connection::read_message(s).ok()
    }

    fn write_message(s: &mut UnixStream, text: &str) {
        connection::write_message(s, text).unwrap();
    }

    /// A stand-in multipathd: serves `per_connection` messages on each of
    /// `connections` connections, answering "ok", and reports (connection
    /// number, command) for every message.
    fn stand_in(
        path: &Path,
        connections: usize,
        per_connection: usize,
    ) -> (mpsc::Receiver<(usize, String)>, thread::JoinHandle<()>) {
        let listener = UnixListener::bind(path).unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            for n in 0..connections {
                let (mut s, _) = listener.accept().unwrap();
                for _ in 0..per_connection {
                    let Some(m) = read_message(&mut s) else { break };
                    tx.send((n, m)).unwrap();
                    write_message(&mut s, "ok");
                }
            }
        });
        (rx, handle)
    }

    #[test]
    fn events_are_sent_framed_over_one_kept_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in(&sock, 1, 3);
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        n.notify(
            "mpatha",
            &[
                MapEvent::SetKey {
                    key: crate::domain::service_action::ReservationKey(0xabc),
                    aptpl: false,
                },
                MapEvent::SetStatus {
                    registered: PathList::NONE,
                },
            ],
        );
        n.notify("mpatha", &[MapEvent::SetHold]);
        handle.join().unwrap();
        let got: Vec<(usize, String)> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                (0, "setprkey map mpatha key 0xabc".to_string()),
                (0, "setprstatus map mpatha".to_string()),
                (0, "setprhold map mpatha".to_string()),
            ]
        );
        assert!(!n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn a_lost_connection_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in(&sock, 2, 1);
        let mut n = MultipathdConnection::new(MultipathdAddress::Path(sock));
        assert_eq!(n.send("show maps").unwrap(), "ok");
        // The stand-in closed the first connection after one message.
        assert_eq!(n.send("unsetprhold map m").unwrap(), "ok");
        handle.join().unwrap();
        let got: Vec<(usize, String)> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                (0, "show maps".to_string()),
                (1, "unsetprhold map m".to_string())
            ]
        );
    }

    #[test]
    fn without_multipathd_notify_warns_once_and_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let absent = MultipathdAddress::Path(dir.path().join("absent"));
        assert!(matches!(
            MultipathdConnection::new(absent.clone()).send("list maps"),
            Err(NotifyError::Connect { .. })
        ));
        let n = MultipathdNotifier::new(absent);
        n.notify(
            "m",
            &[
                MapEvent::SetHold,
                MapEvent::SetStatus {
                    registered: PathList::NONE,
                },
            ],
        );
        assert!(n.warned.load(Ordering::Relaxed));
        n.notify("m", &[MapEvent::UnsetHold]);
        assert!(n.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn a_refusal_is_not_a_lost_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let m = read_message(&mut s).unwrap();
            write_message(&mut s, "fail");
            m
        });
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        n.notify("m", &[MapEvent::UnsetKey]);
        assert_eq!(handle.join().unwrap(), "unsetprkey map m");
        assert!(!n.warned.load(Ordering::Relaxed));
        assert!(n.warned_refusal.load(Ordering::Relaxed));
    }

    #[test]
    fn an_unknown_command_is_reported_once_per_command_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        // multipath-tools 0.9.4 knows no setprhold and answers "fail".
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            while let Some(m) = read_message(&mut s) {
                let reply = if m.starts_with("setprhold") || m.starts_with("unsetprhold") {
                    "fail\n"
                } else {
                    "ok\n"
                };
                write_message(&mut s, reply);
                got.push(m);
            }
            got
        });
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        n.notify("m", &[MapEvent::SetHold]);
        n.notify("m", &[MapEvent::SetHold]);
        n.notify(
            "m",
            &[
                MapEvent::UnsetHold,
                MapEvent::SetStatus {
                    registered: PathList::NONE,
                },
            ],
        );
        assert_eq!(
            *n.not_understood.lock().unwrap(),
            vec!["setprhold", "unsetprhold"]
        );
        assert!(!n.warned.load(Ordering::Relaxed));
        assert!(!n.warned_refusal.load(Ordering::Relaxed));
        drop(n);
        assert_eq!(
            handle.join().unwrap(),
            vec![
                "setprhold map m",
                "setprhold map m",
                "unsetprhold map m",
                "setprstatus map m"
            ]
        );
    }

    /// A stand-in multipathd that serves `per_connection[n]` messages on its
    /// n-th connection, answering each with `reply(n, command)`; reports
    /// (connection number, command) for every message.
    fn stand_in_answering(
        path: &Path,
        per_connection: Vec<usize>,
        reply: fn(usize, &str) -> &'static str,
    ) -> (mpsc::Receiver<(usize, String)>, thread::JoinHandle<()>) {
        let listener = UnixListener::bind(path).unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            for (n, messages) in per_connection.into_iter().enumerate() {
                let (mut s, _) = listener.accept().unwrap();
                for _ in 0..messages {
                    let Some(m) = read_message(&mut s) else { break };
                    write_message(&mut s, reply(n, &m));
                    tx.send((n, m)).unwrap();
                }
            }
        });
        (rx, handle)
    }

    fn registered(devs: &[(u32, u32)]) -> MapEvent {
        use crate::domain::multipath::path::DevNumber;
        MapEvent::SetStatus {
            registered: PathList::new(
                devs.iter()
                    .map(|&(major, minor)| DevNumber { major, minor }),
            ),
        }
    }

    /// What multipath-tools 0.9.4 answers to a command with a keyword it
    /// does not know in the middle (`pathlist`): "fail" (its parser stops
    /// with ENOENT, which gets no help text); 0.14 and later take it.
    fn mpd_0_9_4(_: usize, command: &str) -> &'static str {
        if command.contains(" pathlist ") {
            "fail\n"
        } else {
            "ok\n"
        }
    }

    /// Debian 12's multipathd on the first connection, a newer one after a
    /// restart.
    fn upgraded(connection: usize, command: &str) -> &'static str {
        if connection == 0 {
            mpd_0_9_4(connection, command)
        } else {
            "ok\n"
        }
    }

    /// A multipathd that does not know `pathlist` gets the plain
    /// `setprstatus` at once, and then only the plain one while the
    /// connection lasts; after a restart (a new connection, maybe a newer
    /// multipathd) the path list is tried again, and kept when taken.
    #[test]
    fn without_pathlist_multipathd_gets_the_plain_setprstatus_until_it_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in_answering(&sock, vec![4, 3], upgraded);
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        let list = registered(&[(8, 16), (8, 32)]);
        let key = MapEvent::SetKey {
            key: crate::domain::service_action::ReservationKey(0x1111),
            aptpl: false,
        };
        n.notify("mpatha", &[key, list.clone()]);
        assert!(n.told_no_pathlist.load(Ordering::Relaxed));
        assert!(n.no_pathlist());
        n.notify("mpatha", std::slice::from_ref(&list));
        // multipathd restarts (the stand-in's first connection ends): the
        // command on the new connection is still the plain one, its answer
        // shows another connection, and the next one carries the list.
        n.notify("mpatha", std::slice::from_ref(&list));
        assert!(!n.no_pathlist());
        n.notify("mpatha", std::slice::from_ref(&list));
        n.notify("mpatha", std::slice::from_ref(&list));
        handle.join().unwrap();
        let got: Vec<(usize, String)> = rx.try_iter().collect();
        let with_list = r#"setprstatus map mpatha pathlist "8:16 8:32""#.to_string();
        let plain = "setprstatus map mpatha".to_string();
        assert_eq!(
            got,
            vec![
                (0, "setprkey map mpatha key 0x1111".to_string()),
                (0, with_list.clone()),
                (0, plain.clone()),
                (0, plain.clone()),
                (1, plain),
                (1, with_list.clone()),
                (1, with_list),
            ]
        );
        // Neither a refusal nor an unknown command was reported.
        assert!(!n.warned_refusal.load(Ordering::Relaxed));
        assert!(n.not_understood.lock().unwrap().is_empty());
        assert!(!n.warned.load(Ordering::Relaxed));
    }

    /// "fail" to both forms is multipathd refusing the map (unknown, or no
    /// `reservation_key file`), not a missing `pathlist`: it is reported as
    /// a refusal, and the list is tried again next time.
    #[test]
    fn fail_to_both_forms_is_a_refusal_and_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in_answering(&sock, vec![4], |_, _| "fail\n");
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        let list = registered(&[(8, 16)]);
        n.notify("nosuchmap", std::slice::from_ref(&list));
        n.notify("nosuchmap", std::slice::from_ref(&list));
        handle.join().unwrap();
        let got: Vec<String> = rx.try_iter().map(|(_, m)| m).collect();
        let with_list = r#"setprstatus map nosuchmap pathlist "8:16""#.to_string();
        let plain = "setprstatus map nosuchmap".to_string();
        assert_eq!(
            got,
            vec![with_list.clone(), plain.clone(), with_list, plain]
        );
        assert!(!n.no_pathlist());
        assert!(!n.told_no_pathlist.load(Ordering::Relaxed));
        assert!(n.warned_refusal.load(Ordering::Relaxed));
    }

    /// A multipathd that takes the list gets it once, nothing else; one that
    /// answers root only is not asked again with the plain form.
    #[test]
    fn a_taken_path_list_or_a_root_only_answer_needs_no_second_command() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("mpd.sock");
        let (rx, handle) = stand_in_answering(&sock, vec![2], |_, m| {
            if m.starts_with("setprstatus map denied") {
                "permission deny: need to be root\n"
            } else {
                "ok\n"
            }
        });
        let n = MultipathdNotifier::new(MultipathdAddress::Path(sock));
        n.notify("mpatha", &[registered(&[(65, 240)])]);
        n.notify("denied", &[registered(&[(65, 240)])]);
        handle.join().unwrap();
        let got: Vec<String> = rx.try_iter().map(|(_, m)| m).collect();
        assert_eq!(
            got,
            vec![
                r#"setprstatus map mpatha pathlist "65:240""#,
                r#"setprstatus map denied pathlist "65:240""#
            ]
        );
        assert!(n.warned_permission.load(Ordering::Relaxed));
        assert!(!n.no_pathlist());
    }

    #[test]
    fn abstract_addresses_connect() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("qemu-pr-helper-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let m = read_message(&mut s).unwrap();
            write_message(&mut s, "ok\n");
            m
        });
        let mut n = MultipathdConnection::new(MultipathdAddress::Abstract(name));
        assert_eq!(n.send("list maps").unwrap(), "ok\n");
        assert_eq!(handle.join().unwrap(), "list maps");
    }
}
