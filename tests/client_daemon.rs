// SPDX-License-Identifier: GPL-2.0-or-later
//! The client against the real daemon binary on a temporary socket.

mod common;

use std::os::fd::AsFd;

use common::{our_helper, run_client, text, Helper};
use qemu_pr_helper::client::{exit_status, HelperConnection, PrOutOptions, PrRequest, Reply};
use qemu_pr_helper::domain::pr_in_data::{ReadKeys, ReadReservation};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseCode, SenseKey};
use qemu_pr_helper::domain::service_action::{
    PrInServiceAction, PrOutServiceAction, ReservationKey, ReservationType,
};

#[test]
fn a_regular_file_is_refused_before_the_real_daemon_sees_it() {
    let d = Helper::start(&our_helper(), &[]);
    let dev = tempfile::NamedTempFile::new().unwrap();
    let out = run_client(&d.socket, &["-i", "-k"], dev.path());
    assert_eq!(out.status.code(), Some(15), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is a regular file, not a block or character device"));
    // Told the helper emulates, the client sends; the real daemon's SG_IO
    // fails on the file (ABORTED COMMAND, sg3_utils' 11), and the client
    // says why.
    let out = run_client(&d.socket, &["--emulated", "-i", "-k"], dev.path());
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("PR in (Read keys): Aborted command\n"),
        "{err}"
    );
    assert!(err.contains("really serving its emulated device?"), "{err}");
    // The connection stays usable: a second command on it gets an answer.
    let mut conn = d.connect_library();
    let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 64).unwrap();
    for _ in 0..2 {
        let r = conn.execute(dev.as_file().as_fd(), &req).unwrap();
        assert_eq!(r.header.scsi_status(), ScsiStatus::CHECK_CONDITION);
    }
}

#[test]
fn real_daemon_answers_pr_out_on_a_read_only_fd_with_invalid_opcode() {
    let d = Helper::emulated();
    let dev = tempfile::NamedTempFile::new().unwrap();
    let out = run_client(
        &d.socket,
        &["--emulated", "--readonly", "--json", "-o", "-G", "-S", "1"],
        dev.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(9),
        "sg3_utils: invalid operation code"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["sense"]["key"], 5, "{j}");
    assert_eq!(
        (j["sense"]["asc"].as_u64(), j["sense"]["ascq"].as_u64()),
        (Some(0x20), Some(0))
    );
    assert_eq!(j["exit_status"], 9);
}

/// Runs a request, consuming any UNIT ATTENTION the device queued for this
/// nexus first (a preempted initiator gets one, as with a real target).
fn run(conn: &mut HelperConnection, dev: &std::fs::File, req: &PrRequest) -> Reply {
    for _ in 0..4 {
        let r = conn.execute(dev.as_fd(), req).unwrap();
        let ua = r.header.scsi_status() == ScsiStatus::CHECK_CONDITION
            && r.header.sense.code().map(|c| c.key) == Some(SenseKey::UNIT_ATTENTION);
        if !ua {
            return r;
        }
    }
    panic!("unit attentions did not stop");
}

fn out(conn: &mut HelperConnection, dev: &std::fs::File, o: PrOutOptions) -> Reply {
    run(conn, dev, &o.build().unwrap())
}

fn keys(conn: &mut HelperConnection, dev: &std::fs::File) -> ReadKeys {
    let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 8192).unwrap();
    let r = run(conn, dev, &req);
    assert_eq!(r.header.scsi_status(), ScsiStatus::GOOD);
    ReadKeys::decode(&r.payload).unwrap().value
}

fn reservation(conn: &mut HelperConnection, dev: &std::fs::File) -> ReadReservation {
    let req = PrRequest::pr_in(PrInServiceAction::ReadReservation, 8192).unwrap();
    let r = run(conn, dev, &req);
    assert_eq!(r.header.scsi_status(), ScsiStatus::GOOD);
    ReadReservation::decode(&r.payload).unwrap().value
}

fn opts(
    action: PrOutServiceAction,
    rk: u64,
    sark: u64,
    rtype: Option<ReservationType>,
) -> PrOutOptions {
    let mut o = PrOutOptions::new(action);
    o.reservation_key = rk;
    o.service_action_key = sark;
    o.type_code = rtype.map_or(0, |t| t.code());
    o
}

/// Our daemon on its emulated device, a regular file as the disk, and two
/// initiators (connections) on it.
fn two_initiators() -> (
    Helper,
    tempfile::NamedTempFile,
    HelperConnection,
    HelperConnection,
) {
    let d = Helper::emulated();
    let dev = tempfile::NamedTempFile::new().unwrap();
    let (a, b) = (d.connect_library(), d.connect_library());
    (d, dev, a, b)
}

