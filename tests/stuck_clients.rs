// SPDX-License-Identifier: GPL-2.0-or-later
//! Clients that stop cooperating, against the real binary: an fd on a file
//! system that never answers, a client that never reads its replies, a
//! refused peer that reconnects in a loop. None may stall the other clients,
//! hold back shutdown, or drown the audit trail.

mod common;

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stuck_fuse::StuckFuse;
use common::*;
use nix::sys::signal::Signal;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

fn read_keys() -> Vec<u8> {
    pr_in(0, 64)
}

/// Held while this process has an fd of the stuck file system open, and
/// while it starts a process: a child starting then would inherit the fd,
/// and its `exec` would close it, a close the file system never answers.
static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn no_forks() -> std::sync::MutexGuard<'static, ()> {
    FORKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`Helper::emulated_with`], started when no stuck fd can be inherited.
fn helper_with(toml: &str) -> Helper {
    let _no_fuse_fds = no_forks();
    Helper::emulated_with(toml)
}

#[test]
fn fds_on_a_file_system_that_never_answers_stall_only_their_own_connections() {
    // In-flight commands get the request timeout once the daemon stops.
    let h = helper_with("[security]\nrequest_timeout_ms = 1000\n");
    // Declared after the helper, so dropped before it: the helper can only
    // be reaped once the file system is gone.
    let fuse = match StuckFuse::mount() {
        Ok(fuse) => fuse,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let f = h.disk();
    let mut stuck = Vec::new();
    let opening = no_forks();
    // Six connections (more than any runtime would have worker threads on
    // this machine): each sends a fd whose fstat never returns; the last one
    // with a PR OUT REGISTER.
    for i in 0..6 {
        let file = fuse.open();
        let mut c = h.connect().negotiate();
        if i < 5 {
            c.send_request(&read_keys(), &[file.as_raw_fd()], &[]);
        } else {
            c.send_request(&pr_out(0, 0, 24), &[file.as_raw_fd()], &params(0, 0x5150));
        }
        stuck.push(c);
    }
    // Then fds whose fstat is answered but whose close never returns: one
    // that runs a command, one dropped as an extra fd of a request.
    fuse.answer_foreign_getattr
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for fds in [1, 2] {
        let file = fuse.open();
        let mut c = h.connect().negotiate();
        c.send_request(&read_keys(), &vec![file.as_raw_fd(); fds], &[]);
        stuck.push(c);
    }
    drop(opening);
    // Another client is served all the same.
    let mut other = h.connect().negotiate();
    let r = other
        .command(&read_keys(), f.as_raw_fd(), &[])
        .expect("the other client is answered");
    assert_eq!(r.status, 0);
    // The stuck connections got nothing: their fd is not closed yet, so
    // they are not read from.
    for c in &mut stuck {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(
            matches!(c.stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a stuck connection got an answer"
        );
    }
    // Shutdown abandons the stuck threads after the grace and removes the
    // socket, so that a new daemon can take over.
    let started = Instant::now();
    h.signal(Signal::SIGTERM);
    while !h.log().contains("exiting") || h.socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no shutdown: {}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The threads still wait, uninterruptibly, on the FUSE requests they
    // sent: the process ends once the file system goes away.
    drop(fuse);
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    // The abandoned PR OUT has its audit line all the same.
    assert!(
        log.lines()
            .any(|l| l.contains("PR OUT abandoned at shutdown")
                && l.contains("action=REGISTER")
                && l.contains("sa_key=0x5150")
                && l.contains("abandoned=true")
                // No device, WWID, status or sense to show: left out, not "-".
                && !l.contains("status=")
                && !l.contains("sense=")
                && !l.contains("device=")),
        "{log}"
    );
    drop(stuck);
}

/// Sends READ KEYS with `fd` on `c`'s stream, from a thread, without ever
/// reading a reply, counting the sends in `sent`: blocks once the daemon
/// stops reading, and ends when a send fails (the daemon has gone or given
/// the connection up) or after 30 s.
fn send_without_reading(
    c: &Client,
    fd: RawFd,
    sent: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let stream = c.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut cdb = [0u8; 16];
        cdb[..10].copy_from_slice(&pr_in(0, 8192));
        let fds = [fd];
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(&cdb)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .is_ok()
        {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn a_client_that_never_reads_its_replies_does_not_hold_back_shutdown() {
    let h = helper_with("");
    let f = h.disk();
    let c = h.connect().negotiate();
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = send_without_reading(&c, f.as_raw_fd(), Arc::clone(&sent));
    // Until the daemon is blocked writing replies and no longer reads.
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = sent.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the sender never stopped");
        last = now;
    }
    let started = Instant::now();
    h.signal(Signal::SIGTERM);
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(5), "{log}");
    assert!(log.contains("reply not read"), "{log}");
    drop(c);
    sender.join().unwrap();
}

#[test]
fn a_client_that_never_reads_its_replies_is_disconnected_after_the_request_timeout() {
    let h = helper_with("[security]\nrequest_timeout_ms = 300\n");
    let f = h.disk();
    let mut c = h.connect().negotiate();
    let sender = send_without_reading(&c, f.as_raw_fd(), Arc::default());
    // The daemon gives the reply 300 ms, then ends the connection: the
    // sender's next send fails and it returns.
    let started = Instant::now();
    sender.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "never disconnected"
    );
    // Everything queued is dropped; reading reaches the end of the stream.
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = c.stream.read_to_end(&mut sink);
    // Others are still served.
    let mut other = h.connect().negotiate();
    let reply = other.command(&read_keys(), f.as_raw_fd(), &[]).unwrap();
    assert_eq!(reply.status, 0);
    let log = h.log();
    assert!(log.contains("reply not read"), "{log}");
}

/// Opens `n` connections that the daemon refuses, and one more whose end
/// proves it has handled them all (it accepts in order).
fn refused_in_a_loop(h: &Helper, n: usize) {
    for _ in 0..n {
        drop(UnixStream::connect(&h.socket).unwrap());
    }
    let mut last = h.connect();
    assert!(last.is_closed(), "the last connection is refused too");
}

/// Log lines containing `what`, once the log has stopped growing.
fn lines_with(h: &Helper, what: &str) -> usize {
    let mut log = h.log();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = h.log();
        if now == log {
            return log.lines().filter(|l| l.contains(what)).count();
        }
        log = now;
    }
}

