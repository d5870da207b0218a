//! The daemon's settings: defaults as in the C helper, then a TOML file
//! (`-c`), then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer};

use crate::domain::allowlist::DeviceSelector;
use crate::domain::fault::{DeviceFault, UnknownFault};

/// Default socket path, as in the C helper.
pub const DEFAULT_SOCKET: &str = "/var/run/qemu-pr-helper.sock";
/// Default pidfile path, as in the C helper.
pub const DEFAULT_PIDFILE: &str = "/var/run/qemu-pr-helper.pid";

/// Which executor runs the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// SG_IO on the client's device (production).
    #[default]
    SgIo,
    /// The in-memory SPC-4 device: no real device is touched.
    Emulated,
}

/// For the emulated device: what makes two commands one I_T nexus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitiatorModel {
    /// Each client connection (QEMU keeps one per VM).
    #[default]
    Connection,
    /// Each peer user.
    Uid,
    /// Each peer session (one terminal): for one-command-per-run tools.
    Session,
}

impl InitiatorModel {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            InitiatorModel::Connection => "connection",
            InitiatorModel::Uid => "uid",
            InitiatorModel::Session => "session",
        }
    }
}

/// The `[executor]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExecutorFile {
    /// `kind = "sg_io" | "emulated"`.
    pub kind: Option<ExecutorKind>,
    /// SG_IO timeout in milliseconds (0 would be the kernel's default, never
    /// what someone writing it means).
    #[serde(default, deserialize_with = "at_least_one")]
    pub timeout_ms: Option<u64>,
    /// Route commands on dm-multipath maps through every path (default true).
    pub multipath: Option<bool>,
    /// Emulated device only: `initiator = "connection" | "uid" | "session"`.
    pub initiator: Option<InitiatorModel>,
    /// Emulated device only: `[[executor.fault]]` entries, units that misbehave.
    #[serde(default)]
    pub fault: Vec<FaultFile>,
}

/// One `[[executor.fault]]` entry: a file whose emulated unit misbehaves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// The file standing in for the logical unit (its identity is taken at
    /// start, so the file must exist then).
    pub path: PathBuf,
    /// The fault's name, as [`DeviceFault`]'s `FromStr` reads it.
    #[serde(deserialize_with = "fault_name")]
    pub fault: DeviceFault,
    /// Show the fault this many times, then heal (default: for ever).
    #[serde(default, deserialize_with = "at_least_one")]
    pub count: Option<u32>,
}

/// A validated fault for the emulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSetting {
    /// The file standing in for the logical unit.
    pub path: PathBuf,
    /// What goes wrong.
    pub fault: DeviceFault,
    /// How many times, then heal; `None`: for ever.
    pub count: Option<u32>,
}

/// How audit lines show reservation keys.
pub use crate::domain::audit::KeyDisplay;

