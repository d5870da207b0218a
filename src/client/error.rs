// SPDX-License-Identifier: GPL-2.0-or-later
//! Why `qemu-pr-client` could not show an answer, and the exit status each
//! reason gives (sg3_utils' values where it has one).

use std::path::PathBuf;

use super::exit_status;
use super::shown::shown_path;
use super::{ClientError, Phase};
use crate::domain::device::DeviceKind;

/// Why the client could not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options do not describe one command (a bad value, no device).
    #[error("{0}")]
    Syntax(String),
    /// Options that contradict each other.
    #[error("{0}")]
    Contradict(String),
    /// The device could not be opened from this account.
    #[error("cannot open {} {mode}: {source}{hint}", shown_path(.path))]
    Device {
        /// The device named on the command line.
        path: PathBuf,
        /// "read-only" or "read-write".
        mode: &'static str,
        /// What to try instead, or nothing.
        hint: &'static str,
        /// What open(2) said.
        #[source]
        source: std::io::Error,
    },
    /// The device is a regular file (or a directory, a FIFO ...): a helper
    /// that is not emulating would answer ABORTED COMMAND with no reason.
    #[error(
        "{} is {what}, not a block or character device: a helper runs SCSI commands only \
         on block, sg and bsg devices (if the helper serves its emulated device, --emulate, \
         pass --emulated)",
        shown_path(.path)
    )]
    NotADevice {
        /// The device named on the command line.
        path: PathBuf,
        /// "a regular file", "a directory", ...
        what: &'static str,
    },
    /// The helper could not be reached or broke the protocol.
    #[error("{0}")]
    Helper(#[from] ClientError),
    /// `--direct`: SG_IO could not be used on the device.
    #[error("{0}")]
    Direct(#[from] DirectError),
}

impl Error {
    /// The process exit status for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            Error::Syntax(_) => exit_status::SYNTAX_ERROR,
            Error::Contradict(_) => exit_status::CONTRADICT,
            Error::Device { source, .. } => exit_status::for_errno(source.raw_os_error()),
            Error::NotADevice { .. } => exit_status::FILE_ERROR,
            Error::Direct(DirectError::NotADevice(_)) => exit_status::FILE_ERROR,
            Error::Direct(DirectError::Io(e)) => exit_status::for_errno(e.raw_os_error()),
            Error::Direct(DirectError::Reply(_)) => exit_status::OTHER,
            Error::Helper(e) => match e {
                ClientError::Timeout(_, Phase::Negotiation) => exit_status::HELPER_UNREACHABLE,
                ClientError::Timeout(..) => exit_status::TIMEOUT,
                e if e.nothing_sent() => exit_status::HELPER_UNREACHABLE,
                _ => exit_status::HELPER_PROTOCOL,
            },
        }
    }

    /// The `error` field of `--json`.
    pub fn kind(&self) -> &'static str {
        match self.exit_status() {
            exit_status::SYNTAX_ERROR => "syntax",
            exit_status::CONTRADICT => "contradict",
            exit_status::FILE_ERROR => "not_a_device",
            exit_status::TIMEOUT => "timeout",
            exit_status::HELPER_UNREACHABLE => "helper_unreachable",
            exit_status::HELPER_PROTOCOL => "helper_protocol",
            _ => "device",
        }
    }
}

/// Why `--direct` could not run.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// SG_IO is only for block and sg/bsg devices.
    #[error("--direct needs a block, sg or bsg device, not {}", .0.described())]
    NotADevice(DeviceKind),
    /// The device fd could not be duplicated for inspection.
    #[error("cannot inspect the device: {0}")]
    Io(#[from] std::io::Error),
    /// The reply did not decode (cannot happen for a reply built here).
    #[error("{0}")]
    Reply(#[from] ClientError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn helper_failures_split_on_whether_the_request_went_out() {
        let before = Error::Helper(ClientError::SocketMissing("/x".into()));
        assert_eq!(before.exit_status(), 37);
        assert_eq!(before.kind(), "helper_unreachable");
        let negotiating = Error::Helper(ClientError::Closed {
            phase: Phase::Negotiation,
        });
        assert_eq!(negotiating.exit_status(), 37);
        let after = Error::Helper(ClientError::Closed {
            phase: Phase::Reply,
        });
        assert_eq!(after.exit_status(), 38);
        assert_eq!(after.kind(), "helper_protocol");
        let silent = Error::Helper(ClientError::Timeout(Duration::from_secs(1), Phase::Reply));
        assert_eq!(silent.exit_status(), 33);
        let slow_start = Error::Helper(ClientError::Timeout(
            Duration::from_secs(1),
            Phase::Negotiation,
        ));
        assert_eq!(slow_start.exit_status(), 37);
    }

    #[test]
    fn device_errors_carry_errno_like_sg_persist() {
        let e = Error::Device {
            path: "/dev/nope".into(),
            mode: "read-write",
            hint: "",
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(e.exit_status(), 52);
        assert_eq!(e.kind(), "device");
        let f = Error::NotADevice {
            path: "/tmp/disk.img".into(),
            what: "a regular file",
        };
        assert_eq!(f.exit_status(), 15);
        assert!(f.to_string().contains("--emulated"));
    }
}
