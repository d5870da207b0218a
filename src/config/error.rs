// SPDX-License-Identifier: GPL-2.0-or-later
//! What can be wrong with the settings, worded for the operator who fixes
//! them.

use std::path::PathBuf;

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
    /// `-u` names no user.
    #[error("invalid user '{0}'")]
    InvalidUser(String),
    /// `-u` is a number with no passwd entry, so it has no primary group to
    /// switch to, and keeping root's group is never right.
    #[error(
        "user {0} has no passwd entry and so no primary group: give the group with -g \
         (or `group` in the config file)"
    )]
    UserWithoutGroup(String),
    /// `-g` names no group.
    #[error("invalid group '{0}'")]
    InvalidGroup(String),
    /// `socket_group` names no group.
    #[error("invalid [security] setting: socket_group {0:?} is unknown")]
    UnknownSocketGroup(String),
    /// Faults are for the emulated device; real devices bring their own.
    #[error("[[executor.fault]] needs the emulated executor (--emulate or kind = \"emulated\")")]
    FaultsNeedEmulation,
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
