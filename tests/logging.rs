// SPDX-License-Identifier: GPL-2.0-or-later
//! What an operator reads: levels, -T, JSON field types, the journal's
//! native fields, syslog under -d, and the service manager's status.
//! Every daemon here runs under `--seccomp kill`, so each destination is
//! also proven to work inside the system-call filter.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Starts our daemon on its emulated device in `dir` with `extra`
/// arguments and `env`, its stderr in DIR/helper.log.
fn spawn_in(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Helper {
    spawn_with(dir, extra, env, |_| {})
}

fn spawn_with(
    dir: tempfile::TempDir,
    extra: &[&str],
    env: &[(&str, &str)],
    adjust: impl FnOnce(&mut Command),
) -> Helper {
    let socket = dir.path().join("pr.sock");
    let args: Vec<&str> = ["--emulate"].iter().chain(extra).copied().collect();
    Helper::spawn(dir, socket, &our_helper(), &args, |command| {
        command.envs(env.iter().copied());
        adjust(command);
    })
}

fn spawn(extra: &[&str]) -> Helper {
    spawn_in(tempfile::tempdir().unwrap(), extra, &[])
}

/// One REGISTER and one READ KEYS on a new connection.
fn register_and_read(h: &Helper) {
    let disk = h.disk();
    let mut c = h.connect().negotiate();
    c.register(disk.as_raw_fd(), 0xabc);
    let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.status, 0);
}

/// [`register_and_read`], then the log once the daemon has stopped.
fn register_and_stop(h: Helper) -> String {
    register_and_read(&h);
    stopped_log(h)
}

/// The log of a daemon started with `extra` that served one REGISTER and
/// one READ KEYS and stopped.
fn log_of_one_register(extra: &[&str]) -> String {
    register_and_stop(spawn(extra))
}

/// The log once the daemon has stopped (SIGTERM).
fn stopped_log(h: Helper) -> String {
    h.signal(Signal::SIGTERM);
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    log
}

