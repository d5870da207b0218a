//! The command line of `qemu-pr-client`: options in sg_persist's spelling,
//! turned into one request. In the library so that man pages and shell
//! completions are generated from the same definition.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use clap::{ArgGroup, Parser};

use crate::client::request::{parse_alloc_len, parse_hex_u64, parse_number, parse_transport_id};
use crate::client::{ClientError, PrOutOptions, PrRequest};
use crate::domain::param_list::TransportId;
use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};

const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  GOOD
  1  usage or local error (bad option, device cannot be opened)
  2  CHECK CONDITION (sense on stderr, or in --json)
  3  RESERVATION CONFLICT
  4  other SCSI status (BUSY, TASK SET FULL, ...)
  5  connection or protocol failure (helper unreachable, or it closed the connection)

Examples:
  qemu-pr-client --in --read-keys /dev/sdb
  qemu-pr-client --out --register --param-sark=0x1234 /dev/sdb
  qemu-pr-client --out --reserve --param-rk=0x1234 --prout-type=5 /dev/sdb
  qemu-pr-client -i -s --json --socket /run/qemu-pr-helper.sock /dev/mapper/mpatha";

/// Send one PERSISTENT RESERVE IN/OUT command through a qemu-pr-helper, as QEMU does.
///
/// Options follow sg_persist: keys (-K, -S) and the allocation length (-l) are hex.
/// The device is opened here and its fd handed to the helper, which runs the command
/// with its own privileges: this checks that the helper works with this device, from
/// this account.
#[derive(Debug, Parser)]
#[command(name = "qemu-pr-client", version, after_long_help = EXIT_STATUS_HELP)]
#[command(group(ArgGroup::new("in_action").args(
    ["read_keys", "read_reservation", "report_capabilities", "read_full_status"])))]
#[command(group(ArgGroup::new("out_action").args(
    ["register", "register_ignore", "reserve", "release", "clear", "preempt",
     "preempt_abort", "register_move"]).conflicts_with("in_action")))]
pub struct Cli {
    /// PERSISTENT RESERVE IN (the default; alone it means --read-keys).
    #[arg(short = 'i', long = "in", conflicts_with_all = ["pr_out", "out_action"])]
    pub pr_in: bool,
    /// PERSISTENT RESERVE OUT (needs one service action).
    #[arg(short = 'o', long = "out")]
    pub pr_out: bool,

    /// PR IN: READ KEYS.
    #[arg(short = 'k', long)]
    pub read_keys: bool,
    /// PR IN: READ RESERVATION.
    #[arg(short = 'r', long)]
    pub read_reservation: bool,
    /// PR IN: REPORT CAPABILITIES.
    #[arg(short = 'c', long)]
    pub report_capabilities: bool,
    /// PR IN: READ FULL STATUS.
    #[arg(short = 's', long, visible_alias = "read-status")]
    pub read_full_status: bool,

    /// PR OUT: REGISTER.
    #[arg(short = 'G', long)]
    pub register: bool,
    /// PR OUT: REGISTER AND IGNORE EXISTING KEY.
    #[arg(short = 'I', long)]
    pub register_ignore: bool,
    /// PR OUT: RESERVE.
    #[arg(short = 'R', long)]
    pub reserve: bool,
    /// PR OUT: RELEASE.
    #[arg(short = 'L', long)]
    pub release: bool,
    /// PR OUT: CLEAR.
    #[arg(short = 'C', long)]
    pub clear: bool,
    /// PR OUT: PREEMPT.
    #[arg(short = 'P', long)]
    pub preempt: bool,
    /// PR OUT: PREEMPT AND ABORT.
    #[arg(short = 'A', long)]
    pub preempt_abort: bool,
    /// PR OUT: REGISTER AND MOVE.
    #[arg(short = 'M', long)]
    pub register_move: bool,

