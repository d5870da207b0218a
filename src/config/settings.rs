// SPDX-License-Identifier: GPL-2.0-or-later
//! The settings the daemon runs with: the file and the command line merged
//! over the defaults, every value checked and resolved here, once.

use std::path::PathBuf;
use std::time::Duration;

use super::cli::Cli;
use super::{
    ConfigError, ConfigFile, DeviceInterface, ExecutorKind, ExecutorSettings, Identity, LogFormat,
    LogTo, SeccompMode, SocketPermissions, SocketSource, DEFAULT_PIDFILE, DEFAULT_SOCKET,
    DEFAULT_SYSLOG_SOCKET,
};
use crate::domain::allowlist::{DeviceAllowlist, PeerPolicy};
use crate::domain::audit::KeyDisplay;
use crate::domain::sg_io_timeout::SgIoTimeout;

/// The merged, validated settings the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Socket path to create (unless socket-activated).
    pub socket: PathBuf,
    /// Where the socket path came from: with socket activation `-k` is an
    /// error (as in the C helper), the file's path is not used.
    pub socket_source: SocketSource,
    /// Mode and group of the socket file.
    pub socket_permissions: SocketPermissions,
    /// Pidfile path, absolute.
    pub pidfile: PathBuf,
    /// Whether to write the pidfile (`-d` or `-f`).
    pub write_pidfile: bool,
    /// Daemonize.
    pub daemon: bool,
    /// Whom to become once listening.
    pub identity: Identity,
    /// -1 quiet (errors), 0 default (info), 1 debug, 2 and more trace.
    pub verbosity: i8,
    /// `-T` options.
    pub trace: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Where the log goes.
    pub log_to: LogTo,
    /// The syslog socket.
    pub syslog_socket: PathBuf,
    /// Which executor, with its parameters.
    pub executor: ExecutorSettings,
    /// Which peers may connect.
    pub peers: PeerPolicy,
    /// Which devices commands may go to.
    pub devices: DeviceAllowlist,
    /// Connections served at once; `None`: the server's default.
    pub max_connections: Option<usize>,
    /// Connections one peer process may have open; `None`: the server's
    /// default.
    pub max_connections_per_peer: Option<usize>,
    /// Commands of one peer process on the blocking pool at once; `None`:
    /// the server's default.
    pub max_commands_per_peer: Option<usize>,
    /// How long a started request may take; `None`: the server's default.
    pub request_timeout: Option<Duration>,
    /// How keys appear in audit lines.
    pub audit_keys: KeyDisplay,
    /// The system-call filter.
    pub seccomp: SeccompMode,
}

impl Settings {
    /// Loads the file `-c` names, if any, and merges it with the command line.
    pub fn from_cli(cli: Cli) -> Result<Settings, ConfigError> {
        let file = match &cli.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        Settings::new(file, cli)
    }

    /// Merges defaults, the file and the command line (which wins), and
    /// checks and resolves every value.
    pub fn new(file: ConfigFile, cli: Cli) -> Result<Settings, ConfigError> {
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
        let table = file.executor;
        let timeout = cli
            .timeout
            .or(table.timeout_ms)
            .and_then(SgIoTimeout::from_millis)
            .unwrap_or(SgIoTimeout::DEFAULT);
        let kind = if cli.emulate {
            ExecutorKind::Emulated
        } else {
            cli.executor.or(table.kind).unwrap_or_default()
        };
        let interface = match kind {
            ExecutorKind::SgIo => Some(DeviceInterface::SgIo),
            ExecutorKind::PrIoctl => Some(DeviceInterface::PrIoctl),
            ExecutorKind::Auto => Some(DeviceInterface::Auto),
            ExecutorKind::Emulated => None,
        };
        let executor = match interface {
            None => ExecutorSettings::Emulated {
                initiator: table.initiator.unwrap_or_default(),
                faults: table.fault,
                timeout,
            },
            Some(_) if !table.fault.is_empty() => return Err(ConfigError::FaultsNeedEmulation),
            Some(interface) => ExecutorSettings::Device {
                interface,
                timeout,
                multipath: table.multipath.unwrap_or(true),
                aptpl_zero: table.aptpl_zero.unwrap_or_default(),
            },
        };
        let security = file.security;
        let identity = Identity::resolve(
            cli.user.or(file.user).as_deref(),
            cli.group.or(file.group).as_deref(),
        )?;
        let socket_gid = match &security.socket_group {
            None => None,
            Some(g) => Some(
                super::identity::group_id(g)
                    .ok_or_else(|| ConfigError::UnknownSocketGroup(g.clone()))?,
            ),
        };
        Ok(Settings {
            socket,
            socket_source,
            socket_permissions: SocketPermissions {
                mode: security.socket_mode,
                gid: socket_gid,
            },
            pidfile,
            write_pidfile: daemon || pidfile_given,
            daemon,
            identity,
            verbosity,
            trace: cli.trace.or(file.trace),
            log_format: file.log_format.unwrap_or_default(),
            log_to: cli.log_to.or(file.log_to).unwrap_or_default(),
            syslog_socket: file
                .syslog_socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSLOG_SOCKET)),
            executor,
            peers: PeerPolicy {
                uids: security.allowed_uids,
                gids: security.allowed_gids,
            },
            devices: DeviceAllowlist(security.devices),
            max_connections: security.max_connections,
            max_connections_per_peer: security.max_connections_per_peer,
            max_commands_per_peer: security.max_commands_per_peer,
            request_timeout: security.request_timeout_ms.map(Duration::from_millis),
            audit_keys: security.audit_keys.unwrap_or_default(),
            seccomp: cli
                .seccomp
                .or(security.seccomp)
                .unwrap_or_else(SeccompMode::default_for_build),
        })
    }
}