#[test]
fn t_help_lists_the_targets_on_stdout_and_exits_zero_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let out = our_command()
        .args(["-T", "help", "-k"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let listed: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(listed, qemu_pr_helper::logging::TARGETS);
    assert!(listed.contains(&"qemu_pr_helper::adapters::multipathd"));
    assert!(!socket.exists(), "-T help started the daemon");
}

#[test]
fn vv_shows_each_request_that_v_does_not() {
    let v = log_of_one_register(&["-v"]);
    let vv = log_of_one_register(&["-vv"]);
    assert!(v.contains("DEBUG") && v.contains("command done"), "{v}");
    assert!(!v.contains("TRACE"), "{v}");
    // The emulated unit's line adds what the server's cannot know: the
    // unit's state after the REGISTER, not the command again.
    let unit = v
        .lines()
        .find(|l| l.contains("emulated unit after the command"))
        .unwrap_or_else(|| panic!("no emulated unit line under -v: {v}"));
    assert!(unit.ends_with("generation=1 registrations=1"), "{unit}");
    assert!(!unit.contains("status="), "{unit}");
    let request = vv
        .lines()
        .find(|l| l.contains("TRACE") && l.contains("request received"))
        .unwrap_or_else(|| panic!("no TRACE request line under -vv: {vv}"));
    assert!(request.contains("cdb=5f000000000000001800"), "{request}");
    assert!(request.contains("data_len=24"), "{request}");
}

#[test]
fn t_pattern_traces_its_target_only_and_the_default_level_stays_for_the_rest() {
    let log = log_of_one_register(&["-T", "qemu_pr_helper::server"]);
    assert!(log.contains("request received"), "{log}");
    assert!(log.contains("command done"), "{log}");
    // The emulated device's DEBUG line is not enabled by the pattern.
    assert!(!log.contains("emulated unit after the command"), "{log}");
    assert!(
        log.contains("action=REGISTER"),
        "the audit line stays: {log}"
    );
}

#[test]
fn json_lines_carry_numbers_as_numbers_hex_cdbs_and_no_field_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "log_format = \"json\"\n").unwrap();
    let h = spawn_in(dir, &["-v", "-c", config.to_str().unwrap()], &[]);
    register_and_read(&h);
    // A RESERVE (Write Exclusive, registrants only) with a key that is not
    // registered: RESERVATION CONFLICT.
    let disk = h.disk();
    let mut c = h.connect().negotiate();
    let r = c
        .command(&pr_out(1, 0x05, 24), disk.as_raw_fd(), &params(0x999, 0))
        .unwrap();
    assert_eq!(r.status, 0x18);
    drop(c);
    let log = stopped_log(h);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        let fields = line["fields"].as_object().unwrap();
        // The connection once, in `span`.
        assert!(line.get("spans").is_none(), "connection twice: {line}");
        if let Some(span) = line.get("span").and_then(|s| s.as_object()) {
            for key in fields.keys() {
                assert!(!span.contains_key(key), "{key} in span and event: {line}");
            }
        }
        for value in fields.values() {
            let text = value.as_str().unwrap_or("");
            assert!(
                !text.starts_with("Some(") && text != "None" && !text.starts_with('['),
                "debug output in {line}"
            );
            assert_ne!(text, "-", "a dash for a field that does not apply: {line}");
        }
    }
    let audits: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == "audit").collect();
    let audit = audits
        .iter()
        .find(|l| l["fields"]["action"] == "REGISTER")
        .unwrap_or_else(|| panic!("no audit line: {log}"));
    assert_eq!(
        audit["span"]["peer_pid"].as_u64(),
        Some(u64::from(std::process::id())),
        "{audit}"
    );
    assert!(audit["span"]["peer_uid"].is_u64(), "{audit}");
    assert!(audit["span"]["conn_id"].is_u64(), "{audit}");
    assert_eq!(audit["fields"]["scope"].as_u64(), Some(0), "{audit}");
    assert_eq!(audit["fields"]["scope_name"], "LU_SCOPE", "{audit}");
    assert_eq!(audit["fields"]["type"].as_u64(), Some(0), "{audit}");
    // REGISTER ignores TYPE: 0 names no type.
    assert!(audit["fields"].get("type_name").is_none(), "{audit}");
    // Keys as the client prints them.
    assert_eq!(audit["fields"]["sa_key"], "0xabc", "{audit}");
    assert_eq!(audit["fields"]["status"].as_u64(), Some(0), "{audit}");
    assert_eq!(audit["fields"]["status_name"], "GOOD", "{audit}");
    assert!(audit["fields"].get("sense").is_none(), "{audit}");
    let conflict = audits
        .iter()
        .find(|l| l["fields"]["action"] == "RESERVE")
        .unwrap_or_else(|| panic!("no RESERVE audit line: {log}"));
    assert_eq!(conflict["fields"]["type"].as_u64(), Some(5), "{conflict}");
    assert_eq!(
        conflict["fields"]["type_name"], "Write Exclusive, registrants only",
        "{conflict}"
    );
    assert_eq!(conflict["fields"]["key"], "0x999", "{conflict}");
    assert_eq!(
        conflict["fields"]["status"].as_u64(),
        Some(24),
        "{conflict}"
    );
    assert_eq!(
        conflict["fields"]["status_name"], "RESERVATION CONFLICT",
        "{conflict}"
    );
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "command done")
        .unwrap_or_else(|| panic!("no command line: {log}"));
    assert_eq!(done["fields"]["cdb"], "5f000000000000001800", "{done}");
    assert_eq!(done["fields"]["action"], "REGISTER", "{done}");
    assert_eq!(done["fields"]["payload_len"].as_u64(), Some(0), "{done}");
    assert_eq!(done["fields"]["status"].as_u64(), Some(0), "{done}");
    assert_eq!(done["fields"]["status_name"], "GOOD", "{done}");
    assert!(done["fields"].get("sense").is_none(), "{done}");
    let dropped = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("privileges dropped"))
        })
        .unwrap_or_else(|| panic!("no privileges line: {log}"));
    assert!(dropped["fields"]["uid"].is_u64(), "{dropped}");
    assert!(dropped["fields"]["gid"].is_u64(), "{dropped}");
    // Audit and debug lines name the device the same way.
    assert_eq!(done["fields"]["device"], audit["fields"]["device"]);
}

