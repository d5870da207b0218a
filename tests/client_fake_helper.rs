// SPDX-License-Identifier: GPL-2.0-or-later
//! The client against a tiny in-test helper: a std Unix listener thread that
//! negotiates, receives the CDB with its fd and the parameter list, checks
//! them, and answers with bytes the test chooses. No root, no device.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

mod common;
use common::{pr_client, run_client, text};
/// Shared with the status table's unit test.
mod full_status {
    use super::*;
    include!("common/full_status.rs");
}
use full_status::{full_status_of_two, TABLE_OF_TWO};

use qemu_pr_helper::client::{ClientError, HelperConnection, Phase, PrOutOptions, PrRequest};
use qemu_pr_helper::domain::cdb::{PrCdb, CDB_LEN};
use qemu_pr_helper::domain::framing::PrReply;
use qemu_pr_helper::domain::param_list::TransportId;
use qemu_pr_helper::domain::pr_in_data::{
    FullStatusDescriptor, ReadFullStatus, ReadKeys, ReadReservation, Reservation,
};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseCode};
use qemu_pr_helper::domain::service_action::{
    PrInServiceAction, PrOutServiceAction, ReservationKey, ReservationType,
};
use serde_json::Value;

/// What the fake helper received for one request.
struct Received {
    client_features: [u8; 4],
    cdb: [u8; CDB_LEN],
    fds: Vec<OwnedFd>,
    params: Vec<u8>,
}

impl Received {
    fn fd_flags(&self) -> i32 {
        nix::fcntl::fcntl(self.fds[0].as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap()
    }

    fn fd_ino(&self) -> u64 {
        nix::sys::stat::fstat(self.fds[0].as_raw_fd())
            .unwrap()
            .st_ino
    }
}

/// What the fake helper does after reading a request.
enum Answer {
    Reply(Vec<u8>),
    Close,
}

struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: JoinHandle<Vec<Received>>,
}

impl Fake {
    /// Waits for the client to finish; what the one request carried.
    fn one(self) -> Received {
        let mut all = self.thread.join().unwrap();
        assert_eq!(all.len(), 1, "the client sent one request");
        all.remove(0)
    }

    /// Every request the client sent, in order.
    fn all(self) -> Vec<Received> {
        self.thread.join().unwrap()
    }
}

fn recv_cdb(stream: &UnixStream) -> Option<([u8; CDB_LEN], Vec<OwnedFd>)> {
    let mut cdb = [0u8; CDB_LEN];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < CDB_LEN {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut cdb[got..])];
        let msg = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) {
            // A client that leaves part of a reply unread resets the connection.
            Err(nix::errno::Errno::ECONNRESET) if got == 0 => return None,
            r => r.unwrap(),
        };
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed this fd for us with
                    // SCM_RIGHTS; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if msg.bytes == 0 {
            assert_eq!(got, 0, "client closed in the middle of a CDB");
            return None;
        }
        got += msg.bytes;
    }
    Some((cdb, fds))
}

/// Starts a helper that serves one connection, answering each request with
/// what `answer` says until the client closes (or it is told to close).
fn fake(
    server_features: u32,
    mut answer: impl FnMut(&Received) -> Answer + Send + 'static,
) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("helper.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        // A client that exits before connecting (a usage error) must fail
        // the test, not hang it.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (mut stream, _) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("the client never connected: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.write_all(&server_features.to_be_bytes()).unwrap();
        let mut client_features = [0u8; 4];
        stream.read_exact(&mut client_features).unwrap();
        while let Some((cdb, fds)) = recv_cdb(&stream) {
            let parsed = PrCdb::try_from(&cdb).expect("client sent a CDB the helper accepts");
            let mut params = Vec::new();
            if cdb[0] == 0x5f {
                params = vec![0u8; parsed.transfer_len()];
                stream.read_exact(&mut params).unwrap();
            }
            let received = Received {
                client_features,
                cdb,
                fds,
                params,
            };
            let reply = answer(&received);
            all.push(received);
            match reply {
                Answer::Reply(bytes) => stream.write_all(&bytes).unwrap(),
                Answer::Close => break,
            }
        }
        all
    });
    Fake {
        _dir: dir,
        socket,
        thread,
    }
}

