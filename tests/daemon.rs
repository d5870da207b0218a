// SPDX-License-Identifier: GPL-2.0-or-later
//! The real binary on a temporary socket, driven as QEMU drives it.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const ABORTED_IO_TERMINATED: (u8, u8, u8) = (0xb, 0x00, 0x06);

#[test]
fn negotiation_then_a_command_on_a_non_device_fd() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let mut c = h.connect().negotiate();
    let f = open_rw(&disk);
    let r = c.command(&pr_in(0, 64), f.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense[0], 0x70);
    assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED);
    assert!(r.payload.is_empty());
    // The connection stays usable after a semantic error.
    let r = c.command(&pr_in(1, 8), f.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED);
}

#[test]
fn pr_out_on_a_read_only_fd_is_invalid_opcode_and_keeps_the_connection() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let mut c = h.connect().negotiate();
    let ro = File::open(&disk).unwrap();
    let r = c
        .command(&pr_out(0, 0, 24), ro.as_raw_fd(), &params(0, 1))
        .unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code(), (0x5, 0x20, 0x00));
    // PR IN on the same read-only fd is allowed (and fails later, at SG_IO).
    let r = c.command(&pr_in(0, 64), ro.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED);
}

/// Each violation: the connection is closed, every fd it carried is closed in
/// the daemon, and another client is still served.
#[test]
fn protocol_violations_close_only_that_connection_and_leak_no_fd() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let f = open_rw(&disk);
    let g = open_rw(&disk);
    let mut keeper = h.connect().negotiate();
    let baseline = h.stable_fd_count();

    type Case = (&'static str, Box<dyn Fn(&mut Client)>);
    let fd = f.as_raw_fd();
    let fd2 = g.as_raw_fd();
    let cases: Vec<Case> = vec![
        (
            "bad opcode",
            Box::new(move |c| c.send_request(&[0x12, 0, 0, 0, 96, 0], &[fd], &[])),
        ),
        (
            "PR IN over 8192",
            Box::new(move |c| c.send_request(&pr_in(0, 8193), &[fd], &[])),
        ),
        (
            "PR OUT over 8192",
            Box::new(move |c| c.send_request(&pr_out(0, 0, 8193), &[fd], &[])),
        ),
        (
            "PR OUT length in byte 6",
            Box::new(move |c| c.send_request(&pr_out(0, 0, 0x0001_0018), &[fd], &[])),
        ),
        (
            "PR OUT length in byte 5",
            Box::new(move |c| c.send_request(&pr_out(0, 0, 0x0100_0018), &[fd], &[])),
        ),
        (
            "no fd",
            Box::new(|c| c.send_request(&pr_in(0, 64), &[], &[])),
        ),
        (
            "two fds",
            Box::new(move |c| c.send_request(&pr_in(0, 64), &[fd, fd2], &[])),
        ),
        (
            "second fd with the parameter list",
            Box::new(move |c| {
                c.send_request(&pr_out(0, 0, 24), &[fd], &[]);
                c.send_with_fds(&params(0, 1), &[fd2]);
            }),
        ),
        (
            "fd split across two CDB chunks",
            Box::new(move |c| {
                let cdb = pr_in(0, 64);
                c.send_with_fds(&cdb[..4], &[fd]);
                let mut rest = cdb[4..].to_vec();
                rest.resize(12, 0);
                c.send_with_fds(&rest, &[fd2]);
            }),
        ),
        (
            "EOF mid-CDB",
            Box::new(move |c| {
                c.send_with_fds(&[0x5e, 0, 0], &[fd]);
                c.stream.shutdown(std::net::Shutdown::Write).unwrap();
            }),
        ),
        (
            "EOF mid parameter list",
            Box::new(move |c| {
                c.send_request(&pr_out(0, 0, 24), &[fd], &[0u8; 10]);
                c.stream.shutdown(std::net::Shutdown::Write).unwrap();
            }),
        ),
    ];
    for (name, send) in cases {
        let mut c = h.connect().negotiate();
        send(&mut c);
        assert!(c.is_closed(), "{name}: connection should be closed");
        drop(c);
        assert_eq!(h.settle_fd_count(baseline), baseline, "{name}: fd leaked");
        let r = keeper.command(&pr_in(0, 8), fd, &[]).expect(name);
        assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED, "{name}");
    }

    // Non-zero features word.
    let mut c = h.connect();
    assert_eq!(c.read_features(), [0; 4]);
    c.stream.write_all(&[0, 0, 0, 1]).unwrap();
    assert!(c.is_closed(), "features: connection should be closed");
    drop(c);
    assert_eq!(h.settle_fd_count(baseline), baseline);
}

