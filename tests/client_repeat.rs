// SPDX-License-Identifier: GPL-2.0-or-later
//! `qemu-pr-client --repeat`: one connection, the command sent N times, a
//! latency summary on stderr; `--direct`, which refuses what SG_IO may not
//! see; and the bounds on what the command line can make the client
//! allocate, read or print.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;

use common::{run_client, Helper};

/// The client on the helper's emulated device (see [`Helper::disk`]).
fn client(h: &Helper, args: &[&str]) -> std::process::Output {
    let args: Vec<&str> = ["--emulated"].iter().chain(args).copied().collect();
    run_client(&h.socket, &args, &h.dir.path().join("lu.img"))
}

#[test]
fn repeat_sends_the_command_n_times_and_prints_a_summary() {
    let h = Helper::emulated_with("");
    drop(h.disk());
    let out = client(&h, &["--repeat", "50", "-i", "-k"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("repeat "))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    assert!(
        line.starts_with("repeat via=helper n=50 median_us="),
        "{line}"
    );
    for field in ["p99_us=", "min_us=", "max_us="] {
        assert!(line.contains(field), "{line}");
    }
    // The answer is printed once, for the last command.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("PR generation").count(), 1, "{stdout}");
}

#[test]
fn repeat_uses_one_connection() {
    // On the emulated device each connection is an initiator: REGISTER sent
    // twice over one connection registers once (the second conflicts, as
    // the key is then held); over two connections it would register twice.
    let h = Helper::emulated_with("");
    let disk = h.disk();
    let _ = client(&h, &["--repeat", "2", "-o", "-G", "-S", "0x77"]);
    let mut c = h.connect().negotiate();
    let reply = c
        .command(&common::pr_in(0, 64), disk.as_raw_fd(), &[])
        .expect("READ KEYS answered");
    let listed = u32::from_be_bytes(reply.payload[4..8].try_into().unwrap());
    assert_eq!(listed, 8, "one key of 8 bytes: {:?}", reply.payload);
}

#[test]
fn direct_refuses_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qemu-pr-client"))
        .args(["--direct", "--repeat", "3", "-i", "-k"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // sg3_utils' "file error", before anything is tried.
    assert_eq!(out.status.code(), Some(15), "{stderr}");
    assert!(
        stderr.contains("--direct needs a block, sg or bsg device, not a regular file"),
        "{stderr}"
    );
    assert!(!stderr.contains("--emulated"), "no helper hint: {stderr}");
}

/// `qemu-pr-client --socket SOCKET ARGS... DEVICE` with at most 1 GiB of
/// address space (`ulimit -v`): what a client that allocates in proportion
/// to its arguments runs into at once, instead of the machine's memory.
pub fn bounded_client(
    socket: &std::path::Path,
    args: &[&str],
    device: &std::path::Path,
) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_qemu-pr-client"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .arg(device)
        .output()
        .unwrap()
}

/// The one line a refused command line gives, and its exit status.
fn refusal(out: &std::process::Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    (out.status.code(), stderr)
}

/// The largest u32 as a repeat count was allocated for up front (68 GB)
/// and aborted; the count is bounded, and refused above that bound with a
/// syntax error before anything is sent.
#[test]
fn a_huge_repeat_count_is_refused_not_allocated() {
    let h = Helper::emulated_with("");
    drop(h.disk());
    let disk = h.dir.path().join("lu.img");
    let out = bounded_client(
        &h.socket,
        &["--emulated", "--repeat", "4294967295", "-k"],
        &disk,
    );
    let (code, stderr) = refusal(&out);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "qemu-pr-client: invalid value '4294967295' for '--repeat <N>': \
         4294967295 is not in 1..=1000000 (try --help)\n"
    );
}

/// `-X file=` read without end (`/dev/zero` grew one line until memory ran
/// out); it reads at most the largest PR OUT parameter list (8192 bytes)
/// and one byte more, and refuses what is longer in one line.
#[test]
fn a_transport_id_file_is_read_only_up_to_the_largest_parameter_list() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::write(&disk, b"").unwrap();
    let socket = dir.path().join("none.sock");
    let args = ["--emulated", "-o", "-G", "-S", "1", "-X", "file=/dev/zero"];
    let (code, stderr) = refusal(&bounded_client(&socket, &args, &disk));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "qemu-pr-client: TransportIDs from /dev/zero: more than 8192 bytes, the largest PR OUT \
         parameter list; refused\n"
    );
    // 8192 bytes are read: a file of that size that holds TransportIDs
    // gets as far as the helper (there is none here: exit 37).
    let tids = dir.path().join("tids");
    let mut text = "sas,5001405000000001\n".to_string();
    text.push_str(&"#".repeat(8192 - text.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), 8192);
    std::fs::write(&tids, &text).unwrap();
    let arg = format!("file={}", tids.display());
    let out = bounded_client(
        &socket,
        &["--emulated", "-o", "-G", "-S", "1", "-X", &arg],
        &disk,
    );
    assert_eq!(
        out.status.code(),
        Some(37),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.push('\n');
    std::fs::write(&tids, &text).unwrap();
    let (code, stderr) = refusal(&bounded_client(
        &socket,
        &["--emulated", "-o", "-G", "-S", "1", "-X", &arg],
        &disk,
    ));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("more than 8192 bytes"), "{stderr}");
}

/// Names from the command line were echoed whole in errors (70 kB on one
/// line); they are cut to 64 characters, with "..." and their length.
#[test]
fn long_names_are_cut_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::write(&disk, b"").unwrap();
    let socket = dir.path().join("none.sock");
    let long = "a".repeat(70_000);
    let cut = format!("{}... (70000 bytes)", "a".repeat(64));
    let iqn = format!("iqn.{long}");
    let iqn_cut = format!("iqn.{}... (70004 bytes)", "a".repeat(60));
    let k = ["-o", "-G", "-S", "1", "-X"];
    for (args, device, status, line) in [
        (
            [&k[..], &[iqn.as_str()]].concat(),
            disk.clone(),
            1,
            format!("iSCSI name too long: '{iqn_cut}'"),
        ),
        (
            [&k[..], &[long.as_str()]].concat(),
            disk.clone(),
            1,
            format!(
                "'{cut}' is not one valid TransportID (35000 bytes; FC/SPI/SBP/SRP/SAS/SOP are \
                 24 bytes, iSCSI 4 + its additional length)"
            ),
        ),
        (
            vec!["-o", "-G", "-K", long.as_str()],
            disk.clone(),
            1,
            format!(
                "invalid value '{cut}' for '--param-rk <RK>': '{cut}' is not a hex number of \
                 at most 16 digits (try --help)"
            ),
        ),
        (
            vec!["-k"],
            dir.path().join(&long),
            86,
            format!(
                "cannot open {}/{}... ({} bytes) read-write: File name too long (os error 36)",
                dir.path().display(),
                &"a".repeat(64 - dir.path().as_os_str().len() - 1),
                dir.path().as_os_str().len() + 1 + 70_000
            ),
        ),
    ] {
        let (code, stderr) = refusal(&bounded_client(&socket, &args, &device));
        assert_eq!(code, Some(status), "{}", &stderr[..stderr.len().min(300)]);
        assert_eq!(stderr, format!("qemu-pr-client: {line}\n"));
    }
}
