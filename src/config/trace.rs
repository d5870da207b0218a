// SPDX-License-Identifier: GPL-2.0-or-later
//! `-T` (`trace` in the file): which log targets to trace, and where.

use std::path::PathBuf;

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
