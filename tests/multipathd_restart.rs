// SPDX-License-Identifier: GPL-2.0-or-later
//! multipathd restarts while the daemon runs (a package upgrade, a crash, a
//! boot order that starts it later): the next reservation change must reach
//! the new multipathd, and the daemon must not die from its own seccomp filter
//! on the way (it once did: reconnecting set socket timeouts, a call outside
//! the allowlist, and the release build's `kill` mode ended the daemon).
//!
//! These tests fork, which is sound only in a single-threaded process, so
//! this file has its own `main` instead of the threaded test harness. A
//! stand-in multipathd speaks multipathd's framing on a socket file.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};
use qemu_pr_helper::adapters::multipathd::connection::{
    read_message, write_message, MultipathdAddress, NotifyError,
};
use qemu_pr_helper::adapters::multipathd::relay as multipathd_relay;
use qemu_pr_helper::adapters::multipathd::MultipathdNotifier;
use qemu_pr_helper::adapters::seccomp::{self, SeccompMode};
use qemu_pr_helper::domain::multipath::dm_path_state::PATH_STATES_QUERY;
use qemu_pr_helper::domain::multipath::events::{
    MapCommand, MapEvent, PathList, MAX_COMMAND_LEN, MAX_MAP_NAME,
};
use qemu_pr_helper::domain::multipath::path::DevNumber;

/// A stand-in multipathd life: accepts one connection and answers "ok\n" to
/// `messages` commands; returns them.
fn serve(listener: &UnixListener, messages: usize) -> Vec<String> {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    for _ in 0..messages {
        // None: the peer died (the assertions on its status say how).
        let Ok(m) = read_message(&mut s) else { break };
        write_message(&mut s, "ok\n").unwrap();
        got.push(m);
    }
    got
}

fn command(event: MapEvent) -> MapCommand {
    MapCommand {
        map: "mpatha".into(),
        event,
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// `/proc/PID/status` field `name`.
fn status_field(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// A process that does what the daemon does (notifier made while
/// single-threaded, then the daemon's seccomp filter in `kill` mode) sends a
/// reservation change, multipathd restarts, and it sends the next one. It
/// must see both answered and must not be killed.
fn daemon_survives_a_multipathd_restart(sock: &Path, through_relay: bool) {
    let _ = std::fs::remove_file(sock);
    let first = UnixListener::bind(sock).unwrap();
    let (to_daemon_r, to_daemon_w) = pipe().unwrap();
    let (to_test_r, to_test_w) = pipe().unwrap();
    assert_eq!(threads(), 1);
    // SAFETY: single-threaded (checked above); the child leaves with _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            let address = MultipathdAddress::Path(sock.to_path_buf());
            let notifier = if through_relay {
                MultipathdNotifier::with_relay(
                    multipathd_relay::spawn(address, SeccompMode::Kill).unwrap(),
                )
            } else {
                MultipathdNotifier::new(address)
            };
            seccomp::install(SeccompMode::Kill).unwrap();
            let mut code = 0;
            if notifier
                .send(&command(MapEvent::SetStatus {
                    registered: PathList::NONE,
                }))
                .ok()
                .as_deref()
                != Some("ok\n")
            {
                code |= 1;
            }
            let mut to_test = std::fs::File::from(to_test_w);
            let mut to_daemon = std::fs::File::from(to_daemon_r);
            let _ = to_test.write_all(b"1");
            let mut byte = [0u8];
            let _ = to_daemon.read_exact(&mut byte);
            let key = qemu_pr_helper::domain::service_action::ReservationKey(0xabc);
            let reply = notifier.send(&command(MapEvent::SetKey { key, aptpl: false }));
            if reply.ok().as_deref() != Some("ok\n") {
                code |= 2;
            }
            // SAFETY: ends the forked child without running the test's
            // destructors or exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((to_daemon_r, to_test_w));
            let got1 = serve(&first, 1);
            let mut from_daemon = std::fs::File::from(to_test_r);
            let mut byte = [0u8];
            from_daemon.read_exact(&mut byte).unwrap();
            // multipathd stops (its connection and socket go) and starts again.
            drop(first);
            std::fs::remove_file(sock).unwrap();
            let second = UnixListener::bind(sock).unwrap();
            std::fs::File::from(to_daemon_w).write_all(b"r").unwrap();
            let got2 = serve(&second, 1);
            let status = waitpid(child, None).unwrap();
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "relay={through_relay}: the daemon-like process must answer both \
                 commands and live (SIGSYS = killed by its own filter)"
            );
            assert_eq!(got1, vec!["setprstatus map mpatha"]);
            assert_eq!(got2, vec!["setprkey map mpatha key 0xabc"]);
        }
    }
}

