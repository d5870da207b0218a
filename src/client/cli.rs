// SPDX-License-Identifier: GPL-2.0-or-later
//! The command line of `qemu-pr-client`: sg_persist's options (sg3_utils
//! 1.48), turned into one request. In the library so that man pages and
//! shell completions are generated from the same definition.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use clap::{ArgAction, ArgGroup, Parser};

use crate::client::error::Error;
use crate::client::request::{parse_alloc_len, parse_hex_u64, parse_maxlen};
use crate::client::shown::shown;
use crate::client::{exit_status, transport_id, PrOutOptions, PrRequest, RequestError};
use crate::domain::device::DeviceKind;
use crate::domain::param_list::TransportId;
use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};

/// The most runs `--repeat` takes: every round trip is kept for the
/// median and p99 (16 MB at most), never memory in proportion to any u32.
pub const MAX_REPEAT: u32 = 1_000_000;

/// What `--help` prints after the options.
const AFTER_HELP: &str = "\
Examples:
  qemu-pr-client --status /dev/sdb
  qemu-pr-client --in --read-keys /dev/sdb
  qemu-pr-client --out --register --param-sark=0x1234 /dev/sdb
  qemu-pr-client --out --reserve --param-rk=0x1234 --prout-type=5 /dev/sdb
  qemu-pr-client -i -s --json --socket /run/qemu-pr-helper.sock /dev/mapper/mpatha
  qemu-pr-client --emulated --socket /tmp/pr.sock -k /tmp/disk.img";

/// Send one PERSISTENT RESERVE IN/OUT command through a qemu-pr-helper, as QEMU does.
///
/// Options are sg_persist's (sg3_utils 1.48; its underscore spellings, such as
/// `--read_keys` and `--param_sark`, are accepted too): keys (-K, -S), the type (-T), the
/// relative target port (-Q) and the allocation length (-l) are hex; exit statuses are
/// sg3_utils' values. The device is opened here and its fd handed to the helper, which
/// runs the command with its own privileges: this checks that the helper works with this
/// device, from this account.
#[derive(Debug, Parser)]
#[command(name = "qemu-pr-client", version)]
#[command(after_long_help = format!("{}\n\n{AFTER_HELP}", exit_status::HELP))]
#[command(group(ArgGroup::new("in_action").args(
    ["read_keys", "read_reservation", "report_capabilities", "read_full_status", "status"])))]
#[command(group(ArgGroup::new("out_action").args(
    ["register", "register_ignore", "reserve", "release", "clear", "preempt",
     "preempt_abort", "register_move", "replace_lost"]).conflicts_with("in_action")))]
pub struct Cli {
    /// PERSISTENT RESERVE IN (the default; alone it means --read-keys).
    #[arg(short = 'i', long = "in", conflicts_with_all = ["pr_out", "out_action"])]
    pub pr_in: bool,
    /// PERSISTENT RESERVE OUT (needs one service action).
    #[arg(short = 'o', long = "out")]
    pub pr_out: bool,

