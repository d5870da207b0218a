// SPDX-License-Identifier: GPL-2.0-or-later
//! The settings as an operator writes them: files and flags in, the
//! settings or the error the operator reads out.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::cli::Cli;
use super::*;
use crate::domain::allowlist::DeviceSelector;
use crate::domain::audit::KeyDisplay;
use crate::domain::fault::DeviceFault;
use crate::domain::pr_ioctl::request::AptplZero;
use crate::domain::reservation::InitiatorIdentity;
use crate::domain::sg_io_timeout::SgIoTimeout;

/// The command line `qemu-pr-helper ARGS...`.
fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("qemu-pr-helper").chain(args.iter().copied())).unwrap()
}

/// `text` as the file, `args` as the command line.
fn settings(text: &str, args: &[&str]) -> Result<Settings, ConfigError> {
    Settings::new(ConfigFile::parse(text).unwrap(), cli(args))
}

/// The real-device executor's (timeout, multipath), or a panic.
fn sg_io(s: &Settings) -> (SgIoTimeout, bool) {
    match s.executor {
        ExecutorSettings::Device {
            timeout, multipath, ..
        } => (timeout, multipath),
        ref other => panic!("not a real device: {other:?}"),
    }
}

/// The real-device executor's interface and APTPL=0 policy, or a panic.
fn interface(s: &Settings) -> (DeviceInterface, AptplZero) {
    match s.executor {
        ExecutorSettings::Device {
            interface,
            aptpl_zero,
            ..
        } => (interface, aptpl_zero),
        ref other => panic!("not a real device: {other:?}"),
    }
}

#[test]
fn the_executor_is_auto_unless_the_file_or_the_flag_says_otherwise() {
    let persist = AptplZero::Persist;
    let s = settings("", &[]).unwrap();
    assert_eq!(interface(&s), (DeviceInterface::Auto, persist));
    let s = settings("[executor]\nkind = \"pr_ioctl\"\n", &[]).unwrap();
    assert_eq!(interface(&s), (DeviceInterface::PrIoctl, persist));
    let s = settings(
        "[executor]\nkind = \"pr_ioctl\"\n",
        &["--executor", "sg_io"],
    )
    .unwrap();
    assert_eq!(interface(&s), (DeviceInterface::SgIo, persist));
    let s = settings(
        "[executor]\naptpl_zero = \"refuse\"\n",
        &["--executor", "auto"],
    )
    .unwrap();
    assert_eq!(interface(&s), (DeviceInterface::Auto, AptplZero::Refuse));
    let s = settings("", &["--executor", "emulated"]).unwrap();
    assert!(matches!(s.executor, ExecutorSettings::Emulated { .. }));
    assert!(Cli::try_parse_from(["qemu-pr-helper", "--executor", "ioctl"]).is_err());
    assert!(ConfigFile::parse("[executor]\naptpl_zero = \"maybe\"\n").is_err());
}

/// The emulated executor's parameters, or a panic.
fn emulated(s: &Settings) -> (InitiatorIdentity, &[FaultEntry], SgIoTimeout) {
    match &s.executor {
        ExecutorSettings::Emulated {
            initiator,
            faults,
            timeout,
        } => (*initiator, faults, *timeout),
        other => panic!("not emulated: {other:?}"),
    }
}

fn ms(n: u64) -> SgIoTimeout {
    SgIoTimeout::from_millis(n).unwrap()
}

#[test]
fn defaults_are_the_c_helpers() {
    let s = settings("", &[]).unwrap();
    assert_eq!(s.socket, PathBuf::from("/var/run/qemu-pr-helper.sock"));
    assert_eq!(s.pidfile, PathBuf::from("/var/run/qemu-pr-helper.pid"));
    assert!(!s.write_pidfile && !s.daemon);
    assert_eq!(s.socket_source, SocketSource::Default);
    assert_eq!(s.socket_permissions, SocketPermissions::default());
    assert_eq!(s.identity, Identity::default());
    assert_eq!(sg_io(&s), (SgIoTimeout::DEFAULT, true));
    assert_eq!(SgIoTimeout::DEFAULT.as_duration(), Duration::from_secs(30));
    assert_eq!((s.max_connections, s.request_timeout), (None, None));
    assert_eq!(
        (s.max_connections_per_peer, s.max_commands_per_peer),
        (None, None)
    );
    assert_eq!(s.audit_keys, KeyDisplay::Full);
    assert_eq!(s.seccomp, SeccompMode::default_for_build());
}