#[test]
fn transfer_length_8192_is_accepted() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let f = open_rw(&disk);
    let mut c = h.connect().negotiate();
    let r = c.command(&pr_in(0, 8192), f.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED);
    let r = c
        .command(&pr_out(0, 0, 8192), f.as_raw_fd(), &vec![0u8; 8192])
        .unwrap();
    assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED);
}

#[test]
fn the_device_fd_is_closed_after_every_command() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let mut c = h.connect().negotiate();
    let baseline = h.stable_fd_count();
    let f = open_rw(&disk);
    let ro = File::open(&disk).unwrap();
    for _ in 0..50 {
        c.command(&pr_in(0, 64), f.as_raw_fd(), &[]).unwrap();
        c.command(&pr_out(1, 1, 24), ro.as_raw_fd(), &params(1, 0))
            .unwrap();
        c.command(&pr_out(1, 1, 24), f.as_raw_fd(), &params(1, 0))
            .unwrap();
    }
    assert_eq!(h.settle_fd_count(baseline), baseline);
}

#[test]
fn fds_of_other_kinds_never_reach_the_ioctl_and_are_answered() {
    let h = Helper::start(&our_helper(), &[]);
    let mut c = h.connect().negotiate();
    let (pr, _pw) = nix::unistd::pipe().unwrap();
    let (sa, _sb) = std::os::unix::net::UnixStream::pair().unwrap();
    let dir = File::open(h.dir.path()).unwrap();
    let null = open_rw("/dev/null");
    let own = std::os::unix::net::UnixStream::connect(&h.socket).unwrap();
    for (name, fd) in [
        ("pipe", pr.as_raw_fd()),
        ("socket", sa.as_raw_fd()),
        ("directory", dir.as_raw_fd()),
        ("/dev/null", null.as_raw_fd()),
        ("the helper's own socket", own.as_raw_fd()),
    ] {
        let r = c.command(&pr_in(0, 64), fd, &[]).expect(name);
        assert_eq!(r.status, 2, "{name}");
        assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED, "{name}");
    }
}

#[test]
fn a_stalled_client_does_not_delay_others() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let f = open_rw(&disk);
    let mut stalled = h.connect().negotiate();
    stalled.send_with_fds(&[0x5e, 0, 0, 0, 0, 0, 0, 0], &[f.as_raw_fd()]);
    let mut half_out = h.connect().negotiate();
    half_out.send_request(&pr_out(0, 0, 24), &[f.as_raw_fd()], &[1, 2, 3]);
    let mut c = h.connect().negotiate();
    let start = Instant::now();
    for _ in 0..20 {
        c.command(&pr_in(0, 64), f.as_raw_fd(), &[]).unwrap();
    }
    println!(
        "20 commands beside two stalled clients took {:?}",
        start.elapsed()
    );
    // The stalled clients are still connected and can finish their requests.
    stalled.send_with_fds(&[0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_eq!(
        stalled.read_reply().unwrap().sense_code(),
        ABORTED_IO_TERMINATED
    );
}

#[test]
fn sigterm_with_idle_connections_exits_zero_and_removes_the_socket() {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let h = Helper::start(&our_helper(), &[]);
        let _idle = h.connect().negotiate();
        let _unnegotiated = h.connect();
        let socket = h.socket.clone();
        h.signal(sig);
        let (code, err) = h.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{sig}: {err}");
        assert!(!socket.exists(), "{sig}: socket file left behind");
    }
}

