//! The daemon's lifecycle, in the order that keeps it safe: lock the pidfile,
//! listen (or adopt the systemd socket), daemonize, drop privileges, and only
//! then start the async runtime and serve until a signal.

use std::path::PathBuf;
use std::sync::Arc;

use nix::unistd::{Group, User};

use crate::adapters::background::{self, BackgroundError};
use crate::adapters::emulated::{EmulatedExecutor, FaultInjection, InitiatorIdentity};
use crate::adapters::multipath::MultipathExecutor;
use crate::adapters::multipathd::{MultipathdAddress, MultipathdNotifier};
use crate::adapters::multipathd_relay;
use crate::adapters::pidfile::{Pidfile, PidfileError};
use crate::adapters::privileges::LinuxPrivileges;
use crate::adapters::seccomp::SeccompMode;
use crate::adapters::sg_io::SgIoExecutor;
use crate::adapters::systemd::{self, ActivationError};
use crate::adapters::unix_socket::{ListenError, SocketPermissions, UnixSocketListener};
use crate::config::{ExecutorKind, InitiatorModel, Settings, SocketSource};
use crate::domain::allowlist::{DeviceAllowlist, PeerPolicy};
use crate::ports::executor::ScsiExecutor;
use crate::ports::privileges::{PrivilegeControl, PrivilegeError, PrivilegeOutcome, PrivilegePlan};
use crate::server::{ServerOptions, ServerStats};
use crate::status::status_line;

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `-k` together with socket activation.
    #[error("Unix socket can't be set when using socket activation")]
    SocketWithActivation,
    /// Socket activation variables are wrong.
    #[error("socket activation failed: {0}")]
    Activation(#[from] ActivationError),
    /// The listening socket.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The pidfile.
    #[error(transparent)]
    Pidfile(#[from] PidfileError),
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
    /// Going to the background failed.
    #[error(transparent)]
    Background(#[from] BackgroundError),
    /// Dropping privileges failed: the daemon does not run with more.
    #[error("failed to drop privileges: {0}")]
    Privileges(#[from] PrivilegeError),
    /// The async runtime or the signal handlers could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The system-call filter could not be installed.
    #[error(transparent)]
    Seccomp(crate::adapters::seccomp::SeccompError),
    /// A `[security]` setting is invalid.
    #[error("invalid [security] setting: {0}")]
    Security(String),
    /// An `[[executor.fault]]` file cannot be looked at.
    #[error("[[executor.fault]] file {path}: {source}")]
    FaultFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The selected executor is not available in this build.
    #[error("executor {0:?} is not available")]
    ExecutorUnavailable(ExecutorKind),
}

/// Resolves `-u`/`-g` (names or numbers) to ids. With only `-u`, the user's
/// primary group is used, so that the daemon never keeps root's group.
pub fn resolve_identity(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(Option<u32>, Option<u32>), DaemonError> {
    let mut primary_gid = None;
    let uid = match user {
        None => None,
        Some(name) => match User::from_name(name).ok().flatten() {
            Some(u) => {
                primary_gid = Some(u.gid.as_raw());
                Some(u.uid.as_raw())
            }
            None => match name.parse::<u32>() {
                Ok(n) if n != u32::MAX => {
                    primary_gid = User::from_uid(n.into())
                        .ok()
                        .flatten()
                        .map(|u| u.gid.as_raw());
                    if primary_gid.is_none() && group.is_none() {
                        return Err(DaemonError::UserWithoutGroup(name.to_string()));
                    }
                    Some(n)
                }
                _ => return Err(DaemonError::InvalidUser(name.to_string())),
            },
        },
    };
    let gid = match group {
        None => primary_gid,
        Some(name) => match Group::from_name(name).ok().flatten() {
            Some(g) => Some(g.gid.as_raw()),
            None => match name.parse::<u32>() {
                Ok(n) if n != u32::MAX => Some(n),
                _ => return Err(DaemonError::InvalidGroup(name.to_string())),
            },
        },
    };
    Ok((uid, gid))
}

/// Builds the executor the settings ask for. Runs while still privileged, so
/// the multipathd connection (root peers only) is made here.
pub fn build_executor(settings: &Settings) -> Result<Arc<dyn ScsiExecutor>, DaemonError> {
    match settings.executor {
        ExecutorKind::SgIo if settings.multipath => {
            let notifier = Arc::new(multipathd_notifier(seccomp_mode(settings)));
            Ok(Arc::new(MultipathExecutor::new(settings.timeout, notifier)))
        }
        ExecutorKind::SgIo => Ok(Arc::new(SgIoExecutor::new(settings.timeout))),
        ExecutorKind::Emulated => {
            let identity = match settings.initiator {
                InitiatorModel::Connection => InitiatorIdentity::Connection,
                InitiatorModel::Uid => InitiatorIdentity::PeerUid,
                InitiatorModel::Session => InitiatorIdentity::PeerSession,
            };
            tracing::warn!(
                initiator = %settings.initiator.name(),
                "EMULATED DEVICE: commands run on an in-memory SPC-4 device; \
                 no real device is touched and nothing reaches storage"
            );
            let faults = settings
                .faults
                .iter()
                .map(|f| {
                    use std::os::unix::fs::MetadataExt;
                    // The fd a client sends refers to the file, not to a
                    // link to it: follow links as open(2) does.
                    let meta =
                        std::fs::metadata(&f.path).map_err(|source| DaemonError::FaultFile {
                            path: f.path.clone(),
                            source,
                        })?;
                    tracing::warn!(
                        path = %f.path.display(),
                        fault = %f.fault,
                        count = f.count,
                        "EMULATED DEVICE FAULT configured"
                    );
                    Ok(FaultInjection {
                        unit: (meta.dev(), meta.ino()),
                        fault: f.fault,
                        count: f.count,
                    })
                })
                .collect::<Result<Vec<_>, DaemonError>>()?;
            Ok(Arc::new(
                EmulatedExecutor::with_identity(identity).with_faults(faults, settings.timeout),
            ))
        }
    }
}

/// The seccomp mode asked for, or the build's default.
fn seccomp_mode(settings: &Settings) -> SeccompMode {
    settings
        .security
        .seccomp
        .unwrap_or_else(SeccompMode::default_for_build)
}

/// Starts the multipathd relay (see [`multipathd_relay`]); if it cannot be
/// started, multipathd is talked to directly, which works only while this
/// process stays root.
fn multipathd_notifier(mode: SeccompMode) -> MultipathdNotifier {
    let address = MultipathdAddress::from_env();
    match multipathd_relay::spawn(address.clone(), mode) {
        Ok(relay) => {
            // Debug: hosts without multipathd need not hear about it.
            tracing::debug!(
                pid = relay.pid(),
                multipathd = %address,
                "multipathd relay started (root's uid, no capabilities)"
            );
            MultipathdNotifier::with_relay(relay)
        }
        Err(e) => {
            tracing::warn!(
                cause = %e,
                "cannot start the multipathd relay: talking to multipathd directly, which \
                 fails once privileges are dropped with -u"
            );
            MultipathdNotifier::new(address)
        }
    }
}

/// The server's policy and limits from the `[security]` table.
pub fn server_options(settings: &Settings) -> Result<ServerOptions, DaemonError> {
    let sec = &settings.security;
    let defaults = ServerOptions::default();
    Ok(ServerOptions {
        peers: PeerPolicy {
            uids: sec.allowed_uids.clone(),
            gids: sec.allowed_gids.clone(),
        },
        devices: DeviceAllowlist(sec.devices.clone()),
        inspector: Arc::new(crate::adapters::device::Inspector),
        max_connections: sec.max_connections.unwrap_or(defaults.max_connections),
        request_timeout: sec
            .request_timeout_ms
            .map_or(defaults.request_timeout, std::time::Duration::from_millis),
        audit_keys: sec.audit_keys.unwrap_or_default(),
        stats: Arc::default(),
    })
}

/// Socket mode and group from the `[security]` table.
pub fn socket_permissions(settings: &Settings) -> Result<SocketPermissions, DaemonError> {
    let sec = &settings.security;
    let gid = match &sec.socket_group {
        None => None,
        Some(g) => match resolve_identity(None, Some(g)) {
            Ok((_, gid)) => gid,
            Err(_) => {
                return Err(DaemonError::Security(format!(
                    "socket_group {g:?} is unknown"
                )))
            }
        },
    };
    Ok(SocketPermissions {
        mode: sec.socket_mode,
        gid,
    })
}

/// Raises the soft open-file limit to the hard limit: every idle VM holds a
/// connection, and running out of fds would refuse the next one.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(cause = %e, "cannot raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(cause = %e, "cannot read the open-file limit"),
    }
}

/// The signals that stop the daemon. They are blocked from the start, so one
/// that arrives before the handlers exist waits for them instead of killing
/// the process (the socket is already accepting by then).
fn shutdown_sigset() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

/// Runs the daemon to completion.
pub fn run(settings: Settings) -> Result<(), DaemonError> {
    // 0. Everything that can be wrong in the settings, before touching anything.
    let (uid, gid) = resolve_identity(settings.user.as_deref(), settings.group.as_deref())?;
    let options = server_options(&settings)?;
    let permissions = socket_permissions(&settings)?;
    let _ = shutdown_sigset().thread_block();
    raise_fd_limit();

    // 1. The pidfile, locked before the socket path is touched: a second
    //    instance on it stops here and leaves the first one's socket alone.
    //    A failed start removes it again (on drop).
    let mut pidfile = if settings.write_pidfile {
        Some(Pidfile::lock(&settings.pidfile)?)
    } else {
        None
    };

    // 2. The listening socket, while privileged.
    let activated = systemd::activation_requested();
    match settings.socket_source {
        SocketSource::CommandLine if activated => return Err(DaemonError::SocketWithActivation),
        // The shipped unit runs with the shipped configuration, whose
        // `socket` serves the same path without systemd: not a conflict.
        SocketSource::ConfigFile if activated => tracing::info!(
            socket = %settings.socket.display(),
            "the configuration file's socket is not used: systemd passed the listening socket"
        ),
        _ => {}
    }
    let (std_listener, owned_path): (_, Option<PathBuf>) = match systemd::take_activation_fd()? {
        Some(fd) => (UnixSocketListener::adopt_std(fd)?, None),
        None => (
            UnixSocketListener::bind_std(&settings.socket, permissions)?,
            Some(settings.socket.clone()),
        ),
    };
    // From here on, a failure must not leave our socket file behind.
    let cleanup = SocketFileGuard(owned_path.clone());

    let executor = build_executor(&settings)?;

    // The service manager's socket, made before the system-call filter.
    let notifier = match systemd::Notifier::from_env() {
        Ok(n) => n.map(Arc::new),
        Err(e) => {
            tracing::warn!(cause = %e, "cannot use NOTIFY_SOCKET: systemd will not hear from the daemon");
            None
        }
    };
    let stats = Arc::clone(&options.stats);

    // 3. Background.
    let detached = if settings.daemon {
        Some(background::detach()?)
    } else {
        None
    };
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }

    // 4. Privileges, before any other thread exists.
    let plan = PrivilegePlan {
        uid,
        gid,
        // Multipath discovery reads sysfs; no device-mapper ioctl needs
        // CAP_SYS_ADMIN.
        keep_sys_admin: false,
    };
    match LinuxPrivileges.drop_privileges(&plan)? {
        // The ids the daemon now runs as, numbers whether or not -u/-g
        // changed them.
        PrivilegeOutcome::Dropped => tracing::info!(
            uid = nix::unistd::getuid().as_raw(),
            gid = nix::unistd::getgid().as_raw(),
            "privileges dropped: keeping CAP_SYS_RAWIO only"
        ),
        PrivilegeOutcome::Unprivileged => tracing::warn!(
            "running without privileges: the kernel will refuse PERSISTENT RESERVE \
             commands through SG_IO (they need CAP_SYS_RAWIO)"
        ),
    }

    // 5. The system-call allowlist, inherited by every thread from here on.
    let mode = seccomp_mode(&settings);
    crate::adapters::seccomp::install(mode).map_err(DaemonError::Seccomp)?;
    tracing::debug!(mode = %mode.name(), "seccomp filter installed");

    // 6. Serve.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = runtime.block_on(async {
        std::mem::forget(cleanup);
        let listener = UnixSocketListener::from_std(std_listener, owned_path)?;
        let signal = shutdown_signal().map_err(DaemonError::Runtime)?;
        let reporter = notifier
            .clone()
            .map(|n| tokio::spawn(report_status(n, Arc::clone(&stats))));
        let shutdown = {
            let (notifier, stats) = (notifier.clone(), Arc::clone(&stats));
            async move {
                signal.await;
                if let Some(reporter) = reporter {
                    reporter.abort();
                }
                if let Some(n) = notifier {
                    let state = format!("STOPPING=1\nSTATUS=stopping: {}", status_line(&stats));
                    if let Err(e) = n.send(&state) {
                        tracing::debug!(cause = %e, "cannot tell systemd the daemon stops");
                    }
                }
            }
        };
        // The handlers exist now: let pending and later signals through.
        let _ = shutdown_sigset().thread_unblock();
        // Whoever ran `-d` learns the start succeeded only now.
        if let Some(detached) = detached {
            detached.ready();
        }
        match &listener.owned_path() {
            Some(path) => tracing::info!(socket = %path.display(), "listening"),
            None => tracing::info!("listening on the socket passed by systemd"),
        }
        if let Some(n) = &notifier {
            let state = format!("READY=1\nSTATUS=serving: {}", status_line(&stats));
            match n.send(&state) {
                Ok(()) => tracing::debug!("notified systemd"),
                Err(e) => tracing::warn!(cause = %e, "cannot notify systemd"),
            }
        }
        crate::server::run_with(listener, executor, shutdown, options).await;
        tracing::info!("exiting");
        Ok(())
    });
    // A command thread stuck on a client's fd (a FUSE file whose server
    // never answers) was abandoned by the server: do not wait for it.
    runtime.shutdown_timeout(crate::server::STOP_GRACE);
    drop(pidfile);
    result
}