#[test]
fn the_help_text_shows_the_default_timeout() {
    use clap::CommandFactory;
    let help = Cli::command().render_help().to_string();
    assert!(
        help.contains("SG_IO timeout in milliseconds [default: 30000]\n"),
        "{help}"
    );
}

#[test]
fn the_example_files_parse() {
    let f = ConfigFile::parse(include_str!("../../config/qemu-pr-helper.toml")).unwrap();
    assert_eq!(f.executor.multipath, Some(true));
    let emulated_toml = include_str!("../../config/emulated.toml");
    ConfigFile::parse(emulated_toml).unwrap();
    // The commented fault example, uncommented, is a valid config too.
    let example = emulated_toml
        .lines()
        .skip_while(|l| !l.starts_with("# timeout_ms"))
        .map(|l| l.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    // It sits at the end, in the [executor] table.
    let s = settings(&format!("{emulated_toml}\n{example}\n"), &[]).unwrap();
    let (_, faults, timeout) = emulated(&s);
    assert_eq!(faults.len(), 2);
    assert_eq!(timeout, ms(2000));
}

#[test]
fn faults_parse_and_unknown_names_are_refused() {
    let text = "[executor]\nkind = \"emulated\"\ninitiator = \"session\"\n\
        [[executor.fault]]\npath = \"/tmp/a.img\"\nfault = \"timeout\"\n\
        [[executor.fault]]\npath = \"/tmp/b.img\"\nfault = \"unit_attention\"\ncount = 3\n";
    let s = settings(text, &[]).unwrap();
    let (initiator, faults, _) = emulated(&s);
    assert_eq!(initiator, InitiatorIdentity::PeerSession);
    assert_eq!(
        faults,
        [
            FaultEntry {
                path: "/tmp/a.img".into(),
                fault: DeviceFault::Timeout,
                count: None,
            },
            FaultEntry {
                path: "/tmp/b.img".into(),
                fault: DeviceFault::UnitAttention,
                count: Some(3),
            },
        ]
    );
    let bad = text.replace("\"timeout\"", "\"slow\"");
    let e = ConfigFile::parse(&bad).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(6), Some("executor.fault[0].fault"))
    );
    assert!(
        e.message.contains("\"slow\"") && e.message.contains("eio"),
        "{e}"
    );
    let real = text.replace("kind = \"emulated\"", "kind = \"sg_io\"");
    assert!(matches!(
        settings(&real, &[]),
        Err(ConfigError::FaultsNeedEmulation)
    ));
    assert!(
        ConfigFile::parse("[[executor.fault]]\npath = \"/x\"\nfault = \"eio\"\nbogus = 1").is_err()
    );
}

#[test]
fn initiator_names_are_the_files() {
    for (name, identity) in [
        ("connection", InitiatorIdentity::Connection),
        ("uid", InitiatorIdentity::PeerUid),
        ("session", InitiatorIdentity::PeerSession),
    ] {
        let s = settings(
            &format!("[executor]\ninitiator = \"{name}\"\n"),
            &["--emulate"],
        );
        assert_eq!(emulated(&s.unwrap()).0, identity);
        assert_eq!(identity.name(), name);
    }
    let (line, key, message) = parse_error("[executor]\ninitiator = \"peer\"\n");
    assert_eq!(
        (line, key.as_deref()),
        (Some(2), Some("executor.initiator"))
    );
    assert!(
        message.contains("`connection`, `uid`, `session`"),
        "{message}"
    );
}

#[test]
fn multipath_can_be_turned_off() {
    let s = settings("[executor]\nmultipath = false\n", &[]).unwrap();
    assert_eq!(sg_io(&s), (SgIoTimeout::DEFAULT, false));
    assert!(ConfigFile::parse("[executor]\nmultipath = \"yes\"\n").is_err());
}