#[test]
fn v_names_the_action_of_pr_in_commands_as_of_pr_out() {
    let h = spawn(&["-v"]);
    let disk = h.disk();
    let mut c = h.connect().negotiate();
    for action in 0..4 {
        let r = c
            .command(&pr_in(action, 8192), disk.as_raw_fd(), &[])
            .unwrap();
        assert_eq!(r.status, 0);
    }
    drop(c);
    let log = stopped_log(h);
    let done: Vec<&str> = log.lines().filter(|l| l.contains("command done")).collect();
    for name in [
        "action=READ KEYS",
        "action=READ RESERVATION",
        "action=REPORT CAPABILITIES",
        "action=READ FULL STATUS",
    ] {
        assert!(
            done.iter()
                .any(|l| l.contains(name) && l.contains("status=0 status_name=\"GOOD\"")),
            "no {name}: {log}"
        );
    }
    // A GOOD answer has no sense: the field is left out.
    assert!(done.iter().all(|l| !l.contains("sense=")), "{log}");
}

/// The line that starts with "starting", at INFO without -v.
fn start_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("qemu_pr_helper::daemon: starting "))
        .unwrap_or_else(|| panic!("no start line: {log}"))
}

#[test]
fn the_start_line_names_version_executor_and_multipathd_at_the_default_level() {
    let log = stopped_log(spawn(&[]));
    let line = start_line(&log);
    assert_eq!(log.lines().next(), Some(line), "the first line: {log}");
    assert!(line.contains(" INFO "), "{line}");
    let version = format!("version={} ", env!("CARGO_PKG_VERSION"));
    assert!(line.contains(&version), "{line}");
    assert!(line.contains("executor=emulated "), "{line}");
    assert!(line.ends_with("multipathd=off"), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let h = Helper::spawn(dir, socket, &our_helper(), &["--executor", "sg_io"], |c| {
        c.env(
            "MULTIPATH_SOCKET_NAME",
            "@qemu-pr-helper-test-no-multipathd",
        );
    });
    let log = stopped_log(h);
    let line = start_line(&log);
    assert!(
        line.contains("executor=sg_io executor_means=\"SG_IO\""),
        "{line}"
    );
    assert!(
        line.ends_with("multipathd=@qemu-pr-helper-test-no-multipathd"),
        "{line}"
    );
    // `auto` says which way it takes here; multipath routing off.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[executor]\nkind = \"auto\"\nmultipath = false\n").unwrap();
    let args = ["-c", config.to_str().unwrap()];
    let log = stopped_log(Helper::spawn(dir, socket, &our_helper(), &args, |_| {}));
    let line = start_line(&log);
    let means = if nix::unistd::geteuid().is_root() {
        "executor=auto executor_means=\"SG_IO, as CAP_SYS_RAWIO is held\""
    } else {
        "executor=auto executor_means=\"the PR ioctls where a device takes them, SG_IO \
         elsewhere (no CAP_SYS_RAWIO)\""
    };
    assert!(line.contains(means), "{line}");
    assert!(line.ends_with("multipathd=off"), "{line}");
}

#[test]
fn unprivileged_on_the_emulated_device_no_warning_about_the_kernel() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root to start the daemon as another user ***");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("pr.sock");
    let h = Helper::spawn(dir, socket, &our_helper(), &["--emulate"], |c| {
        c.uid(65534).gid(65534);
    });
    let log = stopped_log(h);
    assert!(!log.contains("the kernel will refuse"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains(" WARN ") && l.contains("without privileges")),
        "{log}"
    );
    assert!(
        log.contains("running without privileges: the emulated device needs none"),
        "{log}"
    );
}

#[test]
fn no_multipath_lines_at_the_default_level_when_no_map_is_used() {
    // The production executor (multipath routing on, relay started), on a
    // host without multipathd, given a file that is not a map.
    let h = Helper::start(&our_helper(), &[]);
    let null = open_rw("/dev/null");
    let mut c = h.connect().negotiate();
    assert!(c.command(&pr_in(0, 8), null.as_raw_fd(), &[]).is_some());
    drop(c);
    let log = stopped_log(h);
    assert!(log.contains("listening"), "{log}");
    // The start line names the socket multipathd would be told on, and no
    // other line speaks of multipath.
    assert!(start_line(&log).contains(" multipathd="), "{log}");
    assert!(
        !log.lines()
            .filter(|l| !l.contains("qemu_pr_helper::daemon: starting "))
            .any(|l| l.to_lowercase().contains("multipath")),
        "{log}"
    );
}

/// Receives datagrams on `rx` until one satisfies `want` (10 s at most).
fn receive_until(rx: &UnixDatagram, want: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(buf[..n].to_vec());
            if want(&buf[..n]) {
                return got;
            }
        }
    }
    panic!(
        "not received; got {:?}",
        got.iter()
            .map(|d| String::from_utf8_lossy(d))
            .collect::<Vec<_>>()
    );
}

