// SPDX-License-Identifier: GPL-2.0-or-later
//! `qemu-pr-client`: sends one PERSISTENT RESERVE IN/OUT command through a
//! running helper, the way QEMU does, and prints the answer like sg_persist.
//!
//! The protocol client (options, requests, the connection) is in the
//! library; how answers are shown is here, beside the binary:
//!
//! - [`mod@run`]: one run of the client: options in, output and exit status out.
//! - [`render`]: sg_persist-like text (pure).
//! - [`hex`]: `-H` and `-v` output in sg3_utils' hex layout (pure).
//! - [`json`]: `--json`, one line for every outcome (pure).
//! - [`status`]: the `--status` table (pure).
//! - [`timing`]: `--repeat` and `--direct`, the round-trip summary.

mod hex;
mod json;
mod render;
mod run;
mod status;
mod timing;

use std::process::ExitCode;

use clap::Parser;

use qemu_pr_helper::client::cli::Cli;
use run::{run, usage_failure, Output};

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