fn wire(reply: PrReply) -> Answer {
    let mut b = reply.encode_header().to_vec();
    b.extend_from_slice(&reply.payload);
    Answer::Reply(b)
}

/// The client with `args`, on a fresh device, against a fake helper that
/// answers its one request with `reply`: the client's output and what the
/// fake received.
fn one_exchange(reply: PrReply, args: &[&str]) -> (Output, Received) {
    let dev = device();
    let f = fake(0, move |_| wire(reply.clone()));
    let out = client(&f.socket, args, dev.path());
    (out, f.one())
}

fn device() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

/// The client with a bounded wait, told the helper emulates (the device is a
/// regular file).
fn client(socket: &Path, args: &[&str], device: &Path) -> Output {
    let args: Vec<&str> = ["--timeout", "10", "--emulated"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    run_client(socket, &args, device)
}

#[test]
fn read_keys_sends_cdb_with_the_device_fd_and_prints_keys() {
    let dev = device();
    let keys = ReadKeys {
        generation: 3,
        keys: vec![ReservationKey(0x1234), ReservationKey(0x5678)],
    };
    let f = fake(0, move |_| wire(PrReply::good(keys.encode())));
    let out = client(&f.socket, &["--in", "--read-keys"], dev.path());
    let got = f.one();
    assert_eq!(got.client_features, [0; 4]);
    assert_eq!(
        got.cdb,
        [0x5e, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(got.fds.len(), 1, "exactly one fd travels with the CDB");
    assert_eq!(got.fd_ino(), dev.as_file().metadata().unwrap().ino());
    assert_eq!(got.fd_flags() & libc::O_ACCMODE, libc::O_RDWR);
    assert!(got.params.is_empty());
    assert_eq!(
        text(&out.stdout),
        "  PR generation=0x3, 2 registered reservation keys follow:\n    0x1234\n    0x5678\n"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn readonly_opens_the_device_read_only() {
    let (out, got) = one_exchange(
        PrReply::good(ReadKeys::default().encode()),
        &["--readonly", "-i", "-k"],
    );
    assert_eq!(got.fd_flags() & libc::O_ACCMODE, libc::O_RDONLY);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn register_sends_the_parameter_list() {
    let (out, got) = one_exchange(
        PrReply::good(Vec::new()),
        &["--out", "--register", "--param-sark", "0xabc", "-Z"],
    );
    assert_eq!(&got.cdb[..10], &[0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0]);
    let mut expected = vec![0u8; 24];
    expected[14..16].copy_from_slice(&[0x0a, 0xbc]);
    expected[20] = 0x01;
    assert_eq!(got.params, expected);
    assert_eq!(out.status.code(), Some(0));
    // As sg_persist: a PR OUT that succeeds prints nothing.
    assert_eq!(out.stdout, b"");
    assert_eq!(out.stderr, b"");
}

#[test]
fn check_condition_prints_sense_on_stderr_and_exits_with_its_category() {
    let (out, got) = one_exchange(
        PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB),
        &["-o", "-R", "-K", "1", "-T", "9"],
    );
    assert_eq!(got.cdb[2], 9);
    assert_eq!(out.status.code(), Some(5), "sg3_utils: ILLEGAL REQUEST");
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "PR out (Reserve): bad field in cdb (perhaps unsupported service action)\n"
    );
}

/// The exit status a script written for sg_persist checks, for each answer.
#[test]
fn exit_status_and_message_follow_sg_persist_for_each_answer() {
    let ua = SenseCode::REGISTRATIONS_PREEMPTED;
    // sg_persist 1.48's words for a PR OUT's ILLEGAL REQUEST.
    let bad_field = "bad field in cdb (perhaps unsupported service action)";
    let cases = [
        (PrReply::good(Vec::new()), 0, ""),
        (
            PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
            24,
            "Reservation conflict",
        ),
        (PrReply::status_only(ScsiStatus::BUSY), 26, "Busy"),
        (
            PrReply::status_only(ScsiStatus::TASK_SET_FULL),
            27,
            "Task set full",
        ),
        (PrReply::check_condition(ua), 6, "Unit attention"),
        (
            PrReply::check_condition(SenseCode::LUN_NOT_READY),
            2,
            "Device not ready",
        ),
        (
            PrReply::check_condition(SenseCode::INTERNAL_TARGET_FAILURE),
            3,
            "Medium or hardware error",
        ),
        (
            PrReply::check_condition(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST),
            19,
            "bad field parameter list",
        ),
        (
            PrReply::check_condition(SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION),
            5,
            bad_field,
        ),
        (
            PrReply::check_condition(SenseCode::SPACE_ALLOC_FAILED),
            7,
            "Data protect",
        ),
        (
            PrReply::check_condition(SenseCode::LUN_COMM_FAILURE),
            11,
            "Aborted command",
        ),
    ];
    for (reply, code, words) in cases {
        let what = format!("{:?}", reply.status);
        let (out, _) = one_exchange(reply, &["-o", "-L", "-K", "1", "-T", "1"]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{what}: {}",
            text(&out.stderr)
        );
        assert_eq!(out.stdout, b"", "{what}");
        let expected = if words.is_empty() {
            String::new()
        } else {
            format!("PR out (Release): {words}\n")
        };
        assert_eq!(text(&out.stderr), expected, "{what}");
    }
    // INVALID COMMAND OPERATION CODE: sg_persist's words, then why the
    // helper answers it.
    let (out, _) = one_exchange(
        PrReply::check_condition(SenseCode::INVALID_OPCODE),
        &["-o", "-L", "-K", "1", "-T", "1"],
    );
    assert_eq!(out.status.code(), Some(9));
    assert_eq!(
        text(&out.stderr),
        "PR out (Release): command not supported\n  (the helper answers this to PR OUT on \
         a device opened read-only: drop --readonly)\n"
    );
    // PR IN and REGISTER AND MOVE have words of their own in sg_persist.
    let move_args: &[&str] = &[
        "-o",
        "-M",
        "-K",
        "1",
        "-S",
        "2",
        "-T",
        "5",
        "-X",
        "sas,5000000000000001",
    ];
    let voices = [
        (
            SenseCode::INVALID_FIELD_IN_CDB,
            &["-i", "-k"][..],
            5,
            "PR in (Read keys): bad field in cdb or parameter list (perhaps unsupported \
             service action)\n",
        ),
        (
            SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
            &["-i", "-k"][..],
            19,
            "PR in (Read keys): Illegal request, Invalid field in parameter list\n",
        ),
        (
            SenseCode::INVALID_FIELD_IN_PARAMETER_LIST,
            move_args,
            19,
            "PR out (register and move): bad field in parameter list\n",
        ),
        (
            SenseCode::INVALID_FIELD_IN_CDB,
            move_args,
            5,
            "PR out (register and move): bad field in cdb (perhaps unsupported service \
             action)\n",
        ),
    ];
    for (sense, args, code, line) in voices {
        let (out, _) = one_exchange(PrReply::check_condition(sense), args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!(text(&out.stderr), line, "{args:?}");
    }
    // PR IN names its action the same way.
    let (out, _) = one_exchange(
        PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
        &["-i", "-r"],
    );
    assert_eq!(out.status.code(), Some(24));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        text(&out.stderr),
        "PR in (Read reservation): Reservation conflict\n"
    );
}

#[test]
fn pr_out_success_is_silent_and_with_verbose_says_so_on_stderr() {
    let (out, _) = one_exchange(
        PrReply::good(Vec::new()),
        &["-o", "-R", "-K", "1", "-T", "5"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b""[..], &b""[..])
    );
    let (out, _) = one_exchange(
        PrReply::good(Vec::new()),
        &["-v", "-o", "-R", "-K", "1", "-T", "5"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"");
    let err = text(&out.stderr);
    assert!(
        err.starts_with("    Persistent reservation out cdb: "),
        "{err}"
    );
    assert!(
        err.ends_with("\nPR out: command (Reserve) successful\n"),
        "{err}"
    );
}

#[test]
fn sg_persists_underscore_spellings_are_accepted() {
    // Each pair must send the same bytes.
    let pairs: [(&[&str], &[&str]); 11] = [
        (&["--read_keys"], &["--read-keys"]),
        (&["--read_reservation"], &["--read-reservation"]),
        (&["--report_capabilities"], &["--report-capabilities"]),
        (&["--read_full_status"], &["--read-full-status"]),
        (&["--read_status"], &["--read-full-status"]),
        (
            &["--read_keys", "--alloc_length=40", "--no_inquiry"],
            &["--read-keys", "--alloc-length=40", "--no-inquiry"],
        ),
        (
            &[
                "-o",
                "--register_ignore",
                "--param_sark=5",
                "--param_aptpl",
                "--param_alltgpt",
            ],
            &[
                "-o",
                "--register-ignore",
                "--param-sark=5",
                "--param-aptpl",
                "--param-alltgpt",
            ],
        ),
        (
            &[
                "-o",
                "--preempt_abort",
                "--param_rk=1",
                "--param_sark=2",
                "--prout_type=5",
            ],
            &[
                "-o",
                "--preempt-abort",
                "--param-rk=1",
                "--param-sark=2",
                "--prout-type=5",
            ],
        ),
        (
            &[
                "-o",
                "--register_move",
                "--param_rk=1",
                "--param_sark=2",
                "--prout_type=1",
                "--relative_target_port=3",
                "--transport_id=sas,5000000000000001",
                "--param_unreg",
            ],
            &[
                "-o",
                "--register-move",
                "--param-rk=1",
                "--param-sark=2",
                "--prout-type=1",
                "--relative-target-port=3",
                "--transport-id=sas,5000000000000001",
                "--unreg",
            ],
        ),
        (
            &["-o", "--replace_lost", "--param_sark=9", "--prout_type=5"],
            &["-o", "--replace-lost", "--param-sark=9", "--prout-type=5"],
        ),
        (
            &[
                "-o",
                "-G",
                "--transport_id=sas,5000000000000001",
                "--param_sark=1",
            ],
            &[
                "-o",
                "-G",
                "--transport-id=sas,5000000000000001",
                "--param-sark=1",
            ],
        ),
    ];
    for (underscore, hyphen) in pairs {
        let (a, got_a) = one_exchange(PrReply::good(Vec::new()), underscore);
        let (b, got_b) = one_exchange(PrReply::good(Vec::new()), hyphen);
        assert_eq!(
            a.status.code(),
            b.status.code(),
            "{underscore:?}: {}",
            text(&a.stderr)
        );
        assert_eq!(got_a.cdb, got_b.cdb, "{underscore:?}");
        assert_eq!(got_a.params, got_b.params, "{underscore:?}");
    }
}

fn json_of(out: &Output) -> Value {
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 1, "one line of JSON: {s}");
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(
        v["exit_status"].as_i64(),
        out.status.code().map(i64::from),
        "exit_status is the process's: {s}"
    );
    v
}

#[test]
fn json_answer_has_decoded_fields_and_no_sense_without_sense() {
    let data = ReadReservation {
        generation: 5,
        reservation: Some(Reservation::new(
            ReservationKey(0x77),
            ReservationType::ExclusiveAccess,
        )),
    };
    let (out, _) = one_exchange(PrReply::good(data.encode()), &["-i", "-r", "--json"]);
    let j = json_of(&out);
    assert_eq!(j["command"], "read-reservation");
    assert_eq!(j["command_name"], "PR in (Read reservation)");
    assert_eq!(j["status"], 0);
    assert!(j.get("sense").is_none(), "{j}");
    assert_eq!(j["generation"], 5);
    assert_eq!(j["reservation"]["key"], "0x77");
    assert_eq!(j["reservation"]["type"], 3);
    assert_eq!(j["reservation"]["type_name"], "Exclusive Access");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn json_check_condition_has_the_sense_decoded() {
    let (out, _) = one_exchange(
        PrReply::check_condition(SenseCode::REGISTRATIONS_PREEMPTED),
        &["--json", "-o", "-R", "-K", "1", "-T", "1"],
    );
    let j = json_of(&out);
    assert_eq!(j["status_name"], "CHECK CONDITION");
    assert_eq!(j["sense"]["hex"], "700006000000000a000000002a0500000000");
    assert_eq!(j["sense"]["key_name"], "UNIT ATTENTION");
    assert_eq!(j["sense"]["name"], "REGISTRATIONS PREEMPTED");
    assert_eq!(j["exit_status"], 6);
    assert!(out.stderr.is_empty(), "JSON mode says it all on stdout");
}

#[test]
fn json_for_failures_without_an_answer() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.sock");
    // (arguments, device, exit status, error kind)
    let cases: [(&[&str], &Path, i32, &str); 5] = [
        (&["--json", "-k"], dev.path(), 37, "helper_unreachable"),
        (&["--json", "-k", "-T", "zz"], dev.path(), 1, "syntax"),
        (&["--json", "-k", "-r"], dev.path(), 31, "contradict"),
        (&["--json", "-o", "-M"], dev.path(), 31, "contradict"),
        (
            &["--json", "-k"],
            Path::new("/nonexistent/sdb"),
            52,
            "device",
        ),
    ];
    for (args, device, code, kind) in cases {
        let out = client(&none, args, device);
        let j = json_of(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {j}");
        assert_eq!(j["error"], kind, "{args:?}");
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(j.get("status").is_none());
    }
    // Closed after the request: the command may have run.
    let f = fake(0, |_| Answer::Close);
    let out = client(&f.socket, &["--json", "-o", "-C", "-K", "1"], dev.path());
    f.one();
    let j = json_of(&out);
    assert_eq!(j["error"], "helper_protocol");
    assert_eq!(j["command"], "clear");
    assert_eq!(j["command_name"], "PR out (Clear)");
    assert_eq!(out.status.code(), Some(38));
}

#[test]
fn a_regular_file_is_refused_before_connecting_unless_emulated() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(ReadKeys::default().encode())));
    let out = run_client(&f.socket, &["-k"], dev.path());
    assert_eq!(out.status.code(), Some(15));
    let err = text(&out.stderr);
    assert!(
        err.contains("is a regular file, not a block or character device"),
        "{err}"
    );
    assert!(err.contains("--emulated"), "{err}");
    assert_eq!(err.lines().count(), 1);
    // The helper never saw a connection: the same one still serves the next client.
    let out = client(&f.socket, &["-k"], dev.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    f.one();
}

#[test]
fn hex_prints_pr_in_data_as_sg_persist_does() {
    let keys = ReadKeys {
        generation: 3,
        keys: vec![ReservationKey(0x1234), ReservationKey(0x5678)],
    };
    for (flag, expected) in [
        (
            "-H",
            "  PR generation=0x3, Additional length=16\n \
             00     00 00 00 00 00 00 12 34  00 00 00 00 00 00 56 78\n",
        ),
        (
            "-HH",
            " 00     00 00 00 03 00 00 00 10  00 00 00 00 00 00 12 34\n \
             10     00 00 00 00 00 00 56 78\n",
        ),
    ] {
        let (out, _) = one_exchange(PrReply::good(keys.encode()), &["-k", flag]);
        assert_eq!(text(&out.stdout), expected);
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn verbose_shows_the_cdb_the_parameter_list_and_the_reply_header() {
    let (out, _) = one_exchange(
        PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT),
        &["-vv", "-o", "-R", "-K", "abc", "-T", "5"],
    );
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "    Persistent reservation out cdb: [5f 01 05 00 00 00 00 00 18 00]\n    \
         Persistent reservation out parameters:\n \
         00     00 00 00 00 00 00 0a bc  00 00 00 00 00 00 00 00"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "    helper reply header: status=RESERVATION CONFLICT (18h), payload length=0\n \
         00     00 00 00 18 00 00 00 00"
        ),
        "{err}"
    );
    assert!(
        err.ends_with("PR out (Reserve): Reservation conflict\n  status: RESERVATION CONFLICT\n"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(24));
}

#[test]
fn replace_lost_and_device_option_and_no_inquiry() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(Vec::new())));
    let out = pr_client(&f.socket)
        .args([
            "--emulated",
            "-n",
            "-o",
            "-z",
            "-S",
            "0x99",
            "-T",
            "5",
            "-d",
        ])
        .arg(dev.path())
        .output()
        .unwrap();
    let got = f.one();
    assert_eq!(&got.cdb[..3], &[0x5f, 0x08, 0x05]);
    assert_eq!(&got.params[8..16], &0x99u64.to_be_bytes());
    assert_eq!(out.stdout, b"");
    assert_eq!(out.stderr, b"");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn transport_ids_from_standard_input() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(Vec::new())));
    let mut child = pr_client(&f.socket)
        .args(["--emulated", "-o", "-G", "-S", "1", "-X", "-"])
        .arg(dev.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# the other node\nsas,5001405000000002\nspi,7,1\n")
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let got = f.one();
    assert_eq!(got.params[20] & 0x08, 0x08, "SPEC_I_PT");
    assert_eq!(&got.params[24..28], &48u32.to_be_bytes());
    assert_eq!(got.params[28], 0x06);
    assert_eq!(got.params[52], 0x01);
}

