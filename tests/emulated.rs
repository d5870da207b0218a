// SPDX-License-Identifier: GPL-2.0-or-later
//! The real binary with `--emulate`: two QEMU-like clients share a regular
//! file as a disk and run the cluster sequences of `common::cluster` over
//! the wire, raw bytes only.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;

use common::*;

use cluster::{out, Nexus, Outcome, Stage, CHECK_CONDITION, GOOD, WERO};

fn keys(r: &Reply) -> Vec<u64> {
    r.payload[8..]
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

/// One QEMU-like client of the shared disk: raw bytes on its own
/// connection.
struct Wire {
    client: Client,
    fd: i32,
}

impl Wire {
    fn new(h: &Helper, disk: &File) -> Wire {
        Wire {
            client: h.connect().negotiate(),
            fd: disk.as_raw_fd(),
        }
    }

    fn command(&mut self, cdb: &[u8], data: &[u8]) -> Reply {
        self.client.command(cdb, self.fd, data).unwrap()
    }
}

fn outcome(r: &Reply) -> Outcome {
    let status = u8::try_from(r.status).unwrap();
    Outcome {
        status,
        sense: (status == CHECK_CONDITION).then(|| r.sense_code()),
    }
}

impl Nexus for Wire {
    fn pr_out(&mut self, sa: u8, rtype: u8, key: u64, sa_key: u64) -> Outcome {
        let r = self.command(&pr_out(sa, rtype, 24), &params(key, sa_key));
        assert!(r.payload.is_empty());
        outcome(&r)
    }

    fn read_keys(&mut self) -> Result<Vec<u64>, Outcome> {
        let r = self.command(&pr_in(0, 64), &[]);
        match outcome(&r) {
            Outcome::GOOD => Ok(keys(&r)),
            other => Err(other),
        }
    }

    fn holder(&mut self) -> Option<(u64, u8)> {
        let r = self.command(&pr_in(1, 64), &[]);
        assert_eq!(outcome(&r), Outcome::GOOD);
        (r.payload.len() >= 24).then(|| {
            (
                u64::from_be_bytes(r.payload[8..16].try_into().unwrap()),
                r.payload[21],
            )
        })
    }
}

/// fence_scsi over the wire, and what only the wire shows: a READ KEYS cut
/// to its allocation length, READ RESERVATION's bytes, REPORT
/// CAPABILITIES, an invalid release's sense.
#[test]
fn fence_scsi_over_the_wire() {
    let h = Helper::emulated();
    let f = h.disk();
    let (mut a, mut b) = (Wire::new(&h, &f), Wire::new(&h, &f));
    cluster::fence_scsi(&mut a, &mut b, |stage, a, b| match stage {
        Stage::Reserved => {
            // READ KEYS with room for one key: cut, ADDITIONAL LENGTH says two.
            let r = b.command(&pr_in(0, 16), &[]);
            assert_eq!(r.status, u32::from(GOOD));
            assert_eq!(r.payload.len(), 16);
            assert_eq!(&r.payload[..8], &[0, 0, 0, 2, 0, 0, 0, 16]);
            assert_eq!(keys(&r), vec![0x1_0000_0001]);
            // READ RESERVATION: exactly the header and one descriptor.
            assert_eq!(b.command(&pr_in(1, 64), &[]).payload.len(), 24);
        }
        Stage::Fenced => {}
        Stage::Back => {
            // REPORT CAPABILITIES as LIO reports it.
            let r = a.command(&pr_in(2, 8), &[]);
            assert_eq!(r.payload, vec![0x00, 0x08, 0x1d, 0x90, 0xea, 0x01, 0, 0]);
            // A RELEASE with the wrong type is an invalid release.
            let wrong = a.pr_out(out::RELEASE, 0x1, 0x1_0000_0001, 0);
            assert_eq!(wrong.sense, Some((0x5, 0x26, 0x04)));
        }
    });
}

/// Failover clustering's arbitration over the wire.
#[test]
fn failover_cluster_challenge_takeover_and_defence() {
    let h = Helper::emulated();
    let f = h.disk();
    let (mut owner, mut challenger) = (Wire::new(&h, &f), Wire::new(&h, &f));
    cluster::failover(&mut owner, &mut challenger, |_, _, _| {});
}

/// A node whose connection drops keeps its registration (it is persistent);
/// the survivor fences it with PREEMPT AND ABORT, as fence_scsi does.
#[test]
fn a_crashed_node_keeps_its_key_until_the_survivor_fences_it() {
    let h = Helper::emulated();
    let f = h.disk();
    let (mut a, mut b) = (Wire::new(&h, &f), Wire::new(&h, &f));
    a.expect(Outcome::GOOD, out::REGISTER, 0, 0, 0xa);
    b.expect(Outcome::GOOD, out::REGISTER, 0, 0, 0xb);
    a.expect(Outcome::GOOD, out::RESERVE, WERO, 0xa, 0);
    drop(a); // node A crashes
    assert_eq!(b.keys(), vec![0xa, 0xb]);
    b.expect(Outcome::GOOD, out::PREEMPT_AND_ABORT, WERO, 0xb, 0xa);
    assert_eq!(b.keys(), vec![0xb]);
    assert_eq!(b.holder(), Some((0xb, WERO)));
}
