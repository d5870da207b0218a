// SPDX-License-Identifier: GPL-2.0-or-later
//! The multipathd relay is a process of its own, forked while the daemon is
//! still root; it cannot be forked again once the daemon has dropped root.
//! If it dies (killed, out of memory), path states and key notifications to
//! multipathd would be lost for good while the daemon went on as if
//! nothing happened. The daemon says so at ERROR and exits non-zero, so
//! that the service manager (`Restart=on-failure`) starts it, and a relay,
//! again.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The daemon's children: its multipathd relay.
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect()
}

#[test]
fn a_killed_relay_ends_the_daemon_with_an_error_and_a_failure_status() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let multipathd = dir.path().join("multipathd.sock");
    // The SG_IO executor with multipath (the default) starts the relay.
    let mut h = Helper::spawn(dir, socket, &our_helper(), &[], |cmd| {
        cmd.env("MULTIPATH_SOCKET_NAME", &multipathd);
    });
    // The socket accepts (its backlog) before the relay is forked: wait
    // for the relay.
    let forked_by = Instant::now() + Duration::from_secs(10);
    let mut relays = children(h.pid());
    while relays.is_empty() && Instant::now() < forked_by {
        std::thread::sleep(Duration::from_millis(20));
        relays = children(h.pid());
    }
    assert_eq!(relays.len(), 1, "one relay: {relays:?}\n{}", h.log());
    kill(Pid::from_raw(relays[0]), Signal::SIGKILL).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = h.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = h.child.kill();
            let _ = h.child.wait();
            panic!("the daemon went on without its relay:\n{}", h.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = h.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let error = log
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or_else(|| panic!("no ERROR line:\n{log}"));
    assert!(error.contains("multipathd relay"), "{error}");
    assert!(error.contains(&relays[0].to_string()), "{error}");
    assert!(error.contains("SIGKILL"), "{error}");
    assert_eq!(
        log.lines().filter(|l| l.contains("ERROR")).count(),
        1,
        "said once:\n{log}"
    );
}