/// The `[security]` table: who may connect, to which devices, and limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    /// Peer user ids allowed to connect (empty: anyone who can open the socket).
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// Peer group ids allowed to connect.
    #[serde(default)]
    pub allowed_gids: Vec<u32>,
    /// Socket file mode, written as an octal string such as "0660".
    #[serde(default, deserialize_with = "socket_mode")]
    pub socket_mode: Option<u32>,
    /// Socket file group (name or number).
    #[serde(default, deserialize_with = "name_or_number")]
    pub socket_group: Option<String>,
    /// Devices commands may go to: "MAJOR:MINOR" or "wwid:NAME" (empty: any).
    #[serde(default)]
    pub devices: Vec<DeviceSelector>,
    /// Keys in audit lines: "full", "hashed" or "omitted".
    pub audit_keys: Option<KeyDisplay>,
    /// Connections served at once.
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_connections: Option<usize>,
    /// Milliseconds a started request may take to arrive whole.
    #[serde(default, deserialize_with = "at_least_one")]
    pub request_timeout_ms: Option<u64>,
    /// System-call filter: "kill" (release default), "log" (debug default)
    /// or "off".
    pub seccomp: Option<crate::adapters::seccomp::SeccompMode>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where the log goes (`--log-to`, `log_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogTo {
    /// The journal when systemd connected stderr to it (`JOURNAL_STREAM`);
    /// with `-d` the journal, else syslog; otherwise stderr.
    #[default]
    Auto,
    /// Standard error (refused with `-d`, whose stderr is /dev/null).
    Stderr,
    /// The journal's native protocol: fields and priorities.
    Journald,
    /// The syslog socket (`syslog_socket`, default /dev/log).
    Syslog,
}

impl LogTo {
    /// The name as written on the command line and in the file.
    pub fn name(self) -> &'static str {
        match self {
            LogTo::Auto => "auto",
            LogTo::Stderr => "stderr",
            LogTo::Journald => "journald",
            LogTo::Syslog => "syslog",
        }
    }
}

impl std::str::FromStr for LogTo {
    type Err = String;

    fn from_str(s: &str) -> Result<LogTo, String> {
        [LogTo::Auto, LogTo::Stderr, LogTo::Journald, LogTo::Syslog]
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("'{s}' is not auto, stderr, journald or syslog"))
    }
}

/// The syslog socket unless `syslog_socket` says otherwise.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// The TOML configuration file; every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Socket path (absolute).
    pub socket: Option<PathBuf>,
    /// Pidfile path; setting it writes a pidfile, as `-f` does.
    pub pidfile: Option<PathBuf>,
    /// Run in the background.
    pub daemon: Option<bool>,
    /// User to drop to.
    #[serde(default, deserialize_with = "name_or_number")]
    pub user: Option<String>,
    /// Group to drop to.
    #[serde(default, deserialize_with = "name_or_number")]
    pub group: Option<String>,
    /// Verbosity: 0 default, 1 debug, 2 trace; -1 quiet.
    pub verbose: Option<i8>,
    /// Trace options, as `-T`.
    #[serde(default, deserialize_with = "trace_options")]
    pub trace: Option<String>,
    /// Log format: "text" (default) or "json" (not for the journal, which
    /// takes fields natively).
    pub log_format: Option<LogFormat>,
    /// Where the log goes: "auto" (default), "stderr", "journald", "syslog".
    pub log_to: Option<LogTo>,
    /// The syslog socket for `log_to = "syslog"` (default /dev/log).
    pub syslog_socket: Option<PathBuf>,
    /// The executor.
    #[serde(default)]
    pub executor: ExecutorFile,
    /// Access control and limits.
    #[serde(default)]
    pub security: SecurityFile,
}

/// A configuration problem a human can fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema, or a value cannot work.
    #[error("{} {detail}", .path.display())]
    Parse {
        /// The path.
        path: PathBuf,
        /// Where in it and what is wrong.
        detail: ParseError,
    },
    /// A relative pidfile path cannot be made absolute.
    #[error("cannot resolve pidfile path {path}: {source}")]
    Pidfile {
        /// The path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The socket path is relative.
    #[error("socket path must be absolute: {0}")]
    RelativeSocket(PathBuf),
    /// Faults are for the emulated device; real devices bring their own.
    #[error("[[executor.fault]] needs the emulated executor (--emulate or kind = \"emulated\")")]
    FaultsNeedEmulation,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigFile::parse(&text).map_err(|detail| ConfigError::Parse {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// Parses TOML text. Errors carry the line and the key, so that an
    /// operator can go straight to what is wrong.
    pub fn parse(text: &str) -> Result<ConfigFile, ParseError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let e = e.into_inner();
            ParseError {
                line: e.span().map(|span| {
                    text.as_bytes()[..span.start.min(text.len())]
                        .iter()
                        .filter(|b| **b == b'\n')
                        .count()
                        + 1
                }),
                key: (key != ".").then_some(key),
                message: plain_expectation(e.message()),
            }
        })
    }
}

/// Where a configuration file is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line, when the parser knows it.
    pub line: Option<usize>,
    /// Dotted key such as `executor.timeout_ms`, when the error is a value's.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    /// `line N: KEY: MESSAGE`, the parts known, to follow the file name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Serde names integer types (`expected u64`); operators write numbers.
fn plain_expectation(message: &str) -> String {
    const INTEGERS: &[(&str, i128, i128)] = &[
        ("i8", i8::MIN as i128, i8::MAX as i128),
        ("u32", 0, u32::MAX as i128),
        ("u64", 0, u64::MAX as i128),
        ("usize", 0, usize::MAX as i128),
    ];
    for (name, min, max) in INTEGERS {
        if let Some(head) = message.strip_suffix(&format!("expected {name}")) {
            return if head.starts_with("invalid type") {
                format!("{head}expected an integer")
            } else {
                format!("{head}expected an integer from {min} to {max}")
            };
        }
    }
    message.to_string()
}

/// A count or a duration where 0 cannot work: refused with the value's line.
fn at_least_one<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + From<u8>,
{
    let value = Option::<T>::deserialize(d)?;
    if value == Some(T::from(0)) {
        return Err(D::Error::invalid_value(
            Unexpected::Unsigned(0),
            &"at least 1",
        ));
    }
    Ok(value)
}

/// A socket file mode: an octal string, permission bits only.
fn socket_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let digits = text.strip_prefix("0o").unwrap_or(&text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && !digits.starts_with('+') => Ok(Some(mode)),
        _ => Err(D::Error::invalid_value(
            Unexpected::Str(&text),
            &"an octal mode from \"0000\" to \"0777\"",
        )),
    }
}

/// A user or group: an empty name would be looked up as no one.
fn name_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return Err(D::Error::invalid_value(
            Unexpected::Str(""),
            &"a name or a number",
        ));
    }
    Ok(value)
}

/// A fault name the emulated device knows.
fn fault_name<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceFault, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(|e: UnknownFault| D::Error::custom(e))
}

/// `-T` options that parse.
fn trace_options<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(d)?;
    if let Some(v) = &value {
        TraceOptions::parse(v).map_err(D::Error::custom)?;
    }
    Ok(value)
}

/// Settings given on the command line; `None`/`false` means "not given".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    /// `-k`.
    pub socket: Option<PathBuf>,
    /// `-f`.
    pub pidfile: Option<PathBuf>,
    /// `-d`.
    pub daemon: bool,
    /// `-u`.
    pub user: Option<String>,
    /// `-g`.
    pub group: Option<String>,
    /// Number of `-v`.
    pub verbose: u8,
    /// `-q`.
    pub quiet: bool,
    /// `-T`.
    pub trace: Option<String>,
    /// `--emulate`.
    pub emulate: bool,
    /// `--timeout`, milliseconds.
    pub timeout_ms: Option<u64>,
    /// `--seccomp`.
    pub seccomp: Option<crate::adapters::seccomp::SeccompMode>,
    /// `--log-to`.
    pub log_to: Option<LogTo>,
}

/// Where the socket path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// The built-in default.
    Default,
    /// `socket` in the configuration file.
    ConfigFile,
    /// `-k`.
    CommandLine,
}

/// The merged, validated settings the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Socket path to create (unless socket-activated).
    pub socket: PathBuf,
    /// Where the socket path came from: with socket activation `-k` is an
    /// error (as in the C helper), the file's path is not used.
    pub socket_source: SocketSource,
    /// Pidfile path.
    pub pidfile: PathBuf,
    /// Whether to write the pidfile (`-d` or `-f`).
    pub write_pidfile: bool,
    /// Daemonize.
    pub daemon: bool,
    /// User to drop to.
    pub user: Option<String>,
    /// Group to drop to.
    pub group: Option<String>,
    /// -1 quiet (errors), 0 default (info), 1 debug, 2 and more trace.
    pub verbosity: i8,
    /// `-T` options.
    pub trace: Option<String>,
    /// Which executor.
    pub executor: ExecutorKind,
    /// SG_IO timeout.
    pub timeout: Duration,
    /// Handle dm-multipath maps path by path (with `ExecutorKind::SgIo`).
    pub multipath: bool,
    /// Emulated device: what one I_T nexus is.
    pub initiator: InitiatorModel,
    /// Emulated device: units that misbehave.
    pub faults: Vec<FaultSetting>,
    /// Log format.
    pub log_format: LogFormat,
    /// Where the log goes.
    pub log_to: LogTo,
    /// The syslog socket.
    pub syslog_socket: PathBuf,
    /// Access control and limits, as in the file.
    pub security: SecurityFile,
}

impl Settings {
    /// Merges defaults, the file and the command line (which wins).
    pub fn merge(file: ConfigFile, cli: CommandLine) -> Result<Settings, ConfigError> {
        let socket_source = if cli.socket.is_some() {
            SocketSource::CommandLine
        } else if file.socket.is_some() {
            SocketSource::ConfigFile
        } else {
            SocketSource::Default
        };
        let socket = cli
            .socket
            .or(file.socket)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        if !socket.is_absolute() {
            return Err(ConfigError::RelativeSocket(socket));
        }
        let daemon = cli.daemon || file.daemon.unwrap_or(false);
        let pidfile_given = cli.pidfile.is_some() || file.pidfile.is_some();
        let pidfile = cli
            .pidfile
            .or(file.pidfile)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIDFILE));
        // Once, now: `-d` changes directory to `/` before the pidfile is
        // written, and its removal at exit would aim at `/NAME`.
        let pidfile = std::path::absolute(&pidfile).map_err(|source| ConfigError::Pidfile {
            path: pidfile.clone(),
            source,
        })?;
        let verbosity = if cli.quiet {
            -1
        } else if cli.verbose > 0 {
            i8::try_from(cli.verbose).unwrap_or(i8::MAX)
        } else {
            file.verbose.unwrap_or(0)
        };
        let executor = if cli.emulate {
            ExecutorKind::Emulated
        } else {
            file.executor.kind.unwrap_or_default()
        };
        let faults: Vec<FaultSetting> = file
            .executor
            .fault
            .iter()
            .map(|f| FaultSetting {
                path: f.path.clone(),
                fault: f.fault,
                count: f.count,
            })
            .collect();
        if !faults.is_empty() && executor != ExecutorKind::Emulated {
            return Err(ConfigError::FaultsNeedEmulation);
        }
        let timeout_ms = cli
            .timeout_ms
            .or(file.executor.timeout_ms)
            .unwrap_or(crate::adapters::sg_io::DEFAULT_TIMEOUT.as_millis() as u64);
        Ok(Settings {
            socket,
            socket_source,
            pidfile,
            write_pidfile: daemon || pidfile_given,
            daemon,
            user: cli.user.or(file.user),
            group: cli.group.or(file.group),
            verbosity,
            trace: cli.trace.or(file.trace),
            executor,
            timeout: Duration::from_millis(timeout_ms),
            multipath: file.executor.multipath.unwrap_or(true),
            initiator: file.executor.initiator.unwrap_or_default(),
            faults,
            log_format: file.log_format.unwrap_or_default(),
            log_to: cli.log_to.or(file.log_to).unwrap_or_default(),
            syslog_socket: file
                .syslog_socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSLOG_SOCKET)),
            security: SecurityFile {
                seccomp: cli.seccomp.or(file.security.seccomp),
                ..file.security
            },
        })
    }
}

/// Parsed `-T [[enable=]PATTERN][,events=FILE][,file=FILE]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceOptions {
    /// Patterns (glob with `*`) of tracing targets to enable at TRACE level.
    pub patterns: Vec<String>,
    /// A file with one pattern per line.
    pub events_file: Option<PathBuf>,
    /// Write the log to this file instead of stderr.
    pub log_file: Option<PathBuf>,
}

impl TraceOptions {
    /// Parses the option string as QEMU does.
    pub fn parse(s: &str) -> Result<TraceOptions, String> {
        let mut out = TraceOptions::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            if let Some(p) = part.strip_prefix("enable=") {
                out.patterns.push(p.to_string());
            } else if let Some(f) = part.strip_prefix("events=") {
                out.events_file = Some(PathBuf::from(f));
            } else if let Some(f) = part.strip_prefix("file=") {
                out.log_file = Some(PathBuf::from(f));
            } else if part.contains('=') {
                return Err(format!("unknown trace option '{part}'"));
            } else {
                out.patterns.push(part.to_string());
            }
        }
        Ok(out)
    }
}

