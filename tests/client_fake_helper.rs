//! The client against a tiny in-test helper: a std Unix listener thread that
//! negotiates, receives the CDB with its fd and the parameter list, checks
//! them, and answers with bytes the test chooses. No root, no device.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use qemu_pr_helper::client::{ClientError, HelperConnection, Phase, PrOutOptions, PrRequest};
use qemu_pr_helper::domain::cdb::{PrCdb, CDB_LEN};
use qemu_pr_helper::domain::framing::PrReply;
use qemu_pr_helper::domain::pr_in_data::{ReadKeys, ReadReservation, Reservation};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseCode};
use qemu_pr_helper::domain::service_action::{
    PrInServiceAction, PrOutServiceAction, ReservationKey, ReservationType,
};

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
    thread: JoinHandle<Received>,
}

fn recv_cdb(stream: &UnixStream) -> ([u8; CDB_LEN], Vec<OwnedFd>) {
    let mut cdb = [0u8; CDB_LEN];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < CDB_LEN {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut cdb[got..])];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel just installed this fd for us with
                    // SCM_RIGHTS; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        assert!(msg.bytes > 0, "client closed before sending a whole CDB");
        got += msg.bytes;
    }
    (cdb, fds)
}

/// Starts a helper that serves one request on one connection.
fn fake(server_features: u32, answer: impl FnOnce(&Received) -> Answer + Send + 'static) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("helper.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(&server_features.to_be_bytes()).unwrap();
        let mut client_features = [0u8; 4];
        stream.read_exact(&mut client_features).unwrap();
        let (cdb, fds) = recv_cdb(&stream);
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
        if let Answer::Reply(bytes) = answer(&received) {
            stream.write_all(&bytes).unwrap();
        }
        received
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

fn device() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

fn client(socket: &Path, args: &[&str], device: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qemu-pr-client"))
        .arg("--socket")
        .arg(socket)
        .arg("--timeout")
        .arg("10")
        .args(args)
        .arg(device)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
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
    let got = f.thread.join().unwrap();
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
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(ReadKeys::default().encode())));
    let out = client(&f.socket, &["--readonly", "-i", "-k"], dev.path());
    let got = f.thread.join().unwrap();
    assert_eq!(got.fd_flags() & libc::O_ACCMODE, libc::O_RDONLY);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn register_sends_the_parameter_list() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(Vec::new())));
    let out = client(
        &f.socket,
        &["--out", "--register", "--param-sark", "0xabc", "-Z"],
        dev.path(),
    );
    let got = f.thread.join().unwrap();
    assert_eq!(&got.cdb[..10], &[0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0]);
    let mut expected = vec![0u8; 24];
    expected[14..16].copy_from_slice(&[0x0a, 0xbc]);
    expected[20] = 0x01;
    assert_eq!(got.params, expected);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "PR out (REGISTER): command successful\n");
}

#[test]
fn check_condition_exits_2_with_sense_on_stderr() {
    let dev = device();
    let f = fake(0, |_| {
        wire(PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB))
    });
    let out = client(&f.socket, &["-o", "-R", "-K", "1", "-T", "9"], dev.path());
    let got = f.thread.join().unwrap();
    assert_eq!(got.cdb[2], 9);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "PR out (RESERVE): CHECK CONDITION: ILLEGAL REQUEST (5h) asc/ascq 24h/00h \
         INVALID FIELD IN CDB\n"
    );
}

#[test]
fn reservation_conflict_exits_3_and_busy_exits_4() {
    for (status, code) in [
        (ScsiStatus::RESERVATION_CONFLICT, 3),
        (ScsiStatus::BUSY, 4),
        (ScsiStatus::TASK_SET_FULL, 4),
    ] {
        let dev = device();
        let f = fake(0, move |_| wire(PrReply::status_only(status)));
        let out = client(&f.socket, &["-o", "-L", "-K", "1", "-T", "1"], dev.path());
        f.thread.join().unwrap();
        assert_eq!(out.status.code(), Some(code), "{status}");
        assert!(text(&out.stderr).contains(status.name()));
    }
}

#[test]
fn json_is_one_line_with_decoded_fields() {
    let dev = device();
    let data = ReadReservation {
        generation: 5,
        reservation: Some(Reservation::new(
            ReservationKey(0x77),
            ReservationType::ExclusiveAccess,
        )),
    };
    let f = fake(0, move |_| wire(PrReply::good(data.encode())));
    let out = client(&f.socket, &["-i", "-r", "--json"], dev.path());
    f.thread.join().unwrap();
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 1);
    assert!(s.starts_with("{\"status\":0,\"status_name\":\"GOOD\",\"sense\":\""));
    assert!(s.contains(&format!("\"sense\":\"{}\"", "00".repeat(96))));
    assert!(s.contains(
        "\"generation\":5,\"reservation\":{\"key\":\"0x77\",\"scope\":0,\"type\":3,\
         \"type_name\":\"Exclusive Access\"}"
    ));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn hex_prints_header_and_payload() {
    let dev = device();
    let f = fake(0, |_| wire(PrReply::good(ReadKeys::default().encode())));
    let out = client(&f.socket, &["-k", "--hex"], dev.path());
    f.thread.join().unwrap();
    let s = text(&out.stdout);
    assert_eq!(s.lines().count(), 7);
    assert!(s.starts_with("0000: 00 00 00 00 00 00 00 08"));
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
    let got = f.thread.join().unwrap();
    assert_eq!(&got.cdb[7..9], &[0x00, 0x10]);
    assert!(text(&out.stdout).contains("1 registered reservation key follows:"));
    assert!(text(&out.stderr).contains("truncated: 16 of 32 bytes"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn helper_closing_after_the_cdb_exits_5_with_a_hint() {
    let dev = device();
    let f = fake(0, |_| Answer::Close);
    let out = client(&f.socket, &["-o", "-C", "-K", "1"], dev.path());
    f.thread.join().unwrap();
    assert_eq!(out.status.code(), Some(5));
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
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stderr).contains("no helper socket at"));

    let out = client(
        &dir.path().join("none.sock"),
        &["-k"],
        &dir.path().join("no-such-device"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot open"));
}

#[test]
fn usage_errors_exit_1() {
    let dev = device();
    let out = client(Path::new("/nonexistent"), &["-k", "-r"], dev.path());
    assert_eq!(out.status.code(), Some(1));
    let out = client(Path::new("/nonexistent"), &["-o"], dev.path());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn library_requests_no_features_even_when_offered() {
    let dev = device();
    let f = fake(0x1, |_| wire(PrReply::good(ReadKeys::default().encode())));
    let mut conn = HelperConnection::connect(&f.socket, None).unwrap();
    assert_eq!(conn.server_features(), 1);
    let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 64).unwrap();
    let reply = conn.execute(dev.as_file().as_fd(), &req).unwrap();
    let got = f.thread.join().unwrap();
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
    f.thread.join().unwrap();
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
    let got = f.thread.join().unwrap();
    assert_eq!(&got.cdb[..3], &[0x5f, 0x04, 0x01]);
    assert_eq!(got.params.len(), 24);
    assert_eq!(reply.header.scsi_status(), ScsiStatus::GOOD);
}