#[test]
fn sigpipe_from_a_vanished_client_does_not_kill_the_daemon() {
    let h = Helper::start(&our_helper(), &[]);
    let disk = h.disk_path();
    let f = open_rw(&disk);
    for _ in 0..20 {
        let mut c = h.connect().negotiate();
        c.send_request(&pr_in(0, 64), &[f.as_raw_fd()], &[]);
        drop(c); // gone before the reply is written
    }
    let mut c = h.connect().negotiate();
    assert!(c.command(&pr_in(0, 64), f.as_raw_fd(), &[]).is_some());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pr.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _h = Helper::spawn(dir, path.clone(), &our_helper(), &[], |_| {});
    assert!(answers(&path), "daemon did not replace the stale socket");
}

#[test]
fn pidfile_is_written_and_locked() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("helper.pid");
    let pid_arg = pidfile.to_str().unwrap();
    let first = Helper::start(&our_helper(), &["-f", pid_arg]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .is_empty()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        first.pid().to_string()
    );
    let second_sock = dir.path().join("second.sock");
    let out = our_command()
        .arg("-k")
        .arg(&second_sock)
        .args(["-f", pid_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is locked"), "stderr: {err}");
    assert!(
        !second_sock.exists(),
        "the refused instance left its socket"
    );
    // The first instance is unaffected.
    first.connect().negotiate();
    first.signal(Signal::SIGTERM);
    let (code, _) = first.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(!pidfile.exists(), "pidfile not removed on exit");
}

#[test]
fn daemon_mode_forks_writes_the_pidfile_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let pidfile = dir.path().join("d.pid");
    let (out, daemon) = Daemonized::start(&sock, pidfile, &[], |_| {});
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The socket exists as soon as the parent returns.
    let c = Client::connect(&sock).negotiate();
    drop(c);
    // The daemon cleans up its socket.
    daemon.stop(&[&sock]);
}

#[test]
fn when_d_returns_the_pidfile_names_the_serving_daemon() {
    // What an init script or a Type=forking unit relies on: the moment the
    // parent exits, the pidfile holds the pid of the process that serves
    // (not empty, not the parent's). Several starts, since a parent that
    // exits before the child writes the file loses only some races.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let pidfile = dir.path().join("d.pid");
        let (out, daemon) = Daemonized::start(&sock, pidfile.clone(), &["--emulate"], |_| {});
        assert!(out.status.success(), "round {round}");
        let written = std::fs::read_to_string(&pidfile).unwrap();
        let pid: i32 = written
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("round {round}: pidfile holds {written:?}"));
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
            "round {round}: pid {pid} is not running"
        );
        let c = Client::connect(&sock).negotiate();
        // The named process serves: stopping it removes the socket.
        drop(c);
        daemon.stop(&[&sock]);
    }
}

/// Starts our daemon on `socket` (inside `dir`) with `extra` arguments.
fn start_on(dir: tempfile::TempDir, socket: std::path::PathBuf, extra: &[&str]) -> Helper {
    Helper::spawn(dir, socket, &our_helper(), extra, |_| {})
}

/// Whether the daemon answers a PR IN on the socket (an fd that is not a
/// device: the answer is ABORTED COMMAND, but an answer).
fn answers(socket: &std::path::Path) -> bool {
    let mut c = Client::connect(socket).negotiate();
    let null = open_rw("/dev/null");
    c.command(&pr_in(0, 8), null.as_raw_fd(), &[])
        .is_some_and(|r| r.sense_code() == ABORTED_IO_TERMINATED)
}

/// Runs the helper with `args`; one that has not exited after 5 s is
/// killed (it started) and reported as `None`.
fn run_briefly(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = our_command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, std::fs::read_to_string(&err_path).unwrap())
}

