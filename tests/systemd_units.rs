//! The shipped systemd units must pass `systemd-analyze verify` and must
//! keep the hardening the README promises.

use std::path::Path;
use std::process::Command;

fn unit(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name),
    )
    .unwrap()
}

#[test]
fn service_keeps_its_hardening() {
    let service = unit("qemu-pr-helper.service");
    for line in [
        "Type=notify",
        "CapabilityBoundingSet=CAP_SYS_RAWIO",
        "AmbientCapabilities=CAP_SYS_RAWIO",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateNetwork=yes",
        "DynamicUser=yes",
        "RestrictAddressFamilies=AF_UNIX",
    ] {
        assert!(service.lines().any(|l| l == line), "service lacks {line}");
    }
    assert!(!service.lines().any(|l| l.starts_with("PrivateDevices=")));
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("*** SKIPPED: systemd-analyze is not installed ***");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["qemu-pr-helper.socket", "qemu-pr-helper.service"] {
        // ExecStart must name an existing binary: point it at ours.
        let text = unit(name).replace(
            "/usr/bin/qemu-pr-helper",
            env!("CARGO_BIN_EXE_qemu-pr-helper"),
        );
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("qemu-pr-helper.socket"))
        .arg(dir.path().join("qemu-pr-helper.service"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
