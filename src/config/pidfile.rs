// SPDX-License-Identifier: GPL-2.0-or-later
//! The pidfile's default path, beside the socket's: both the settings and
//! the command line's help show it.

/// Default pidfile path, as in the C helper.
pub const DEFAULT_PIDFILE: &str = "/var/run/qemu-pr-helper.pid";
