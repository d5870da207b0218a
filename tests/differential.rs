// SPDX-License-Identifier: GPL-2.0-or-later
//! The same requests against Debian's C `qemu-pr-helper` and ours: both must
//! answer alike, byte for byte, and close the same connections.
//!
//! Only cases that need no SCSI hardware run here; the real-device tier
//! compares the two helpers on a real logical unit. Where the C helper is not
//! installed this test prints SKIPPED and checks nothing; `.ci/run` installs it
//! and sets `REQUIRE_C_HELPER=1`, which turns its absence into a failure.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use common::*;

const C_HELPER: &str = "/usr/bin/qemu-pr-helper";

/// What a client saw: each reply's bytes, or that the connection was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Reply(Reply),
    Closed,
}

/// Files every case may send, created fresh per helper.
struct Fds {
    rw: File,
    ro: File,
    null: File,
    pipe: (OwnedFd, OwnedFd),
    sock: (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ),
    dir: File,
}

impl Fds {
    fn new(dir: &Path) -> Fds {
        let disk = dir.join("disk.img");
        File::create(&disk)
            .unwrap()
            .write_all(&[0u8; 4096])
            .unwrap();
        Fds {
            rw: open_rw(&disk),
            ro: File::open(&disk).unwrap(),
            null: open_rw("/dev/null"),
            pipe: nix::unistd::pipe().unwrap(),
            sock: std::os::unix::net::UnixStream::pair().unwrap(),
            dir: File::open(dir).unwrap(),
        }
    }
}

type Step = fn(&mut Client, &Fds) -> Seen;

fn reply_or_closed(c: &mut Client) -> Seen {
    match c.read_reply() {
        Some(r) => Seen::Reply(r),
        None => Seen::Closed,
    }
}

fn cmd(c: &mut Client, cdb: &[u8], fd: RawFd, data: &[u8]) -> Seen {
    c.send_request(cdb, &[fd], data);
    reply_or_closed(c)
}

/// Every case: a name and the steps run on one negotiated connection.
fn cases() -> Vec<(&'static str, Vec<Step>)> {
    vec![
        (
            "PR IN READ KEYS on a regular file",
            vec![|c, f| cmd(c, &pr_in(0, 64), f.rw.as_raw_fd(), &[])],
        ),
        (
            "PR IN on /dev/null",
            vec![|c, f| cmd(c, &pr_in(1, 64), f.null.as_raw_fd(), &[])],
        ),
        (
            "PR IN on a pipe",
            vec![|c, f| cmd(c, &pr_in(0, 64), f.pipe.0.as_raw_fd(), &[])],
        ),
        (
            "PR IN on a socket",
            vec![|c, f| cmd(c, &pr_in(0, 64), f.sock.0.as_raw_fd(), &[])],
        ),
        (
            "PR IN on a directory",
            vec![|c, f| cmd(c, &pr_in(0, 64), f.dir.as_raw_fd(), &[])],
        ),
        (
            "PR IN allocation length 0",
            vec![|c, f| cmd(c, &pr_in(0, 0), f.rw.as_raw_fd(), &[])],
        ),
        (
            "PR IN allocation length 8192",
            vec![|c, f| cmd(c, &pr_in(3, 8192), f.rw.as_raw_fd(), &[])],
        ),
        (
            "PR IN unknown service action",
            vec![|c, f| cmd(c, &pr_in(0x1f, 64), f.rw.as_raw_fd(), &[])],
        ),
        (
            "PR OUT REGISTER on a read-only fd",
            vec![|c, f| cmd(c, &pr_out(0, 0, 24), f.ro.as_raw_fd(), &params(0, 1))],
        ),
        (
            "PR OUT RESERVE on a read-only fd",
            vec![|c, f| cmd(c, &pr_out(1, 5, 24), f.ro.as_raw_fd(), &params(1, 0))],
        ),
        (
            "PR OUT REGISTER on a regular file",
            vec![|c, f| cmd(c, &pr_out(0, 0, 24), f.rw.as_raw_fd(), &params(0, 1))],
        ),
        (
            "PR OUT with an empty parameter list",
            vec![|c, f| cmd(c, &pr_out(3, 0, 0), f.rw.as_raw_fd(), &[])],
        ),
        (
            "PR OUT parameter list 8192",
            vec![|c, f| cmd(c, &pr_out(0, 0, 8192), f.rw.as_raw_fd(), &[0u8; 8192])],
        ),
        (
            "two commands on one connection",
            vec![
                |c, f| cmd(c, &pr_in(0, 8), f.rw.as_raw_fd(), &[]),
                |c, f| cmd(c, &pr_out(2, 1, 24), f.ro.as_raw_fd(), &params(1, 0)),
            ],
        ),
        (
            "opcode INQUIRY",
            vec![|c, f| {
                c.send_request(&[0x12, 0, 0, 0, 96, 0], &[f.rw.as_raw_fd()], &[]);
                reply_or_closed(c)
            }],
        ),
        (
            "PR IN allocation length 8193",
            vec![|c, f| {
                c.send_request(&pr_in(0, 8193), &[f.rw.as_raw_fd()], &[]);
                reply_or_closed(c)
            }],
        ),
        (
            "PR OUT parameter list 8193",
            vec![|c, f| {
                c.send_request(&pr_out(0, 0, 8193), &[f.rw.as_raw_fd()], &[]);
                reply_or_closed(c)
            }],
        ),
        (
            "no fd",
            vec![|c, _| {
                c.send_request(&pr_in(0, 64), &[], &[]);
                reply_or_closed(c)
            }],
        ),
        (
            "two fds",
            vec![|c, f| {
                c.send_request(&pr_in(0, 64), &[f.rw.as_raw_fd(), f.ro.as_raw_fd()], &[]);
                reply_or_closed(c)
            }],
        ),
        (
            "EOF in the middle of the CDB",
            vec![|c, f| {
                c.send_with_fds(&[0x5e, 0, 0, 0], &[f.rw.as_raw_fd()]);
                c.stream.shutdown(std::net::Shutdown::Write).unwrap();
                reply_or_closed(c)
            }],
        ),
        (
            "EOF in the middle of the parameter list",
            vec![|c, f| {
                c.send_request(&pr_out(0, 0, 24), &[f.rw.as_raw_fd()], &[0u8; 12]);
                c.stream.shutdown(std::net::Shutdown::Write).unwrap();
                reply_or_closed(c)
            }],
        ),
    ]
}

