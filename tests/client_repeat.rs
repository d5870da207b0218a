//! `qemu-pr-client --repeat`: one connection, the command sent N times, a
//! latency summary on stderr; and `--direct`, which refuses what SG_IO may
//! not see.

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
