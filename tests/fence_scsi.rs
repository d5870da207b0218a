// SPDX-License-Identifier: GPL-2.0-or-later
//! The real `fence_scsi` (Debian's fence-agents) with `qemu-pr-client` as its
//! `sg_persist`, against the emulated device: unfence (register and reserve),
//! status, fence another node (PREEMPT AND ABORT), and unfence again. This is
//! what a cluster does with a shared disk, so the client must print and exit
//! as sg_persist does for fence_scsi to read it.
//!
//! It needs root (a block device node for fence_scsi's check, a private
//! mount of /run for the key file fence_scsi keeps there). Where fence_scsi
//! is not installed, or not root, this test prints SKIPPED and checks
//! nothing; `.ci/run` installs it and sets `REQUIRE_FENCE_SCSI=1`, which turns
//! its absence into a failure.

mod common;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{our_helper, text, Helper};

const FENCE_SCSI: &str = "/usr/sbin/fence_scsi";

/// The reason this test cannot run here, if any.
fn cannot_run() -> Option<String> {
    if !Path::new(FENCE_SCSI).exists() {
        return Some(format!(
            "{FENCE_SCSI} is not installed (apt-get install fence-agents-scsi, or \
             fence-agents on older releases)"
        ));
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: fence_scsi needs a block device and writes to /run".into());
    }
    None
}

fn skipped(why: &str) {
    if std::env::var_os("REQUIRE_FENCE_SCSI").is_some() {
        panic!("REQUIRE_FENCE_SCSI is set but the fence_scsi test cannot run: {why}");
    }
    eprintln!("\n*** SKIPPED: {why}; the fence_scsi test checked nothing ***\n");
}