/// The relay keeps root's uid with nothing else, forwards reservation
/// changes and the path-state query only, follows multipathd across
/// restarts, and ends with the daemon.
fn relay_forwards_only_map_commands_and_ends_with_the_daemon(sock: &Path) {
    let _ = std::fs::remove_file(sock);
    let first = UnixListener::bind(sock).unwrap();
    assert_eq!(threads(), 1);
    let relay = multipathd_relay::spawn(
        MultipathdAddress::Path(sock.to_path_buf()),
        SeccompMode::Kill,
    )
    .unwrap();
    let pid = relay.pid();
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(status_field(pid, "CapBnd:"), "0000000000000000");
        assert!(status_field(pid, "Uid:").starts_with("0\t"));
        assert_eq!(status_field(pid, "Groups:"), "");
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    assert_eq!(status_field(pid, "Seccomp:"), "2");
    // Its stdio is /dev/null, so a caller waiting for `-d`'s output to end
    // is not held up by it.
    let stdout = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    assert_eq!(stdout, Path::new("/dev/null"));

    // The longest command multipathd reads passes whole; the same with one
    // byte more is refused, not cut back to it.
    let longest = longest_setprstatus();
    assert_eq!(longest.len(), MAX_COMMAND_LEN);
    assert!(MapCommand::parse(&longest).is_some());
    assert!(matches!(
        relay.send(&format!("{longest}\"")),
        Err(NotifyError::Rejected)
    ));
    let notifier = MultipathdNotifier::with_relay(relay);
    let sock_owned = sock.to_path_buf();
    let stand_in = std::thread::spawn(move || {
        let mut got = serve(&first, 1);
        drop(first);
        std::fs::remove_file(&sock_owned).unwrap();
        let second = UnixListener::bind(&sock_owned).unwrap();
        got.extend(serve(&second, 4));
        got
    });
    assert_eq!(notifier.send(&command(MapEvent::SetHold)).unwrap(), "ok\n");
    // Whatever the daemon's memory says, only MapCommands pass.
    let rogue = MapCommand {
        map: "mpatha\nshutdown".into(),
        event: MapEvent::SetStatus {
            registered: PathList::NONE,
        },
    };
    assert!(matches!(notifier.send(&rogue), Err(NotifyError::Rejected)));
    // Restarted in between: the relay reconnects by itself.
    let mut reply = notifier.send(&command(MapEvent::UnsetHold));
    for _ in 0..50 {
        if reply.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        reply = notifier.send(&command(MapEvent::UnsetHold));
    }
    assert_eq!(reply.unwrap(), "ok\n");
    // The one read-only query passes too: dm's view of the paths.
    assert_eq!(notifier.path_states().unwrap(), "ok\n");
    // And setprstatus with the paths registered, as multipath-tools 0.14
    // takes it.
    let listed = MapCommand {
        map: "mpatha".into(),
        event: MapEvent::SetStatus {
            registered: PathList::new([
                DevNumber {
                    major: 8,
                    minor: 16,
                },
                DevNumber {
                    major: 8,
                    minor: 32,
                },
            ]),
        },
    };
    assert_eq!(notifier.send(&listed).unwrap(), "ok\n");
    assert_eq!(
        notifier
            .send(&MapCommand::parse(&longest).unwrap())
            .unwrap(),
        "ok\n"
    );
    assert_eq!(
        stand_in.join().unwrap(),
        vec![
            "setprhold map mpatha",
            "unsetprhold map mpatha",
            PATH_STATES_QUERY,
            r#"setprstatus map mpatha pathlist "8:16 8:32""#,
            &longest,
        ]
    );
    drop(notifier);
    let child = Pid::from_raw(pid as i32);
    assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
}

/// A `setprstatus` of exactly [`MAX_COMMAND_LEN`] bytes: the longest map
/// name and a path list of 9- and 10-character entries that fills the rest.
fn longest_setprstatus() -> String {
    let map = "m".repeat(MAX_MAP_NAME);
    let room = MAX_COMMAND_LEN - format!("setprstatus map {map} pathlist \"\"").len();
    // n entries of "10:DDDDDD" and the spaces between are 10 n - 1 bytes;
    // the rest is made up with 7-digit minors, one byte longer each.
    let n = (room + 1) / 10;
    let longer = room + 1 - 10 * n;
    let list: Vec<DevNumber> = (0..n as u32)
        .map(|i| DevNumber {
            major: 10,
            minor: if (i as usize) < longer {
                1_000_000 + i
            } else {
                100_000 + i
            },
        })
        .collect();
    MapCommand {
        map,
        event: MapEvent::SetStatus {
            registered: PathList::new(list),
        },
    }
    .to_string()
}