/// sun_path holds 108 bytes with the NUL: a 107-byte path works whether the
/// file name or the directory takes the room, and leaves no temporary file.
#[test]
fn socket_paths_of_107_bytes_work_and_longer_ones_are_refused() {
    for deep in [false, true] {
        // The socket's directory outlives the helper (and its log directory).
        let dir = tempfile::tempdir().unwrap();
        let room = 107 - dir.path().as_os_str().len() - 1;
        let socket = if deep {
            let sub = dir.path().join("d".repeat(room - "/pr.sock".len()));
            std::fs::create_dir(&sub).unwrap();
            sub.join("pr.sock")
        } else {
            dir.path()
                .join(format!("{}.sock", "s".repeat(room - ".sock".len())))
        };
        assert_eq!(socket.as_os_str().len(), 107);
        let h = start_on(tempfile::tempdir().unwrap(), socket.clone(), &[]);
        assert!(answers(&socket), "deep={deep}");
        let parent = socket.parent().unwrap().to_path_buf();
        h.signal(Signal::SIGTERM);
        let (code, log) = h.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(0), "deep={deep}: {log}");
        assert!(!socket.exists(), "deep={deep}: socket left behind");
        let left: Vec<_> = std::fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "deep={deep}: left {left:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let room = 108 - dir.path().as_os_str().len() - 1;
    let socket = dir.path().join("s".repeat(room));
    assert_eq!(socket.as_os_str().len(), 108);
    let out = our_command().arg("-k").arg(&socket).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("qemu-pr-helper: ")
            && last.contains("108 bytes")
            && last.contains("at most 107"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A second instance started by mistake on the same socket and pidfile is
/// refused before it touches the socket: the first stays reachable.
#[test]
fn a_second_instance_on_the_same_socket_and_pidfile_leaves_the_first_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let pidfile = dir.path().join("pr.pid");
    let pid_arg = pidfile.to_str().unwrap().to_string();
    let h = start_on(dir, socket.clone(), &["-f", &pid_arg]);
    let (code, err) = run_briefly(&["-k", socket.to_str().unwrap(), "-f", &pid_arg]);
    assert_eq!(code, Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("qemu-pr-helper: ") && last.contains("is locked"),
        "{err}"
    );
    assert!(answers(&socket), "the first instance is unreachable");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        h.pid().to_string()
    );
}

/// Without the pidfile to tell, a socket that answers is a running daemon's:
/// a second instance is refused instead of taking the path over, and leaves
/// no pidfile of its own behind.
#[test]
fn a_second_instance_does_not_take_over_a_socket_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let other_pidfile = dir.path().join("other.pid");
    let h = start_on(dir, socket.clone(), &[]);
    for extra in [&[][..], &["-f", other_pidfile.to_str().unwrap()][..]] {
        let args = [&["-k", socket.to_str().unwrap()][..], extra].concat();
        let (code, err) = run_briefly(&args);
        assert_eq!(code, Some(1), "{extra:?}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("qemu-pr-helper: ") && last.contains("in use"),
            "{extra:?}: {err}"
        );
        assert!(
            answers(&socket),
            "{extra:?}: the first instance is unreachable"
        );
        assert!(!other_pidfile.exists(), "{extra:?}: pidfile left behind");
    }
    drop(h);
}

