// SPDX-License-Identifier: GPL-2.0-or-later
//! Device faults on the emulated device, through the real binary: each
//! `[[executor.fault]]` gives the status and sense `docs/protocol.md` gives for
//! the SG_IO outcome it stands for, a device that never answers holds up only
//! its own client, and nothing leaks.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const GOOD: u32 = 0x00;
const CHECK_CONDITION: u32 = 0x02;
const BUSY: u32 = 0x08;
const RESERVATION_CONFLICT: u32 = 0x18;
const TASK_SET_FULL: u32 = 0x28;

/// Disks made before the daemon starts (fault files are looked at then).
struct Disks {
    dir: tempfile::TempDir,
}

impl Disks {
    fn new(names: &[&str]) -> Disks {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            std::fs::write(dir.path().join(name), [0u8; 512]).unwrap();
        }
        Disks { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn open(&self, name: &str) -> File {
        open_rw(self.path(name))
    }

    /// A config file with one `[[executor.fault]]` per `(disk, fault)`.
    fn config(&self, faults: &[(&str, &str)]) -> PathBuf {
        let mut toml = String::from("[executor]\nkind = \"emulated\"\n");
        for (disk, fault) in faults {
            toml += &format!(
                "[[executor.fault]]\npath = {:?}\nfault = \"{fault}\"\n",
                self.path(disk)
            );
        }
        let path = self.path("helper.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }
}

fn start(config: &Path, extra: &[&str]) -> Helper {
    let mut args = vec!["-c", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Helper::start(&our_helper(), &args)
}

/// Fixed-format sense (key, ASC, ASCQ), for CHECK CONDITION answers.
type SenseKeyAscAscq = (u8, u8, u8);

#[test]
fn each_fault_gives_the_prescribed_status_and_sense() {
    let cases: &[(&str, u32, Option<SenseKeyAscAscq>)] = &[
        ("eio", CHECK_CONDITION, Some((0xb, 0x00, 0x06))),
        ("not_ready", CHECK_CONDITION, Some((0x2, 0x04, 0x00))),
        ("host_status:0x0e", CHECK_CONDITION, Some((0xb, 0x29, 0x07))),
        ("target_failure", CHECK_CONDITION, Some((0x4, 0x44, 0x00))),
        ("no_medium", CHECK_CONDITION, Some((0x2, 0x3a, 0x00))),
        ("reservation_conflict_errno", RESERVATION_CONFLICT, None),
        ("task_set_full", TASK_SET_FULL, None),
    ];
    let names: Vec<String> = cases.iter().map(|c| format!("{}.img", c.0)).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("healthy.img");
    let disks = Disks::new(&all);
    let faults: Vec<(&str, &str)> = cases
        .iter()
        .zip(&names)
        .map(|(c, n)| (n.as_str(), c.0))
        .collect();
    let h = start(&disks.config(&faults), &[]);
    let healthy = disks.open("healthy.img");
    h.still_serves(&healthy, "at start");
    let baseline = h.stable_fd_count();

    for ((fault, status, sense), name) in cases.iter().zip(&names) {
        let disk = disks.open(name);
        let mut c = h.connect().negotiate();
        // PR IN and PR OUT alike, and again: the fault is for ever.
        for _ in 0..2 {
            for r in [
                c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap(),
                c.command(&pr_out(6, 0, 24), disk.as_raw_fd(), &params(0, 7))
                    .unwrap(),
            ] {
                assert_eq!(r.status, *status, "{fault}");
                assert!(r.payload.is_empty(), "{fault}");
                match sense {
                    Some(code) => {
                        assert_eq!(r.sense[0], 0x70, "{fault}");
                        assert_eq!(r.sense[7], 10, "{fault}");
                        assert_eq!(r.sense_code(), *code, "{fault}");
                    }
                    None => assert!(r.sense.iter().all(|&b| b == 0), "{fault}"),
                }
            }
        }
        drop(c);
        h.still_serves(&healthy, fault);
    }
    assert_eq!(h.settle_fd_count(baseline), baseline, "fds leaked");
}

#[test]
fn a_unit_attention_is_reported_once_per_connection_then_commands_run() {
    let disks = Disks::new(&["reset.img"]);
    let h = start(&disks.config(&[("reset.img", "unit_attention")]), &[]);
    let disk = disks.open("reset.img");
    let fd = disk.as_raw_fd();
    let mut a = h.connect().negotiate();
    let mut b = h.connect().negotiate();

    let r = a.command(&pr_out(6, 0, 24), fd, &params(0, 0xa)).unwrap();
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense[0], 0x70);
    assert_eq!(r.sense_code(), (0x6, 0x29, 0x00));
    let r = a.command(&pr_out(6, 0, 24), fd, &params(0, 0xa)).unwrap();
    assert_eq!(r.status, GOOD);

    // B is another nexus: it sees the unit attention too, then A's key.
    let r = b.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(r.sense_code(), (0x6, 0x29, 0x00));
    let r = b.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(r.status, GOOD);
    assert_eq!(&r.payload[8..16], &0xau64.to_be_bytes());
}

#[test]
fn a_device_that_never_answers_delays_only_its_own_client() {
    let disks = Disks::new(&["dead.img", "healthy.img"]);
    let h = start(
        &disks.config(&[("dead.img", "timeout")]),
        &["--timeout", "500"],
    );
    let healthy = disks.open("healthy.img");
    h.still_serves(&healthy, "at start");
    let baseline = h.stable_fd_count();

    let dead = disks.open("dead.img");
    let mut slow = h.connect().negotiate();
    let began = Instant::now();
    slow.send_request(&pr_in(0, 64), &[dead.as_raw_fd()], &[]);
    let waiter = std::thread::spawn(move || {
        let r = slow.read_reply().unwrap();
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(50));

    // Started after the slow one, answered before it.
    let mut fast = h.connect().negotiate();
    let r = fast
        .command(&pr_in(0, 64), healthy.as_raw_fd(), &[])
        .unwrap();
    let fast_done = Instant::now();
    assert_eq!(r.status, GOOD);

    let (r, slow_done) = waiter.join().unwrap();
    assert_eq!(r.status, BUSY);
    assert!(r.payload.is_empty());
    assert!(
        slow_done.duration_since(began) >= Duration::from_millis(500),
        "BUSY after {:?}",
        slow_done.duration_since(began)
    );
    assert!(fast_done < slow_done, "the healthy client waited");

    drop(fast);
    h.still_healthy(&healthy, baseline, "after the device that never answers");
}

#[test]
fn sigterm_while_a_device_never_answers_exits_0_after_the_answer() {
    let disks = Disks::new(&["dead.img"]);
    let h = start(
        &disks.config(&[("dead.img", "timeout")]),
        &["--timeout", "500"],
    );
    let dead = disks.open("dead.img");
    let mut slow = h.connect().negotiate();
    let began = Instant::now();
    slow.send_request(&pr_in(0, 64), &[dead.as_raw_fd()], &[]);
    std::thread::sleep(Duration::from_millis(100));
    h.signal(nix::sys::signal::Signal::SIGTERM);

    let r = slow
        .read_reply()
        .expect("the command in flight is answered");
    assert_eq!(r.status, BUSY);
    assert!(began.elapsed() >= Duration::from_millis(500));
    let (code, log) = h.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn an_unknown_fault_name_is_refused_at_start() {
    let disks = Disks::new(&["a.img"]);
    let config = disks.config(&[("a.img", "slowly")]);
    let err = refused_at_start(&disks, &config);
    assert!(
        err.contains("\"slowly\"") && err.contains("unit_attention"),
        "{err}"
    );

    // A fault file that does not exist is refused too, naming it.
    let config = disks.config(&[("missing.img", "eio")]);
    let err = refused_at_start(&disks, &config);
    assert!(err.contains("missing.img"), "{err}");
}

/// Starting with `config` fails before the socket appears; what it said.
#[track_caller]
fn refused_at_start(disks: &Disks, config: &Path) -> String {
    let out = our_command()
        .arg("-k")
        .arg(disks.path("pr.sock"))
        .arg("-c")
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!disks.path("pr.sock").exists());
    text(&out.stderr)
}

#[test]
fn a_counted_fault_heals_after_that_many_commands() {
    let disks = Disks::new(&["flaky.img"]);
    let config = disks.config(&[("flaky.img", "eio")]);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml += "count = 2\n";
    std::fs::write(&config, toml).unwrap();
    let h = start(&config, &[]);
    let disk = disks.open("flaky.img");
    let mut c = h.connect().negotiate();
    for _ in 0..2 {
        let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
        assert_eq!(r.sense_code(), (0xb, 0x00, 0x06));
    }
    let r = c.command(&pr_in(0, 64), disk.as_raw_fd(), &[]).unwrap();
    assert_eq!(r.status, GOOD);
    assert_eq!(&r.payload[..8], &[0, 0, 0, 0, 0, 0, 0, 0]);
}
