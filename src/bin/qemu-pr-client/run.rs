// SPDX-License-Identifier: GPL-2.0-or-later
//! One run of `qemu-pr-client`: options in, text or JSON out, an exit status
//! back. The binary only parses the command line and calls [`run`].

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use crate::status::Status;
use crate::{hex, json, render, timing};
use qemu_pr_helper::client::cli::Cli;
use qemu_pr_helper::client::error::Error;
use qemu_pr_helper::client::request::{PrRequest, Reply};
use qemu_pr_helper::client::{exit_status, HelperConnection};
use qemu_pr_helper::domain::pr_in_data::{ReadFullStatus, ReadKeys, ReadReservation};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseCode, SenseKey};
use qemu_pr_helper::domain::service_action::PrInServiceAction;
use qemu_pr_helper::domain::sg_io_timeout::SgIoTimeout;

/// Where output goes.
pub struct Output<'a> {
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
}

/// What the helper answered.
enum Outcome {
    /// One command and its answer (boxed: the reply header is 104 bytes).
    Answer(Box<(PrRequest, Reply)>),
    /// `--status`, gathered.
    Status(Status),
}

/// Runs the command the options describe and prints the outcome; returns the
/// exit status. A closed stdout (a pipe to `head`) is not worth a second
/// error: write failures are ignored.
pub fn run(cli: &Cli, out: Output<'_>) -> u8 {
    match execute(cli, out.stderr) {
        Ok(outcome) => print_outcome(cli, &outcome, out),
        Err((command, e)) => {
            let code = e.exit_status();
            if cli.json {
                let f = json::Failure {
                    command: command.as_ref().map(|c| c.0.clone()),
                    command_name: command.map(|c| c.1),
                    error: e.kind(),
                    message: e.to_string(),
                    exit_status: code,
                };
                let _ = writeln!(out.stdout, "{}", json::line(&f));
            } else {
                let _ = writeln!(out.stderr, "qemu-pr-client: {e}");
            }
            code
        }
    }
}

/// Prints a command line that did not parse: help and version as clap
/// renders them, a mistake as one line on stderr (clap's usage line that
/// would follow names only the options given, which misleads), or with
/// `--json` anywhere on the line, that line as JSON. Returns the exit
/// status: 0 for --help and --version, 31 for contradicting options, 1 else.
pub fn usage_failure(e: &clap::Error, json_wanted: bool, out: Output<'_>) -> u8 {
    use clap::error::ErrorKind;
    let code = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        ErrorKind::ArgumentConflict => exit_status::CONTRADICT,
        _ => exit_status::SYNTAX_ERROR,
    };
    // clap's first paragraph is the fault, a conflicting group's names on
    // the lines after its first; the usage line and tips follow a blank line.
    let rendered = e.to_string();
    let mut fault = rendered.lines().take_while(|l| !l.trim().is_empty());
    let head = fault
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let names: Vec<&str> = fault.map(str::trim).collect();
    let mut first = if names.is_empty() {
        head.to_string()
    } else {
        format!("{head} {}", names.join(", "))
    };
    // clap quotes the value it refused whole: a long one is cut.
    if let Some(clap::error::ContextValue::String(value)) =
        e.get(clap::error::ContextKind::InvalidValue)
    {
        let cut = qemu_pr_helper::client::shown::shown(value);
        if cut != value.as_str() {
            first = first.replace(value.as_str(), &cut);
        }
    }
    if code != 0 && json_wanted {
        let f = json::Failure {
            command: None,
            command_name: None,
            error: if code == exit_status::CONTRADICT {
                "contradict"
            } else {
                "syntax"
            },
            message: first,
            exit_status: code,
        };
        let _ = writeln!(out.stdout, "{}", json::line(&f));
    } else if code == 0 {
        let _ = write!(out.stdout, "{e}");
    } else {
        let _ = writeln!(out.stderr, "qemu-pr-client: {first} (try --help)");
    }
    code
}

/// A failure and the command it stopped (token and name), if known.
type Failed = (Option<(String, String)>, Error);