#[test]
fn d_says_where_the_log_goes_and_syslog_gets_every_line_audit_included() {
    let dir = tempfile::tempdir().unwrap();
    let syslog_path = dir.path().join("log");
    let rx = UnixDatagram::bind(&syslog_path).unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "log_to = \"syslog\"\nsyslog_socket = \"{}\"\n",
            syslog_path.display()
        ),
    )
    .unwrap();
    let socket = dir.path().join("pr.sock");
    let pidfile = dir.path().join("pid");
    let config = config.to_str().unwrap();
    let (out, _stop) = Daemonized::start(
        &socket,
        pidfile.clone(),
        &["--emulate", "-c", config],
        |_| {},
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "qemu-pr-helper: running in the background; log: syslog ({})",
            syslog_path.display()
        )
    );
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let prefix = format!("qemu-pr-helper[{pid}]: ");
    receive_until(&rx, |d| {
        let line = String::from_utf8_lossy(d);
        line.starts_with(&format!("<29>{prefix}")) && line.contains("listening")
    });
    let disk = File::create(dir.path().join("lu.img")).unwrap();
    disk.set_len(512).unwrap();
    let mut c = Client::connect(&socket).negotiate();
    c.register(disk.as_raw_fd(), 0xabc);
    let got = receive_until(&rx, |d| {
        String::from_utf8_lossy(d).contains("action=REGISTER")
    });
    let audit = String::from_utf8_lossy(got.last().unwrap()).into_owned();
    // Notice (5) of the daemon facility (3): <29>.
    assert!(audit.starts_with(&format!("<29>{prefix}")), "{audit}");
    drop(c);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    receive_until(&rx, |d| String::from_utf8_lossy(d).contains("exiting"));
}

