// SPDX-License-Identifier: GPL-2.0-or-later
//! The PR ioctl executor on a real block device: a loop device, whose driver
//! has no PR operations, so every ioctl that reaches it fails the way a
//! device without PR support makes it fail. That shows the whole way from
//! the socket to the kernel and back under `--seccomp kill`, and what `auto`
//! decides when the ioctls do not work; the answers of a device that takes
//! them are the real-device tier's (LIO on Linux 7.2).
//!
//! Needs root (losetup); skipped otherwise.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{params, pr_in, pr_out, Helper};

/// A loop device over a temporary file, detached on drop.
struct Loop {
    device: PathBuf,
    _backing: tempfile::NamedTempFile,
}

impl Loop {
    fn attach() -> Option<Loop> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("*** SKIPPED: needs root (losetup) ***");
            return None;
        }
        let backing = tempfile::NamedTempFile::new().unwrap();
        backing.as_file().set_len(1 << 20).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(backing.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Loop {
                device: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
                _backing: backing,
            }),
            _ => {
                eprintln!("*** SKIPPED: no loop device ***");
                None
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn helper(extra: &[&str], dir: tempfile::TempDir, as_nobody: bool) -> Helper {
    let socket = dir.path().join("pr.sock");
    Helper::spawn(
        dir,
        socket,
        Path::new(env!("CARGO_BIN_EXE_qemu-pr-helper")),
        extra,
        |c| {
            if as_nobody {
                c.uid(65534).gid(65534);
            }
        },
    )
}

/// A directory an unprivileged daemon may create its socket in.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

#[test]
fn pr_ioctl_refuses_what_it_cannot_carry_and_reports_what_the_kernel_says() {
    let Some(lo) = Loop::attach() else {
        return;
    };
    let disk = common::open_rw(&lo.device);
    let fd = disk.as_raw_fd();
    let h = helper(
        &["--executor", "pr_ioctl"],
        tempfile::tempdir().unwrap(),
        false,
    );
    let mut c = h.connect().negotiate();

    // Refused before any ioctl: READ FULL STATUS, pointing at the service
    // action (CDB byte 1, bit 4).
    let r = c.command(&pr_in(3, 8192), fd, &[]).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code(), (5, 0x24, 0));
    assert_eq!(&r.sense[15..18], &[0xcc, 0, 1]);
    // ALL_TG_PT on REGISTER: parameter list byte 20, bit 2.
    let mut list = params(0, 0x1234);
    list[20] = 0x05;
    let r = c.command(&pr_out(0, 0, 24), fd, &list).unwrap();
    assert_eq!(r.sense_code(), (5, 0x26, 0));
    assert_eq!(&r.sense[15..18], &[0x8a, 0, 20]);

    // Reaches the kernel: the loop driver has no PR operations
    // (EOPNOTSUPP), which a device without PR support answers as
    // INVALID COMMAND OPERATION CODE.
    let mut list = params(0, 0x1234);
    list[20] = 0x01;
    let r = c.command(&pr_out(0, 0, 24), fd, &list).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code(), (5, 0x20, 0));
    // READ KEYS: before Linux 6.19 the loop driver answers the unknown
    // ioctl with EINVAL, from 6.19 the block layer with EOPNOTSUPP; either
    // way an ILLEGAL REQUEST, never data.
    let r = c.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(r.status, 2);
    assert_eq!(r.sense_code().0, 5);
    assert!(r.payload.is_empty());

    let log = h.log();
    assert!(log.contains("first command on this device"), "{log}");
    assert!(log.contains("executor=\"pr_ioctl\""), "{log}");
    assert!(
        log.contains("the PR ioctls do not work on this device"),
        "{log}"
    );
}

#[test]
fn auto_without_cap_sys_rawio_probes_and_says_why_it_takes_sg_io() {
    let Some(lo) = Loop::attach() else {
        return;
    };
    let disk = common::open_rw(&lo.device);
    let h = helper(&["--executor", "auto"], open_dir(), true);
    let mut c = h.connect().negotiate();
    // The kernel refuses SG_IO of PR commands without CAP_SYS_RAWIO, and a
    // loop device takes no SCSI command anyway: an error, whatever it is.
    let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.status, 2);
    let log = h.log();
    assert!(
        log.contains("without CAP_SYS_RAWIO, commands run through the block layer's PR ioctls"),
        "{log}"
    );
    assert!(log.contains("executor=\"sg_io\""), "{log}");
    // The loop driver has no PR operations: EOPNOTSUPP from Linux 6.19,
    // EINVAL for the unknown ioctl before.
    assert!(
        log.contains("IOC_PR_READ_RESERVATION is refused") || log.contains("has no PR operations"),
        "{log}"
    );
}

#[test]
fn auto_with_cap_sys_rawio_is_sg_io_without_a_probe() {
    let Some(lo) = Loop::attach() else {
        return;
    };
    let disk = common::open_rw(&lo.device);
    let h = helper(&[], tempfile::tempdir().unwrap(), false);
    let mut c = h.connect().negotiate();
    let _ = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
    let log = h.log();
    assert!(
        log.contains("auto: the helper holds CAP_SYS_RAWIO"),
        "{log}"
    );
    assert!(!log.contains("IOC_PR_READ_RESERVATION"), "{log}");
}

#[test]
fn sg_io_on_a_disk_that_is_not_scsi_is_explained_once_at_info() {
    use std::os::unix::fs::MetadataExt;
    let Some(lo) = Loop::attach() else {
        return;
    };
    let disk = common::open_rw(&lo.device);
    let rdev = disk.metadata().unwrap().rdev();
    let device = format!(
        "device={}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let h = helper(
        &["--executor", "sg_io"],
        tempfile::tempdir().unwrap(),
        false,
    );
    let mut c = h.connect().negotiate();
    for _ in 0..2 {
        let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
        assert_eq!(r.status, 2, "a loop device takes no SCSI command");
    }
    let r = c
        .command(&pr_out(0, 0, 24), disk.as_raw_fd(), &params(0, 0x1234))
        .unwrap();
    assert_eq!(r.status, 2);
    let log = h.log();
    let explained: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("not a SCSI device"))
        .collect();
    assert_eq!(explained.len(), 1, "once per device: {log}");
    let line = explained[0];
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(&device), "{line}");
    assert!(line.contains("--executor pr_ioctl"), "{line}");
}