#[test]
fn status_is_one_table_from_read_full_status() {
    let data = full_status_of_two().encode();
    let (out, got) = one_exchange(PrReply::good(data.clone()), &["--status"]);
    assert_eq!(&got.cdb[..10], &[0x5e, 0x03, 0, 0, 0, 0, 0, 0x20, 0, 0]);
    assert_eq!(text(&out.stdout), TABLE_OF_TWO);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn status_falls_back_to_read_keys_and_read_reservation() {
    let dev = device();
    let f = fake(0, |r| match r.cdb[1] {
        0x03 => wire(PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB)),
        0x00 => wire(PrReply::good(
            ReadKeys {
                generation: 7,
                keys: vec![ReservationKey(0xa), ReservationKey(0xb)],
            }
            .encode(),
        )),
        _ => wire(PrReply::good(
            ReadReservation {
                generation: 7,
                reservation: Some(Reservation::new(
                    ReservationKey(0xb),
                    ReservationType::WriteExclusive,
                )),
            }
            .encode(),
        )),
    });
    let out = client(&f.socket, &["--status", "--json"], dev.path());
    let sent: Vec<u8> = f.all().iter().map(|r| r.cdb[1]).collect();
    assert_eq!(
        sent,
        [0x03, 0x00, 0x01],
        "FULL STATUS, then KEYS, then RESERVATION"
    );
    let j = json_of(&out);
    assert_eq!(j["source"], "READ KEYS + READ RESERVATION");
    assert_eq!(j["generation"], 7);
    assert_eq!(j["registrations"][0]["holder"], false);
    assert_eq!(j["registrations"][1]["holder"], true);
    assert!(j["registrations"][1]["transport_id"].is_null());
    assert_eq!(j["reservation"]["type"], 1);
}

