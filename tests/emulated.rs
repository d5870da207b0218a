//! The real binary with `--emulate`: two QEMU-like clients share a regular
//! file as a disk and run a fencing sequence over the wire, raw bytes only.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;

use common::*;

const GOOD: u32 = 0x00;
const CHECK_CONDITION: u32 = 0x02;
const RESERVATION_CONFLICT: u32 = 0x18;
const WERO: u8 = 0x05;

fn disk(h: &Helper) -> File {
    let p = h.dir.path().join("shared.img");
    File::create(&p).unwrap().write_all(&[0u8; 4096]).unwrap();
    OpenOptions::new().read(true).write(true).open(&p).unwrap()
}

fn keys(r: &Reply) -> Vec<u64> {
    r.payload[8..]
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn two_clients_register_reserve_and_fence_over_the_wire() {
    let h = Helper::start(&our_helper(), &["--emulate"]);
    let f = disk(&h);
    let fd = f.as_raw_fd();
    let mut a = h.connect().negotiate();
    let mut b = h.connect().negotiate();

    // REGISTER AND IGNORE EXISTING KEY from both, RESERVE WERO from A.
    let r = a.command(&pr_out(6, 0, 24), fd, &params(0, 0xa)).unwrap();
    assert_eq!(r.status, GOOD);
    let r = b.command(&pr_out(6, 0, 24), fd, &params(0, 0xb)).unwrap();
    assert_eq!(r.status, GOOD);
    let r = a
        .command(&pr_out(1, WERO, 24), fd, &params(0xa, 0))
        .unwrap();
    assert_eq!(r.status, GOOD);

    // READ KEYS with room for one key: cut, ADDITIONAL LENGTH says two.
    let r = b.command(&pr_in(0, 16), fd, &[]).unwrap();
    assert_eq!(r.status, GOOD);
    assert_eq!(r.payload.len(), 16);
    assert_eq!(&r.payload[..8], &[0, 0, 0, 2, 0, 0, 0, 16]);
    assert_eq!(keys(&r), vec![0xa]);

    // READ RESERVATION: A's key, type WERO.
    let r = b.command(&pr_in(1, 64), fd, &[]).unwrap();
    assert_eq!(r.payload.len(), 24);
    assert_eq!(&r.payload[8..16], &0xau64.to_be_bytes());
    assert_eq!(r.payload[21], WERO);

    // A fences B with PREEMPT AND ABORT.
    let r = a
        .command(&pr_out(5, WERO, 24), fd, &params(0xa, 0xb))
        .unwrap();
    assert_eq!(r.status, GOOD);

    // B: unit attention once, then conflicts until it registers again.
    let r = b
        .command(&pr_out(1, WERO, 24), fd, &params(0xb, 0))
        .unwrap();
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x6, 0x2a, 0x05));
    let r = b
        .command(&pr_out(1, WERO, 24), fd, &params(0xb, 0))
        .unwrap();
    assert_eq!(r.status, RESERVATION_CONFLICT);
    let r = b.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(keys(&r), vec![0xa]);
    let r = b.command(&pr_out(6, 0, 24), fd, &params(0, 0xb)).unwrap();
    assert_eq!(r.status, GOOD);

    // REPORT CAPABILITIES as LIO reports it.
    let r = a.command(&pr_in(2, 8), fd, &[]).unwrap();
    assert_eq!(r.payload, vec![0x00, 0x08, 0x1d, 0x90, 0xea, 0x01, 0, 0]);

    // A RELEASE with the wrong type is an invalid release.
    let r = a.command(&pr_out(2, 0x1, 24), fd, &params(0xa, 0)).unwrap();
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x5, 0x26, 0x04));
}

fn holder(c: &mut Client, fd: i32) -> Option<(u64, u8)> {
    let r = c.command(&pr_in(1, 64), fd, &[]).unwrap();
    assert_eq!(r.status, GOOD);
    (r.payload.len() >= 24).then(|| {
        (
            u64::from_be_bytes(r.payload[8..16].try_into().unwrap()),
            r.payload[21],
        )
    })
}

