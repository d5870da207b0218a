// SPDX-License-Identifier: GPL-2.0-or-later
//! Which log lines are written and where: the `-v`/`-q` level, `-T`
//! patterns, the format, and the destination (stderr, a file, the journal's
//! native protocol, or syslog).
//!
//! Levels: `-q` errors only; default INFO (start, stop, warnings and the
//! PR OUT audit trail); `-v` DEBUG (every command, connection and SG_IO
//! result); `-vv` TRACE (each request as it arrives, the sense bytes of each
//! SG_IO). `-T PATTERN` raises the modules whose target matches to TRACE
//! whatever the level.
//!
//! Fields are plain values a script can match: a SCSI status is two fields,
//! `status` (the number, `24`) and `status_name` (`RESERVATION CONFLICT`);
//! a field that does not apply (the sense of a GOOD answer, the device of an
//! abandoned command) is left out, never `-` or `None`; audit lines give
//! `scope` and `type` with `scope_name` and `type_name` (as sg_persist
//! spells them), and keys as `qemu-pr-client` prints them (`0x1111`). In
//! JSON the connection is named once, in `span`.
//!
//! Lines are formatted by whoever logs and queued; one thread writes them
//! to the destination (see [`writer`]), so a destination that stops
//! reading loses lines, counted and reported, and never stalls serving.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{glob_match, LogFormat, LogTo, Settings, TraceOptions};

mod journal;
mod lines;
pub mod queue;
mod stream;
mod syslog;
pub mod writer;

pub use journal::{Journal, JournalLayer};
pub use lines::{QueuedLine, QueuedLines};
pub use stream::Stream;
pub use syslog::Syslog;
pub use writer::{Line, LogWriter, Sink};

/// Every tracing target the daemon logs on, as `-T help` lists them: the
/// module path of each module that logs (tracing's default target) and
/// `audit`. A test checks it against the sources; `-T` patterns are matched
/// against each event's own target, so a module missing here still obeys
/// them.
pub const TARGETS: &[&str] = &[
    "audit",
    "qemu_pr_helper::adapters::emulated",
    "qemu_pr_helper::adapters::interface",
    "qemu_pr_helper::adapters::multipath",
    "qemu_pr_helper::adapters::multipathd",
    "qemu_pr_helper::adapters::pidfile",
    "qemu_pr_helper::adapters::pr_ioctl",
    "qemu_pr_helper::adapters::sg_io",
    "qemu_pr_helper::adapters::unix_socket",
    "qemu_pr_helper::daemon",
    "qemu_pr_helper::logging::writer",
    "qemu_pr_helper::server",
];

/// The target of the audit trail: its lines are the last the queue drops.
pub const AUDIT_TARGET: &str = "audit";

/// Where the journal listens for its native protocol.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The syslog identifier and journal `SYSLOG_IDENTIFIER`.
const IDENTIFIER: &str = "qemu-pr-helper";

/// How long the lines still queued at exit may take to be written: a
/// destination that never reads again must not keep the daemon from
/// stopping.
pub const EXIT_FLUSH: Duration = Duration::from_secs(1);

/// The writer of the log [`init`] set up, for [`start_writer`], [`flush`]
/// and [`dropped_lines`].
static WRITER: OnceLock<LogWriter> = OnceLock::new();

/// Logging cannot be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `-T` does not parse.
    #[error("{0}")]
    TraceOptions(String),
    /// `-T events=FILE` cannot be read.
    #[error("cannot read trace events file {path}: {source}")]
    EventsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `-T file=FILE` cannot be opened.
    #[error("cannot open trace file {path}: {source}")]
    LogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `log_to = "stderr"` with `-d`, whose stderr is /dev/null.
    #[error("logging to stderr with -d would discard every line: use --log-to journald or syslog, or -T file=FILE")]
    StderrWhenDaemon,
    /// `log_to` names a destination and `-T file=` another.
    #[error("-T file= and --log-to {0} name two destinations for the log")]
    TwoDestinations(&'static str),
    /// `log_to = "journald"` and the journal cannot be reached.
    #[error("cannot reach the journal at {JOURNAL_SOCKET}: {0}")]
    Journal(#[source] io::Error),
    /// `log_to = "syslog"` and the syslog socket cannot be reached.
    #[error("cannot reach syslog at {path}: {source}")]
    Syslog {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard error (a terminal, or a pipe of a supervisor).
    Stderr,
    /// A file (`-T file=FILE`), appended to.
    File(PathBuf),
    /// The journal, with native fields and priorities.
    Journald,
    /// A syslog socket, with the daemon facility.
    Syslog(PathBuf),
    /// Nowhere: daemonized with neither journal nor syslog reachable.
    Discarded,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Stderr => f.write_str("stderr"),
            Destination::File(p) => write!(f, "{}", p.display()),
            Destination::Journald => write!(f, "the journal ({JOURNAL_SOCKET})"),
            Destination::Syslog(p) => write!(f, "syslog ({})", p.display()),
            Destination::Discarded => f.write_str(
                "nowhere: neither the journal nor syslog can be reached (give -T file=FILE)",
            ),
        }
    }
}

