// SPDX-License-Identifier: GPL-2.0-or-later
//! The shipped systemd units must pass `systemd-analyze verify`, keep the
//! hardening docs/security.md promises, and start a daemon that serves when used
//! exactly as installed (the plain units, with the multipath drop-in, and
//! with the drop-in that runs it through the PR ioctls with no capability).

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

/// Where the package installs the helper, as the units' `ExecStart` names it.
const INSTALLED_HELPER: &str = "/usr/libexec/qemu-pr-helper-rs/qemu-pr-helper";

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
    let service = unit("qemu-pr-helper-rs.service");
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
    let dropin = dir.path().join("qemu-pr-helper-rs.service.d");
    for name in ["qemu-pr-helper-rs.socket", "qemu-pr-helper-rs.service"] {
        // ExecStart must name an existing binary: point it at ours.
        let text = unit(name).replace(INSTALLED_HELPER, env!("CARGO_BIN_EXE_qemu-pr-helper"));
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    // Without a drop-in, then with each (systemd reads drop-ins from the
    // unit's directory).
    for with_dropin in [
        None,
        Some("qemu-pr-helper-rs-multipath.conf"),
        Some("qemu-pr-helper-rs-pr-ioctl.conf"),
    ] {
        let _ = std::fs::remove_dir_all(&dropin);
        if let Some(name) = with_dropin {
            std::fs::create_dir(&dropin).unwrap();
            let text = unit(name).replace(INSTALLED_HELPER, env!("CARGO_BIN_EXE_qemu-pr-helper"));
            std::fs::write(dropin.join("dropin.conf"), text).unwrap();
        }
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(dir.path().join("qemu-pr-helper-rs.socket"))
            .arg(dir.path().join("qemu-pr-helper-rs.service"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "drop-in {with_dropin:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The values of `key=` in the shipped file `name`, in order.
fn unit_values(name: &str, key: &str) -> Vec<String> {
    unit(name)
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// The value of `key=` in the shipped unit `name` (its only one).
fn unit_value(name: &str, key: &str) -> String {
    let values = unit_values(name, key);
    assert_eq!(values.len(), 1, "{name}: {key}= {values:?}");
    values[0].clone()
}

/// `QEMU_PR_HELPER_OPTS` as the shipped `/etc/default/qemu-pr-helper-rs`
/// sets it once its line is uncommented, with the configuration file's path
/// moved to `config`.
fn shipped_opts(config: &Path) -> String {
    unit("qemu-pr-helper-rs.default")
        .lines()
        .find_map(|l| l.strip_prefix("#QEMU_PR_HELPER_OPTS="))
        .expect("the default file names the configuration")
        .trim_matches('"')
        .replace("/etc/qemu-pr-helper.toml", config.to_str().unwrap())
}

/// The command line systemd runs for `exec` (an `ExecStart` value) with
/// `QEMU_PR_HELPER_OPTS` set to `opts`, split into words as systemd splits
/// an unquoted `$VARIABLE`.
fn command_line(exec: &str, opts: &str) -> (String, Vec<String>) {
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap().to_string();
    let args = words
        .flat_map(|w| match w {
            "$QEMU_PR_HELPER_OPTS" => opts.split_whitespace().map(str::to_string).collect(),
            w => vec![w.to_string()],
        })
        .collect();
    (program, args)
}

/// A daemon started through `systemd-socket-activate`, which binds the
/// socket and execs the daemon in place with it, as the .socket unit hands
/// its socket to the service.
struct Activated {
    child: Option<std::process::Child>,
    socket: std::path::PathBuf,
}

impl Activated {
    /// Runs `prefix... systemd-socket-activate -l SOCKET binary args...`
    /// and waits for the socket.
    fn start(prefix: &[&str], socket: &Path, binary: &str, args: &[String]) -> Activated {
        let _ = std::fs::remove_file(socket);
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg("systemd-socket-activate");
                c
            }
            None => Command::new("systemd-socket-activate"),
        };
        let child = command
            .arg("-l")
            .arg(socket)
            .arg(binary)
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let activated = Activated {
            child: Some(child),
            socket: socket.to_path_buf(),
        };
        // Bounded: a daemon that never gets there fails the test, it does
        // not hang it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            assert!(std::time::Instant::now() < deadline, "no socket");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        activated
    }

    /// Sends PR IN READ KEYS for a regular file through a new connection and
    /// checks the answer: a regular file is not a SCSI device, so ABORTED
    /// COMMAND, as the C helper answers; never run.
    fn serves(&self, what: &str) {
        let disk = self.socket.with_file_name("disk.img");
        std::fs::write(&disk, [0u8; 512]).unwrap();
        let disk = std::fs::File::open(&disk).unwrap();
        let mut client = common::Client::connect(&self.socket).negotiate();
        let reply = client
            .command(&common::pr_in(0, 64), disk.as_raw_fd(), &[])
            .unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(reply.status, 2, "{what}");
        assert_eq!(reply.sense_code().0, 0xb, "{what}: ABORTED COMMAND");
    }

    /// The daemon's pid (systemd-socket-activate execs it in place).
    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Stops the daemon with SIGTERM, as systemd does; its exit must be
    /// clean. Returns its log.
    fn stop(mut self, what: &str) -> String {
        let child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{what}: {log}");
        // The socket is systemd's: the daemon leaves it in place.
        assert!(self.socket.exists(), "{what}: the socket was removed");
        log
    }
}

impl Drop for Activated {
    /// Kills the daemon if the test fails before stopping it.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The daemon started as the shipped units start it: the service's
/// `ExecStart` with `$QEMU_PR_HELPER_OPTS` as `/etc/default/qemu-pr-helper-rs`
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
    let exec = unit_value("qemu-pr-helper-rs.service", "ExecStart");
    assert_eq!(
        unit_value("qemu-pr-helper-rs.service", "EnvironmentFile"),
        "-/etc/default/qemu-pr-helper-rs",
        "the options file must be optional"
    );
    for opts in [shipped_opts(&config), String::new()] {
        // Release builds filter system calls with kill by default; this
        // debug build is told to, as an administrator could in the file.
        let opts = format!("{opts} --seccomp kill");
        let (program, args) = command_line(&exec, &opts);
        assert_eq!(program, INSTALLED_HELPER);
        let what = format!("opts [{opts}]");
        let daemon = Activated::start(
            &[],
            &dir.path().join("pr.sock"),
            env!("CARGO_BIN_EXE_qemu-pr-helper"),
            &args,
        );
        daemon.serves(&what);
        let log = daemon.stop(&what);
        if !opts.trim_start().starts_with("--seccomp") {
            assert!(
                log.contains("the configuration file's socket is not used"),
                "{log}"
            );
        }
    }
}

/// `Name:\tVALUE` from `/proc/PID/status`.
fn proc_status(pid: i32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The unit with the multipath drop-in, as installed: root starts the
/// drop-in's `ExecStart` (with the shipped options) under the bounding set
/// the unit and the drop-in allow together (`setpriv` stands in for
/// systemd there), once the package's system user exists (created as the
/// package creates it: `systemd-sysusers` on the shipped sysusers.d file).
/// It must serve; the daemon must then run as that user, in group disk,
/// with CAP_SYS_RAWIO alone, and its multipathd relay as root with nothing.
#[test]
fn the_multipath_dropin_serves_as_installed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root (the drop-in starts the daemon as root) ***");
        return;
    }
    if missing("systemd-socket-activate") || missing("setpriv") || missing("systemd-sysusers") {
        return;
    }
    let sysusers = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/qemu-pr-helper-rs.sysusers");
    let created = Command::new("systemd-sysusers")
        .arg(&sysusers)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let dropin = "qemu-pr-helper-rs-multipath.conf";
    let execs = unit_values(dropin, "ExecStart");
    assert_eq!(execs.len(), 2, "ExecStart= resets the unit's, then one");
    assert_eq!(execs[0], "", "the unit's ExecStart is reset first");
    assert_eq!(unit_values(dropin, "DynamicUser"), ["no"]);
    assert_eq!(unit_values(dropin, "PrivateNetwork"), ["no"]);
    // systemd merges CapabilityBoundingSet= lines.
    let mut bounding: Vec<String> =
        unit_values("qemu-pr-helper-rs.service", "CapabilityBoundingSet")
            .into_iter()
            .chain(unit_values(dropin, "CapabilityBoundingSet"))
            .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect();
    bounding.sort();
    bounding.dedup();
    let setpriv_bounding = std::iter::once("-all".to_string())
        .chain(
            bounding
                .iter()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("qemu-pr-helper.toml");
    std::fs::write(&config, unit("qemu-pr-helper.toml")).unwrap();
    let opts = format!("{} --seccomp kill", shipped_opts(&config));
    let (program, args) = command_line(&execs[1], &opts);
    assert_eq!(program, INSTALLED_HELPER);
    let daemon = Activated::start(
        &["setpriv", "--bounding-set", &setpriv_bounding, "--"],
        &dir.path().join("pr.sock"),
        env!("CARGO_BIN_EXE_qemu-pr-helper"),
        &args,
    );
    daemon.serves("multipath drop-in");
    let pid = daemon.pid();
    let disk_gid = nix::unistd::Group::from_name("disk")
        .unwrap()
        .expect("a disk group")
        .gid
        .as_raw();
    let user = nix::unistd::User::from_name("qemu-pr-helper")
        .unwrap()
        .expect("the package's system user");
    assert_eq!(user.gid.as_raw(), disk_gid, "its primary group is disk");
    assert_eq!(user.shell, Path::new("/usr/sbin/nologin"));
    assert_eq!(user.dir, Path::new("/nonexistent"));
    assert!(user.uid.as_raw() < 1000, "a system user: {}", user.uid);
    assert_eq!(
        proc_status(pid, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec![user.uid.to_string(); 4],
        "the daemon runs as the package's user, which no other process shares"
    );
    assert_eq!(
        proc_status(pid, "Gid").split_whitespace().next(),
        Some(disk_gid.to_string().as_str()),
        "the daemon runs in group disk"
    );
    // CAP_SYS_RAWIO (bit 17) and nothing else, bounding set included.
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(proc_status(pid, set), "0000000000020000", "{set}");
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let relay: i32 = children
        .split_whitespace()
        .next()
        .expect("the multipathd relay runs")
        .parse()
        .unwrap();
    assert_eq!(
        proc_status(relay, "Uid").split_whitespace().next(),
        Some("0")
    );
    assert_eq!(proc_status(relay, "CapPrm"), "0000000000000000");
    daemon.stop("multipath drop-in");
}

/// The PR ioctl drop-in, as installed: its `ExecStart` with the shipped
/// options, started as systemd starts it with the unit's `DynamicUser=`
/// (an unprivileged user: `setpriv` stands in) and the bounding and ambient
/// sets the unit and the drop-in leave together (empty). It must serve, and
/// the daemon must hold nothing: CapEff, CapPrm, CapBnd and CapAmb all 0.
#[test]
fn the_pr_ioctl_dropin_serves_with_no_capability() {
    let dropin = "qemu-pr-helper-rs-pr-ioctl.conf";
    let execs = unit_values(dropin, "ExecStart");
    assert_eq!(execs.len(), 2, "ExecStart= resets the unit's, then one");
    assert_eq!(execs[0], "", "the unit's ExecStart is reset first");
    assert!(execs[1].contains("--executor pr_ioctl"), "{}", execs[1]);
    // An empty assignment resets what the unit gives: nothing is left.
    assert_eq!(unit_values(dropin, "AmbientCapabilities"), [""]);
    assert_eq!(unit_values(dropin, "CapabilityBoundingSet"), [""]);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root (to start the daemon as another user) ***");
        return;
    }
    if missing("systemd-socket-activate") || missing("setpriv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The unprivileged user creates the socket there.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let config = dir.path().join("qemu-pr-helper.toml");
    std::fs::write(&config, unit("qemu-pr-helper.toml")).unwrap();
    let opts = format!("{} --seccomp kill", shipped_opts(&config));
    let (program, args) = command_line(&execs[1], &opts);
    assert_eq!(program, INSTALLED_HELPER);
    let daemon = Activated::start(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--",
        ],
        &dir.path().join("pr.sock"),
        env!("CARGO_BIN_EXE_qemu-pr-helper"),
        &args,
    );
    daemon.serves("PR ioctl drop-in");
    let pid = daemon.pid();
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some("65534")
    );
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, set), "0000000000000000", "{set}");
    }
    let log = daemon.stop("PR ioctl drop-in");
    assert!(
        log.contains("commands run through the block layer's PR ioctls"),
        "{log}"
    );
}

/// The same executor started as root (the multipath drop-in's way, with
/// kind = "pr_ioctl"): the daemon drops CAP_SYS_RAWIO too and ends with
/// nothing, its multipathd relay root's uid with nothing either.
#[test]
fn pr_ioctl_as_root_drops_every_capability() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: needs root ***");
        return;
    }
    if missing("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = ["--executor", "pr_ioctl", "--seccomp", "kill"]
        .map(String::from)
        .to_vec();
    let daemon = Activated::start(
        &[],
        &dir.path().join("pr.sock"),
        env!("CARGO_BIN_EXE_qemu-pr-helper"),
        &args,
    );
    daemon.serves("pr_ioctl as root");
    let pid = daemon.pid();
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, set), "0000000000000000", "{set}");
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let relay: i32 = children
        .split_whitespace()
        .next()
        .expect("the multipathd relay runs")
        .parse()
        .unwrap();
    assert_eq!(
        proc_status(relay, "Uid").split_whitespace().next(),
        Some("0")
    );
    assert_eq!(proc_status(relay, "CapPrm"), "0000000000000000");
    daemon.stop("pr_ioctl as root");
}