    /// RESERVATION KEY (hex, with or without 0x).
    #[arg(short = 'K', long, value_name = "RK", value_parser = parse_hex_u64, default_value = "0")]
    pub param_rk: u64,
    /// SERVICE ACTION RESERVATION KEY (hex, with or without 0x).
    #[arg(short = 'S', long, value_name = "SARK", value_parser = parse_hex_u64, default_value = "0")]
    pub param_sark: u64,
    /// Reservation TYPE: 1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR.
    #[arg(short = 'T', long, value_name = "TYPE", value_parser = parse_type, default_value = "0")]
    pub prout_type: u8,
    /// Set APTPL (persist through power loss).
    #[arg(short = 'Z', long)]
    pub param_aptpl: bool,
    /// Set ALL_TG_PT (register through every target port).
    #[arg(short = 'Y', long)]
    pub param_alltgpt: bool,
    /// TransportID: sas,ADDR | fcp,WWN | iSCSI name | hex bytes. Repeat for REGISTER
    /// with SPEC_I_PT; exactly one for REGISTER AND MOVE.
    #[arg(short = 'X', long, value_name = "TID", value_parser = parse_transport_id)]
    pub transport_id: Vec<TransportId>,
    /// RELATIVE TARGET PORT IDENTIFIER for REGISTER AND MOVE (decimal or 0x hex).
    #[arg(short = 'Q', long, value_name = "RTPI", value_parser = parse_port)]
    pub relative_target_port: Option<u16>,
    /// Set UNREG for REGISTER AND MOVE.
    #[arg(short = 'U', long)]
    pub unreg: bool,
    /// PR IN allocation length, hex like sg_persist (default 2000 = 8192 bytes, the maximum).
    #[arg(short = 'l', long, value_name = "LEN", value_parser = parse_alloc_len, default_value = "2000")]
    pub alloc_length: u16,

    /// The helper's socket.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/run/qemu-pr-helper.sock"
    )]
    pub socket: PathBuf,
    /// Open the device read-only (the helper refuses PR OUT on such an fd).
    #[arg(long)]
    pub readonly: bool,
    /// Seconds to wait for the helper before giving up (0: forever).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Print one line of JSON instead of text.
    #[arg(long, conflicts_with = "hex")]
    pub json: bool,
    /// Print the raw reply (header and payload) in hex.
    #[arg(short = 'H', long)]
    pub hex: bool,
    /// Send the command N times over one connection and print the round
    /// trip's median, p99, lowest and highest to stderr; the answer printed
    /// is the last one.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Run the command with SG_IO on the device, in this process, instead of
    /// through a helper (needs CAP_SYS_RAWIO): with --repeat, the baseline
    /// for the helper's round trip.
    #[arg(long, conflicts_with = "socket")]
    pub direct: bool,

    /// The device (any file works with an emulated device).
    #[arg(value_name = "DEVICE")]
    pub device: PathBuf,
}

fn parse_type(s: &str) -> Result<u8, String> {
    parse_number(s)?
        .try_into()
        .ok()
        .filter(|&t: &u8| t <= 0x0f)
        .ok_or_else(|| format!("type '{s}' does not fit in 4 bits"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    parse_number(s)?
        .try_into()
        .map_err(|_| format!("relative target port '{s}' does not fit in 16 bits"))
}

/// Why the client could not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options do not describe one valid command.
    #[error("{0}")]
    Usage(String),
    /// The device could not be opened from this account.
    #[error("cannot open {path} {mode}: {source}{hint}")]
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
    /// The helper could not be reached or broke the protocol.
    #[error("{0}")]
    Helper(#[from] ClientError),
}

impl Error {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Device { .. } => 1,
            Error::Helper(_) => 5,
        }
    }
}

impl Cli {
    fn in_action(&self) -> Option<PrInServiceAction> {
        [
            (self.read_keys, PrInServiceAction::ReadKeys),
            (self.read_reservation, PrInServiceAction::ReadReservation),
            (
                self.report_capabilities,
                PrInServiceAction::ReportCapabilities,
            ),
            (self.read_full_status, PrInServiceAction::ReadFullStatus),
        ]
        .into_iter()
        .find_map(|(set, a)| set.then_some(a))
    }

    fn out_action(&self) -> Option<PrOutServiceAction> {
        [
            (self.register, PrOutServiceAction::Register),
            (
                self.register_ignore,
                PrOutServiceAction::RegisterAndIgnoreExistingKey,
            ),
            (self.reserve, PrOutServiceAction::Reserve),
            (self.release, PrOutServiceAction::Release),
            (self.clear, PrOutServiceAction::Clear),
            (self.preempt, PrOutServiceAction::Preempt),
            (self.preempt_abort, PrOutServiceAction::PreemptAndAbort),
            (self.register_move, PrOutServiceAction::RegisterAndMove),
        ]
        .into_iter()
        .find_map(|(set, a)| set.then_some(a))
    }