/// What [`choose`] needs to know about the system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Surroundings {
    /// `JOURNAL_STREAM` names this process's stderr: systemd connected it
    /// to the journal.
    pub stderr_is_journal: bool,
    /// The journal's socket answers.
    pub journal: bool,
    /// The syslog socket answers.
    pub syslog: bool,
}

/// Picks the destination. An explicit `log_to` is obeyed or refused; `auto`
/// takes the journal when systemd connected stderr to it, and when
/// daemonized (stderr is then /dev/null) the journal, else syslog.
pub fn choose(
    log_to: LogTo,
    log_file: Option<&Path>,
    daemon: bool,
    syslog_socket: &Path,
    around: Surroundings,
) -> Result<Destination, LogError> {
    if let Some(file) = log_file {
        return match log_to {
            LogTo::Auto => Ok(Destination::File(file.to_path_buf())),
            other => Err(LogError::TwoDestinations(other.name())),
        };
    }
    match log_to {
        LogTo::Stderr if daemon => Err(LogError::StderrWhenDaemon),
        LogTo::Stderr => Ok(Destination::Stderr),
        LogTo::Journald => Ok(Destination::Journald),
        LogTo::Syslog => Ok(Destination::Syslog(syslog_socket.to_path_buf())),
        LogTo::Auto if around.journal && (around.stderr_is_journal || daemon) => {
            Ok(Destination::Journald)
        }
        LogTo::Auto if daemon && around.syslog => {
            Ok(Destination::Syslog(syslog_socket.to_path_buf()))
        }
        LogTo::Auto if daemon => Ok(Destination::Discarded),
        LogTo::Auto => Ok(Destination::Stderr),
    }
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`) names the file on fd 2, as
/// systemd documents for telling a journal stream from a redirected stderr.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(2) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// The level `-q`/`-v` ask for: -1 errors, 0 info, 1 debug, 2 and more trace.
pub fn level_for(verbosity: i8) -> LevelFilter {
    match verbosity {
        i8::MIN..=-1 => LevelFilter::ERROR,
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The filter: events up to `level`, and every event whose target matches
/// a `-T` pattern.
#[derive(Debug, Clone)]
pub struct LogFilter {
    level: LevelFilter,
    patterns: Vec<String>,
}

impl LogFilter {
    /// Events up to `level`, plus all of the targets `patterns` match.
    pub fn new(level: LevelFilter, patterns: Vec<String>) -> LogFilter {
        LogFilter { level, patterns }
    }

    /// Whether an event of `level` on `target` is written.
    pub fn enables(&self, level: &Level, target: &str) -> bool {
        level <= &self.level || self.patterns.iter().any(|p| glob_match(p, target))
    }

    /// Whether a call site is enabled. Spans up to INFO (the connection
    /// with its peer) always are: an error under -q or an audit line under
    /// -T audit still says whose connection it was.
    pub fn enables_site(&self, meta: &Metadata<'_>) -> bool {
        (meta.is_span() && meta.level() <= &Level::INFO)
            || self.enables(meta.level(), meta.target())
    }
}

impl<S> Filter<S> for LogFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.enables_site(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Decided once per call site: no pattern matching per event.
        if self.enables_site(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(if self.patterns.is_empty() {
            self.level.max(LevelFilter::INFO)
        } else {
            LevelFilter::TRACE
        })
    }
}

/// `-T` patterns, with those of an `events=FILE` (one per line, `#`
/// comments), and the `file=` destination.
pub fn trace_patterns(trace: Option<&str>) -> Result<(Vec<String>, Option<PathBuf>), LogError> {
    let Some(trace) = trace else {
        return Ok((Vec::new(), None));
    };
    let opts = TraceOptions::parse(trace).map_err(LogError::TraceOptions)?;
    let mut patterns = opts.patterns;
    if let Some(path) = &opts.events_file {
        let text = std::fs::read_to_string(path).map_err(|source| LogError::EventsFile {
            path: path.clone(),
            source,
        })?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok((patterns, opts.log_file))
}

/// Whether `-T` asks for the list of targets (`-T help`, as the C helper).
pub fn wants_target_list(trace: Option<&str>) -> bool {
    trace.is_some_and(|t| {
        t.split(',')
            .any(|part| part == "help" || part == "enable=help")
    })
}

/// Sets up logging for the daemon as `settings` say and returns where the
/// log goes (to tell an operator who runs it with `-d`). Lines are queued
/// until [`start_writer`].
pub fn init(settings: &Settings) -> Result<Destination, LogError> {
    let (patterns, log_file) = trace_patterns(settings.trace.as_deref())?;
    let filter = LogFilter::new(level_for(settings.verbosity), patterns);
    // The journal and syslog are reached only where they may be chosen.
    let stderr_journal = stderr_is_journal();
    let may_pick = settings.log_to == LogTo::Auto && log_file.is_none();
    let journal = match settings.log_to {
        LogTo::Journald => Journal::connect(),
        LogTo::Auto if may_pick && (stderr_journal || settings.daemon) => Journal::connect(),
        _ => Err(io::ErrorKind::Unsupported.into()),
    };
    let syslog =
        match settings.log_to {
            LogTo::Syslog => Some(Syslog::connect(&settings.syslog_socket).map_err(|source| {
                LogError::Syslog {
                    path: settings.syslog_socket.clone(),
                    source,
                }
            })?),
            LogTo::Auto if may_pick && settings.daemon && journal.is_err() => {
                Syslog::connect(&settings.syslog_socket).ok()
            }
            _ => None,
        };
    let around = Surroundings {
        stderr_is_journal: stderr_journal,
        journal: journal.is_ok(),
        syslog: syslog.is_some(),
    };
    let destination = choose(
        settings.log_to,
        log_file.as_deref(),
        settings.daemon,
        &settings.syslog_socket,
        around,
    )?;
    let (layer, writer): (Box<dyn Layer<Registry> + Send + Sync>, LogWriter) = match &destination {
        Destination::Journald => {
            let writer = LogWriter::new(journal.map_err(LogError::Journal)?);
            (Box::new(JournalLayer::new(writer.clone())), writer)
        }
        Destination::Stderr => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let writer = LogWriter::new(Stream(std::io::stderr()));
            let lines = QueuedLines(writer.clone());
            (fmt_layer(settings.log_format, lines, ansi, true), writer)
        }
        Destination::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogError::LogFile {
                    path: path.clone(),
                    source,
                })?;
            let writer = LogWriter::new(Stream(file));
            let lines = QueuedLines(writer.clone());
            (fmt_layer(settings.log_format, lines, false, true), writer)
        }
        Destination::Syslog(path) => match syslog {
            Some(syslog) => {
                let writer = LogWriter::new(syslog);
                let lines = QueuedLines(writer.clone());
                (fmt_layer(settings.log_format, lines, false, false), writer)
            }
            None => {
                return Err(LogError::Syslog {
                    path: path.clone(),
                    source: io::ErrorKind::NotConnected.into(),
                })
            }
        },
        // No subscriber: every call site stays disabled, nothing is
        // formatted for nowhere.
        Destination::Discarded => return Ok(destination),
    };
    // Another subscriber already set (only in tests that call this twice):
    // the first one stays.
    if tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .is_ok()
    {
        let _ = WRITER.set(writer);
    }
    Ok(destination)
}

