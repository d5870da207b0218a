// SPDX-License-Identifier: GPL-2.0-or-later
use super::*;
use std::collections::BTreeSet;

/// The module path of a source file under src/ (None for the binaries).
fn module_of(relative: &Path) -> Option<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.first().map(String::as_str) == Some("bin") {
        return None;
    }
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(
        std::iter::once("qemu_pr_helper".to_string())
            .chain(parts)
            .collect::<Vec<_>>()
            .join("::"),
    )
}

/// Every target the sources log on, outside their tests: the module of each
/// file with a tracing macro that names no target, and each target named
/// (`target: "..."`, or `target: NAME` with `const NAME: &str = "..."`
/// in the sources).
fn targets_in_sources() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs")
                || path.file_name().and_then(|n| n.to_str()) == Some("tests.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            files.push((path, text, code));
        }
    }
    let consts: std::collections::HashMap<String, String> = files
        .iter()
        .flat_map(|(_, text, _)| text.split("const ").skip(1))
        .filter_map(|decl| {
            let (name, value) = decl.split_once(": &str = \"")?;
            Some((name.to_string(), value.split('"').next()?.to_string()))
        })
        .collect();
    let macros = ["trace", "debug", "info", "warn", "error", "event", "span"];
    let mut found = BTreeSet::new();
    for (path, _, code) in &files {
        for call in code.split("tracing::").skip(1) {
            let Some((name, args)) = call.split_once("!(") else {
                continue;
            };
            let name = name.strip_suffix("_span").unwrap_or(name);
            if !macros.contains(&name) {
                continue;
            }
            match args
                .trim_start()
                .strip_prefix("target:")
                .map(str::trim_start)
            {
                Some(named) => {
                    let target = match named.strip_prefix('"') {
                        Some(literal) => literal.split('"').next().unwrap().to_string(),
                        None => {
                            let name = named.split([',', ' ']).next().unwrap();
                            consts.get(name).expect(name).clone()
                        }
                    };
                    found.insert(target);
                }
                None => {
                    if let Some(module) = module_of(path.strip_prefix(&root).unwrap()) {
                        found.insert(module);
                    }
                }
            }
        }
        // Targets named in macros of the project's own (an audit line).
        for explicit in code.split("target: \"").skip(1) {
            found.insert(explicit.split('"').next().unwrap().to_string());
        }
    }
    found
}

#[test]
fn the_target_list_is_every_module_that_logs() {
    let listed: BTreeSet<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    let found = targets_in_sources();
    assert!(found.contains("qemu_pr_helper::adapters::multipath"));
    assert!(found.contains("audit"));
    assert_eq!(
        listed, found,
        "TARGETS (what -T help lists) differs from the modules that log"
    );
}

#[test]
fn every_target_is_reachable_with_t() {
    for target in TARGETS {
        let filter = LogFilter::new(level_for(-1), vec![target.to_string()]);
        assert!(filter.enables(&Level::TRACE, target), "{target}");
        let others = TARGETS.iter().filter(|t| *t != target);
        for other in others {
            assert!(
                !filter.enables(&Level::TRACE, other),
                "-T {target} enables {other}"
            );
        }
    }
    let multipath = LogFilter::new(level_for(0), vec!["*multipath*".into()]);
    assert!(multipath.enables(&Level::TRACE, "qemu_pr_helper::adapters::multipath"));
    assert!(multipath.enables(&Level::TRACE, "qemu_pr_helper::adapters::multipathd"));
    assert!(!multipath.enables(&Level::TRACE, "qemu_pr_helper::server"));
    let all = LogFilter::new(level_for(-1), vec!["*".into()]);
    assert!(TARGETS.iter().all(|t| all.enables(&Level::TRACE, t)));
}

#[test]
fn each_v_adds_a_level_and_q_keeps_errors_only() {
    let on = |verbosity: i8, level: Level| {
        LogFilter::new(level_for(verbosity), Vec::new()).enables(&level, "qemu_pr_helper::server")
    };
    assert!(on(-1, Level::ERROR) && !on(-1, Level::WARN));
    assert!(on(0, Level::INFO) && !on(0, Level::DEBUG));
    assert!(on(1, Level::DEBUG) && !on(1, Level::TRACE));
    assert!(on(2, Level::TRACE) && on(3, Level::TRACE));
}

