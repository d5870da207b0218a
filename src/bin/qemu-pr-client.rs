//! `qemu-pr-client`: sends one PERSISTENT RESERVE IN/OUT command through a
//! running helper, the way QEMU does, and prints the answer like sg_persist.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use qemu_pr_helper::client::cli::{Cli, Error};
use qemu_pr_helper::client::{render, timing, HelperConnection};

fn run(cli: &Cli) -> Result<u8, Error> {
    let request = cli.request()?;
    let device = cli.open_device()?;
    let timeout = (cli.timeout != 0).then(|| Duration::from_secs(cli.timeout));
    let reply = if cli.repeat > 1 || cli.direct {
        // One connection (or none), the command sent again and again.
        let mut conn = None;
        if cli.direct {
            timing::check_direct(device.as_fd()).map_err(|e| Error::Usage(e.to_string()))?;
        } else {
            conn = Some(HelperConnection::connect(&cli.socket, timeout)?);
        }
        let sg_timeout = timeout.unwrap_or(qemu_pr_helper::adapters::sg_io::DEFAULT_TIMEOUT);
        let (reply, times) = timing::run(
            conn.as_mut(),
            device.as_fd(),
            &request,
            cli.repeat,
            sg_timeout,
        )?;
        let via = if cli.direct { "sg_io" } else { "helper" };
        eprintln!("{}", timing::summary(via, &times));
        reply
    } else {
        let mut conn = HelperConnection::connect(&cli.socket, timeout)?;
        conn.execute(device.as_fd(), &request)?
    };

    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    // A closed stdout (a pipe to `head`) is not worth a second error.
    if cli.json {
        let _ = writeln!(stdout, "{}", render::json(&request, &reply));
    } else if cli.hex {
        let _ = write!(stdout, "{}", render::hex(&reply));
    } else {
        let text = render::human(&request, &reply);
        let _ = write!(stdout, "{}", text.stdout);
        let _ = write!(stderr, "{}", text.stderr);
    }
    Ok(render::exit_code(reply.header.scsi_status()))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version succeed; every usage error is status 1
            // (clap's own 2 would read as CHECK CONDITION).
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qemu-pr-client: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
