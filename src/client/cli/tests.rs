// SPDX-License-Identifier: GPL-2.0-or-later
use super::*;
use crate::domain::cdb::PrDirection;
use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("qemu-pr-client").chain(args.iter().copied()))
}

fn request(args: &[&str]) -> PrRequest {
    parse(args).unwrap().request().unwrap()
}

/// The parameter list of `-o -M -K 1 -S 2 -T 1 -X sas,…42 EXTRA... d`.
fn register_move_params(extra: &[&str]) -> RegisterAndMoveParameters {
    let head = ["-o", "-M", "-K", "1", "-S", "2", "-T", "1"];
    let tid = ["-X", "sas,0000000000000042"];
    let args: Vec<&str> = head
        .iter()
        .chain(&tid)
        .chain(extra)
        .chain(&["d"])
        .copied()
        .collect();
    RegisterAndMoveParameters::try_from(request(&args).params()).unwrap()
}

fn conflict(args: &[&str]) -> bool {
    matches!(parse(args), Err(e) if e.kind() == clap::error::ErrorKind::ArgumentConflict)
}

#[test]
fn in_alone_reads_keys_with_8192_bytes() {
    for args in [&["--in", "/dev/sdb"][..], &["/dev/sdb"], &["-i", "-k", "x"]] {
        let r = request(args);
        assert_eq!(r.cdb().command(), &[0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]);
    }
}

#[test]
fn each_in_action() {
    for (flag, sa) in [
        ("-k", 0),
        ("-r", 1),
        ("-c", 2),
        ("-s", 3),
        ("--read-status", 3),
    ] {
        let r = request(&["-i", flag, "-l", "0x100", "d"]);
        assert_eq!(r.cdb().command()[1], sa);
        assert_eq!(r.cdb().transfer_len(), 256);
    }
}

#[test]
fn maxlen_is_decimal_and_alloc_length_hex() {
    assert_eq!(request(&["-m", "100", "d"]).cdb().transfer_len(), 100);
    assert_eq!(request(&["-l", "100", "d"]).cdb().transfer_len(), 256);
    assert_eq!(request(&["--maxlen=8k", "d"]).cdb().transfer_len(), 8192);
    assert!(parse(&["-m", "8193", "d"]).is_err());
}

#[test]
fn each_out_action() {
    for (flag, sa) in [
        ("-G", 0),
        ("-R", 1),
        ("-L", 2),
        ("-C", 3),
        ("-P", 4),
        ("-A", 5),
        ("-I", 6),
        ("-z", 8),
        ("--replace-lost", 8),
    ] {
        let r = request(&["-o", flag, "-K", "abc", "-S", "0x123", "-T", "5", "d"]);
        assert_eq!(r.cdb().direction(), PrDirection::Out);
        assert_eq!(r.cdb().command()[1..3], [sa, 5]);
        let p = PrOutParameters::try_from(r.params()).unwrap();
        assert_eq!(p.reservation_key.0, 0xabc);
        assert_eq!(p.service_action_key.0, 0x123);
    }
}

#[test]
fn scope_goes_to_the_high_nibble_of_byte_2() {
    // LU_SCOPE unless asked: what sg_persist always sends.
    assert_eq!(
        request(&["-o", "-R", "-T", "5", "d"]).cdb().command()[2],
        0x05
    );
    assert_eq!(
        request(&["-o", "-R", "-T", "5", "--scope", "1", "d"])
            .cdb()
            .command()[2],
        0x15
    );
    assert!(parse(&["-o", "-R", "--scope", "10", "d"]).is_err());
}

#[test]
fn type_and_relative_port_are_hex_like_sg_persist() {
    assert!(parse(&["-o", "-R", "-T", "a", "d"]).is_ok());
    assert_eq!(
        request(&["-o", "-R", "-T", "0x8", "d"]).cdb().command()[2],
        8
    );
    let p = register_move_params(&["-Q", "10"]);
    assert_eq!(p.relative_target_port, 0x10);
    assert!(parse(&["-Q", "10000", "d"]).is_err());
}

#[test]
fn register_with_transport_ids_and_flags() {
    let r = request(&[
        "--out",
        "--register",
        "--param-sark=1",
        "-Z",
        "-Y",
        "-X",
        "sas,0000000000000001",
        "-X",
        "iqn.2026-11.example:a",
        "-X",
        "spi,7,2",
        "d",
    ]);
    let p = PrOutParameters::try_from(r.params()).unwrap();
    assert!(p.aptpl && p.all_tg_pt);
    assert_eq!(p.transport_ids.unwrap().len(), 3);
}