/// A relay that dies is reported to the commands with how it died, not as
/// a panic (the daemon's own watch then stops the daemon:
/// tests/multipathd_relay_lost.rs).
fn a_dead_relay_is_reported_with_how_it_died(sock: &Path) {
    assert_eq!(threads(), 1);
    let relay = multipathd_relay::spawn(
        MultipathdAddress::Path(sock.to_path_buf()),
        SeccompMode::Kill,
    )
    .unwrap();
    let pid = Pid::from_raw(relay.pid() as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    let notifier = MultipathdNotifier::with_relay(relay);
    let mut err = None;
    for _ in 0..50 {
        match notifier.send(&command(MapEvent::SetStatus {
            registered: PathList::NONE,
        })) {
            Err(NotifyError::RelayGone(how)) => {
                err = Some(how);
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let how = err.expect("the relay's death is reported");
    assert!(how.contains("SIGKILL"), "{how}");
}

/// A stand-in multipathd that accepts every connection and reads every
/// command but never answers, until told to stop; it counts the commands.
struct HungMultipathd {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    commands: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl HungMultipathd {
    fn start(listener: UnixListener) -> HungMultipathd {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(AtomicUsize::new(0));
        let (stop2, commands2) = (Arc::clone(&stop), Arc::clone(&commands));
        let thread = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((s, _)) = listener.accept() {
                    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                    held.push(s);
                }
                for s in &mut held {
                    if read_message(s).is_ok() {
                        commands2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        HungMultipathd {
            stop,
            commands,
            thread,
        }
    }

    fn commands(&self) -> usize {
        self.commands.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

/// multipathd accepts but never answers (wedged). The relay gives up on it
/// first (its own timeout is shorter than the daemon's wait), and that must
/// start the back-off just as the daemon's own timeout would: the next
/// command is not sent at all and comes back at once, so a wedged
/// multipathd costs one timeout, not one per command.
fn a_wedged_multipathd_costs_one_timeout_not_one_per_command(sock: &Path) {
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock).unwrap();
    assert_eq!(threads(), 1);
    let relay = multipathd_relay::spawn(
        MultipathdAddress::Path(sock.to_path_buf()),
        SeccompMode::Kill,
    )
    .unwrap();
    let pid = Pid::from_raw(relay.pid() as i32);
    let hung = HungMultipathd::start(listener);
    let notifier = MultipathdNotifier::with_relay(relay);
    assert!(notifier
        .send(&command(MapEvent::SetStatus {
            registered: PathList::NONE,
        }))
        .is_err());
    assert_eq!(hung.commands(), 1);
    let started = std::time::Instant::now();
    let second = notifier.path_states();
    let waited = started.elapsed();
    // Let a command the relay may have forwarded arrive.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        hung.commands(),
        1,
        "after a timeout, multipathd is not asked again during the back-off"
    );
    assert!(second.is_err());
    // A latency goal stated as a correctness property: the command does
    // not wait for multipathd again (generous bound; a timeout is 5 s).
    assert!(
        waited < Duration::from_secs(1),
        "the second command waited {waited:?}"
    );
    drop(notifier);
    hung.stop();
    assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
}

/// A host with thousands of paths: multipathd's answer to the path-state
/// query is far longer than a PR command's answer, and must arrive whole
/// through the relay (it was cut at 2 KiB, so dm's view of most paths was
/// silently lost).
fn a_5000_path_reply_arrives_whole_through_the_relay(sock: &Path) {
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock).unwrap();
    assert_eq!(threads(), 1);
    let relay = multipathd_relay::spawn(
        MultipathdAddress::Path(sock.to_path_buf()),
        SeccompMode::Kill,
    )
    .unwrap();
    let pid = Pid::from_raw(relay.pid() as i32);
    let reply: String = (0..5000)
        .map(|i| {
            let state = if i % 7 == 0 { "failed" } else { "active" };
            format!(
                "sd{}{}{}:{state}\n",
                letter(i / 676),
                letter(i / 26),
                letter(i)
            )
        })
        .collect();
    let expected = reply.clone();
    let stand_in = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let query = read_message(&mut s).unwrap();
        write_message(&mut s, &reply).unwrap();
        query
    });
    let notifier = MultipathdNotifier::with_relay(relay);
    let got = notifier.path_states().unwrap();
    assert_eq!(stand_in.join().unwrap(), PATH_STATES_QUERY);
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
    let states = qemu_pr_helper::domain::multipath::dm_path_state::parse_path_states(&got);
    assert_eq!(states.len(), 5000);
    drop(notifier);
    assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
}

/// `a` to `z` by `i` modulo 26.
fn letter(i: usize) -> char {
    char::from(b'a' + (i % 26) as u8)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("multipathd.sock");
    let tests: [(&str, &dyn Fn()); 6] = [
        (
            "daemon_survives_a_multipathd_restart_talking_directly",
            &|| daemon_survives_a_multipathd_restart(&sock, false),
        ),
        (
            "daemon_survives_a_multipathd_restart_through_the_relay",
            &|| daemon_survives_a_multipathd_restart(&sock, true),
        ),
        (
            "relay_forwards_only_map_commands_and_ends_with_the_daemon",
            &|| relay_forwards_only_map_commands_and_ends_with_the_daemon(&sock),
        ),
        ("a_dead_relay_is_reported_with_how_it_died", &|| {
            a_dead_relay_is_reported_with_how_it_died(&sock)
        }),
        (
            "a_wedged_multipathd_costs_one_timeout_not_one_per_command",
            &|| a_wedged_multipathd_costs_one_timeout_not_one_per_command(&sock),
        ),
        ("a_5000_path_reply_arrives_whole_through_the_relay", &|| {
            a_5000_path_reply_arrives_whole_through_the_relay(&sock)
        }),
    ];
    // `cargo test --test multipathd_restart NAME` runs the tests whose name
    // contains NAME.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut ran = 0;
    for (name, test) in &tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        test();
        println!("test {name} ... ok");
    }
    println!();
    println!("{ran} passed, 0 failed");
}
