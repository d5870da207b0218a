//! The daemon's settings: defaults as in the C helper, then a TOML file
//! (`-c`), then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

/// The `[executor]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExecutorFile {
    /// `kind = "sg_io" | "emulated"`.
    pub kind: Option<ExecutorKind>,
    /// SG_IO timeout in milliseconds.
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
    pub fault: String,
    /// Show the fault this many times, then heal (default: for ever).
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
    /// Socket file mode, octal string such as "0660".
    pub socket_mode: Option<String>,
    /// Socket file group (name or number).
    pub socket_group: Option<String>,
    /// Devices commands may go to: "MAJOR:MINOR" or "wwid:NAME" (empty: any).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Keys in audit lines: "full", "hashed" or "omitted".
    pub audit_keys: Option<KeyDisplay>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Milliseconds a started request may take to arrive whole.
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
    pub user: Option<String>,
    /// Group to drop to.
    pub group: Option<String>,
    /// Verbosity: 0 default, 1 debug, 2 trace; -1 quiet.
    pub verbose: Option<i8>,
    /// Trace options, as `-T`.
    pub trace: Option<String>,
    /// Log format: "text" (default) or "json".
    pub log_format: Option<LogFormat>,
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
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The socket path is relative.
    #[error("socket path must be absolute: {0}")]
    RelativeSocket(PathBuf),
    /// An `[[executor.fault]]` entry names no known fault.
    #[error("[[executor.fault]] for {path}: {source}")]
    Fault {
        /// The entry's file.
        path: PathBuf,
        /// The name that was not understood.
        #[source]
        source: UnknownFault,
    },
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
        ConfigFile::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }
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
}

/// The merged, validated settings the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Socket path to create (unless socket-activated).
    pub socket: PathBuf,
    /// Whether the socket path was given explicitly (`-k` or file).
    pub socket_given: bool,
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
    /// -1 quiet, 0 default, 1 debug, 2+ trace.
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
    /// Access control and limits, as in the file.
    pub security: SecurityFile,
}

impl Settings {
    /// Merges defaults, the file and the command line (which wins).
    pub fn merge(file: ConfigFile, cli: CommandLine) -> Result<Settings, ConfigError> {
        let socket_given = cli.socket.is_some() || file.socket.is_some();
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
        let faults = file
            .executor
            .fault
            .iter()
            .map(|f| {
                Ok(FaultSetting {
                    path: f.path.clone(),
                    fault: f.fault.parse().map_err(|source| ConfigError::Fault {
                        path: f.path.clone(),
                        source,
                    })?,
                    count: f.count,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        if !faults.is_empty() && executor != ExecutorKind::Emulated {
            return Err(ConfigError::FaultsNeedEmulation);
        }
        let timeout_ms = cli
            .timeout_ms
            .or(file.executor.timeout_ms)
            .unwrap_or(crate::adapters::sg_io::DEFAULT_TIMEOUT.as_millis() as u64);
        Ok(Settings {
            socket,
            socket_given,
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
        assert!(!s.write_pidfile && !s.daemon && !s.socket_given);
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
        let e = Settings::merge(ConfigFile::parse(&bad).unwrap(), CommandLine::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/tmp/a.img") && e.contains("\"slow\"") && e.contains("eio"),
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
        assert_eq!(s.security.socket_mode.as_deref(), Some("0660"));
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