/// The fields of one journal native-protocol datagram: `NAME=value` lines,
/// or `NAME`, a little-endian 64-bit length and the value.
fn journal_fields(mut d: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !d.is_empty() {
        let end = d.iter().position(|&b| b == b'\n').unwrap();
        let line = &d[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            d = &d[end + 1..];
        } else {
            let len = u64::from_le_bytes(d[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &d[end + 9..end + 9 + len];
            fields.insert(
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            );
            d = &d[end + 9 + len + 1..];
        }
    }
    fields
}

/// Makes `command` run in a mount namespace of its own where `run` is
/// mounted on /run, so that the journal's socket is a test's.
fn with_run_from(command: &mut Command, run: &std::path::Path) {
    let run = std::ffi::CString::new(run.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: only system calls between fork and exec, on memory prepared
    // before the fork.
    unsafe {
        command.pre_exec(move || {
            let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
                && libc::mount(
                    run.as_ptr(),
                    c"/run".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) == 0;
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A directory to mount on /run with a bound journal socket in it.
fn fake_run(dir: &tempfile::TempDir) -> (std::path::PathBuf, UnixDatagram) {
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("systemd/journal")).unwrap();
    let rx = UnixDatagram::bind(run.join("systemd/journal/socket")).unwrap();
    (run, rx)
}

#[test]
fn under_systemd_the_journal_gets_native_fields_and_priorities() {
    // The daemon runs in a mount namespace of its own where /run is a
    // directory of this test: /run/systemd/journal/socket is then this
    // test's socket, and the daemon talks to it as to the journal.
    let dir = tempfile::tempdir().unwrap();
    let (run, rx) = fake_run(&dir);
    // systemd's JOURNAL_STREAM names the stream it gave as stderr.
    let log = dir.path().join("helper.log");
    File::create(&log).unwrap();
    let st = nix::sys::stat::stat(&log).unwrap();
    let stream = format!("{}:{}", st.st_dev, st.st_ino);
    let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spawn_with(dir, &[], &[("JOURNAL_STREAM", &stream)], |c| {
            with_run_from(c, &run)
        })
    }));
    let h = match spawned {
        Ok(h) => h,
        Err(_) if !nix::unistd::Uid::effective().is_root() => {
            eprintln!("skipped: a mount namespace needs root");
            return;
        }
        Err(e) => std::panic::resume_unwind(e),
    };
    let disk = h.disk();
    let mut c = h.connect().negotiate();
    c.register(disk.as_raw_fd(), 0xabc);
    let got = receive_until(&rx, |d| {
        journal_fields(d)
            .get("MESSAGE")
            .is_some_and(|m| m == "PR OUT")
    });
    let audit = journal_fields(got.last().unwrap());
    assert_eq!(audit["PRIORITY"], "5", "{audit:?}");
    assert_eq!(audit["TARGET"], "audit", "{audit:?}");
    assert_eq!(audit["SYSLOG_IDENTIFIER"], "qemu-pr-helper", "{audit:?}");
    assert_eq!(
        audit["PEER_PID"],
        std::process::id().to_string(),
        "{audit:?}"
    );
    assert_eq!(audit["ACTION"], "REGISTER", "{audit:?}");
    assert_eq!(audit["SA_KEY"], "0xabc", "{audit:?}");
    assert_eq!(audit["STATUS"], "0", "{audit:?}");
    assert_eq!(audit["STATUS_NAME"], "GOOD", "{audit:?}");
    assert!(!audit.contains_key("SENSE"), "{audit:?}");
    assert!(audit["DEVICE"].starts_with("inode-"), "{audit:?}");
    // `journalctl -p warning` finds the emulated device's warning.
    let warning = got
        .iter()
        .map(|d| journal_fields(d))
        .find(|f| {
            f.get("MESSAGE")
                .is_some_and(|m| m.starts_with("EMULATED DEVICE:"))
        })
        .unwrap_or_else(|| panic!("no warning among {got:?}"));
    assert_eq!(warning["PRIORITY"], "4", "{warning:?}");
    assert_eq!(warning["INITIATOR"], "connection", "{warning:?}");
    drop(c);
    let (code, stderr) = {
        h.signal(Signal::SIGTERM);
        h.wait_exit(Duration::from_secs(10))
    };
    assert_eq!(code, Some(0));
    assert_eq!(stderr, "", "the journal, not stderr, has the log");
}

#[test]
fn systemd_hears_ready_status_with_counts_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let rx = UnixDatagram::bind(&notify).unwrap();
    let notify_env = notify.to_str().unwrap().to_string();
    let h = spawn_in(dir, &[], &[("NOTIFY_SOCKET", &notify_env)]);
    let got = receive_until(&rx, |d| d.starts_with(b"READY=1\n"));
    assert_eq!(
        String::from_utf8_lossy(got.last().unwrap()),
        "READY=1\nSTATUS=serving: 0 connections, 0 commands in flight, 0 done"
    );
    let disk = h.disk();
    let mut c = h.connect().negotiate();
    assert!(c.command(&pr_in(0, 8), disk.as_raw_fd(), &[]).is_some());
    // Refreshed now and then (not per command): wait for the line that
    // counts this connection and its command.
    receive_until(&rx, |d| {
        d == b"STATUS=serving: 1 connection, 0 commands in flight, 1 done"
    });
    h.signal(Signal::SIGTERM);
    let got = receive_until(&rx, |d| d.starts_with(b"STOPPING=1"));
    assert_eq!(
        String::from_utf8_lossy(got.last().unwrap()),
        "STOPPING=1\nSTATUS=stopping: 1 connection, 0 commands in flight, 1 done"
    );
    drop(c);
    let (code, _) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}

/// Set in the child of the test below.
const LARGE_ENTRY_CHILD: &str = "QEMU_PR_HELPER_TEST_LARGE_JOURNAL_ENTRY";

#[test]
fn a_journal_entry_too_large_for_a_datagram_passes_the_filter() {
    use tracing_subscriber::layer::SubscriberExt;
    if std::env::var_os(LARGE_ENTRY_CHILD).is_some() {
        // The child, in the namespace: the daemon's journal layer, then the
        // daemon's filter on this thread, then its writer thread (which
        // inherits the filter), then an entry larger than a datagram can be
        // (the writer sends it in a sealed memfd).
        let (layer, writer) = qemu_pr_helper::logging::journal().unwrap();
        qemu_pr_helper::adapters::seccomp::install(
            qemu_pr_helper::adapters::seccomp::SeccompMode::Kill,
        )
        .unwrap();
        writer.start().unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(big = %"x".repeat(400_000), "large entry");
        });
        assert!(writer.flush(Duration::from_secs(10)));
        assert_eq!(writer.dropped(), 0);
        return;
    }
    if !may_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (run, rx) = fake_run(&dir);
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "a_journal_entry_too_large_for_a_datagram_passes_the_filter",
            "--test-threads=1",
        ])
        .env(LARGE_ENTRY_CHILD, "1")
        .stdout(Stdio::null());
    with_run_from(&mut child, &run);
    let out = child.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} (SIGSYS: a system call outside the allowlist): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The entry arrived as an fd.
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    rx.set_nonblocking(true).unwrap();
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let mut received = None;
    loop {
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<()>(
            rx.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) else {
            break;
        };
        for cmsg in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                received = fds.first().copied();
            }
        }
    }
    let fd = received.expect("no memfd received");
    // SAFETY: the fd was just received over SCM_RIGHTS and nothing else owns it.
    let mut file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // The sender's offset is at the end of what it wrote.
    std::io::Seek::rewind(&mut file).unwrap();
    let mut entry = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut entry).unwrap();
    let fields = journal_fields(&entry);
    let keys: Vec<&String> = fields.keys().collect();
    assert_eq!(
        fields.get("MESSAGE").map(String::as_str),
        Some("large entry"),
        "{keys:?}"
    );
    assert_eq!(fields["BIG"].len(), 400_000);
}

