// SPDX-License-Identifier: GPL-2.0-or-later
//! The daemon's settings: defaults as in the C helper, then a TOML file
//! (`-c`), then command-line flags, each overriding the one before. Every
//! value is checked and resolved here, once ([`Settings::new`]); the daemon
//! only acts on the result.

pub mod cli;
mod error;
mod executor;
mod file;
mod identity;
pub mod keys;
mod log;
mod pidfile;
mod seccomp_mode;
mod settings;
mod socket;
mod trace;

/// Threads of the daemon's blocking pool, which runs the commands (tokio's
/// default, stated): `max_commands_per_peer` may not exceed it, so that one
/// peer can never hold every thread.
pub const BLOCKING_THREADS: usize = 512;

pub use error::{ConfigError, ParseError};
pub use executor::{DeviceInterface, ExecutorSettings};
pub use file::{ConfigFile, ExecutorKind, ExecutorTable, FaultEntry, SecurityTable};
pub use identity::Identity;
pub use log::{LogFormat, LogTo, DEFAULT_SYSLOG_SOCKET};
pub use pidfile::DEFAULT_PIDFILE;
pub use seccomp_mode::SeccompMode;
pub use settings::Settings;
pub use socket::{SocketPermissions, SocketSource, DEFAULT_SOCKET};
pub use trace::{glob_match, TraceOptions};

#[cfg(test)]
mod tests;