/// Whether `name` matches a glob `pattern` whose only wildcard is `*`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_c_helpers() {
        let s = Settings::merge(ConfigFile::default(), CommandLine::default()).unwrap();
        assert_eq!(s.socket, PathBuf::from("/var/run/qemu-pr-helper.sock"));
        assert_eq!(s.pidfile, PathBuf::from("/var/run/qemu-pr-helper.pid"));
        assert!(!s.write_pidfile && !s.daemon);
        assert_eq!(s.socket_source, SocketSource::Default);
        assert_eq!(s.executor, ExecutorKind::SgIo);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert!(s.multipath);
    }

    #[test]
    fn the_example_files_parse() {
        let f = ConfigFile::parse(include_str!("../config/qemu-pr-helper.toml")).unwrap();
        assert_eq!(f.executor.multipath, Some(true));
        let emulated = include_str!("../config/emulated.toml");
        ConfigFile::parse(emulated).unwrap();
        // The commented fault example, uncommented, is a valid config too.
        let example = emulated
            .lines()
            .skip_while(|l| !l.starts_with("# timeout_ms"))
            .map(|l| l.trim_start_matches('#').trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        // It sits at the end, in the [executor] table.
        let uncommented = format!("{emulated}\n{example}\n");
        let s = Settings::merge(
            ConfigFile::parse(&uncommented).unwrap(),
            CommandLine::default(),
        )
        .unwrap();
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.timeout, Duration::from_millis(2000));
    }

    #[test]
    fn faults_parse_and_unknown_names_are_refused() {
        let text = "[executor]\nkind = \"emulated\"\n\
            [[executor.fault]]\npath = \"/tmp/a.img\"\nfault = \"timeout\"\n\
            [[executor.fault]]\npath = \"/tmp/b.img\"\nfault = \"unit_attention\"\ncount = 3\n";
        let s = Settings::merge(ConfigFile::parse(text).unwrap(), CommandLine::default()).unwrap();
        assert_eq!(
            s.faults,
            vec![
                FaultSetting {
                    path: "/tmp/a.img".into(),
                    fault: DeviceFault::Timeout,
                    count: None,
                },
                FaultSetting {
                    path: "/tmp/b.img".into(),
                    fault: DeviceFault::UnitAttention,
                    count: Some(3),
                },
            ]
        );
        let bad = text.replace("\"timeout\"", "\"slow\"");
        let e = ConfigFile::parse(&bad).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(5), Some("executor.fault[0].fault"))
        );
        assert!(
            e.message.contains("\"slow\"") && e.message.contains("eio"),
            "{e}"
        );
        let real = text.replace("kind = \"emulated\"", "kind = \"sg_io\"");
        assert!(matches!(
            Settings::merge(ConfigFile::parse(&real).unwrap(), CommandLine::default()),
            Err(ConfigError::FaultsNeedEmulation)
        ));
        assert!(
            ConfigFile::parse("[[executor.fault]]\npath = \"/x\"\nfault = \"eio\"\nbogus = 1")
                .is_err()
        );
    }

    #[test]
    fn multipath_can_be_turned_off() {
        let file = ConfigFile::parse("[executor]\nmultipath = false\n").unwrap();
        let s = Settings::merge(file, CommandLine::default()).unwrap();
        assert!(!s.multipath);
        assert!(ConfigFile::parse("[executor]\nmultipath = \"yes\"\n").is_err());
    }

    #[test]
    fn command_line_overrides_the_file() {
        let file = ConfigFile::parse(
            "socket = \"/run/a.sock\"\nuser = \"qemu\"\nverbose = 1\n[executor]\nkind = \"emulated\"\ntimeout_ms = 5000\n",
        )
        .unwrap();
        let cli = CommandLine {
            socket: Some("/run/b.sock".into()),
            quiet: true,
            timeout_ms: Some(100),
            ..Default::default()
        };
        let s = Settings::merge(file, cli).unwrap();
        assert_eq!(s.socket, PathBuf::from("/run/b.sock"));
        assert_eq!(s.user.as_deref(), Some("qemu"));
        assert_eq!(s.verbosity, -1);
        assert_eq!(s.executor, ExecutorKind::Emulated);
        assert_eq!(s.timeout, Duration::from_millis(100));
    }

    #[test]
    fn pidfile_is_written_with_daemon_or_explicit_path() {
        let cli = CommandLine {
            daemon: true,
            ..Default::default()
        };
        assert!(
            Settings::merge(ConfigFile::default(), cli)
                .unwrap()
                .write_pidfile
        );
        let cli = CommandLine {
            pidfile: Some("/tmp/x.pid".into()),
            ..Default::default()
        };
        assert!(
            Settings::merge(ConfigFile::default(), cli)
                .unwrap()
                .write_pidfile
        );
    }

    #[test]
    fn security_table_parses() {
        let file = ConfigFile::parse(
            "log_format = \"json\"\n[security]\nallowed_uids = [107]\nsocket_mode = \"0660\"\n\
             devices = [\"8:16\", \"wwid:naa.1\"]\naudit_keys = \"hashed\"\nmax_connections = 10\n",
        )
        .unwrap();
        let s = Settings::merge(file, CommandLine::default()).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.security.allowed_uids, vec![107]);
        assert_eq!(s.security.socket_mode, Some(0o660));
        assert_eq!(s.security.devices.len(), 2);
        assert_eq!(s.security.audit_keys, Some(KeyDisplay::Hashed));
        assert_eq!(s.security.max_connections, Some(10));
        assert!(ConfigFile::parse("[security]\nbogus = 1").is_err());
    }

    #[test]
    fn relative_socket_and_unknown_keys_are_refused() {
        let cli = CommandLine {
            socket: Some("rel.sock".into()),
            ..Default::default()
        };
        assert!(matches!(
            Settings::merge(ConfigFile::default(), cli),
            Err(ConfigError::RelativeSocket(_))
        ));
        assert!(ConfigFile::parse("sockett = \"/x\"").is_err());
        assert!(ConfigFile::parse("[executor]\nkind = \"magic\"").is_err());
    }

    /// (line, key, message) of a parse error.
    fn parse_error(text: &str) -> (Option<usize>, Option<String>, String) {
        let e = ConfigFile::parse(text).unwrap_err();
        (e.line, e.key, e.message)
    }

    #[test]
    fn parse_errors_carry_the_line_and_the_key() {
        assert_eq!(
            parse_error("[executor]\nkind = \"sg_io\"\ntimeout_ms = \"30000\"\n"),
            (
                Some(3),
                Some("executor.timeout_ms".into()),
                "invalid type: string \"30000\", expected an integer".into()
            )
        );
        assert_eq!(
            parse_error("\n[security]\nallowed_uids = [-1]\n"),
            (
                Some(3),
                Some("security.allowed_uids[0]".into()),
                "invalid value: integer `-1`, expected an integer from 0 to 4294967295".into()
            )
        );
        let (line, key, message) = parse_error("socket = \"/x\"\nsockett = \"/y\"\n");
        assert_eq!((line, key.as_deref()), (Some(2), Some("sockett")));
        assert!(message.starts_with("unknown field `sockett`"), "{message}");
        let (line, key, _) = parse_error("verbose = 1\nverbose 2\n");
        assert_eq!((line, key), (Some(2), None));
        let e = ConfigError::Parse {
            path: "/etc/qemu-pr-helper.toml".into(),
            detail: ConfigFile::parse("[executor]\n\ntimeout_ms = \"30000\"").unwrap_err(),
        };
        assert_eq!(
            e.to_string(),
            "/etc/qemu-pr-helper.toml line 3: executor.timeout_ms: invalid type: \
             string \"30000\", expected an integer"
        );
    }

    #[test]
    fn values_that_cannot_work_are_refused_at_their_line() {
        for (text, key, message) in [
            (
                "[security]\nmax_connections = 0",
                "security.max_connections",
                "expected at least 1",
            ),
            (
                "[security]\nrequest_timeout_ms = 0",
                "security.request_timeout_ms",
                "at least 1",
            ),
            (
                "[executor]\ntimeout_ms = 0",
                "executor.timeout_ms",
                "at least 1",
            ),
            (
                "[security]\nsocket_mode = \"01777\"",
                "security.socket_mode",
                "\"0777\"",
            ),
            (
                "[security]\nsocket_mode = \"0999\"",
                "security.socket_mode",
                "octal",
            ),
            (
                "[security]\nsocket_mode = \"rw-\"",
                "security.socket_mode",
                "octal",
            ),
            (
                "[security]\nsocket_mode = \"\"",
                "security.socket_mode",
                "octal",
            ),
            (
                "[security]\nsocket_mode = \"+660\"",
                "security.socket_mode",
                "octal",
            ),
            (
                "[security]\nsocket_group = \"\"",
                "security.socket_group",
                "a name or a number",
            ),
            (
                "[security]\ndevices = [\"8:16\", \"\"]",
                "security.devices[1]",
                "neither",
            ),
            (
                "[security]\ndevices = [\"wwid: \"]",
                "security.devices[0]",
                "empty WWID",
            ),
            ("\nuser = \"\"", "user", "a name or a number"),
            ("\ngroup = \" \"", "group", "a name or a number"),
            ("\ntrace = \"bogus=1\"", "trace", "unknown trace option"),
            (
                "[[executor.fault]]\npath = \"/a\"\nfault = \"slow\"",
                "executor.fault[0].fault",
                "\"slow\"",
            ),
            (
                "[[executor.fault]]\npath = \"/a\"\nfault = \"eio\"\ncount = 0",
                "executor.fault[0].count",
                "at least 1",
            ),
        ] {
            let (line, k, m) = parse_error(text);
            assert_eq!(k.as_deref(), Some(key), "{text}");
            assert!(m.contains(message), "{text}: {m}");
            assert!(line.is_some(), "{text}");
        }
        let f = ConfigFile::parse(
            "[security]\nsocket_mode = \"0o600\"\nmax_connections = 1\nrequest_timeout_ms = 1\n\
             devices = [\"8:16\"]\n[executor]\ntimeout_ms = 1\n",
        )
        .unwrap();
        assert_eq!(f.security.socket_mode, Some(0o600));
        assert_eq!(f.security.devices, vec![DeviceSelector::MajorMinor(8, 16)]);
    }

    #[test]
    fn a_relative_pidfile_is_resolved_against_the_start_directory() {
        let cli = CommandLine {
            pidfile: Some("rel.pid".into()),
            ..Default::default()
        };
        let s = Settings::merge(ConfigFile::default(), cli).unwrap();
        assert_eq!(s.pidfile, std::env::current_dir().unwrap().join("rel.pid"));
    }

    #[test]
    fn trace_option_forms() {
        assert_eq!(
            TraceOptions::parse("enable=pr_*,file=/tmp/t.log").unwrap(),
            TraceOptions {
                patterns: vec!["pr_*".into()],
                events_file: None,
                log_file: Some("/tmp/t.log".into()),
            }
        );
        let t = TraceOptions::parse("server*,events=/etc/ev").unwrap();
        assert_eq!(t.patterns, vec!["server*".to_string()]);
        assert_eq!(t.events_file, Some(PathBuf::from("/etc/ev")));
        assert!(TraceOptions::parse("bogus=1").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("qemu_pr_helper::*", "qemu_pr_helper::server"));
        assert!(glob_match("*sg_io", "qemu_pr_helper::adapters::sg_io"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(!glob_match("server", "server2"));
        assert!(glob_match("server", "server"));
    }
}
