// SPDX-License-Identifier: GPL-2.0-or-later
//! `qemu-pr-helper`: the command line of the C helper, wired to the library.

use std::process::ExitCode;

use clap::Parser;
use qemu_pr_helper::config::cli::Cli;
use qemu_pr_helper::config::Settings;
use qemu_pr_helper::{daemon, logging};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("qemu-pr-helper: {first} (try --help)");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("qemu-pr-helper: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    // As the C helper: the list of what -T can enable, on stdout.
    if logging::wants_target_list(cli.trace.as_deref()) {
        for target in logging::TARGETS {
            println!("{target}");
        }
        return Ok(());
    }
    let settings = Settings::from_cli(cli).map_err(|e| e.to_string())?;
    let destination = logging::init(&settings).map_err(|e| e.to_string())?;
    // With -d, printed once the daemon serves: a start that fails says
    // only why.
    let announcement = format!("qemu-pr-helper: running in the background; log: {destination}");
    let result = daemon::run(settings, &announcement);
    // What is still queued is written before the last word, within a
    // bound: a destination that stopped reading must not keep us here.
    logging::flush(logging::EXIT_FLUSH);
    result.map_err(|e| e.to_string())
}
