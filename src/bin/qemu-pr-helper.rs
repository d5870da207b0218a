//! `qemu-pr-helper`: the command line of the C helper, wired to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};
use qemu_pr_helper::adapters::seccomp::SeccompMode;
use qemu_pr_helper::config::{
    glob_match, CommandLine, ConfigFile, LogFormat, Settings, TraceOptions,
};
use qemu_pr_helper::daemon;

/// Persistent Reservation helper program for QEMU.
#[derive(Debug, Parser)]
#[command(
    name = "qemu-pr-helper",
    version,
    disable_version_flag = true,
    about = "Persistent Reservation helper program for QEMU",
    after_help = "Drop-in replacement for QEMU's qemu-pr-helper: same options, same protocol."
)]
struct Cli {
    /// Run in the background.
    #[arg(short = 'd', long)]
    daemon: bool,
    /// PID file when running as a daemon [default: /var/run/qemu-pr-helper.pid].
    #[arg(short = 'f', long, value_name = "PATH")]
    pidfile: Option<PathBuf>,
    /// Path to the unix socket [default: /var/run/qemu-pr-helper.sock].
    #[arg(short = 'k', long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Tracing options: PATTERN (glob over log targets such as
    /// 'qemu_pr_helper::server') enables TRACE level for them; events=FILE
    /// reads patterns one per line; file=FILE writes the log there.
    #[arg(
        short = 'T',
        long,
        value_name = "[[enable=]PATTERN][,events=FILE][,file=FILE]"
    )]
    trace: Option<String>,
    /// User to drop privileges to (name or number).
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// Group to drop privileges to (name or number).
    #[arg(short = 'g', long, value_name = "GROUP")]
    group: Option<String>,
    /// More log output (repeat for more).
    #[arg(short = 'v', long, action = ArgAction::Count)]
    verbose: u8,
    /// Only errors in the log.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// TOML configuration file; command-line flags override it.
    #[arg(short = 'c', long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Serve an in-memory emulated device instead of real ones (testing).
    #[arg(long)]
    emulate: bool,
    /// SG_IO timeout in milliseconds [default: 30000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// System-call filter: kill (release default), log (debug default), off.
    #[arg(long, value_name = "MODE", value_parser = parse_seccomp)]
    seccomp: Option<SeccompMode>,
    /// Output version information and exit.
    #[arg(short = 'V', long, action = ArgAction::Version)]
    version: (),
}

fn parse_seccomp(s: &str) -> Result<SeccompMode, String> {
    match s {
        "kill" => Ok(SeccompMode::Kill),
        "log" => Ok(SeccompMode::Log),
        "off" => Ok(SeccompMode::Off),
        other => Err(format!("'{other}' is not kill, log or off")),
    }
}

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
