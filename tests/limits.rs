// SPDX-License-Identifier: GPL-2.0-or-later
//! Limits that hold against the real binary, under the production
//! system-call filter: the connection cap fits the open-file limit, running
//! out of fds at accept neither spins nor leaves clients waiting, one peer
//! process cannot take every connection slot, and a peer breaking the
//! protocol in a loop cannot flood the log.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Our helper on its emulated device with `toml` as its configuration,
/// started with an open-file limit of `nofile` (soft and hard) if given.
fn helper(toml: &str, nofile: Option<u64>) -> Helper {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("helper.toml");
    std::fs::write(&cfg, toml).unwrap();
    let socket = dir.path().join("pr.sock");
    let cfg = cfg.to_str().unwrap().to_string();
    Helper::spawn(
        dir,
        socket,
        &our_helper(),
        &["--emulate", "-c", &cfg],
        |cmd| {
            if let Some(limit) = nofile {
                spawn::start_with_nofile(cmd, limit);
            }
        },
    )
}

/// The log once it has stopped growing for 200 ms.
fn settled_log(h: &Helper) -> String {
    let mut log = h.log();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = h.log();
        if now == log {
            return log;
        }
        log = now;
    }
}

/// Whether the helper sent its features word on `s` (admitted) rather than
/// closing it (refused).
fn admitted(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut features = [0u8; 4];
    match s.read(&mut features) {
        Ok(4) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!("neither served nor closed"),
        Err(_) => false,
    }
}

/// Stops the helper; the sum of `count=` over its lines containing `what`.
fn counted_at_exit(h: Helper, what: &str) -> (usize, String) {
    h.signal(Signal::SIGTERM);
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    let sum = log
        .lines()
        .filter(|l| l.contains(what))
        .map(|l| {
            let at = l.find("count=").expect("a count") + "count=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().unwrap()
        })
        .sum();
    (sum, log)
}