/// Register, reserve, conflict, preempt, release with two initiators: with
/// the emulated device each connection is one I_T nexus, as QEMU's one
/// long-lived connection per VM is.
#[test]
fn emulated_register_reserve_preempt_release_cycle() {
    use PrOutServiceAction::*;
    let we_ro = Some(ReservationType::WriteExclusiveRegistrantsOnly);
    let (d, dev, mut a, mut b) = two_initiators();
    let f = dev.as_file();

    let good = |r: Reply| assert_eq!(r.header.scsi_status(), ScsiStatus::GOOD, "{r:?}");
    good(out(&mut a, f, opts(Register, 0, 0xa, None)));
    good(out(&mut b, f, opts(Register, 0, 0xb, None)));
    let k = keys(&mut a, f);
    assert_eq!(k.keys, vec![ReservationKey(0xa), ReservationKey(0xb)]);

    good(out(&mut a, f, opts(Reserve, 0xa, 0, we_ro)));
    let r = reservation(&mut b, f).reservation.unwrap();
    assert_eq!(r.key, ReservationKey(0xa));
    assert_eq!(r.reservation_type(), we_ro);

    // B may not release A's reservation with the wrong key.
    let conflict = out(&mut b, f, opts(Release, 0xa, 0, we_ro));
    assert_eq!(
        conflict.header.scsi_status(),
        ScsiStatus::RESERVATION_CONFLICT
    );

    // B preempts A: A's registration and reservation go to B.
    good(out(&mut b, f, opts(Preempt, 0xb, 0xa, we_ro)));
    assert_eq!(keys(&mut b, f).keys, vec![ReservationKey(0xb)]);
    assert_eq!(
        reservation(&mut a, f).reservation.unwrap().key,
        ReservationKey(0xb)
    );
    // A, no longer registered, is told so.
    let gone = out(&mut a, f, opts(Reserve, 0xa, 0, we_ro));
    assert_eq!(gone.header.scsi_status(), ScsiStatus::RESERVATION_CONFLICT);

    good(out(&mut b, f, opts(Release, 0xb, 0, we_ro)));
    assert_eq!(reservation(&mut a, f).reservation, None);

    // The CLI sees the same state from a connection of its own.
    let cli = run_client(&d.socket, &["--emulated", "-i", "-k"], dev.path());
    assert_eq!(cli.status.code(), Some(0), "{}", text(&cli.stderr));
    assert!(text(&cli.stdout).contains("1 registered reservation key follows:\n    0xb\n"));

    // The holder releasing with the wrong type: a named sense code that
    // sg3_utils counts as ILLEGAL REQUEST.
    good(out(&mut b, f, opts(Reserve, 0xb, 0, we_ro)));
    let wrong = out(
        &mut b,
        f,
        opts(Release, 0xb, 0, Some(ReservationType::WriteExclusive)),
    );
    let code = wrong.header.sense.code().unwrap();
    assert_eq!(code, SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
    assert_eq!(
        code.name(),
        Some("INVALID RELEASE OF PERSISTENT RESERVATION")
    );
    assert_eq!(
        exit_status::for_reply(wrong.header.scsi_status(), &wrong.header.sense),
        5
    );
    good(out(&mut b, f, opts(Release, 0xb, 0, we_ro)));

    // An unknown service action is a CHECK CONDITION, not a disconnect.
    let bad = PrRequest::pr_in(PrInServiceAction::Unknown(0x1f), 64).unwrap();
    let r = run(&mut a, f, &bad);
    assert_eq!(r.header.sense.code(), Some(SenseCode::INVALID_FIELD_IN_CDB));
}

/// `--status` on the emulated device: one table, the holder marked, each
/// registrant's TransportID as the emulated device gives it.
#[test]
fn status_table_on_the_emulated_device() {
    use PrOutServiceAction::*;
    let we_ro = Some(ReservationType::WriteExclusiveRegistrantsOnly);
    let (d, dev, mut a, mut b) = two_initiators();
    let f = dev.as_file();
    out(&mut a, f, opts(Register, 0, 0xabc, None));
    out(&mut b, f, opts(Register, 0, 0xdef, None));
    out(&mut a, f, opts(Reserve, 0xabc, 0, we_ro));

    let cli = run_client(&d.socket, &["--emulated", "--status"], dev.path());
    assert_eq!(cli.status.code(), Some(0), "{}", text(&cli.stderr));
    let table = text(&cli.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0], "  PR generation=0x2 (from READ FULL STATUS)",
        "{table}"
    );
    assert_eq!(
        lines[1],
        "  reservation: Write Exclusive, registrants only, LU_SCOPE; holder marked *"
    );
    assert_eq!(
        lines[2],
        "  HOLDER  KEY                 PORT   TRANSPORT ID"
    );
    assert!(
        lines[3].starts_with("  *       0xabc               1      sas,"),
        "{table}"
    );
    assert!(
        lines[4].starts_with("          0xdef               1      sas,"),
        "{table}"
    );
    assert_ne!(lines[3][37..], lines[4][37..], "one TransportID per nexus");
    assert_eq!(lines.len(), 5);

    let cli = run_client(&d.socket, &["--emulated", "--status", "--json"], dev.path());
    let j: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(j["source"], "READ FULL STATUS");
    assert_eq!(j["registrations"][0]["holder"], true);
    assert_eq!(j["registrations"][1]["holder"], false);
    assert_eq!(j["reservation"]["type"], 5);
}
