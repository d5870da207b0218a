// SPDX-License-Identifier: GPL-2.0-or-later
//! The TOML configuration file (`-c`) as written: every key optional, each
//! value checked as it is read, so that an error names its line and key.

use std::path::{Path, PathBuf};

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer};

use super::{ConfigError, LogFormat, LogTo, ParseError, SeccompMode, TraceOptions};
use crate::domain::allowlist::DeviceSelector;
use crate::domain::audit::KeyDisplay;
use crate::domain::fault::{DeviceFault, UnknownFault};
use crate::domain::pr_ioctl::request::AptplZero;
use crate::domain::reservation::InitiatorIdentity;

/// Which executor runs the commands (`kind`, `--executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// SG_IO on the client's device.
    SgIo,
    /// The block layer's PR ioctls on the client's device: no capability.
    PrIoctl,
    /// SG_IO with CAP_SYS_RAWIO, the PR ioctls without it.
    #[default]
    Auto,
    /// The in-memory SPC-4 device: no real device is touched.
    Emulated,
}

impl ExecutorKind {
    const ALL: [ExecutorKind; 4] = [
        ExecutorKind::SgIo,
        ExecutorKind::PrIoctl,
        ExecutorKind::Auto,
        ExecutorKind::Emulated,
    ];

    /// The name as the file and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::SgIo => "sg_io",
            ExecutorKind::PrIoctl => "pr_ioctl",
            ExecutorKind::Auto => "auto",
            ExecutorKind::Emulated => "emulated",
        }
    }
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<ExecutorKind, String> {
        ExecutorKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ExecutorKind::ALL.iter().map(|k| k.name()).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

/// The `[executor]` table: which executor, and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExecutorTable {
    /// `kind = "auto" | "sg_io" | "pr_ioctl" | "emulated"`.
    pub kind: Option<ExecutorKind>,
    /// SG_IO timeout in milliseconds (0 would be the kernel's default, never
    /// what someone writing it means).
    #[serde(default, deserialize_with = "at_least_one")]
    pub timeout_ms: Option<u64>,
    /// Route commands on dm-multipath maps through every path (default true).
    pub multipath: Option<bool>,
    /// PR ioctls only: `aptpl_zero = "persist" | "refuse"`, what a REGISTER
    /// with APTPL=0 gets (the kernel registers with APTPL=1).
    pub aptpl_zero: Option<AptplZero>,
    /// Emulated device only: `initiator = "connection" | "uid" | "session"`.
    pub initiator: Option<InitiatorIdentity>,
    /// Emulated device only: `[[executor.fault]]` entries, units that misbehave.
    #[serde(default)]
    pub fault: Vec<FaultEntry>,
}

/// One `[[executor.fault]]` entry: a file whose emulated unit misbehaves.
/// Carried as it is into [`ExecutorSettings::Emulated`](super::ExecutorSettings).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEntry {
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

/// The `[security]` table: who may connect, to which devices, and limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecurityTable {
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
    /// Connections one peer process may have open.
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_connections_per_peer: Option<usize>,
    /// Commands of one peer process running at once (the rest wait).
    #[serde(default, deserialize_with = "commands_per_peer")]
    pub max_commands_per_peer: Option<usize>,
    /// Milliseconds a started request may take to arrive whole.
    #[serde(default, deserialize_with = "at_least_one")]
    pub request_timeout_ms: Option<u64>,
    /// System-call filter: "kill" (release default), "log" (debug default)
    /// or "off".
    pub seccomp: Option<SeccompMode>,
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
    pub executor: ExecutorTable,
    /// Access control and limits.
    #[serde(default)]
    pub security: SecurityTable,
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

/// Commands one peer may run at once: at least 1, and no more than the
/// blocking pool's threads, past which the bound would bound nothing.
fn commands_per_peer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let value = Option::<usize>::deserialize(d)?;
    match value {
        Some(n) if n == 0 || n > super::BLOCKING_THREADS => Err(D::Error::invalid_value(
            Unexpected::Unsigned(n as u64),
            &format!("from 1 to {}", super::BLOCKING_THREADS).as_str(),
        )),
        _ => Ok(value),
    }
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
