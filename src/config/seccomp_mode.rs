// SPDX-License-Identifier: GPL-2.0-or-later
//! The system-call filter's mode: `--seccomp`, `seccomp` in `[security]`.

/// What the kernel does with a call outside the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompMode {
    /// Kill the process (production default).
    Kill,
    /// Allow it, but log it to the kernel audit log (for finding gaps).
    Log,
    /// No filter.
    Off,
}

impl SeccompMode {
    /// The name as written on the command line and in the file.
    pub fn name(self) -> &'static str {
        match self {
            SeccompMode::Kill => "kill",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        }
    }

    /// Kill in release builds, log in debug builds.
    pub fn default_for_build() -> SeccompMode {
        if cfg!(debug_assertions) {
            SeccompMode::Log
        } else {
            SeccompMode::Kill
        }
    }
}

impl std::str::FromStr for SeccompMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SeccompMode, String> {
        [SeccompMode::Kill, SeccompMode::Log, SeccompMode::Off]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("'{s}' is not kill, log or off"))
    }
}