/// Runs every case against the helper at `binary`; returns what was seen.
fn observe(binary: &Path) -> Vec<(&'static str, Vec<Seen>)> {
    let h = Helper::start(binary, &[]);
    let fds = Fds::new(h.dir.path());
    let mut out = Vec::new();
    for (name, steps) in cases() {
        let mut c = h.connect().negotiate();
        let seen = steps.iter().map(|step| step(&mut c, &fds)).collect();
        out.push((name, seen));
    }
    // Negotiation itself, and a client asking for a feature.
    let mut c = h.connect();
    let features = c.read_features();
    c.stream.write_all(&[0, 0, 0, 1]).unwrap();
    let verdict = reply_or_closed(&mut c);
    out.push((
        "features word",
        vec![Seen::Reply(Reply {
            status: u32::from_be_bytes(features),
            sense: Vec::new(),
            payload: Vec::new(),
        })],
    ));
    out.push(("feature bit 0 requested", vec![verdict]));
    out
}

fn c_helper() -> Option<PathBuf> {
    let p = PathBuf::from(C_HELPER);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("REQUIRE_C_HELPER").is_some() {
        panic!("REQUIRE_C_HELPER is set but {C_HELPER} is missing");
    }
    eprintln!(
        "\n*** SKIPPED: {C_HELPER} is not installed (apt-get install qemu-system-common); \
         the differential test checked nothing ***\n"
    );
    None
}

#[test]
fn ours_answers_like_the_c_helper() {
    let Some(c) = c_helper() else { return };
    let theirs = observe(&c);
    let ours = observe(&our_helper());
    let mut differences = Vec::new();
    for ((name, t), (_, o)) in theirs.iter().zip(&ours) {
        if t != o {
            differences.push(format!("{name}:\n  C helper: {t:?}\n  ours:     {o:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    println!("{} cases answered alike", theirs.len());
}

/// The intentional differences, checked so that docs/deployments.md stays true.
#[test]
fn documented_differences_from_the_c_helper() {
    let Some(c) = c_helper() else { return };
    // PARAMETER LIST LENGTH is 32 bits (CDB bytes 5..8); the C helper reads
    // only bytes 7..8 and so runs a command whose real length is 65560.
    let case: Step = |c, f| {
        c.send_request(
            &pr_out(0, 0, 0x0001_0018),
            &[f.rw.as_raw_fd()],
            &params(0, 1),
        );
        reply_or_closed(c)
    };
    for (binary, expect_closed) in [(c, false), (our_helper(), true)] {
        let h = Helper::start(&binary, &[]);
        let fds = Fds::new(h.dir.path());
        let mut client = h.connect().negotiate();
        let seen = case(&mut client, &fds);
        assert_eq!(
            seen == Seen::Closed,
            expect_closed,
            "{}: {seen:?}",
            binary.display()
        );
    }
}