    /// PR IN: READ KEYS.
    #[arg(short = 'k', long, alias = "read_keys")]
    pub read_keys: bool,
    /// PR IN: READ RESERVATION.
    #[arg(short = 'r', long, alias = "read_reservation")]
    pub read_reservation: bool,
    /// PR IN: REPORT CAPABILITIES.
    #[arg(short = 'c', long, alias = "report_capabilities")]
    pub report_capabilities: bool,
    /// PR IN: READ FULL STATUS.
    #[arg(short = 's', long, visible_alias = "read-status",
          aliases = ["read_full_status", "read_status"])]
    pub read_full_status: bool,
    /// One table of the whole state: generation, reservation type and scope, every
    /// registrant's key, port and TransportID, the holder marked. From READ FULL
    /// STATUS, or READ KEYS + READ RESERVATION where that is not supported.
    #[arg(long, conflicts_with_all = ["pr_out", "hex"])]
    pub status: bool,

    /// PR OUT: REGISTER.
    #[arg(short = 'G', long)]
    pub register: bool,
    /// PR OUT: REGISTER AND IGNORE EXISTING KEY.
    #[arg(short = 'I', long, alias = "register_ignore")]
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
    #[arg(short = 'A', long, alias = "preempt_abort")]
    pub preempt_abort: bool,
    /// PR OUT: REGISTER AND MOVE.
    #[arg(short = 'M', long, alias = "register_move")]
    pub register_move: bool,
    /// PR OUT: REPLACE LOST RESERVATION (give -S NEW_KEY and -T TYPE).
    #[arg(short = 'z', long, alias = "replace_lost")]
    pub replace_lost: bool,

    /// RESERVATION KEY (hex, with or without 0x).
    #[arg(short = 'K', long, alias = "param_rk", value_name = "RK", value_parser = parse_hex_u64, default_value = "0")]
    pub param_rk: u64,
    /// SERVICE ACTION RESERVATION KEY (hex, with or without 0x).
    #[arg(short = 'S', long, alias = "param_sark", value_name = "SARK", value_parser = parse_hex_u64, default_value = "0")]
    pub param_sark: u64,
    /// Reservation TYPE (hex): 1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR.
    #[arg(short = 'T', long, alias = "prout_type", value_name = "TYPE", value_parser = parse_type, default_value = "0")]
    pub prout_type: u8,
    /// Reservation SCOPE (hex, 0 to f), beyond sg_persist: 0 (LU_SCOPE, the
    /// only one SPC-4 defines) unless a test wants to see another refused.
    #[arg(long, value_name = "SCOPE", value_parser = parse_scope, default_value = "0")]
    pub scope: u8,
    /// Set APTPL (persist through power loss).
    #[arg(short = 'Z', long, alias = "param_aptpl")]
    pub param_aptpl: bool,
    /// Set ALL_TG_PT (register through every target port).
    #[arg(short = 'Y', long, alias = "param_alltgpt")]
    pub param_alltgpt: bool,
    /// TransportID: sas,ADDR | fcp,WWN | spi,ADDR,RTPI | sbp,EUI64 | srp,ID | sop,ID | iSCSI
    /// name | hex bytes | file=NAME or - (one a line, # comments). Repeat for REGISTER with
    /// SPEC_I_PT; exactly one for REGISTER AND MOVE.
    #[arg(short = 'X', long, alias = "transport_id", value_name = "TIDS")]
    pub transport_id: Vec<String>,
    /// RELATIVE TARGET PORT IDENTIFIER for REGISTER AND MOVE (hex, 0 to ffff).
    #[arg(short = 'Q', long, alias = "relative_target_port", value_name = "RTPI",
          value_parser = parse_port)]
    pub relative_target_port: Option<u16>,
    /// Set UNREG for REGISTER AND MOVE.
    #[arg(
        short = 'U',
        long,
        visible_alias = "param-unreg",
        alias = "param_unreg"
    )]
    pub unreg: bool,
    /// PR IN allocation length in hex (default 2000 = 8192 bytes, the helper's maximum).
    #[arg(short = 'l', long, alias = "alloc_length", value_name = "LEN",
          value_parser = parse_alloc_len)]
    pub alloc_length: Option<u16>,
    /// PR IN allocation length, decimal by default (8192, 8k, 0x2000, 2000h).
    #[arg(short = 'm', long, value_name = "LEN", value_parser = parse_maxlen)]
    pub maxlen: Option<u16>,

    /// Print PR IN data in hex as sg_persist does: -H the data after its header, -HH all
    /// of it with offsets, -HHH without offsets.
    #[arg(short = 'H', long, action = ArgAction::Count)]
    pub hex: u8,
    /// Show what is sent and received on standard error: -v the CDB and the helper's raw
    /// reply header, -vv also the PR OUT parameter list.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Accepted for sg_persist's command lines; does nothing here: the helper runs only
    /// PERSISTENT RESERVE IN/OUT, so no INQUIRY is ever sent (and none is printed).
    #[arg(short = 'n', long, alias = "no_inquiry")]
    pub no_inquiry: bool,
    /// Open the device read-only (the helper refuses PR OUT on such an fd); -yy forces a
    /// read-write open despite SG_PERSIST_IN_RDONLY, which otherwise makes PR IN open
    /// read-only, as with sg_persist.
    #[arg(short = 'y', long, action = ArgAction::Count)]
    pub readonly: u8,
    /// The device, as an option instead of the argument.
    #[arg(short = 'd', long = "device", value_name = "DEVICE")]
    pub device_option: Option<PathBuf>,

    /// The helper's socket.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/var/run/qemu-pr-helper.sock"
    )]
    pub socket: PathBuf,
    /// The helper serves its emulated device (--emulate): DEVICE may be any file. Without
    /// it a DEVICE that is not a block or character device is refused before anything is
    /// sent (exit 15).
    #[arg(long)]
    pub emulated: bool,
    /// Seconds to wait for the helper before giving up (0: forever).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Print one line of JSON for every outcome, failures included.
    #[arg(long, conflicts_with = "hex")]
    pub json: bool,
    /// Send the command N times (at most 1000000) over one connection and
    /// print the round trip's median, p99, lowest and highest to stderr; the
    /// answer printed is the last one.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_REPEAT)))]
    pub repeat: u32,
    /// Run the command with SG_IO on the device, in this process, instead of
    /// through a helper (needs CAP_SYS_RAWIO): with --repeat, the baseline
    /// for the helper's round trip.
    #[arg(long, conflicts_with_all = ["socket", "emulated"])]
    pub direct: bool,

    /// The device (block, sg or bsg; any file with --emulated).
    #[arg(value_name = "DEVICE")]
    pub device: Option<PathBuf>,
}