/// `-d` changes directory to `/`: a relative pidfile is resolved before, so it
/// is written and removed in the start directory, never under `/`; a relative
/// config file is read before as well.
#[test]
fn daemon_mode_keeps_a_relative_pidfile_in_the_start_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("d.sock");
    let name = format!(
        "qemu-pr-helper-test-{}.pid",
        dir.path().file_name().unwrap().to_str().unwrap()
    );
    // A canary where a pidfile resolved after the chdir would land (only
    // root may write there; the guard removes it whatever happens).
    struct Canary(Option<std::path::PathBuf>);
    impl Drop for Canary {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let canary = Canary(nix::unistd::geteuid().is_root().then(|| {
        let p = std::path::Path::new("/").join(&name);
        std::fs::write(&p, "canary\n").unwrap();
        p
    }));
    // A relative -c is read before the chdir too: the socket comes from it.
    std::fs::write(
        dir.path().join("relative.toml"),
        format!("socket = {:?}\n", sock.to_str().unwrap()),
    )
    .unwrap();
    let out = run_daemonized(|c| {
        c.current_dir(dir.path())
            .args(["-f", &name, "-c", "relative.toml"]);
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Serving means the pid has been written.
    assert!(answers(&sock));
    // The pidfile is removed in the start directory.
    let pidfile = dir.path().join(&name);
    Daemonized::new(pidfile.clone()).stop(&[&pidfile, &sock]);
    if let Some(p) = &canary.0 {
        assert!(p.exists(), "the daemon removed {}", p.display());
    }
}

mod activation {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::os::unix::process::CommandExt;

    /// Runs the helper with `listener` as fd 3 and LISTEN_PID set to its own pid.
    fn spawn_activated(fd: Option<&OwnedFd>, fds: &str, extra: &[&str]) -> std::process::Child {
        let raw = fd.map(|f| f.as_raw_fd());
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!(
                "LISTEN_PID=$$ LISTEN_FDS={fds} exec {} --seccomp kill \"$@\"",
                our_helper().display()
            ))
            .arg("sh")
            .args(extra)
            .stderr(std::process::Stdio::piped());
        if let Some(raw) = raw {
            // SAFETY: dup2 and fcntl are async-signal-safe; `raw` stays open
            // in the parent until spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    // dup2 onto itself would keep FD_CLOEXEC: clear it instead.
                    let rc = if raw == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(raw, 3)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.spawn().unwrap()
    }

    #[test]
    fn serves_on_the_socket_systemd_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("act.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd: OwnedFd = listener.into();
        let mut child = spawn_activated(Some(&fd), "1", &[]);
        let mut c = Client::connect(&path).negotiate();
        let null = open_rw("/dev/null");
        let r = c.command(&pr_in(0, 8), null.as_raw_fd(), &[]).unwrap();
        assert_eq!(r.sense_code(), ABORTED_IO_TERMINATED);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
        assert!(
            path.exists(),
            "a socket handed over by systemd must not be removed"
        );
    }

    #[test]
    fn refuses_socket_path_with_activation_and_more_than_one_fd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("act.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd: OwnedFd = listener.into();
        let other = dir.path().join("other.sock");
        let out = spawn_activated(Some(&fd), "1", &["-k", other.to_str().unwrap()])
            .wait_with_output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("socket activation"));
        let out = spawn_activated(Some(&fd), "2", &[])
            .wait_with_output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("exactly one"));
    }

    #[test]
    fn refuses_an_activation_fd_that_is_not_a_listening_socket() {
        let file = tempfile::tempfile().unwrap();
        let fd: OwnedFd = file.into();
        let out = spawn_activated(Some(&fd), "1", &[])
            .wait_with_output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a listening"));
        // No fd 3 at all: refused, not a crash.
        let out = spawn_activated(None, "1", &[]).wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not open"),
            "{out:?}"
        );
    }
}

mod command_line {
    use super::*;

