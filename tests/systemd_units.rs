//! The shipped systemd units must pass `systemd-analyze verify` and must
//! keep the hardening the README promises.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// Whether `tool` is absent (then the test is skipped, with a word why).
fn missing(tool: &str) -> bool {
    let absent = Command::new(tool).arg("--version").output().is_err();
    if absent {
        eprintln!("*** SKIPPED: {tool} is not installed ***");
    }
    absent
}

/// A shipped file of `config/`.
fn unit(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name),
    )
    .unwrap()
}

#[test]
fn service_keeps_its_hardening() {
    let service = unit("qemu-pr-helper.service");
    for line in [
        "Type=notify",
        "CapabilityBoundingSet=CAP_SYS_RAWIO",
        "AmbientCapabilities=CAP_SYS_RAWIO",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateNetwork=yes",
        "DynamicUser=yes",
        "RestrictAddressFamilies=AF_UNIX",
    ] {
        assert!(service.lines().any(|l| l == line), "service lacks {line}");
    }
    assert!(!service.lines().any(|l| l.starts_with("PrivateDevices=")));
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if missing("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["qemu-pr-helper.socket", "qemu-pr-helper.service"] {
        // ExecStart must name an existing binary: point it at ours.
        let text = unit(name).replace(
            "/usr/bin/qemu-pr-helper",
            env!("CARGO_BIN_EXE_qemu-pr-helper"),
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("qemu-pr-helper.socket"))
        .arg(dir.path().join("qemu-pr-helper.service"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `key=` in the shipped unit `name`.
fn unit_value(name: &str, key: &str) -> String {
    unit(name)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{name} has no {key}="))
        .to_string()
}

/// The daemon started as the shipped units start it: the service's
/// `ExecStart` with `$QEMU_PR_HELPER_OPTS` as `/etc/default/qemu-pr-helper`
/// sets it (the shipped file's line uncommented, then no file at all), the
/// shipped configuration installed (its `socket` line set, as shipped), the
/// listening socket passed by `systemd-socket-activate` as the .socket unit
/// passes it. It must serve a command, not exit (under `Restart=on-failure`
/// that was a restart loop).
#[test]
fn the_shipped_units_serve_as_installed() {
    if missing("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("qemu-pr-helper.toml");
    std::fs::write(&config, unit("qemu-pr-helper.toml")).unwrap();
    let shipped_opts = unit("qemu-pr-helper.default")
        .lines()
        .find_map(|l| l.strip_prefix("#QEMU_PR_HELPER_OPTS="))
        .expect("the default file names the configuration")
        .trim_matches('"')
        .replace("/etc/qemu-pr-helper.toml", config.to_str().unwrap());
    let exec = unit_value("qemu-pr-helper.service", "ExecStart");
    assert_eq!(
        unit_value("qemu-pr-helper.service", "EnvironmentFile"),
        "-/etc/default/qemu-pr-helper",
        "the options file must be optional"
    );
    for opts in [shipped_opts.as_str(), ""] {
        // Release builds filter system calls with kill by default; this
        // debug build is told to, as an administrator could in the file.
        let opts = format!("{opts} --seccomp kill");
        let mut words = exec.split_whitespace();
        let program = words.next().unwrap();
        assert_eq!(program, "/usr/bin/qemu-pr-helper");
        let args: Vec<String> = words
            .flat_map(|w| match w {
                "$QEMU_PR_HELPER_OPTS" => opts.split_whitespace().map(str::to_string).collect(),
                w => vec![w.to_string()],
            })
            .collect();
        let sock = dir.path().join("pr.sock");
        let _ = std::fs::remove_file(&sock);
        let activate = Command::new("systemd-socket-activate")
            .arg("-l")
            .arg(&sock)
            .arg(env!("CARGO_BIN_EXE_qemu-pr-helper"))
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut activate = KillOnDrop(Some(activate));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sock.exists() {
            assert!(std::time::Instant::now() < deadline, "no socket");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let disk = std::fs::File::open(&disk).unwrap();
        let mut client = common::Client::connect(&sock).negotiate();
        let reply = client
            .command(&common::pr_in(0, 64), disk.as_raw_fd(), &[])
            .unwrap_or_else(|| panic!("opts [{opts}]: no reply"));
        // A regular file is not a SCSI device: answered (ABORTED COMMAND,
        // as the C helper answers), never run.
        assert_eq!(reply.status, 2, "opts [{opts}]");
        assert_eq!(reply.sense_code().0, 0xb, "opts [{opts}]: ABORTED COMMAND");
        drop(client);
        let activate = activate.0.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(activate.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = activate.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "opts [{opts}]: {log}");
        if !opts.trim_start().starts_with("--seccomp") {
            assert!(
                log.contains("the configuration file's socket is not used"),
                "{log}"
            );
        }
        // The socket is systemd's: the daemon leaves it in place.
        assert!(sock.exists(), "opts [{opts}]: the socket was removed");
    }
}

/// Kills the daemon if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