#[test]
fn parked_clients_up_to_the_cap_leave_fds_for_the_commands_of_others() {
    // 600 fds: the cap of 16,384 connections the operator set is lowered
    // to what they serve, with a warning.
    let h = helper("[security]\nmax_connections = 16384\n", Some(600));
    let f = h.disk();
    let mut existing = h.connect().negotiate();
    // Parked clients, as many as the helper takes and more.
    let mut parked = Vec::new();
    let mut refused = 0;
    for _ in 0..700 {
        let mut s = UnixStream::connect(&h.socket).unwrap();
        if admitted(&mut s) {
            s.write_all(&[0; 4]).unwrap();
            parked.push(s);
        } else {
            refused += 1;
        }
    }
    assert!(refused > 0, "none refused: the cap was not lowered");
    // The existing client's next command still has room for its fd.
    let reply = existing.command(&pr_in(0, 64), f.as_raw_fd(), &[]);
    assert_eq!(reply.map(|r| r.status), Some(0), "{}", settled_log(&h));
    let log = settled_log(&h);
    let warning = log
        .lines()
        .find(|l| l.contains("max_connections lowered"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    // (600 - 256 reserved) / 2 fds per connection.
    assert!(
        warning.contains("WARN")
            && warning.contains("max_connections=16384")
            && warning.contains("open_file_limit=600")
            && warning.contains("lowered_to=172"),
        "{warning}"
    );
    assert_eq!(parked.len() + 1, 172, "the existing client and the parked");
    assert_eq!(log.matches("max_connections lowered").count(), 1, "{log}");
    assert!(!log.contains("accept failed"), "{log}");
}

#[test]
fn the_default_cap_is_lowered_without_a_warning() {
    // Nobody asked for 16,384 connections: the lowering is news, not a fault.
    let h = helper("", Some(600));
    let f = h.disk();
    let mut c = h.connect().negotiate();
    let reply = c.command(&pr_in(0, 64), f.as_raw_fd(), &[]);
    assert_eq!(reply.map(|r| r.status), Some(0));
    let log = settled_log(&h);
    let line = log
        .lines()
        .find(|l| l.contains("max_connections lowered"))
        .unwrap_or_else(|| panic!("no line: {log}"));
    assert!(
        line.contains("INFO") && line.contains("lowered_to=172"),
        "{line}"
    );
}

#[test]
fn out_of_fds_at_accept_new_clients_are_closed_at_once_and_the_log_stays_short() {
    let h = helper("[security]\nrequest_timeout_ms = 3000\n", Some(600));
    let f = h.disk();
    // Two clients start a request with 253 fds each (as many as one message
    // carries): the helper holds them until the request is complete or
    // times out, and has no fd left to accept with.
    let fds = vec![f.as_raw_fd(); 253];
    let mut hoarders = Vec::new();
    for _ in 0..2 {
        let mut c = h.connect().negotiate();
        c.send_with_fds(&[0x5e], &fds);
        hoarders.push(c);
    }
    // Clients keep coming: each is closed at once rather than left waiting
    // in the backlog.
    let started = Instant::now();
    let mut closed = 0;
    let mut kept = Vec::new();
    for _ in 0..200 {
        let mut s = UnixStream::connect(&h.socket).unwrap();
        if admitted(&mut s) {
            kept.push(s);
        } else {
            closed += 1;
        }
    }
    assert!(closed > 0, "no client closed: {}", settled_log(&h));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "clients waited for the hoarders' timeout"
    );
    // Once the hoarders time out, clients are served again.
    drop(kept);
    for mut c in hoarders {
        assert!(c.is_closed());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = UnixStream::connect(&h.socket).unwrap();
        if admitted(&mut s) {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
    h.still_serves(&f, "after running out of fds");
    let log = settled_log(&h);
    let failures = log.matches("accept failed").count();
    assert!((1..=10).contains(&failures), "{failures} lines: {log}");
    assert!(log.contains("connection(s) closed at accept"), "{log}");
}

#[test]
fn one_peer_process_cannot_take_every_connection() {
    let h = helper("[security]\nmax_connections_per_peer = 3\n", None);
    let f = h.disk();
    let mut mine: Vec<Client> = (0..3).map(|_| h.connect().negotiate()).collect();
    let mut fourth = UnixStream::connect(&h.socket).unwrap();
    assert!(
        !admitted(&mut fourth),
        "a fourth connection of this process"
    );
    // Another process is served all the same.
    let out = run_client(&h.socket, &["--emulated", "-i", "-k"], &h.disk_path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Ours still are, and one that closes frees its place.
    let r = mine[0].command(&pr_in(0, 64), f.as_raw_fd(), &[]);
    assert_eq!(r.map(|r| r.status), Some(0));
    mine.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = UnixStream::connect(&h.socket).unwrap();
        if admitted(&mut s) {
            break;
        }
        assert!(Instant::now() < deadline, "the place never freed up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = settled_log(&h);
    assert!(
        log.contains("connection refused: per-peer connection limit reached")
            && log.contains("limit=3"),
        "{log}"
    );
}

#[test]
fn a_peer_breaking_the_protocol_in_a_loop_cannot_flood_the_log() {
    let h = helper("", None);
    let f = h.disk();
    // Unsupported features: the helper closes each connection.
    for _ in 0..3000 {
        let mut c = h.connect();
        assert_eq!(c.read_features(), [0, 0, 0, 0]);
        c.stream.write_all(&[0, 0, 0, 2]).unwrap();
        assert!(c.is_closed());
    }
    // An audit line among them is still written.
    let mut c = h.connect().negotiate();
    c.register(f.as_raw_fd(), 0xabc);
    let log = settled_log(&h);
    let in_full = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("closing connection"))
        .count();
    assert!((1..=30).contains(&in_full), "{in_full} lines");
    assert_eq!(log.matches("action=REGISTER").count(), 1, "{log}");
    // Every violation is in a line or in a count.
    let (suppressed, log) = counted_at_exit(h, "lines suppressed");
    assert_eq!(in_full + suppressed, 3000, "{log}");
}