    /// Runs the binary on a command line that it refuses or answers
    /// without serving.
    fn run(args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(our_helper()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn help_lists_the_c_helpers_options() {
        let (code, out, _) = run(&["--help"]);
        assert_eq!(code, Some(0));
        for flag in [
            "--daemon",
            "--pidfile",
            "--socket",
            "--trace",
            "--user",
            "--group",
            "--verbose",
            "--quiet",
            "--help",
            "--version",
            "--config",
        ] {
            assert!(out.contains(flag), "--help lacks {flag}");
        }
        assert!(out.contains("/var/run/qemu-pr-helper.sock"));
        assert!(out.contains("/var/run/qemu-pr-helper.pid"));
        let (code, short, _) = run(&["-h"]);
        assert_eq!(code, Some(0));
        assert!(short.contains("--socket"));
    }

    #[test]
    fn version() {
        for flag in ["-V", "--version"] {
            let (code, out, _) = run(&[flag]);
            assert_eq!(code, Some(0));
            assert!(out.starts_with("qemu-pr-helper "), "{out}");
        }
    }

    #[test]
    fn wrong_usage_is_one_line_and_non_zero() {
        for args in [
            &["--bogus"][..],
            &["-k"][..],
            &["-k", "relative.sock"][..],
            &["-u", "no-such-user-xyz", "-k", "/tmp/never-created-1.sock"][..],
            &["-g", "no-such-group-xyz", "-k", "/tmp/never-created-2.sock"][..],
            &["-c", "/nonexistent/config.toml"][..],
            &["-T", "bogus=1", "-k", "/tmp/never-created-3.sock"][..],
            &["extra-positional"][..],
        ] {
            let (code, _, err) = run(args);
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("qemu-pr-helper: "), "{args:?}: {err}");
        }
        assert!(!std::path::Path::new("/tmp/never-created-1.sock").exists());
        assert!(!std::path::Path::new("/tmp/never-created-2.sock").exists());
    }

    #[test]
    fn config_errors_name_the_file_line_and_key_and_nonsense_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("never.sock");
        let cfg = dir.path().join("c.toml");
        let cfg_arg = cfg.to_str().unwrap();
        let c = cfg.display();
        for (text, expected) in [
            (
                "[executor]\nkind = \"sg_io\"\ntimeout_ms = \"30000\"\n",
                format!(
                    "{c} line 3: executor.timeout_ms: invalid type: string \"30000\", \
                     expected an integer"
                ),
            ),
            (
                "# limits\n[security]\nmax_connections = 0\n",
                format!(
                    "{c} line 3: security.max_connections: invalid value: integer `0`, \
                     expected at least 1"
                ),
            ),
            (
                "[security]\nrequest_timeout_ms = 0\n",
                format!(
                    "{c} line 2: security.request_timeout_ms: invalid value: integer `0`, \
                     expected at least 1"
                ),
            ),
            (
                "[executor]\ntimeout_ms = 0\n",
                format!(
                    "{c} line 2: executor.timeout_ms: invalid value: integer `0`, \
                     expected at least 1"
                ),
            ),
            (
                "[security]\nsocket_mode = \"01777\"\n",
                format!(
                    "{c} line 2: security.socket_mode: invalid value: string \"01777\", \
                     expected an octal mode from \"0000\" to \"0777\""
                ),
            ),
            (
                "[security]\ndevices = [\n  \"8:16\",\n  \"\",\n]\n",
                format!("{c} line 2: security.devices[1]: '' is neither MAJOR:MINOR nor wwid:NAME"),
            ),
        ] {
            std::fs::write(&cfg, text).unwrap();
            let (code, err) = run_briefly(&["-c", cfg_arg, "-k", sock.to_str().unwrap()]);
            assert_eq!(code, Some(1), "{text}: {err}");
            assert_eq!(err, format!("qemu-pr-helper: {expected}\n"), "{text}");
            assert!(!sock.exists());
        }
        let (code, err) = run_briefly(&["--timeout", "0", "-k", sock.to_str().unwrap()]);
        assert_eq!(code, Some(1), "--timeout 0: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--timeout"), "{err}");
    }

    #[test]
    fn config_file_is_read_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let from_file = dir.path().join("file.sock");
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            format!("socket = {:?}\n", from_file.to_str().unwrap()),
        )
        .unwrap();
        let mut child = our_command()
            .args(["-c", cfg.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&from_file).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let served = std::os::unix::net::UnixStream::connect(&from_file).is_ok();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
        assert!(served, "the socket from the config file was not created");
        // -k (added by Helper::start) overrides the file.
        let h = Helper::start(&our_helper(), &["-c", cfg.to_str().unwrap()]);
        assert!(h.socket.exists());
        assert!(!from_file.exists());
    }
}

/// Soft and hard "Max open files" of a process, from /proc/PID/limits.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_string(), f[4].to_string())
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let h = Helper::spawn(dir, socket, &our_helper(), &[], |cmd| {
        common::spawn::start_with_nofile_soft(cmd, 64)
    });
    let (soft, hard) = open_file_limits(h.pid());
    assert_eq!(soft, hard, "soft limit left at {soft}");
}