#[test]
fn transport_ids_from_a_file() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut f,
        b"# two\nsas,5001405000000001\nsbp,0011223344556677\n",
    )
    .unwrap();
    let arg = format!("file={}", f.path().display());
    let r = request(&["-o", "-G", "-S", "1", "-X", &arg, "d"]);
    let p = PrOutParameters::try_from(r.params()).unwrap();
    assert_eq!(p.transport_ids.unwrap().len(), 2);
    let missing = parse(&["-o", "-G", "-X", "file=/nonexistent", "d"]).unwrap();
    assert!(matches!(missing.request(), Err(Error::Syntax(_))));
}

#[test]
fn register_move() {
    let p = register_move_params(&["-Q", "3", "-U"]);
    assert!(p.unreg);
    assert_eq!(p.relative_target_port, 3);
    let e = parse(&["-o", "-M", "d"]).unwrap().request().unwrap_err();
    assert_eq!(e.exit_status(), 31);
}

#[test]
fn contradictions_are_31_and_bad_values_1() {
    // clap conflicts: two actions, in with out, --status with an action.
    assert!(conflict(&["-k", "-r", "d"]));
    assert!(conflict(&["-G", "-R", "d"]));
    assert!(conflict(&["-i", "-G", "d"]));
    assert!(conflict(&["-k", "-G", "d"]));
    assert!(conflict(&["--status", "-k", "d"]));
    assert!(conflict(&["--status", "-o", "-G", "d"]));
    assert!(conflict(&["--json", "--hex", "d"]));
    // Ours, after parsing.
    for args in [
        &["-o", "d"][..],
        &["-o", "-L", "-U", "d"],
        &["-o", "-L", "-Q", "1", "d"],
    ] {
        let e = parse(args).unwrap().request().unwrap_err();
        assert_eq!(e.exit_status(), 31, "{args:?}");
    }
    assert!(parse(&["-o", "-L", "-Q", "0", "d"])
        .unwrap()
        .request()
        .is_ok());
    // Bad values.
    for args in [
        &["-o", "-G", "-T", "10", "d"][..],
        &["-o", "-G", "-K", "nothex", "d"],
        &["-l", "2001", "d"],
        &["-X", "sas,1", "-o", "-G", "d"],
    ] {
        let bad_value = match parse(args) {
            Err(e) => e.kind() != clap::error::ErrorKind::ArgumentConflict,
            Ok(c) => c.request().map_err(|e| e.exit_status()) == Err(1),
        };
        assert!(bad_value, "{args:?}");
    }
}

#[test]
fn device_as_argument_or_option_not_both() {
    let c = parse(&["-d", "/dev/sdb", "-k"]).unwrap();
    assert_eq!(c.device().unwrap(), Path::new("/dev/sdb"));
    let both = parse(&["-d", "/dev/sdb", "/dev/sdc"]).unwrap();
    assert_eq!(both.device().unwrap_err().exit_status(), 1);
    let none = parse(&["-k"]).unwrap();
    assert_eq!(none.device().unwrap_err().exit_status(), 1);
}

#[test]
fn compatibility_options_are_accepted() {
    let c = parse(&["-n", "-vv", "-HHH", "-y", "d"]).unwrap();
    assert!(c.no_inquiry);
    assert_eq!((c.verbose, c.hex, c.readonly), (2, 3, 1));
    assert!(c.read_only());
    assert!(!parse(&["-yy", "d"]).unwrap().read_only());
    assert!(!parse(&["-o", "-G", "d"]).unwrap().read_only());
}

#[test]
fn out_action_needs_out_as_in_sg_persist() {
    let e = parse(&["-R", "-K", "1", "-T", "1", "d"])
        .unwrap()
        .request()
        .unwrap_err();
    assert!(matches!(e, Error::Contradict(_)), "{e}");
    assert_eq!(e.exit_status(), 31);
    let r = request(&["-o", "-R", "-K", "1", "-T", "1", "d"]);
    assert_eq!(r.cdb().direction(), PrDirection::Out);
}

#[test]
fn regular_file_is_refused_unless_emulated() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let p = f.path().to_str().unwrap();
    let e = parse(&["-k", p]).unwrap().open_device().unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotADevice {
                what: "a regular file",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.exit_status(), 15);
    assert!(parse(&["--emulated", "-k", p])
        .unwrap()
        .open_device()
        .is_ok());
    // A character device passes (/dev/null stands in for /dev/sgN).
    assert!(parse(&["-k", "/dev/null"]).unwrap().open_device().is_ok());
    let missing = parse(&["-k", "/nonexistent/dev"])
        .unwrap()
        .open_device()
        .unwrap_err();
    assert_eq!(missing.exit_status(), 50 + libc::ENOENT as u8);
}

#[test]
fn help_documents_exit_status() {
    let e = parse(&["--help"]).unwrap_err();
    assert!(!e.use_stderr());
    let text = e.to_string();
    assert!(text.contains("24  RESERVATION CONFLICT"), "{text}");
    assert!(text.contains("37  helper unreachable"));
    assert!(text.contains("38  the helper closed the connection"));
    assert!(
        text.contains("does nothing here"),
        "-n says what it does here"
    );
}
