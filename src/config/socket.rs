// SPDX-License-Identifier: GPL-2.0-or-later
//! The listening socket: where it is, where that came from, and the
//! permissions its file gets.

/// Default socket path, as in the C helper.
pub const DEFAULT_SOCKET: &str = "/var/run/qemu-pr-helper.sock";

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

/// Mode and group given to the socket file before it appears under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketPermissions {
    /// File mode bits (e.g. 0o660); `None` keeps what the umask gives.
    pub mode: Option<u32>,
    /// Group owner; `None` keeps the daemon's group.
    pub gid: Option<u32>,
}