/// A block device node of our own (the loop driver's first minor): the
/// emulated device knows a unit by the node's `(st_dev, st_ino)`, so this
/// unit is this test's alone, and no data on the device is ever touched.
fn block_node(dir: &Path) -> Result<PathBuf, String> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let path = dir.join("disk");
    mknod(
        &path,
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        makedev(7, 0),
    )
    .map_err(|e| format!("cannot make a block device node: {e}"))?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| format!("cannot open a loop device node (7:0): {e}"))?;
    Ok(path)
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Each step's exit status and output, from lines `@@ NAME rc=N`.
fn steps(out: &str) -> Vec<(String, i32, String)> {
    let mut all: Vec<(String, i32, String)> = Vec::new();
    let mut text = String::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("@@ ") {
            let (name, rc) = rest.rsplit_once(" rc=").unwrap();
            all.push((name.into(), rc.parse().unwrap(), std::mem::take(&mut text)));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    all
}

#[test]
fn fence_scsi_unfences_fences_and_reads_status_through_the_client() {
    if let Some(why) = cannot_run() {
        return skipped(&why);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = match block_node(d) {
        Ok(p) => p,
        Err(why) => return skipped(&why),
    };
    // One initiator per session, so that each node's fence_scsi runs (each
    // sg_persist a process of its own) are one I_T nexus.
    let config = d.join("emulated.toml");
    std::fs::write(
        &config,
        "[executor]\nkind = \"emulated\"\ninitiator = \"session\"\n",
    )
    .unwrap();
    let helper = Helper::start(&our_helper(), &["-c", config.to_str().unwrap()]);
    let client = format!(
        "{} --emulated --socket {}",
        env!("CARGO_BIN_EXE_qemu-pr-client"),
        helper.socket.display()
    );
    let calls = d.join("calls");
    // fence_scsi's sg_persist: the client, each command line recorded.
    script(
        &d.join("sg_persist"),
        &format!(
            "echo \"sg_persist $*\" >> {}\nexec {client} \"$@\"\n",
            calls.display()
        ),
    );
    // fence_scsi runs sg_turs before each command so that a pending unit
    // attention does not fail it; the helper runs only PR commands, so a
    // READ KEYS stands in and takes the unit attention the same way.
    script(
        &d.join("sg_turs"),
        &format!("{client} -n -i -k \"$1\" >/dev/null 2>&1\nexit 0\n"),
    );
    let fence = format!(
        "{FENCE_SCSI} -d {} --sg_persist-path={} --sg_turs-path={}",
        disk.display(),
        d.join("sg_persist").display(),
        d.join("sg_turs").display()
    );
    let step = |name: &str, cmd: &str| format!("{cmd} 2>&1; echo \"@@ {name} rc=$?\"\n");
    // Node A is this script's session; node B a session of its own. /run is
    // a private tmpfs, where fence_scsi keeps the node's key.
    let node_b = format!(
        "{}{}",
        step("B on", &format!("{fence} -o on -k def")),
        step("B off A", &format!("{fence} -o off -k abc"))
    );
    let body = [
        "mount -t tmpfs tmpfs /run || exit 99\n".to_string(),
        step("A on", &format!("{fence} -o on -k abc")),
        step("A status", &format!("{fence} -o status -k abc")),
        step("B", &format!("setsid -w sh -c '{node_b}'")),
        step("A status fenced", &format!("{fence} -o status -k abc")),
        step(
            "keys fenced",
            &format!("{client} -n -i -k {}", disk.display()),
        ),
        step(
            "reservation",
            &format!("{client} -n -i -r {}", disk.display()),
        ),
        step("A on again", &format!("{fence} -o on -k abc")),
        step("A status again", &format!("{fence} -o status -k abc")),
        step(
            "keys again",
            &format!("{client} -n -i -k {}", disk.display()),
        ),
    ]
    .concat();
    script(&d.join("scenario"), &body);
    let out = Command::new("setsid")
        .args(["-w", "unshare", "--mount", "--propagation", "private"])
        .arg(d.join("scenario"))
        .output()
        .unwrap();
    let all = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{all}{}", text(&out.stderr));
    let got = steps(&all);
    let names: Vec<&str> = got.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "A on",
            "A status",
            "B on",
            "B off A",
            "B",
            "A status fenced",
            "keys fenced",
            "reservation",
            "A on again",
            "A status again",
            "keys again"
        ],
        "{all}"
    );
    let find = |name: &str| got.iter().find(|s| s.0 == name).unwrap();
    let expect = |name: &str, rc: i32, line: &str| {
        let (_, got_rc, out) = find(name);
        assert_eq!(*got_rc, rc, "{name}: {out}\n{all}");
        assert!(out.contains(line), "{name}: want {line:?} in {out:?}");
    };
    expect("A on", 0, "Success: Powered ON");
    expect("A status", 0, "Status: ON");
    expect("B on", 0, "Success: Powered ON");
    expect("B off A", 0, "Success: Powered OFF");
    // Fenced: A's key is gone (fence agents exit 2 for OFF).
    expect("A status fenced", 2, "Status: OFF");
    assert_eq!(
        find("keys fenced").2,
        "  PR generation=0x3, 1 registered reservation key follows:\n    0xdef\n"
    );
    // PREEMPT AND ABORT of the holder moved the reservation to B.
    assert_eq!(
        find("reservation").2,
        "  PR generation=0x3, Reservation follows:\n    Key=0xdef\n    scope: LU_SCOPE,  \
         type: Write Exclusive, registrants only\n"
    );
    expect("A on again", 0, "Success: Powered ON");
    expect("A status again", 0, "Status: ON");
    let keys = &find("keys again").2;
    assert!(
        keys.contains("2 registered reservation keys follow:\n    0xdef\n    0xabc\n"),
        "{keys}"
    );

    // What fence_scsi ran: sg_persist's options, the client answering.
    let calls = std::fs::read_to_string(&calls).unwrap();
    let dev = disk.display();
    for line in [
        format!("sg_persist -n -i -k -d {dev}"),
        format!("sg_persist -n -i -r -d {dev}"),
        format!("sg_persist -n -o -I -S abc -d {dev}"),
        format!("sg_persist -n -o -R -T 5 -K abc -d {dev}"),
        format!("sg_persist -n -o -I -S def -d {dev}"),
        format!("sg_persist -n -o -A -T 5 -K def -S abc -d {dev}"),
    ] {
        assert!(calls.lines().any(|l| l == line), "{line:?} not in\n{calls}");
    }
    eprintln!("fence_scsi ran:\n{calls}");
}