#[test]
fn status_reports_a_failure_other_than_unsupported() {
    let dev = device();
    let f = fake(0, |_| {
        wire(PrReply::check_condition(SenseCode::DEVICE_RESET))
    });
    let out = client(&f.socket, &["--status"], dev.path());
    assert_eq!(f.all().len(), 1, "no fallback for a UNIT ATTENTION");
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(
        text(&out.stderr),
        "PR in (Read full status): Unit attention\n"
    );
}

#[test]
fn allocation_length_is_sent_and_truncation_reported() {
    let dev = device();
    let keys = ReadKeys {
        generation: 1,
        keys: vec![ReservationKey(1), ReservationKey(2), ReservationKey(3)],
    };
    let f = fake(0, move |r| {
        let alloc = usize::from(u16::from_be_bytes([r.cdb[7], r.cdb[8]]));
        wire(PrReply::good(keys.encode()).fit_to(alloc))
    });
    let out = client(&f.socket, &["-k", "-l", "10"], dev.path());
    let got = f.one();
    assert_eq!(&got.cdb[7..9], &[0x00, 0x10]);
    assert!(text(&out.stdout).contains("1 registered reservation key follows:"));
    assert!(text(&out.stderr).contains("truncated: 16 of 32 bytes"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn helper_closing_after_the_cdb_exits_38_with_a_hint() {
    let dev = device();
    let f = fake(0, |_| Answer::Close);
    let out = client(&f.socket, &["-o", "-C", "-K", "1"], dev.path());
    f.one();
    assert_eq!(out.status.code(), Some(38));
    let err = text(&out.stderr);
    assert!(err.contains("closed the connection"), "{err}");
    assert!(err.contains("CHECK CONDITION, not a disconnect"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn missing_socket_and_unopenable_device_are_clear() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let out = client(&dir.path().join("none.sock"), &["-k"], dev.path());
    assert_eq!(out.status.code(), Some(37));
    assert!(text(&out.stderr).contains("no helper socket at"));

    let out = client(
        &dir.path().join("none.sock"),
        &["-k"],
        &dir.path().join("no-such-device"),
    );
    assert_eq!(out.status.code(), Some(50 + libc::ENOENT));
    assert!(text(&out.stderr).contains("cannot open"));
}

#[test]
fn syntax_errors_exit_1_and_contradictions_31() {
    let dev = device();
    let out = client(Path::new("/nonexistent"), &["-T", "nothex"], dev.path());
    assert_eq!(out.status.code(), Some(1));
    let out = client(Path::new("/nonexistent"), &["--no-such-option"], dev.path());
    assert_eq!(out.status.code(), Some(1));
    let out = client(Path::new("/nonexistent"), &["-k", "-r"], dev.path());
    assert_eq!(out.status.code(), Some(31));
    let out = client(Path::new("/nonexistent"), &["-o"], dev.path());
    assert_eq!(out.status.code(), Some(31));
    // sg_persist's safeguard: a PR OUT action without --out sends nothing.
    let out = client(Path::new("/nonexistent"), &["-G", "-S", "1"], dev.path());
    assert_eq!(out.status.code(), Some(31));
    // One line each, naming what is wrong; no usage line built from the
    // options given.
    for (args, says) in [
        (&["-i", "-o"][..], "'--in' cannot be used with '--out'"),
        (
            &["-i", "-G"][..],
            "'--in' cannot be used with: --register, ",
        ),
        (&["-G", "-S", "1"][..], "needs --out"),
        (&["-T", "nothex"][..], "nothex"),
        (&["--no-such-option"][..], "--no-such-option"),
    ] {
        let out = client(Path::new("/nonexistent"), args, dev.path());
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("qemu-pr-client: "), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("Usage:"), "{args:?}: {err}");
    }
}

#[test]
fn library_requests_no_features_even_when_offered() {
    let dev = device();
    let f = fake(0x1, |_| wire(PrReply::good(ReadKeys::default().encode())));
    let mut conn = HelperConnection::connect(&f.socket, None).unwrap();
    assert_eq!(conn.server_features(), 1);
    let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 64).unwrap();
    let reply = conn.execute(dev.as_file().as_fd(), &req).unwrap();
    drop(conn);
    let got = f.one();
    assert_eq!(got.client_features, [0; 4]);
    assert_eq!(reply.header.scsi_status(), ScsiStatus::GOOD);
    assert_eq!(reply.payload, ReadKeys::default().encode());
}

#[test]
fn library_reports_payload_over_allocation_as_malformed() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(vec![0; 32])));
    let mut conn = HelperConnection::connect(&f.socket, None).unwrap();
    let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 16).unwrap();
    let err = conn.execute(dev.as_file().as_fd(), &req).unwrap_err();
    drop(conn);
    f.one();
    assert!(matches!(err, ClientError::MalformedReply(_)), "{err}");
}

#[test]
fn library_sees_a_close_before_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("h.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let t = std::thread::spawn(move || drop(listener.accept().unwrap()));
    let err = HelperConnection::connect(&socket, None).unwrap_err();
    t.join().unwrap();
    assert!(
        matches!(
            err,
            ClientError::Closed {
                phase: Phase::Negotiation
            }
        ),
        "{err}"
    );
}

#[test]
fn library_pr_out_round_trip() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(Vec::new())));
    let mut conn = HelperConnection::connect(&f.socket, None).unwrap();
    let mut o = PrOutOptions::new(PrOutServiceAction::Preempt);
    o.reservation_key = 2;
    o.service_action_key = 1;
    o.type_code = ReservationType::WriteExclusive.code();
    let reply = conn
        .execute(dev.as_file().as_fd(), &o.build().unwrap())
        .unwrap();
    drop(conn);
    let got = f.one();
    assert_eq!(&got.cdb[..3], &[0x5f, 0x04, 0x01]);
    assert_eq!(got.params.len(), 24);
    assert_eq!(reply.header.scsi_status(), ScsiStatus::GOOD);
}
