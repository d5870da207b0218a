// SPDX-License-Identifier: GPL-2.0-or-later
//! Hostile and broken clients against the real binary (emulated device, so
//! that semantic errors reach a real SPC-4 model). After each: the daemon is
//! alive, serves a well-formed command on another connection, and holds no
//! more fds than before.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;

/// The daemon on its emulated device, its disk, and its fd count at rest.
struct AtRest {
    h: Helper,
    f: std::fs::File,
    baseline: usize,
}

impl AtRest {
    fn new() -> AtRest {
        let h = Helper::emulated();
        let f = h.disk();
        let baseline = h.stable_fd_count();
        AtRest { h, f, baseline }
    }

    /// [`Helper::still_healthy`] after the abuse `what`.
    fn still_healthy(&self, what: &str) {
        self.h.still_healthy(&self.f, self.baseline, what);
    }
}

#[test]
fn a_byte_by_byte_sender_is_served_and_delays_nobody() {
    let rest = AtRest::new();
    let (h, f) = (&rest.h, &rest.f);
    let mut slow = h.connect().negotiate();
    let mut cdb = pr_out(0, 0, 24);
    cdb.resize(16, 0);
    let list = params(0, 0x5);
    let writer = {
        let mut stream = slow.stream.try_clone().unwrap();
        let fd = f.as_raw_fd();
        std::thread::spawn(move || {
            let mut c = Client {
                stream: stream.try_clone().unwrap(),
            };
            for (i, byte) in cdb.iter().chain(list.iter()).enumerate() {
                if i == 0 {
                    c.send_with_fds(&[*byte], &[fd]);
                } else {
                    stream.write_all(&[*byte]).unwrap();
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    // Meanwhile, another client is served, many times, while the slow
    // sender is still dribbling its request (about a second in all).
    let mut fast = h.connect().negotiate();
    for _ in 0..20 {
        assert_eq!(
            fast.command(&pr_in(0, 64), f.as_raw_fd(), &[])
                .unwrap()
                .status,
            0
        );
    }
    assert!(
        !writer.is_finished(),
        "the other client was served only once the slow sender had finished"
    );
    writer.join().unwrap();
    let r = slow.read_reply().unwrap();
    assert_eq!(r.status, 0, "the slow REGISTER was answered");
    let r = fast.command(&pr_in(0, 64), f.as_raw_fd(), &[]).unwrap();
    assert_eq!(&r.payload[8..16], &0x5u64.to_be_bytes());
    drop((slow, fast));
    rest.still_healthy("byte by byte");
}

#[test]
fn ten_thousand_connections_opened_and_dropped() {
    let rest = AtRest::new();
    let h = &rest.h;
    for i in 0..10_000 {
        let c = std::os::unix::net::UnixStream::connect(&h.socket).unwrap();
        if i % 3 == 0 {
            // Some read the features word first, some vanish at once.
            let mut w = [0u8; 4];
            let _ = std::io::Read::read(&mut &c, &mut w);
        }
        drop(c);
    }
    rest.still_healthy("10,000 connections");
}

#[test]
fn out_of_range_service_actions_types_and_scopes_are_invalid_fields() {
    let rest = AtRest::new();
    let (h, fd) = (&rest.h, rest.f.as_raw_fd());
    let mut c = h.connect().negotiate();
    c.register(fd, 1);
    let invalid_cdb = (0x5, 0x24, 0x00);
    for sa in [0x04u8, 0x10, 0x1f] {
        let r = c.command(&pr_in(sa, 64), fd, &[]).unwrap();
        assert_eq!(
            (r.status, r.sense_code()),
            (2, invalid_cdb),
            "PR IN SA {sa:#x}"
        );
    }
    for sa in [0x09u8, 0x10, 0x1f] {
        let r = c.command(&pr_out(sa, 0, 24), fd, &params(1, 0)).unwrap();
        assert_eq!(
            (r.status, r.sense_code()),
            (2, invalid_cdb),
            "PR OUT SA {sa:#x}"
        );
    }
    for scope_type in [0x00u8, 0x02, 0x04, 0x09, 0x0f, 0x15, 0xf5] {
        let r = c
            .command(&pr_out(1, scope_type, 24), fd, &params(1, 0))
            .unwrap();
        assert_eq!(r.status, 2, "RESERVE scope/type {scope_type:#x}");
        assert_eq!(r.sense_code().0, 0x5, "RESERVE scope/type {scope_type:#x}");
    }
    drop(c);
    rest.still_healthy("out of range fields");
}

#[test]
fn transport_id_lengths_that_lie_are_answered_not_obeyed() {
    let rest = AtRest::new();
    let (h, fd) = (&rest.h, rest.f.as_raw_fd());
    let spec_i_pt = |tpdl: u32, tail: &[u8]| {
        let mut p = params(0, 0x77);
        p[20] = 0x08;
        p.extend_from_slice(&tpdl.to_be_bytes());
        p.extend_from_slice(tail);
        p
    };
    let mut sas = vec![0u8; 24];
    sas[0] = 0x06;
    let mut iscsi_lying = vec![0x05, 0x00, 0xff, 0xfc];
    iscsi_lying.extend_from_slice(&[b'i'; 20]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length overflows u32 arithmetic", spec_i_pt(u32::MAX, &sas)),
        ("length past the data", spec_i_pt(48, &sas)),
        ("length short of the data (underflow)", spec_i_pt(8, &sas)),
        (
            "iSCSI additional length past the data",
            spec_i_pt(24, &iscsi_lying),
        ),
        ("unknown protocol identifier", spec_i_pt(24, &[0x0fu8; 24])),
        ("no room for the length field", {
            let mut p = params(0, 0x77);
            p[20] = 0x08;
            p.extend_from_slice(&[0, 0]);
            p
        }),
    ];
    let mut c = h.connect().negotiate();
    for (name, list) in cases {
        let r = c
            .command(&pr_out(0, 0, list.len() as u32), fd, &list)
            .unwrap_or_else(|| panic!("{name}: connection closed"));
        assert_eq!(r.status, 2, "{name}");
        let (key, asc, _) = r.sense_code();
        assert_eq!(key, 0x5, "{name}");
        assert!(asc == 0x26 || asc == 0x1a, "{name}: asc {asc:#x}");
    }
    // REGISTER AND MOVE whose TransportID length lies.
    let mut rm = params(0, 0x77);
    rm[20..24].copy_from_slice(&1000u32.to_be_bytes());
    rm.extend_from_slice(&sas);
    let r = c
        .command(&pr_out(7, 0x05, rm.len() as u32), fd, &rm)
        .unwrap();
    assert_eq!(r.status, 2);
    // Nothing was registered by any of it.
    let r = c.command(&pr_in(0, 64), fd, &[]).unwrap();
    assert_eq!(
        &r.payload[4..8],
        &[0, 0, 0, 0],
        "a lying list registered something"
    );
    drop(c);
    rest.still_healthy("lying TransportID lengths");
}

#[test]
fn many_fds_in_one_message_are_all_closed() {
    // More than the 16 a smaller control buffer held: the kernel installs
    // what fits, and every one of them must be closed with the connection.
    let rest = AtRest::new();
    let (h, f) = (&rest.h, &rest.f);
    for count in [17, 64, 253] {
        let mut c = h.connect().negotiate();
        let fds = vec![f.as_raw_fd(); count];
        c.send_request(&pr_in(0, 64), &fds, &[]);
        assert!(c.is_closed(), "{count} fds: the connection must close");
        drop(c);
        rest.still_healthy(&format!("{count} fds in one message"));
    }
}