/// TYPE is hex in sg_persist (`sscanf("%x")`); four bits on the wire.
fn parse_type(s: &str) -> Result<u8, String> {
    parse_hex_u64(s)?
        .try_into()
        .ok()
        .filter(|&t: &u8| t <= 0x0f)
        .ok_or_else(|| format!("type '{}' does not fit in 4 bits", shown(s)))
}

/// SCOPE is four bits on the wire, hex as TYPE.
fn parse_scope(s: &str) -> Result<u8, String> {
    parse_hex_u64(s)?
        .try_into()
        .ok()
        .filter(|&t: &u8| t <= 0x0f)
        .ok_or_else(|| format!("scope '{}' does not fit in 4 bits", shown(s)))
}

/// RTPI is hex in sg_persist, 0 to ffff.
fn parse_port(s: &str) -> Result<u16, String> {
    parse_hex_u64(s)?
        .try_into()
        .map_err(|_| format!("relative target port '{}' is more than ffff", shown(s)))
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
            (
                self.replace_lost,
                PrOutServiceAction::ReplaceLostReservation,
            ),
        ]
        .into_iter()
        .find_map(|(set, a)| set.then_some(a))
    }

    /// The PR IN allocation length: --maxlen, else --alloc-length, else 8192.
    pub fn allocation_length(&self) -> u16 {
        self.maxlen.or(self.alloc_length).unwrap_or(0x2000)
    }

    /// The request the options describe (not used with --status).
    pub fn request(&self) -> Result<PrRequest, Error> {
        match self.out_action() {
            None if self.pr_out => Err(Error::Contradict(
                "--out needs one service action: --register, --register-ignore, --reserve, \
                 --release, --clear, --preempt, --preempt-abort, --register-move or \
                 --replace-lost"
                    .into(),
            )),
            // sg_persist's safeguard: a script that names a PR OUT action
            // without --out changes nothing.
            Some(_) if !self.pr_out => Err(Error::Contradict(
                "a PR OUT service action needs --out as well (a safeguard, as in sg_persist)"
                    .into(),
            )),
            None => {
                let action = self.in_action().unwrap_or(PrInServiceAction::ReadKeys);
                PrRequest::pr_in(action, self.allocation_length())
                    .map_err(|e| Error::Syntax(e.to_string()))
            }
            Some(action) => PrOutOptions {
                action,
                type_code: self.prout_type,
                scope: self.scope,
                reservation_key: self.param_rk,
                service_action_key: self.param_sark,
                aptpl: self.param_aptpl,
                all_tg_pt: self.param_alltgpt,
                transport_ids: self.transport_ids()?,
                // sg_persist lets -Q 0 (its default) through with any action.
                relative_target_port: self
                    .relative_target_port
                    .filter(|&p| p != 0 || action == PrOutServiceAction::RegisterAndMove),
                unreg: self.unreg,
            }
            .build()
            .map_err(|e| match e {
                RequestError::MoveNeedsOneTransportId(_) | RequestError::OnlyWithMove(_) => {
                    Error::Contradict(e.to_string())
                }
                _ => Error::Syntax(e.to_string()),
            }),
        }
    }

    /// Every -X, files and standard input read.
    fn transport_ids(&self) -> Result<Vec<TransportId>, Error> {
        let mut all = Vec::new();
        for arg in &self.transport_id {
            all.extend(transport_id::parse_argument(arg).map_err(Error::Syntax)?);
        }
        Ok(all)
    }

    /// The device: the argument or -d, not both.
    pub fn device(&self) -> Result<&Path, Error> {
        match (&self.device, &self.device_option) {
            (Some(_), Some(_)) => Err(Error::Syntax(
                "the device is given twice: as --device and as the argument".into(),
            )),
            (Some(d), None) | (None, Some(d)) => Ok(d),
            (None, None) => Err(Error::Syntax("no device given".into())),
        }
    }

    /// Whether the device is opened read-only: -y, or SG_PERSIST_IN_RDONLY
    /// for PR IN unless -yy, as sg_persist decides.
    pub fn read_only(&self) -> bool {
        match self.readonly {
            0 => {
                self.out_action().is_none()
                    && !self.pr_out
                    && std::env::var_os("SG_PERSIST_IN_RDONLY").is_some()
            }
            1 => true,
            _ => false,
        }
    }

    /// Opens the device the way sg_persist does, for its fd to be handed over;
    /// refuses anything but a block or character device unless --emulated
    /// (or --direct, where the SG_IO check names the fault).
    pub fn open_device(&self) -> Result<File, Error> {
        let path = self.device()?;
        let read_only = self.read_only();
        let mut o = OpenOptions::new();
        o.read(true).write(!read_only);
        // Like sg_persist: do not wait for media or a busy device at open.
        o.custom_flags(libc::O_NONBLOCK);
        let device_error = |source: std::io::Error| {
            let denied = source.kind() == std::io::ErrorKind::PermissionDenied;
            Error::Device {
                path: path.to_path_buf(),
                mode: if read_only { "read-only" } else { "read-write" },
                hint: if denied && !read_only {
                    " (PR IN works with --readonly; PR OUT needs write access)"
                } else {
                    ""
                },
                source,
            }
        };
        let file = o.open(path).map_err(device_error)?;
        let kind = file.metadata().map_err(device_error)?.file_type();
        // With --direct, check_direct names what SG_IO refuses.
        if self.emulated || self.direct || kind.is_block_device() || kind.is_char_device() {
            return Ok(file);
        }
        let what = if kind.is_file() {
            DeviceKind::Regular
        } else if kind.is_dir() {
            DeviceKind::Directory
        } else if kind.is_fifo() {
            DeviceKind::Fifo
        } else if kind.is_socket() {
            DeviceKind::Socket
        } else {
            DeviceKind::Other
        };
        Err(Error::NotADevice {
            path: path.to_path_buf(),
            what: what.described(),
        })
    }
}

#[cfg(test)]
mod tests;