#[test]
fn refusals_in_a_loop_are_rate_limited_and_audit_lines_still_appear() {
    // Over the connection limit: one allowed client holds the only place.
    let h = helper_with("[security]\nmax_connections = 1\n");
    let f = h.disk();
    // The start-up probe's connection may still hold the place a moment.
    let mut holder = loop {
        let mut c = h.connect();
        let mut features = [0u8; 4];
        if c.stream.read_exact(&mut features).is_ok() {
            c.stream.write_all(&[0, 0, 0, 0]).unwrap();
            break c;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        holder
            .command(&read_keys(), f.as_raw_fd(), &[])
            .unwrap()
            .status,
        0
    );
    refused_in_a_loop(&h, 2000);
    holder.register(f.as_raw_fd(), 0xabc);
    let refusals = lines_with(&h, "connection limit reached");
    assert!((1..=12).contains(&refusals), "{refusals} refusal lines");
    let audit = lines_with(&h, "action=REGISTER");
    assert_eq!(audit, 1, "{}", h.log());
    let accounted = refusals_in_full(&h, "connection refused: connection limit reached")
        + summarized_at_exit(h, "connection limit reached (not logged one by one)");
    // Every refusal is in a line or a count: the loop's 2,001, and a few
    // from the start-up probe and the wait for the holder's place.
    assert!((2001..=2010).contains(&accounted), "{accounted}");

    // Not on the peer allowlist (this test runs as any uid but 12345).
    let h = helper_with("[security]\nallowed_uids = [12345]\n");
    refused_in_a_loop(&h, 2000);
    let refusals = lines_with(&h, "peer refused");
    assert!((1..=12).contains(&refusals), "{refusals} refusal lines");
    let accounted =
        refusals_in_full(&h, "peer refused") + summarized_at_exit(h, "more peers refused");
    assert!((2001..=2010).contains(&accounted), "{accounted}");
}

/// How many refusals were logged one by one (lines with `what`).
fn refusals_in_full(h: &Helper, what: &str) -> usize {
    lines_with(h, what)
}

/// Stops the helper and adds up the `count=` of its summary lines with
/// `what`: every refusal not logged in full is counted in one.
fn summarized_at_exit(h: Helper, what: &str) -> usize {
    h.signal(Signal::SIGTERM);
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    let counts: Vec<usize> = log
        .lines()
        .filter(|l| l.contains(what))
        .map(|l| {
            let at = l.find("count=").expect("a count") + "count=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect();
    assert!(!counts.is_empty(), "no summary line with {what:?}: {log}");
    counts.iter().sum()
}

/// One test process is one peer (SO_PEERCRED pid): the floods below come
/// from it alone, so it may open more connections than the default allows.
const ONE_PEER_FLOOD: &str = "[security]\nmax_connections_per_peer = 1024\n";

/// READ KEYS from another process, `qemu-pr-client --repeat 3` (another
/// peer pid): its longest round trip, the first command included.
#[track_caller]
fn other_peer_round_trip(h: &Helper) -> Duration {
    let mut client = pr_client(&h.socket);
    client
        .args(["--emulated", "--timeout", "20", "--repeat", "3", "-i", "-k"])
        .arg(h.dir.path().join("lu.img"));
    let out = {
        let _no_fuse_fds = no_forks();
        client.output().unwrap()
    };
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", h.log());
    let line = stderr
        .lines()
        .find(|l| l.starts_with("repeat "))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let at = line.find("max_us=").unwrap() + "max_us=".len();
    let us: f64 = line[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Duration::from_secs_f64(us / 1e6)
}

/// The daemon's thread count once it has stopped changing for 500 ms.
fn stable_thread_count(h: &Helper) -> usize {
    let threads = || {
        std::fs::read_dir(format!("/proc/{}/task", h.pid()))
            .unwrap()
            .count()
    };
    let mut last = threads();
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = threads();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

#[test]
fn clients_that_never_read_their_replies_take_no_thread_from_other_peers() {
    let h = helper_with(ONE_PEER_FLOOD);
    let f = h.disk();
    // 560 clients (more than tokio's 512 blocking threads), each with a key
    // registered so that every READ KEYS reply is 4.5 KB and their socket
    // buffers fill after a few dozen replies.
    let mut clients = Vec::new();
    for key in 1..=560u64 {
        let mut c = h.connect().negotiate();
        c.register(f.as_raw_fd(), key);
        clients.push(c);
    }
    // Then each pipelines READ KEYS and never reads a reply.
    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = clients
        .iter()
        .map(|c| send_without_reading(c, f.as_raw_fd(), Arc::clone(&sent)))
        .collect();
    // Until the daemon no longer reads from any of them.
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = sent.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the senders never stopped");
        last = now;
    }
    // Another peer's commands, on its own connection, are answered at once.
    // The bound is the goal itself, generous for a loaded test machine: a
    // thread waiting on one of these clients would make it seconds (up to
    // the request timeout, 30 s).
    let took = other_peer_round_trip(&h);
    println!("the other peer's longest round trip: {took:?}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    drop(h);
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn six_hundred_stalled_commands_from_one_peer_take_no_thread_from_other_peers() {
    let h = helper_with(ONE_PEER_FLOOD);
    drop(h.disk());
    // Dropped before the helper: see the first test.
    let fuse = match StuckFuse::mount() {
        Ok(fuse) => fuse,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let opening = no_forks();
    let file = fuse.open();
    let mut stuck = Vec::new();
    for _ in 0..600 {
        let mut c = h.connect().negotiate();
        c.send_request(&read_keys(), &[file.as_raw_fd()], &[]);
        stuck.push(c);
    }
    drop(file);
    drop(opening);
    // Until every command the daemon will start is stuck in `fstat`.
    stable_thread_count(&h);
    // The bound is the goal (see above): a stalled file system would make
    // it for ever.
    let took = other_peer_round_trip(&h);
    println!("the other peer's longest round trip: {took:?}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    drop(stuck);
    drop(fuse);
}
