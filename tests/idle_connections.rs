// SPDX-License-Identifier: GPL-2.0-or-later
//! Idle connections are parked: right after negotiation, and after a second
//! without a request, a connection is watched by the transport without a
//! task of its own, and served again, as the same initiator, when its next
//! request comes. Every daemon here runs under the production system-call
//! filter.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Waits until the log holds `count` lines containing `what`; the deadline
/// only guards against a daemon that never parks (a second is the wait).
fn wait_for_log(h: &Helper, what: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.log().matches(what).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {count} x {what:?}: {}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An emulated helper that logs parking (TRACE) and closing (DEBUG).
fn helper(extra_toml: &str) -> Helper {
    Helper::emulated_with_args(extra_toml, &["-vv"])
}

#[test]
fn a_parked_connection_is_served_again_as_the_same_initiator() {
    let h = helper("");
    let disk = h.disk();
    // Parked right after negotiation, served again for the REGISTER, parked
    // again a second after it.
    let mut a = h.connect().negotiate();
    wait_for_log(&h, "idle: parked", 1);
    a.register(disk.as_raw_fd(), 0xabc);
    wait_for_log(&h, "idle: parked", 2);

    // The emulated device has one initiator per connection: a RESERVE with
    // the key only succeeds from the connection that registered it.
    let reserve = a.command(&pr_out(1, 0x01, 24), disk.as_raw_fd(), &params(0xabc, 0));
    assert_eq!(reserve.map(|r| r.status), Some(0), "{}", h.log());
    assert!(h.log().contains("served again after idling"), "{}", h.log());

    // Another connection is another initiator, parked or not.
    let mut b = h.connect().negotiate();
    let other = b.command(&pr_out(1, 0x01, 24), disk.as_raw_fd(), &params(0xabc, 0));
    assert_eq!(other.map(|r| r.status), Some(0x18), "RESERVATION CONFLICT");

    // a after its RESERVE, b after negotiation and after its command.
    wait_for_log(&h, "idle: parked", 5);
    let keys = a.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
    assert_eq!(keys.status, 0);
    assert_eq!(&keys.payload[8..16], &0xabc_u64.to_be_bytes());
}

#[test]
fn a_parked_connection_the_client_closes_is_closed_and_no_fd_is_left() {
    let h = helper("");
    let baseline = h.stable_fd_count();
    for _ in 0..3 {
        let c = h.connect().negotiate();
        drop(c);
    }
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(h.connect().negotiate());
    }
    wait_for_log(&h, "idle: parked", 3);
    drop(kept);
    wait_for_log(&h, "connection closed end=client closed", 6);
    assert_eq!(h.settle_fd_count(baseline), baseline, "{}", h.log());
}

#[test]
fn parked_connections_count_against_the_limit_and_close_at_shutdown() {
    let h = helper("[security]\nmax_connections = 2\n");
    let _a = h.connect().negotiate();
    let _b = h.connect().negotiate();
    wait_for_log(&h, "idle: parked", 2);
    // Both are parked, still open: a third is over the limit.
    let mut c = h.connect();
    let mut buf = [0u8; 4];
    let n = c.stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a third connection must be closed at accept");
    assert!(h.log().contains("connection limit reached"), "{}", h.log());

    h.signal(Signal::SIGTERM);
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("exiting"), "{log}");
}