#[test]
fn t_help_asks_for_the_list() {
    assert!(wants_target_list(Some("help")));
    assert!(wants_target_list(Some("enable=help")));
    assert!(wants_target_list(Some("help,file=/tmp/x")));
    assert!(!wants_target_list(Some("qemu_pr_helper::*")));
    assert!(!wants_target_list(Some("file=help")));
    assert!(!wants_target_list(None));
}

#[test]
fn the_destination_follows_the_documented_rules() {
    let syslog = Path::new("/dev/log");
    let none = Surroundings::default();
    let journal = Surroundings {
        journal: true,
        ..none
    };
    let under_systemd = Surroundings {
        stderr_is_journal: true,
        ..journal
    };
    let only_syslog = Surroundings {
        syslog: true,
        ..none
    };
    let pick = |log_to, file: Option<&str>, daemon, around| {
        choose(log_to, file.map(Path::new), daemon, syslog, around)
    };
    // Foreground: stderr, unless systemd connected stderr to the journal.
    assert_eq!(
        pick(LogTo::Auto, None, false, journal).unwrap(),
        Destination::Stderr
    );
    assert_eq!(
        pick(LogTo::Auto, None, false, under_systemd).unwrap(),
        Destination::Journald
    );
    // Daemonized: the journal, else syslog, else nowhere (and said so).
    assert_eq!(
        pick(LogTo::Auto, None, true, journal).unwrap(),
        Destination::Journald
    );
    assert_eq!(
        pick(LogTo::Auto, None, true, only_syslog).unwrap(),
        Destination::Syslog(syslog.into())
    );
    assert_eq!(
        pick(LogTo::Auto, None, true, none).unwrap(),
        Destination::Discarded
    );
    // -T file= wins over auto and conflicts with an explicit choice.
    assert_eq!(
        pick(LogTo::Auto, Some("/tmp/l"), true, journal).unwrap(),
        Destination::File("/tmp/l".into())
    );
    assert!(matches!(
        pick(LogTo::Syslog, Some("/tmp/l"), false, none),
        Err(LogError::TwoDestinations("syslog"))
    ));
    // Explicit choices are obeyed, and stderr with -d is refused.
    assert!(matches!(
        pick(LogTo::Stderr, None, true, journal),
        Err(LogError::StderrWhenDaemon)
    ));
    assert_eq!(
        pick(LogTo::Stderr, None, false, under_systemd).unwrap(),
        Destination::Stderr
    );
    assert_eq!(
        pick(LogTo::Journald, None, false, none).unwrap(),
        Destination::Journald
    );
}

#[test]
fn journal_stream_counts_only_when_it_names_our_stderr() {
    let st = nix::sys::stat::fstat(2).unwrap();
    // Tests run in threads of one process: only this test sets the var.
    std::env::set_var("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino));
    let named = stderr_is_journal();
    std::env::set_var("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino + 1));
    let other = stderr_is_journal();
    std::env::set_var("JOURNAL_STREAM", "nonsense");
    let nonsense = stderr_is_journal();
    std::env::remove_var("JOURNAL_STREAM");
    assert!(named && !other && !nonsense);
    assert!(!stderr_is_journal());
}

#[test]
fn syslog_lines_carry_facility_severity_and_pid_and_survive_a_restart() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let rx = UnixDatagram::bind(&path).unwrap();
    let mut syslog = Syslog::connect(&path).unwrap();
    let receive = |rx: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let line = |level: &Level, text: &str| Line {
        bytes: text.as_bytes().to_vec(),
        severity: severity(level),
    };
    syslog
        .write(&line(&Level::INFO, " INFO audit: PR OUT\n"))
        .unwrap();
    let pid = std::process::id();
    assert_eq!(
        receive(&rx),
        format!("<29>qemu-pr-helper[{pid}]: INFO audit: PR OUT")
    );
    // The syslog daemon restarts: a new socket at the same path.
    drop(rx);
    std::fs::remove_file(&path).unwrap();
    let rx = UnixDatagram::bind(&path).unwrap();
    syslog.write(&line(&Level::WARN, "WARN x")).unwrap();
    assert_eq!(receive(&rx), format!("<28>qemu-pr-helper[{pid}]: WARN x"));
}