#[test]
fn q_keeps_errors_only_and_t_audit_brings_the_audit_trail_back_with_its_peer() {
    let quiet = log_of_one_register(&["-q"]);
    assert_eq!(quiet, "", "-q wrote more than errors");
    let log = log_of_one_register(&["-q", "-T", "audit"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("action=REGISTER"), "{log}");
    assert!(
        lines[0].contains(&format!("peer_pid={} ", std::process::id())),
        "the audit line lost its connection: {log}"
    );
}

/// Runs `-d` (emulated, under the kill filter) in a mount namespace whose
/// /run is `run`, with `config`; returns its stderr, once it has gone to
/// the background, and the pidfile.
fn daemonize_in(
    dir: &tempfile::TempDir,
    run: &std::path::Path,
    config: &str,
) -> (String, Daemonized) {
    let config_path = dir.path().join("c.toml");
    std::fs::write(&config_path, config).unwrap();
    let (out, daemon) = Daemonized::start(
        &dir.path().join("pr.sock"),
        dir.path().join("pid"),
        &["--emulate", "-c", config_path.to_str().unwrap()],
        |command| with_run_from(command, run),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (stderr, daemon)
}

/// Whether this process may make a mount namespace; says so when not.
fn may_mount() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipped: a mount namespace needs root");
    }
    root
}

#[test]
fn d_takes_the_journal_when_it_answers_and_says_so() {
    if !may_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (run, rx) = fake_run(&dir);
    let (stderr, daemon) = daemonize_in(&dir, &run, "");
    assert_eq!(
        stderr.trim(),
        "qemu-pr-helper: running in the background; log: the journal \
         (/run/systemd/journal/socket)"
    );
    receive_until(&rx, |d| {
        journal_fields(d)
            .get("MESSAGE")
            .is_some_and(|m| m == "listening")
    });
    daemon.stop(&[&dir.path().join("pr.sock")]);
}

#[test]
fn d_with_neither_journal_nor_syslog_says_the_log_is_lost() {
    if !may_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("empty-run");
    std::fs::create_dir(&run).unwrap();
    let nowhere = dir.path().join("no-syslog-here");
    let (stderr, daemon) = daemonize_in(
        &dir,
        &run,
        &format!("syslog_socket = \"{}\"\n", nowhere.display()),
    );
    assert!(
        stderr.contains("log: nowhere: neither the journal nor syslog can be reached"),
        "{stderr}"
    );
    daemon.stop(&[&dir.path().join("pr.sock")]);
}

#[test]
fn stderr_with_d_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pr.sock");
    let out = our_command()
        .args(["-d", "--log-to", "stderr", "--emulate", "-k"])
        .arg(&socket)
        .arg("-f")
        .arg(dir.path().join("pid"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("qemu-pr-helper: logging to stderr with -d would discard every line"),
        "{stderr}"
    );
    assert!(!socket.exists());
}

#[test]
fn t_star_finds_trace_events_at_the_default_level() {
    let log = log_of_one_register(&["-T", "*"]);
    assert!(
        log.lines()
            .any(|l| l.contains("TRACE") && l.contains("request received")),
        "{log}"
    );
}

/// Fills the receive queue of the datagram socket at `path` (a syslog or
/// journal that stopped reading): until its reader reads, every further
/// send to it waits. The filling socket is returned to be kept.
fn stop_reading(path: &std::path::Path) -> UnixDatagram {
    let filler = UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut sent = 0;
    while filler.send_to(b"filler", path).is_ok() {
        sent += 1;
    }
    assert!(sent > 0, "nothing could be sent to {}", path.display());
    filler
}