/// Failover clustering's arbitration: the owner registers and reserves, a
/// challenger registers, takes the disk over with PREEMPT when the owner
/// stops defending, and a returning owner must defend by preempting back.
#[test]
fn failover_cluster_challenge_takeover_and_defence() {
    let h = Helper::start(&our_helper(), &["--emulate"]);
    let f = disk(&h);
    let fd = f.as_raw_fd();
    let mut owner = h.connect().negotiate();
    let mut challenger = h.connect().negotiate();

    assert_eq!(
        owner
            .command(&pr_out(6, 0, 24), fd, &params(0, 0x1))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(
        owner
            .command(&pr_out(1, WERO, 24), fd, &params(0x1, 0))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(
        challenger
            .command(&pr_out(6, 0, 24), fd, &params(0, 0x2))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(holder(&mut challenger, fd), Some((0x1, WERO)));

    // The challenger cannot simply reserve while the owner holds it.
    let r = challenger
        .command(&pr_out(1, WERO, 24), fd, &params(0x2, 0))
        .unwrap();
    assert_eq!(r.status, RESERVATION_CONFLICT);

    // Takeover: preempt the owner's key and take the reservation.
    let r = challenger
        .command(&pr_out(4, WERO, 24), fd, &params(0x2, 0x1))
        .unwrap();
    assert_eq!(r.status, GOOD);
    assert_eq!(holder(&mut challenger, fd), Some((0x2, WERO)));

    // The old owner comes back: told once, then refused until it registers.
    let r = owner.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(r.status, CHECK_CONDITION);
    assert_eq!(r.sense_code(), (0x6, 0x2a, 0x05));
    let r = owner
        .command(&pr_out(4, WERO, 24), fd, &params(0x1, 0x2))
        .unwrap();
    assert_eq!(r.status, RESERVATION_CONFLICT);

    // Defence: re-register, then preempt back.
    assert_eq!(
        owner
            .command(&pr_out(6, 0, 24), fd, &params(0, 0x1))
            .unwrap()
            .status,
        GOOD
    );
    let r = owner
        .command(&pr_out(4, WERO, 24), fd, &params(0x1, 0x2))
        .unwrap();
    assert_eq!(r.status, GOOD);
    assert_eq!(holder(&mut owner, fd), Some((0x1, WERO)));
    let r = owner.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(keys(&r), vec![0x1]);

    // Clean shutdown of the cluster: CLEAR leaves nothing behind.
    assert_eq!(
        owner
            .command(&pr_out(3, 0, 24), fd, &params(0x1, 0))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(holder(&mut owner, fd), None);
    let r = owner.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert!(keys(&r).is_empty());
}

/// A node whose connection drops keeps its registration (it is persistent);
/// the survivor fences it with PREEMPT AND ABORT, as fence_scsi does.
#[test]
fn a_crashed_node_keeps_its_key_until_the_survivor_fences_it() {
    let h = Helper::start(&our_helper(), &["--emulate"]);
    let f = disk(&h);
    let fd = f.as_raw_fd();
    let mut a = h.connect().negotiate();
    let mut b = h.connect().negotiate();
    assert_eq!(
        a.command(&pr_out(0, 0, 24), fd, &params(0, 0xa))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(
        b.command(&pr_out(0, 0, 24), fd, &params(0, 0xb))
            .unwrap()
            .status,
        GOOD
    );
    assert_eq!(
        a.command(&pr_out(1, WERO, 24), fd, &params(0xa, 0))
            .unwrap()
            .status,
        GOOD
    );
    drop(a); // node A crashes
    let r = b.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(keys(&r), vec![0xa, 0xb]);
    assert_eq!(
        b.command(&pr_out(5, WERO, 24), fd, &params(0xb, 0xa))
            .unwrap()
            .status,
        GOOD
    );
    let r = b.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(keys(&r), vec![0xb]);
    assert_eq!(holder(&mut b, fd), Some((0xb, WERO)));
}