fn execute(cli: &Cli, stderr: &mut dyn Write) -> Result<Outcome, Failed> {
    let single = if cli.status {
        None
    } else {
        Some(cli.request().map_err(|e| (None, e))?)
    };
    let command = single
        .as_ref()
        .map(|r| (render::command_token(r), render::command_name(r)));
    let fail = |e: Error| (command.clone(), e);
    let device = cli.open_device().map_err(fail)?;
    let timeout = (cli.timeout != 0).then(|| Duration::from_secs(cli.timeout));
    let via = if cli.direct {
        timing::check_direct(device.as_fd()).map_err(|e| fail(e.into()))?;
        Via::Direct(timeout.map_or(SgIoTimeout::DEFAULT, SgIoTimeout::from))
    } else {
        Via::Helper(HelperConnection::connect(&cli.socket, timeout).map_err(|e| fail(e.into()))?)
    };
    let mut session = Session {
        via,
        device: &device,
        verbose: cli.verbose,
        stderr,
    };
    match single {
        Some(request) if cli.repeat > 1 || cli.direct => {
            // The same command again and again over one connection (or
            // SG_IO here), timed; the last answer is the one printed.
            let (reply, times) =
                timing::repeat(cli.repeat, || session.execute(&request)).map_err(fail)?;
            let via = if cli.direct { "sg_io" } else { "helper" };
            let _ = writeln!(session.stderr, "{}", timing::summary(via, &times));
            Ok(Outcome::Answer(Box::new((request, reply))))
        }
        Some(request) => {
            let reply = session.execute(&request).map_err(fail)?;
            Ok(Outcome::Answer(Box::new((request, reply))))
        }
        None => gather_status(&mut session, cli.allocation_length()).map_err(fail),
    }
}

/// Where commands go: a helper's socket, or SG_IO in this process
/// (`--direct`, the baseline a helper's round trip is measured against).
enum Via {
    Helper(HelperConnection),
    Direct(SgIoTimeout),
}

/// One connection (or none, with `--direct`) and one device fd, for one or
/// more commands.
struct Session<'a> {
    via: Via,
    device: &'a std::fs::File,
    verbose: u8,
    stderr: &'a mut dyn Write,
}

impl Session<'_> {
    fn execute(&mut self, request: &PrRequest) -> Result<Reply, Error> {
        if self.verbose > 0 {
            let _ = write!(self.stderr, "{}", hex::sent(request, self.verbose));
        }
        let reply = match &mut self.via {
            Via::Helper(conn) => conn.execute(self.device.as_fd(), request)?,
            Via::Direct(timeout) => timing::direct(self.device.as_fd(), request, *timeout)?,
        };
        if self.verbose > 0 {
            let _ = write!(self.stderr, "{}", hex::received(&reply));
        }
        Ok(reply)
    }
}

/// READ FULL STATUS; where the device refuses it (ILLEGAL REQUEST), READ
/// KEYS and READ RESERVATION. Any other failure is the outcome.
fn gather_status(s: &mut Session<'_>, alloc: u16) -> Result<Outcome, Error> {
    let ask = |s: &mut Session<'_>, action| -> Result<(PrRequest, Reply), Error> {
        let request = PrRequest::pr_in(action, alloc).map_err(|e| Error::Syntax(e.to_string()))?;
        let reply = s.execute(&request)?;
        Ok((request, reply))
    };
    let good = |r: &Reply| r.header.scsi_status() == ScsiStatus::GOOD;
    let (req, full) = ask(s, PrInServiceAction::ReadFullStatus)?;
    if good(&full) {
        if let Ok(d) = ReadFullStatus::decode(&full.payload) {
            return Ok(Outcome::Status(Status::from_full_status(&d)));
        }
        return Ok(Outcome::Answer(Box::new((req, full))));
    }
    let unsupported = full.header.scsi_status() == ScsiStatus::CHECK_CONDITION
        && full.header.sense.code().map(|c| c.key) == Some(SenseKey::ILLEGAL_REQUEST);
    if !unsupported {
        return Ok(Outcome::Answer(Box::new((req, full))));
    }
    let k = match decoded(ask(s, PrInServiceAction::ReadKeys)?, |p| {
        ReadKeys::decode(p).ok()
    }) {
        Ok(k) => k,
        Err(answer) => return Ok(answer),
    };
    let r = match decoded(ask(s, PrInServiceAction::ReadReservation)?, |p| {
        ReadReservation::decode(p).ok()
    }) {
        Ok(r) => r,
        Err(answer) => return Ok(answer),
    };
    Ok(Outcome::Status(Status::from_keys_and_reservation(&k, &r)))
}

