// SPDX-License-Identifier: GPL-2.0-or-later
//! Where the log goes and in which form: `--log-to`, `log_to`,
//! `log_format`, `syslog_socket`.

use serde::Deserialize;

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