/// Starts the thread that writes the log [`init`] set up. Call it once the
/// process will not fork again, has dropped its privileges and installed
/// its system-call filter: the thread must share all three.
pub fn start_writer() -> io::Result<()> {
    WRITER.get().map_or(Ok(()), LogWriter::start)
}

/// Writes out what is still queued, `within` at most; whether all was.
pub fn flush(within: Duration) -> bool {
    WRITER.get().is_none_or(|w| w.flush(within))
}

/// Log lines lost since start (the destination did not keep up).
pub fn dropped_lines() -> u64 {
    WRITER.get().map_or(0, LogWriter::dropped)
}

/// The journal's native-protocol layer and its writer, or why the journal
/// cannot be reached. Its socket is made now, before the system-call
/// filter; the writer is started later, with [`LogWriter::start`].
pub fn journal() -> io::Result<(JournalLayer, LogWriter)> {
    let writer = LogWriter::new(Journal::connect()?);
    Ok((JournalLayer::new(writer.clone()), writer))
}

/// A text or JSON formatting layer writing to `writer`; `time` is left out
/// where the receiver stamps lines itself (syslog).
fn fmt_layer<W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
    time: bool,
) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_ansi(ansi)
        .with_writer(writer);
    // JSON names the connection once, in `span`: the daemon's only span is
    // the connection, so the list in `spans` would only repeat it.
    match (format, time) {
        (LogFormat::Json, true) => Box::new(layer.json().with_span_list(false)),
        (LogFormat::Json, false) => Box::new(layer.json().with_span_list(false).without_time()),
        (LogFormat::Text, true) => Box::new(layer),
        (LogFormat::Text, false) => Box::new(layer.without_time()),
    }
}

/// The syslog severity of a tracing level, as the journal maps it: INFO
/// (the audit trail) is notice.
pub fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 5,
        Level::DEBUG => 6,
        Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests;