/// The data of a GOOD answer, or the answer itself, to be shown as it is.
fn decoded<T>(
    (request, reply): (PrRequest, Reply),
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Result<T, Outcome> {
    let good = reply.header.scsi_status() == ScsiStatus::GOOD;
    match good.then(|| decode(&reply.payload)).flatten() {
        Some(data) => Ok(data),
        None => Err(Outcome::Answer(Box::new((request, reply)))),
    }
}

fn print_outcome(cli: &Cli, outcome: &Outcome, out: Output<'_>) -> u8 {
    match outcome {
        Outcome::Status(status) => {
            let code = exit_status::GOOD;
            if cli.json {
                let _ = writeln!(out.stdout, "{}", json::line(&status.json(code)));
            } else {
                let _ = write!(out.stdout, "{}", status.table());
                if status.truncated {
                    let _ = writeln!(
                        out.stderr,
                        "warning: the state was cut off at the allocation length: raise --maxlen"
                    );
                }
            }
            code
        }
        Outcome::Answer(answer) => {
            let (request, reply) = (&answer.0, &answer.1);
            let code = answer_status(request, reply);
            if cli.json {
                let j = json::Answer::new(request, reply, code);
                let _ = writeln!(out.stdout, "{}", json::line(&j));
                return code;
            }
            match request.cdb().pr_in_action() {
                Some(action) if cli.hex > 0 && reply.header.scsi_status() == ScsiStatus::GOOD => {
                    let alloc = request.cdb().transfer_len();
                    let dump = hex::pr_in(action, alloc, &reply.payload, cli.hex);
                    let _ = write!(out.stdout, "{dump}");
                }
                _ => {
                    let text = render::human(request, reply, cli.verbose);
                    let _ = write!(out.stdout, "{}", text.stdout);
                    let _ = write!(out.stderr, "{}", text.stderr);
                }
            }
            if aborted_on_a_file(cli, reply) {
                let _ = writeln!(
                    out.stderr,
                    "  (the device is not a block or character device and the helper ran the \
                     command on it as on a disk: is the helper at {} really serving its \
                     emulated device?)",
                    cli.socket.display()
                );
            }
            code
        }
    }
}

/// The exit status for an answer; PR IN data that cannot be decoded is 97.
fn answer_status(request: &PrRequest, reply: &Reply) -> u8 {
    let code = exit_status::for_reply(reply.header.scsi_status(), &reply.header.sense);
    let undecodable = code == exit_status::GOOD
        && reply.header.scsi_status() == ScsiStatus::GOOD
        && request.cdb().pr_in_action().is_some_and(|a| {
            qemu_pr_helper::domain::pr_in_data::PrInData::decode(a, &reply.payload).is_err()
        });
    if undecodable {
        exit_status::MALFORMED
    } else {
        code
    }
}

/// --emulated was given, yet the helper answered as a real one does when
/// SG_IO fails on a file (ENOTTY: ABORTED COMMAND / I/O PROCESS TERMINATED).
fn aborted_on_a_file(cli: &Cli, reply: &Reply) -> bool {
    let not_a_device = cli
        .device()
        .ok()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| !m.file_type().is_block_device() && !m.file_type().is_char_device());
    cli.emulated
        && not_a_device
        && reply.header.scsi_status() == ScsiStatus::CHECK_CONDITION
        && reply.header.sense.code() == Some(SenseCode::IO_PROCESS_TERMINATED)
}