#[test]
fn command_line_overrides_the_file() {
    let s = settings(
        "socket = \"/run/a.sock\"\nuser = \"root\"\nverbose = 1\n\
         [executor]\nkind = \"emulated\"\ntimeout_ms = 5000\n\
         [security]\nseccomp = \"off\"\n",
        &[
            "-k",
            "/run/b.sock",
            "-q",
            "--timeout",
            "100",
            "--seccomp",
            "kill",
        ],
    )
    .unwrap();
    assert_eq!(s.socket, PathBuf::from("/run/b.sock"));
    assert_eq!(s.socket_source, SocketSource::CommandLine);
    assert_eq!(
        s.identity,
        Identity {
            uid: Some(0),
            gid: Some(0)
        }
    );
    assert_eq!(s.verbosity, -1);
    assert_eq!(emulated(&s).2, ms(100));
    assert_eq!(s.seccomp, SeccompMode::Kill);
    let s = settings("[executor]\ntimeout_ms = 5000\n", &["--emulate"]).unwrap();
    assert_eq!(emulated(&s).2, ms(5000));
}

#[test]
fn pidfile_is_written_with_daemon_or_explicit_path() {
    assert!(settings("", &["-d"]).unwrap().write_pidfile);
    assert!(settings("", &["-f", "/tmp/x.pid"]).unwrap().write_pidfile);
    assert!(
        settings("pidfile = \"/tmp/x.pid\"", &[])
            .unwrap()
            .write_pidfile
    );
}

#[test]
fn security_table_parses() {
    let s = settings(
        "log_format = \"json\"\n[security]\nallowed_uids = [107]\nallowed_gids = [36]\n\
         socket_mode = \"0660\"\nsocket_group = \"0\"\n\
         devices = [\"8:16\", \"wwid:naa.1\"]\naudit_keys = \"hashed\"\nmax_connections = 10\n\
         request_timeout_ms = 250\nmax_connections_per_peer = 8\nmax_commands_per_peer = 4\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(
        (s.peers.uids.as_slice(), s.peers.gids.as_slice()),
        (&[107][..], &[36][..])
    );
    assert_eq!(
        s.socket_permissions,
        SocketPermissions {
            mode: Some(0o660),
            gid: Some(0)
        }
    );
    assert_eq!(s.devices.0.len(), 2);
    assert_eq!(s.audit_keys, KeyDisplay::Hashed);
    assert_eq!(s.max_connections, Some(10));
    assert_eq!(
        (s.max_connections_per_peer, s.max_commands_per_peer),
        (Some(8), Some(4))
    );
    assert_eq!(s.request_timeout, Some(Duration::from_millis(250)));
    assert!(ConfigFile::parse("[security]\nbogus = 1").is_err());
}

#[test]
fn unknown_users_and_groups_are_refused_with_the_name() {
    for (text, args, message) in [
        (
            "",
            &["-u", "no-such-user-here"][..],
            "invalid user 'no-such-user-here'",
        ),
        (
            "",
            &["-g", "no-such-group-here"][..],
            "invalid group 'no-such-group-here'",
        ),
        (
            "[security]\nsocket_group = \"no-such-group-here\"",
            &[][..],
            "invalid [security] setting: socket_group \"no-such-group-here\" is unknown",
        ),
    ] {
        assert_eq!(settings(text, args).unwrap_err().to_string(), message);
    }
}

#[test]
fn relative_socket_and_unknown_keys_are_refused() {
    assert!(matches!(
        settings("", &["-k", "rel.sock"]),
        Err(ConfigError::RelativeSocket(_))
    ));
    assert!(ConfigFile::parse("sockett = \"/x\"").is_err());
    assert!(ConfigFile::parse("[executor]\nkind = \"magic\"").is_err());
}

/// (line, key, message) of a parse error.
fn parse_error(text: &str) -> (Option<usize>, Option<String>, String) {
    let e = ConfigFile::parse(text).unwrap_err();
    (e.line, e.key, e.message)
}