#[test]
fn privileges_are_dropped_to_cap_sys_rawio_with_no_new_privs() {
    let h = Helper::start(&our_helper(), &[]);
    // The socket accepts (queues) before privileges are dropped; a
    // negotiated connection means the server, and so the drop, is done.
    drop(h.connect().negotiate());
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    if nix::unistd::geteuid().is_root() {
        // CAP_SYS_RAWIO is bit 17.
        let rawio = format!("{:016x}", 1u64 << 17);
        assert_eq!(field("CapEff:"), rawio);
        assert_eq!(field("CapPrm:"), rawio);
        let bnd = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
        assert_eq!(bnd & !(1u64 << 17), 0, "bounding set not cleared: {bnd:x}");
        assert_eq!(field("CapInh:"), "0000000000000000");
        assert_eq!(field("CapAmb:"), "0000000000000000");
    } else {
        eprintln!("*** not root: only NoNewPrivs checked ***");
    }
}

#[test]
fn switching_user_and_group_with_u_and_g() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root to switch users ***");
        return;
    }
    let h = Helper::start(&our_helper(), &["-u", "65534", "-g", "65534"]);
    drop(h.connect().negotiate());
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.pid())).unwrap();
    let line = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(
        line("Uid:")
            .split_whitespace()
            .skip(1)
            .all(|u| u == "65534"),
        "{}",
        line("Uid:")
    );
    assert!(
        line("Gid:")
            .split_whitespace()
            .skip(1)
            .all(|g| g == "65534"),
        "{}",
        line("Gid:")
    );
    assert_eq!(line("Groups:").trim(), "Groups:");
    assert!(line("CapEff:").ends_with(&format!("{:016x}", 1u64 << 17)));
    // Still serving.
    let mut c = h.connect().negotiate();
    let null = open_rw("/dev/null");
    assert!(c.command(&pr_in(0, 8), null.as_raw_fd(), &[]).is_some());
}

/// With `-u` the daemon can no longer write to the directory of its socket
/// file and pidfile (root's, 0755 as /run is): both are removed all the same
/// once it has exited, with nothing logged about failing to, under the
/// production filter, for each way the daemon is stopped and also when it
/// is killed outright.
#[test]
fn with_u_the_socket_file_and_pidfile_are_removed_at_exit() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root to switch users ***");
        return;
    }
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGKILL] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("pr.sock");
        let pidfile = dir.path().join("pr.pid");
        let h = Helper::spawn(
            dir,
            socket.clone(),
            &our_helper(),
            &["--emulate", "-u", "65534", "-g", "65534", "-f"],
            |c| {
                c.arg(&pidfile);
            },
        );
        assert!(pidfile.exists());
        h.signal(sig);
        let log_path = h.dir.path().join("helper.log");
        let (code, log) = h.wait_exit(Duration::from_secs(10));
        if sig != Signal::SIGKILL {
            assert_eq!(code, Some(0), "{sig}: {log}");
            assert!(!socket.exists(), "{sig}: socket file left behind: {log}");
            assert!(!pidfile.exists(), "{sig}: pidfile left behind: {log}");
        } else {
            // Killed, the daemon cannot wait for the removal: it follows.
            let deadline = Instant::now() + Duration::from_secs(10);
            while (socket.exists() || pidfile.exists()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!socket.exists() && !pidfile.exists(), "{sig}: left behind");
        }
        let log = std::fs::read_to_string(log_path).unwrap_or(log);
        assert!(!log.contains("cannot remove"), "{sig}: {log}");
    }
}

/// A start with `-d` that fails says only why: nothing about running in the
/// background, which it never did.
#[test]
fn a_failed_d_start_prints_only_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("no-such-dir").join("pr.sock");
    let out = run_daemonized(|c| {
        c.arg("--emulate")
            .arg("-k")
            .arg(&socket)
            .arg("-f")
            .arg(dir.path().join("pr.pid"));
    });
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "qemu-pr-helper: cannot listen on {}: ",
            socket.display()
        )),
        "{stderr}"
    );
    // And one that succeeds says where its log goes, once it serves.
    let socket = dir.path().join("pr.sock");
    let (out, daemon) =
        Daemonized::start(&socket, dir.path().join("pr.pid"), &["--emulate"], |_| {});
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("qemu-pr-helper: running in the background; log: "),
        "{stderr}"
    );
    daemon.stop(&[&socket]);
}
