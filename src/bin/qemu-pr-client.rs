//! `qemu-pr-client`: sends one PERSISTENT RESERVE IN/OUT command through a
//! running helper, the way QEMU does, and prints the answer like sg_persist.

use std::process::ExitCode;

use clap::Parser;

use qemu_pr_helper::client::cli::Cli;
use qemu_pr_helper::client::run::{run, usage_failure, Output};

fn main() -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let out = Output {
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let code = match Cli::try_parse() {
        Ok(cli) => run(&cli, out),
        Err(e) => {
            let json = std::env::args_os().any(|a| a == "--json");
            usage_failure(&e, json, out)
        }
    };
    ExitCode::from(code)
}