    /// The request the options describe.
    pub fn request(&self) -> Result<PrRequest, Error> {
        let usage = |e: &dyn std::fmt::Display| Error::Usage(e.to_string());
        match self.out_action() {
            None if self.pr_out => Err(Error::Usage(
                "--out needs a service action: --register, --register-ignore, --reserve, \
                 --release, --clear, --preempt, --preempt-abort or --register-move"
                    .into(),
            )),
            None => {
                let action = self.in_action().unwrap_or(PrInServiceAction::ReadKeys);
                PrRequest::pr_in(action, self.alloc_length).map_err(|e| usage(&e))
            }
            Some(action) => PrOutOptions {
                action,
                type_code: self.prout_type,
                reservation_key: self.param_rk,
                service_action_key: self.param_sark,
                aptpl: self.param_aptpl,
                all_tg_pt: self.param_alltgpt,
                transport_ids: self.transport_id.clone(),
                relative_target_port: self.relative_target_port,
                unreg: self.unreg,
            }
            .build()
            .map_err(|e| usage(&e)),
        }
    }

    /// Opens the device the way sg_persist does, for its fd to be handed over.
    pub fn open_device(&self) -> Result<File, Error> {
        let mut o = OpenOptions::new();
        o.read(true).write(!self.readonly);
        // Like sg_persist: do not wait for media or a busy device at open.
        o.custom_flags(libc::O_NONBLOCK);
        o.open(&self.device).map_err(|source| {
            let denied = source.kind() == std::io::ErrorKind::PermissionDenied;
            Error::Device {
                path: self.device.clone(),
                mode: if self.readonly {
                    "read-only"
                } else {
                    "read-write"
                },
                hint: if denied && !self.readonly {
                    " (PR IN works with --readonly; PR OUT needs write access)"
                } else {
                    ""
                },
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cdb::PrDirection;
    use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("qemu-pr-client").chain(args.iter().copied()))
    }

    fn request(args: &[&str]) -> PrRequest {
        parse(args).unwrap().request().unwrap()
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
    fn each_out_action() {
        for (flag, sa) in [
            ("-G", 0),
            ("-R", 1),
            ("-L", 2),
            ("-C", 3),
            ("-P", 4),
            ("-A", 5),
            ("-I", 6),
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
    fn register_with_transport_ids_and_flags() {
        let r = request(&[
            "--out",
            "--register",
            "--param-sark=1",
            "-Z",
            "-Y",
            "-X",
            "sas,1",
            "-X",
            "iqn.2026-11.example:a",
            "d",
        ]);
        let p = PrOutParameters::try_from(r.params()).unwrap();
        assert!(p.aptpl && p.all_tg_pt);
        assert_eq!(p.transport_ids.unwrap().len(), 2);
    }

    #[test]
    fn register_move() {
        let r = request(&[
            "-o", "-M", "-K", "1", "-S", "2", "-T", "1", "-X", "sas,42", "-Q", "3", "-U", "d",
        ]);
        let p = RegisterAndMoveParameters::try_from(r.params()).unwrap();
        assert!(p.unreg);
        assert_eq!(p.relative_target_port, 3);
        assert!(matches!(
            parse(&["-o", "-M", "d"]).unwrap().request(),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn usage_errors() {
        // Two actions, in with out, out without an action, bad values.
        assert!(parse(&["-k", "-r", "d"]).is_err());
        assert!(parse(&["-G", "-R", "d"]).is_err());
        assert!(parse(&["-i", "-G", "d"]).is_err());
        assert!(parse(&["-k", "-G", "d"]).is_err());
        assert!(parse(&["-o", "-G", "-T", "16", "d"]).is_err());
        assert!(parse(&["-o", "-G", "-K", "nothex", "d"]).is_err());
        assert!(parse(&["-l", "2001", "d"]).is_err());
        assert!(parse(&["-o", "-G"]).is_err());
        assert!(parse(&["--json", "--hex", "d"]).is_err());
        assert!(matches!(
            parse(&["-o", "d"]).unwrap().request(),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            parse(&["-o", "-L", "-U", "d"]).unwrap().request(),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn out_action_implies_out() {
        let r = request(&["-R", "-K", "1", "-T", "1", "d"]);
        assert_eq!(r.cdb().direction(), PrDirection::Out);
    }

    #[test]
    fn help_documents_exit_status() {
        let e = parse(&["--help"]).unwrap_err();
        assert!(!e.use_stderr());
        let text = e.to_string();
        assert!(text.contains("3  RESERVATION CONFLICT"));
        assert!(text.contains("5  connection or protocol failure"));
    }
}