/// A config file in `dir` that sends the log to the syslog socket `path`.
fn syslog_config(dir: &tempfile::TempDir, path: &std::path::Path) -> String {
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "log_to = \"syslog\"\nsyslog_socket = \"{}\"\n",
            path.display()
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_string()
}

/// Clients of a daemon whose log destination does not read are answered
/// in under 1 s each (the bound is generous: the goal is that logging never
/// waits for the destination; waiting cost 2 s per line on the thread that
/// serves every connection), and SIGTERM stops it within a few seconds.
fn serves_and_stops_while_the_log_is_stuck(h: Helper) {
    let disk = h.disk();
    for round in 0..3 {
        let started = Instant::now();
        let mut c = h.connect().negotiate();
        let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
        assert_eq!(r.status, 0);
        c.register(disk.as_raw_fd(), 0x100 + round);
        let took = started.elapsed();
        eprintln!("round {round} answered in {took:?}");
        assert!(
            took < Duration::from_secs(1),
            "round {round}: answered after {took:?}"
        );
    }
    let asked = Instant::now();
    h.signal(Signal::SIGTERM);
    let (code, _) = h.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    eprintln!("stopped {:?} after SIGTERM", asked.elapsed());
}

#[test]
fn a_syslog_that_stops_reading_stalls_no_client_and_sigterm_still_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let syslog = dir.path().join("log");
    let _rx = UnixDatagram::bind(&syslog).unwrap();
    let _filler = stop_reading(&syslog);
    let config = syslog_config(&dir, &syslog);
    let h = spawn_in(dir, &["-v", "-c", &config], &[]);
    serves_and_stops_while_the_log_is_stuck(h);
}

#[test]
fn a_journal_that_stops_reading_stalls_no_client_and_sigterm_still_stops_the_daemon() {
    if !may_mount() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (run, _rx) = fake_run(&dir);
    let _filler = stop_reading(&run.join("systemd/journal/socket"));
    let h = spawn_with(dir, &["-v", "--log-to", "journald"], &[], |c| {
        with_run_from(c, &run)
    });
    serves_and_stops_while_the_log_is_stuck(h);
}

#[test]
fn lines_lost_to_a_stuck_syslog_are_counted_in_the_status_and_reported_audit_lines_kept() {
    let dir = tempfile::tempdir().unwrap();
    let syslog = dir.path().join("log");
    let rx = UnixDatagram::bind(&syslog).unwrap();
    let _filler = stop_reading(&syslog);
    let notify = dir.path().join("notify");
    let status = UnixDatagram::bind(&notify).unwrap();
    let notify_env = notify.to_str().unwrap().to_string();
    let config = syslog_config(&dir, &syslog);
    let h = spawn_in(
        dir,
        &["-vv", "-c", &config],
        &[("NOTIFY_SOCKET", &notify_env)],
    );
    // Far more lines than the queue holds (several per command at -vv),
    // while syslog reads none.
    let disk = h.disk();
    let mut c = h.connect().negotiate();
    for _ in 0..600 {
        let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
        assert_eq!(r.status, 0);
    }
    // An audit line after the flood still finds a place.
    c.register(disk.as_raw_fd(), 0xabc);
    // systemd hears of the loss while syslog still reads nothing.
    let got = receive_until(&status, |d| {
        String::from_utf8_lossy(d).contains("log lines dropped")
    });
    let line = String::from_utf8_lossy(got.last().unwrap()).into_owned();
    let counted: u64 = line
        .rsplit(", ")
        .next()
        .and_then(|l| l.strip_suffix(" log lines dropped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(counted > 0, "{line}");
    // Syslog reads again: the audit line arrives, then the report.
    let got = receive_until(&rx, |d| {
        String::from_utf8_lossy(d).contains("log sink is not keeping up")
    });
    let lines: Vec<String> = got
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("action=REGISTER")),
        "the audit line was dropped"
    );
    let report = lines.last().unwrap();
    let reported: u64 = report
        .split("log sink is not keeping up: ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" lines dropped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(reported >= counted, "{report} after {line}");
    // Warning (4) of the daemon facility (3).
    assert!(report.starts_with("<28>"), "{report}");
    drop(c);
    h.signal(Signal::SIGTERM);
    let (code, _) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
}
