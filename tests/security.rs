// SPDX-License-Identifier: GPL-2.0-or-later
//! The `[security]` settings, through the real binary: who may connect, which
//! devices may be touched, limits, and the audit trail.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_peer_not_on_the_allowlist_is_closed_before_negotiation() {
    // Tests run as one uid; allow another one only.
    let me = nix::unistd::getuid().as_raw();
    let h = Helper::emulated_with(&format!(
        "[security]\nallowed_uids = [{}]\n",
        me.wrapping_add(4242)
    ));
    let mut c = h.connect();
    let mut buf = [0u8; 4];
    let n = c.stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a refused peer must not even see the features word");
    assert!(h.log().contains("peer refused"), "{}", h.log());

    let h = Helper::emulated_with(&format!("[security]\nallowed_uids = [{me}]\n"));
    h.connect().negotiate();
}

#[test]
fn a_device_off_the_allowlist_gets_lun_not_supported_and_an_audit_line() {
    let h = Helper::emulated_with("[security]\ndevices = [\"1:3\"]\n");
    let f = h.disk();
    let null = open_rw("/dev/null");
    let mut c = h.connect().negotiate();
    let r = c.command(&pr_in(0, 64), f.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code(), (0x5, 0x25, 0x00));
    let r = c
        .command(&pr_out(0, 0, 24), f.as_raw_fd(), &params(0, 7))
        .unwrap();
    assert_eq!(r.sense_code(), (0x5, 0x25, 0x00));
    // /dev/null (1:3) is allowed: the emulated device answers it.
    let r = c.command(&pr_in(0, 64), null.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.status, 0);
    let log = h.log();
    assert!(log.contains("device refused"), "{log}");
    assert!(log.contains("action=REGISTER"), "{log}");
}

#[test]
fn audit_lines_name_the_peer_action_and_keys_as_configured() {
    // "omitted" leaves the key fields out, as any field with no value.
    for (mode, expect, absent) in [
        ("full", "sa_key=0xabc ", ""),
        ("hashed", "sa_key=sha256:", "0xabc"),
        ("omitted", "type=0 status=0", "key="),
    ] {
        let h = Helper::emulated_with(&format!("[security]\naudit_keys = \"{mode}\"\n"));
        let f = h.disk();
        let mut c = h.connect().negotiate();
        c.register(f.as_raw_fd(), 0xabc);
        let log = h.log();
        let line = log
            .lines()
            .find(|l| l.contains("action=REGISTER"))
            .unwrap_or_else(|| panic!("{mode}: no audit line in {log}"));
        assert!(line.contains(expect), "{mode}: {line}");
        assert!(
            line.contains(&format!("peer_pid={} ", std::process::id())),
            "{line}"
        );
        assert!(line.contains("status=0 status_name=\"GOOD\""), "{line}");
        if !absent.is_empty() {
            assert!(!line.contains(absent), "{mode}: key leaked: {line}");
        }
    }
}

#[test]
fn json_log_format_gives_one_object_per_line() {
    let h = Helper::emulated_with("log_format = \"json\"\n");
    let f = h.disk();
    let mut c = h.connect().negotiate();
    c.command(&pr_out(0, 0, 24), f.as_raw_fd(), &params(0, 1))
        .unwrap();
    let log = h.log();
    let audit = log
        .lines()
        .find(|l| l.contains("\"target\":\"audit\""))
        .unwrap_or_else(|| panic!("no JSON audit line in {log}"));
    assert!(audit.starts_with('{') && audit.ends_with('}'), "{audit}");
    assert!(audit.contains("\"action\":\"REGISTER\""), "{audit}");
}

#[test]
fn a_request_stalled_half_sent_is_closed_but_idle_connections_stay() {
    let h = Helper::emulated_with("[security]\nrequest_timeout_ms = 300\n");
    let f = h.disk();
    let mut idle = h.connect().negotiate();
    let mut stalled = h.connect().negotiate();
    stalled.send_with_fds(&[0x5e, 0, 0, 0], &[f.as_raw_fd()]);
    let start = Instant::now();
    assert!(stalled.is_closed());
    assert!(start.elapsed() >= Duration::from_millis(250));
    std::thread::sleep(Duration::from_millis(400));
    // Idle for longer than the request timeout, and still served.
    assert_eq!(
        idle.command(&pr_in(0, 64), f.as_raw_fd(), &[])
            .unwrap()
            .status,
        0
    );
}

/// Connects until the helper sends its features word (a slot may still be
/// held by a client that just left).
fn admitted_client(h: &Helper) -> Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = h.connect();
        let mut buf = [0u8; 4];
        if c.stream.read(&mut buf).unwrap_or(0) == 4 {
            c.stream.write_all(&[0; 4]).unwrap();
            return c;
        }
        assert!(Instant::now() < deadline, "no slot freed up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connections_over_the_cap_are_closed_at_accept() {
    let h = Helper::emulated_with("[security]\nmax_connections = 2\n");
    let a = admitted_client(&h);
    let _b = admitted_client(&h);
    let mut c = h.connect();
    let mut buf = [0u8; 4];
    assert_eq!(
        c.stream.read(&mut buf).unwrap_or(0),
        0,
        "third client admitted"
    );
    assert!(h.log().contains("connection limit reached"), "{}", h.log());
    // A slot frees up once a client leaves.
    drop(a);
    admitted_client(&h);
}

#[test]
fn socket_mode_is_applied_before_the_socket_appears() {
    let h = Helper::emulated_with("[security]\nsocket_mode = \"0600\"\n");
    let mode = std::fs::metadata(&h.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = our_command()
        .args(["-k", "/tmp/never-made-security.sock", "-c"])
        .arg({
            let p = h.dir.path().join("bad.toml");
            std::fs::write(&p, "[security]\nsocket_mode = \"rw-\"\n").unwrap();
            p
        })
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("socket_mode"));
    assert!(!std::path::Path::new("/tmp/never-made-security.sock").exists());
}

/// Runs `command` as nobody through `sh -c`, with `args` as $1, $2...: what
/// an unprivileged user can do to a directory it may write to.
fn as_nobody(command: &str, args: &[&std::path::Path]) {
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("sh")
        .args(args)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(status.success(), "as nobody: {command}");
}

/// A file of root's, mode 0600, in a directory of its own.
fn root_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root's data\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    victim
}

/// Another user (nobody) plants a link at the pidfile path, in a directory
/// it may write to, to a file of root's: the daemon refuses to start with
/// one line that says why, and the file keeps its content.
#[test]
fn a_link_planted_at_the_pidfile_path_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root (the attacker is nobody) ***");
        return;
    }
    let victims = tempfile::tempdir().unwrap();
    let victim = root_file(&victims);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let pidfile = dir.path().join("pr.pid");
    as_nobody(r#"ln -s "$1" "$2""#, &[&victim, &pidfile]);
    let socket = dir.path().join("pr.sock");
    let mut daemon = our_command()
        .args(["--emulate", "-k"])
        .arg(&socket)
        .arg("-f")
        .arg(&pidfile)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        if socket.exists() || std::time::Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!(
                "the daemon started on a pidfile that is a link; the victim now holds {:?}",
                std::fs::read_to_string(&victim).unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // One line says why; the start's INFO lines (the connection cap fitted
    // to this machine's open-file limit) may come before it.
    let said: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
    assert_eq!(
        said,
        [format!(
            "qemu-pr-helper: refusing pidfile {}: it is a symbolic link",
            pidfile.display()
        )]
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's data\n");
    assert!(std::fs::symlink_metadata(&pidfile).unwrap().is_symlink());
    assert!(!socket.exists());
}