/// How often the status line is refreshed (only when it changed): a fixed
/// wake-up, whatever the number of commands.
const STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps `STATUS=` (connections, commands in flight) current for
/// `systemctl status`, by reading the server's counters now and then rather
/// than being woken by every command.
async fn report_status(notifier: Arc<systemd::Notifier>, stats: Arc<ServerStats>) {
    let mut tick = tokio::time::interval(STATUS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = status_line(&stats);
    loop {
        tick.tick().await;
        let now = status_line(&stats);
        if now != last {
            if let Err(e) = notifier.send(&format!("STATUS=serving: {now}")) {
                tracing::debug!(cause = %e, "cannot update the status in systemd");
            }
            last = now;
        }
    }
}

/// Completes on SIGTERM, SIGINT or SIGHUP.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::info!(signal = %which, "shutting down");
    })
}

/// Removes the socket file if start-up fails after binding it.
struct SocketFileGuard(Option<PathBuf>);

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_by_name_and_number() {
        assert_eq!(resolve_identity(None, None).unwrap(), (None, None));
        assert_eq!(
            resolve_identity(Some("root"), None).unwrap(),
            (Some(0), Some(0))
        );
        assert_eq!(
            resolve_identity(Some("12345"), Some("54321")).unwrap(),
            (Some(12345), Some(54321))
        );
        assert!(matches!(
            resolve_identity(Some("no-such-user-here"), None),
            Err(DaemonError::InvalidUser(_))
        ));
        assert!(matches!(
            resolve_identity(None, Some("no-such-group-here")),
            Err(DaemonError::InvalidGroup(_))
        ));
    }

    #[test]
    fn a_user_number_without_a_passwd_entry_needs_a_group() {
        assert!(User::from_uid(12345.into()).unwrap().is_none());
        let e = resolve_identity(Some("12345"), None).unwrap_err();
        assert!(matches!(e, DaemonError::UserWithoutGroup(ref u) if u == "12345"));
        assert!(e.to_string().contains("-g"), "{e}");
        assert_eq!(
            resolve_identity(Some("12345"), Some("0")).unwrap(),
            (Some(12345), Some(0))
        );
    }
}
