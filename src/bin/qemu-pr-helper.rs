//! `qemu-pr-helper`: the command line of the C helper, wired to the library.

use std::process::ExitCode;

use clap::Parser;
use qemu_pr_helper::cli::Cli;
use qemu_pr_helper::config::{
    glob_match, CommandLine, ConfigFile, LogFormat, Settings, TraceOptions,
};
use qemu_pr_helper::daemon;

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
    let file = match &cli.config {
        Some(path) => ConfigFile::load(path).map_err(|e| e.to_string())?,
        None => ConfigFile::default(),
    };
    let settings = Settings::merge(
        file,
        CommandLine {
            socket: cli.socket,
            pidfile: cli.pidfile,
            daemon: cli.daemon,
            user: cli.user,
            group: cli.group,
            verbose: cli.verbose,
            quiet: cli.quiet,
            trace: cli.trace,
            emulate: cli.emulate,
            timeout_ms: cli.timeout,
            seccomp: cli.seccomp,
        },
    )
    .map_err(|e| e.to_string())?;
    init_logging(&settings)?;
    daemon::run(settings).map_err(|e| e.to_string())
}

/// Every tracing target of the library, for `-T` patterns to match against.
const TARGETS: &[&str] = &[
    "qemu_pr_helper::server",
    "qemu_pr_helper::daemon",
    "qemu_pr_helper::adapters::sg_io",
    "qemu_pr_helper::adapters::unix_socket",
    "qemu_pr_helper::adapters::pidfile",
    "qemu_pr_helper::adapters::privileges",
    "qemu_pr_helper::adapters::emulated",
    "audit",
];

fn init_logging(settings: &Settings) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let level = match settings.verbosity {
        i8::MIN..=-1 => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::new(level);
    let mut log_file = None;
    if let Some(trace) = &settings.trace {
        let opts = TraceOptions::parse(trace)?;
        let mut patterns = opts.patterns.clone();
        if let Some(events) = &opts.events_file {
            let text = std::fs::read_to_string(events)
                .map_err(|e| format!("cannot read trace events file {}: {e}", events.display()))?;
            patterns.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        for target in TARGETS {
            if patterns.iter().any(|p| glob_match(p, target)) {
                let directive = format!("{target}=trace")
                    .parse()
                    .map_err(|e| format!("bad trace pattern: {e}"))?;
                filter = filter.add_directive(directive);
            }
        }
        log_file = opts.log_file;
    }
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot open trace file {}: {e}", path.display()))?;
            Box::new(move || match file.try_clone() {
                Ok(f) => Box::new(f) as Box<dyn std::io::Write>,
                Err(_) => Box::new(std::io::stderr()),
            })
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn std::io::Write>),
    };
    let to_terminal = settings.trace.is_none() && !under_journald;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(to_terminal && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match (settings.log_format, under_journald) {
        (LogFormat::Json, true) => builder.json().without_time().init(),
        (LogFormat::Json, false) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
    Ok(())
}