#[test]
fn parse_errors_carry_the_line_and_the_key() {
    assert_eq!(
        parse_error("[executor]\nkind = \"sg_io\"\ntimeout_ms = \"30000\"\n"),
        (
            Some(3),
            Some("executor.timeout_ms".into()),
            "invalid type: string \"30000\", expected an integer".into()
        )
    );
    assert_eq!(
        parse_error("\n[security]\nallowed_uids = [-1]\n"),
        (
            Some(3),
            Some("security.allowed_uids[0]".into()),
            "invalid value: integer `-1`, expected an integer from 0 to 4294967295".into()
        )
    );
    let (line, key, message) = parse_error("socket = \"/x\"\nsockett = \"/y\"\n");
    assert_eq!((line, key.as_deref()), (Some(2), Some("sockett")));
    assert!(message.starts_with("unknown field `sockett`"), "{message}");
    let (line, key, _) = parse_error("verbose = 1\nverbose 2\n");
    assert_eq!((line, key), (Some(2), None));
    let e = ConfigError::Parse {
        path: "/etc/qemu-pr-helper.toml".into(),
        detail: ConfigFile::parse("[executor]\n\ntimeout_ms = \"30000\"").unwrap_err(),
    };
    assert_eq!(
        e.to_string(),
        "/etc/qemu-pr-helper.toml line 3: executor.timeout_ms: invalid type: \
         string \"30000\", expected an integer"
    );
}

#[test]
fn values_that_cannot_work_are_refused_at_their_line() {
    for (text, key, message) in [
        (
            "[security]\nmax_connections = 0",
            "security.max_connections",
            "expected at least 1",
        ),
        (
            "[security]\nrequest_timeout_ms = 0",
            "security.request_timeout_ms",
            "at least 1",
        ),
        (
            "[security]\nmax_connections_per_peer = 0",
            "security.max_connections_per_peer",
            "at least 1",
        ),
        (
            "[security]\nmax_commands_per_peer = 0",
            "security.max_commands_per_peer",
            "from 1 to 512",
        ),
        (
            "[security]\nmax_commands_per_peer = 513",
            "security.max_commands_per_peer",
            "from 1 to 512",
        ),
        (
            "[executor]\ntimeout_ms = 0",
            "executor.timeout_ms",
            "at least 1",
        ),
        (
            "[security]\nsocket_mode = \"01777\"",
            "security.socket_mode",
            "\"0777\"",
        ),
        (
            "[security]\nsocket_mode = \"0999\"",
            "security.socket_mode",
            "octal",
        ),
        (
            "[security]\nsocket_mode = \"rw-\"",
            "security.socket_mode",
            "octal",
        ),
        (
            "[security]\nsocket_mode = \"\"",
            "security.socket_mode",
            "octal",
        ),
        (
            "[security]\nsocket_mode = \"+660\"",
            "security.socket_mode",
            "octal",
        ),
        (
            "[security]\nsocket_group = \"\"",
            "security.socket_group",
            "a name or a number",
        ),
        (
            "[security]\ndevices = [\"8:16\", \"\"]",
            "security.devices[1]",
            "neither",
        ),
        (
            "[security]\ndevices = [\"wwid: \"]",
            "security.devices[0]",
            "empty WWID",
        ),
        ("\nuser = \"\"", "user", "a name or a number"),
        ("\ngroup = \" \"", "group", "a name or a number"),
        ("\ntrace = \"bogus=1\"", "trace", "unknown trace option"),
        (
            "[[executor.fault]]\npath = \"/a\"\nfault = \"slow\"",
            "executor.fault[0].fault",
            "\"slow\"",
        ),
        (
            "[[executor.fault]]\npath = \"/a\"\nfault = \"eio\"\ncount = 0",
            "executor.fault[0].count",
            "at least 1",
        ),
    ] {
        let (line, k, m) = parse_error(text);
        assert_eq!(k.as_deref(), Some(key), "{text}");
        assert!(m.contains(message), "{text}: {m}");
        assert!(line.is_some(), "{text}");
    }
    let f = ConfigFile::parse(
        "[security]\nsocket_mode = \"0o600\"\nmax_connections = 1\nrequest_timeout_ms = 1\n\
         devices = [\"8:16\"]\n[executor]\ntimeout_ms = 1\n",
    )
    .unwrap();
    assert_eq!(f.security.socket_mode, Some(0o600));
    assert_eq!(f.security.devices, vec![DeviceSelector::MajorMinor(8, 16)]);
}

#[test]
fn a_relative_pidfile_is_resolved_against_the_start_directory() {
    let s = settings("", &["-f", "rel.pid"]).unwrap();
    assert_eq!(s.pidfile, std::env::current_dir().unwrap().join("rel.pid"));
}
