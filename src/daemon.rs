// SPDX-License-Identifier: GPL-2.0-or-later
//! The daemon's lifecycle, in the order that keeps it safe: lock the pidfile,
//! listen (or adopt the systemd socket), daemonize, drop privileges, and only
//! then start the async runtime and serve until a signal.

use std::path::PathBuf;
use std::sync::Arc;

use crate::adapters::background::{self, BackgroundError};
use crate::adapters::emulated::{EmulatedExecutor, FaultInjection};
use crate::adapters::interface::InterfaceSelector;
use crate::adapters::leftovers::{self, Remover};
use crate::adapters::multipath::MultipathExecutor;
use crate::adapters::multipathd::connection::MultipathdAddress;
use crate::adapters::multipathd::relay::{self, RelayWatch};
use crate::adapters::multipathd::MultipathdNotifier;
use crate::adapters::pidfile::{Pidfile, PidfileError};
use crate::adapters::privileges::{self, Keep, PrivilegeError, PrivilegeOutcome};
use crate::adapters::systemd::{self, ActivationError};
use crate::adapters::unix_socket::{BoundSocket, ListenError};
use crate::config::{DeviceInterface, ExecutorSettings, SeccompMode, Settings, SocketSource};
use crate::domain::fd_budget;
use crate::ports::executor::ScsiExecutor;
use crate::server::{status_line, ServerOptions, ServerStats};

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
    /// The multipathd relay ended: it cannot be started again without root,
    /// so the daemon stops for the service manager to start it afresh.
    #[error("the multipathd relay (pid {pid}) ended ({how}): restart the daemon")]
    RelayLost {
        /// The relay's process id.
        pid: u32,
        /// How it ended.
        how: String,
    },
    /// The thread that writes the log could not be started.
    #[error("cannot start the log writer thread: {0}")]
    LogWriter(#[source] std::io::Error),
    /// An `[[executor.fault]]` file cannot be looked at.
    #[error("[[executor.fault]] file {path}: {source}")]
    FaultFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The executor, and the multipathd relay it depends on, if any.
pub struct Executor {
    /// Runs the commands.
    pub executor: Arc<dyn ScsiExecutor>,
    /// Watches the multipathd relay, whose end ends the daemon.
    pub relay: Option<RelayWatch>,
}

/// Builds the executor the settings ask for. Runs while still privileged, so
/// the multipathd connection (root peers only) is made here.
pub fn build_executor(settings: &Settings) -> Result<Executor, DaemonError> {
    let alone = |executor: Arc<dyn ScsiExecutor>| Executor {
        executor,
        relay: None,
    };
    match &settings.executor {
        ExecutorSettings::Device {
            interface,
            timeout,
            multipath,
            aptpl_zero,
        } => {
            let holds_rawio = keep(settings) == Keep::RawIo && privileges::holds_rawio();
            let selector = Arc::new(InterfaceSelector::new(
                *interface,
                holds_rawio,
                *timeout,
                *aptpl_zero,
            ));
            tracing::info!(
                executor = interface.name(),
                cap_sys_rawio = holds_rawio,
                aptpl_zero = aptpl_zero.name(),
                "{}",
                match (interface, holds_rawio) {
                    (DeviceInterface::SgIo, _) => "commands run through SG_IO",
                    (DeviceInterface::PrIoctl, _) =>
                        "commands run through the block layer's PR ioctls; no capability is kept",
                    (DeviceInterface::Auto, true) =>
                        "commands run through SG_IO: the helper keeps CAP_SYS_RAWIO",
                    (DeviceInterface::Auto, false) =>
                        "without CAP_SYS_RAWIO, commands run through the block layer's PR \
                         ioctls on every device whose kernel and driver take them, SG_IO on \
                         the others",
                }
            );
            if !*multipath {
                return Ok(alone(selector));
            }
            let (notifier, relay) = multipathd_notifier(settings.seccomp);
            Ok(Executor {
                executor: Arc::new(
                    MultipathExecutor::new(*timeout, Arc::new(notifier))
                        .with_selector(selector)
                        .with_audit_keys(settings.audit_keys),
                ),
                relay,
            })
        }
        ExecutorSettings::Emulated {
            initiator,
            faults,
            timeout,
        } => {
            tracing::warn!(
                initiator = %initiator.name(),
                "EMULATED DEVICE: commands run on an in-memory SPC-4 device; \
                 no real device is touched and nothing reaches storage"
            );
            let faults = faults
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
            Ok(alone(Arc::new(
                EmulatedExecutor::with_identity(*initiator)
                    .with_faults(faults, timeout.as_duration()),
            )))
        }
    }
}

/// What the daemon keeps when it drops privileges: nothing when every
/// command goes through the PR ioctls, CAP_SYS_RAWIO otherwise.
fn keep(settings: &Settings) -> Keep {
    match settings.executor {
        ExecutorSettings::Device {
            interface: DeviceInterface::PrIoctl,
            ..
        } => Keep::Nothing,
        _ => Keep::RawIo,
    }
}

/// Starts the multipathd relay (see [`relay`]) and a watch on
/// it; if it cannot be started, multipathd is talked to directly, which
/// works only while this process stays root.
fn multipathd_notifier(mode: SeccompMode) -> (MultipathdNotifier, Option<RelayWatch>) {
    let address = MultipathdAddress::from_env();
    match relay::spawn(address.clone(), mode) {
        Ok(relay) => {
            // Debug: hosts without multipathd need not hear about it.
            tracing::debug!(
                pid = relay.pid(),
                multipathd = %address,
                "multipathd relay started (root's uid, no capabilities)"
            );
            let watch = match relay.watch() {
                Ok(watch) => Some(watch),
                Err(e) => {
                    tracing::warn!(pid = relay.pid(), cause = %e,
                        "cannot watch the multipathd relay: if it ends, the daemon goes on \
                         without it");
                    None
                }
            };
            (MultipathdNotifier::with_relay(relay), watch)
        }
        Err(e) => {
            tracing::warn!(
                cause = %e,
                "cannot start the multipathd relay: talking to multipathd directly, which \
                 fails once privileges are dropped with -u"
            );
            (MultipathdNotifier::new(address), None)
        }
    }
}

/// Completes when the relay has ended (never without one), with its pid
/// and how it ended, logged at ERROR: the relay cannot be forked again
/// (the daemon is no longer root), so the daemon stops, letting the
/// commands in flight finish, and exits non-zero for the service manager
/// (`Restart=on-failure`) to start it, and a relay, again.
async fn relay_lost(relay: Option<RelayWatch>) -> (u32, String) {
    let Some(relay) = relay else {
        return std::future::pending().await;
    };
    let pid = relay.pid();
    match relay.ended().await {
        Ok(how) => {
            tracing::error!(
                pid,
                how = %how,
                "the multipathd relay ended: reservation changes and dm's path states no \
                 longer reach multipathd, and it cannot be started again without root; \
                 stopping (the service manager starts the daemon again)"
            );
            (pid, how)
        }
        Err(e) => {
            tracing::warn!(pid, cause = %e,
                "cannot watch the multipathd relay: if it ends, the daemon goes on without it");
            std::future::pending().await
        }
    }
}

/// The server's policy and limits from the settings.
pub fn server_options(settings: &Settings) -> ServerOptions {
    let defaults = ServerOptions::new(Arc::new(crate::adapters::fd_inspector::ClientFdInspector));
    ServerOptions {
        peers: settings.peers.clone(),
        devices: settings.devices.clone(),
        max_connections: settings.max_connections.unwrap_or(defaults.max_connections),
        max_connections_per_peer: settings
            .max_connections_per_peer
            .unwrap_or(defaults.max_connections_per_peer),
        max_commands_per_peer: settings
            .max_commands_per_peer
            .unwrap_or(defaults.max_commands_per_peer),
        request_timeout: settings.request_timeout.unwrap_or(defaults.request_timeout),
        audit_keys: settings.audit_keys,
        ..defaults
    }
}

/// Raises the soft open-file limit to the hard limit: every idle VM holds a
/// connection, and running out of fds would refuse the next one. Returns
/// the soft limit the daemon then has, if it can be read.
fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => Some(hard),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot raise the open-file limit");
                Some(soft)
            }
        },
        Ok((soft, _)) => Some(soft),
        Err(e) => {
            tracing::warn!(cause = %e, "cannot read the open-file limit");
            None
        }
    }
}

/// Lowers the connection cap to what the open-file limit can serve (see
/// [`fd_budget`]): past it, a client's next command would lose its fd (the
/// kernel truncates SCM_RIGHTS) and its connection would be dropped. A cap
/// the operator set is lowered with a warning; the default one quietly (at
/// INFO), since nothing was asked for that could not be had.
fn fit_to_fd_limit(options: &mut ServerOptions, open_file_limit: Option<u64>, chosen: bool) {
    let Some(limit) = open_file_limit else {
        return;
    };
    if let Err(served) = fd_budget::clamp_connections(options.max_connections, limit) {
        macro_rules! lowered {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    max_connections = options.max_connections,
                    open_file_limit = limit,
                    lowered_to = served,
                    fds_per_connection = fd_budget::FDS_PER_CONNECTION,
                    reserved_fds = fd_budget::FD_RESERVE,
                    "max_connections lowered to what the open-file limit can serve \
                     (raise LimitNOFILE to serve more)"
                )
            };
        }
        if chosen {
            lowered!(tracing::Level::WARN);
        } else {
            lowered!(tracing::Level::INFO);
        }
        options.max_connections = served;
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

/// Runs the daemon to completion. With `-d`, `announcement` is printed on
/// stderr by the process that started it, once the daemon serves (never
/// before an error that ends the start).
pub fn run(settings: Settings, announcement: &str) -> Result<(), DaemonError> {
    // 0. The settings were checked when they were made: from here on, act.
    log_start(&settings);
    let mut options = server_options(&settings);
    let _ = shutdown_sigset().thread_block();
    fit_to_fd_limit(
        &mut options,
        raise_fd_limit(),
        settings.max_connections.is_some(),
    );

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
    // From here on, a failure removes the socket file we created (on drop).
    let mut bound = match systemd::take_activation_fd()? {
        Some(fd) => BoundSocket::adopt(fd)?,
        None => BoundSocket::bind(&settings.socket, settings.socket_permissions)?,
    };

    let Executor { executor, relay } = build_executor(&settings)?;

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
        Some(background::detach(announcement)?)
    } else {
        None
    };
    if let Some(p) = pidfile.as_mut() {
        p.write_pid()?;
    }

    // 3b. As another user (-u) the daemon may not write to the directories
    //     of the socket file and the pidfile any more: a process that keeps
    //     root's uid removes them when the daemon ends.
    let remover = if becomes_another_user(&settings) {
        remover_for(&mut bound, pidfile.as_mut(), settings.seccomp)
    } else {
        None
    };

    // 4. Privileges, before any other thread exists.
    let keep = keep(&settings);
    match (privileges::drop_privileges(&settings.identity, keep)?, keep) {
        // The ids the daemon now runs as, numbers whether or not -u/-g
        // changed them.
        (PrivilegeOutcome::Dropped, Keep::RawIo) => tracing::info!(
            uid = nix::unistd::getuid().as_raw(),
            gid = nix::unistd::getgid().as_raw(),
            "privileges dropped: keeping CAP_SYS_RAWIO only"
        ),
        (PrivilegeOutcome::Dropped, Keep::Nothing) => tracing::info!(
            uid = nix::unistd::getuid().as_raw(),
            gid = nix::unistd::getgid().as_raw(),
            "privileges dropped: keeping no capability (the PR ioctls need none)"
        ),
        (PrivilegeOutcome::Unprivileged, _) if is_emulated(&settings) => tracing::info!(
            uid = nix::unistd::getuid().as_raw(),
            gid = nix::unistd::getgid().as_raw(),
            "running without privileges: the emulated device needs none"
        ),
        (PrivilegeOutcome::Unprivileged, _) if uses_ioctls(&settings) => tracing::info!(
            uid = nix::unistd::getuid().as_raw(),
            gid = nix::unistd::getgid().as_raw(),
            "running without privileges: commands go through the block layer's PR ioctls"
        ),
        (PrivilegeOutcome::Unprivileged, _) => tracing::warn!(
            "running without privileges: the kernel will refuse PERSISTENT RESERVE \
             commands through SG_IO (they need CAP_SYS_RAWIO)"
        ),
    }

    // 5. The system-call allowlist, inherited by every thread from here on.
    let mode = settings.seccomp;
    crate::adapters::seccomp::install(mode).map_err(DaemonError::Seccomp)?;
    tracing::debug!(mode = %mode.name(), "seccomp filter installed");
    // The log's writer thread, now that it inherits the filter and the
    // dropped privileges: whoever logs only queues the line.
    crate::logging::start_writer().map_err(DaemonError::LogWriter)?;

    // 6. Serve. One thread runs every connection's task: a task only
    // accepts, reads a request and hands it to a blocking thread, which runs
    // the command and writes the reply, so there is nothing for a second
    // worker to share, and each worker would cost a thread and its memory.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(crate::config::BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = runtime.block_on(async {
        let listener = bound.into_listener()?;
        let signal = shutdown_signal().map_err(DaemonError::Runtime)?;
        let reporter = notifier
            .clone()
            .map(|n| tokio::spawn(report_status(n, Arc::clone(&stats))));
        let lost = Arc::new(std::sync::OnceLock::new());
        let shutdown = {
            let (notifier, stats, lost) = (notifier.clone(), Arc::clone(&stats), Arc::clone(&lost));
            async move {
                tokio::select! {
                    () = signal => {}
                    ended = relay_lost(relay) => {
                        let _ = lost.set(ended);
                    }
                }
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
        match lost.get() {
            Some((pid, how)) => Err(DaemonError::RelayLost {
                pid: *pid,
                how: how.clone(),
            }),
            None => Ok(()),
        }
    });
    // A command thread stuck on a client's fd (a FUSE file whose server
    // never answers) was abandoned by the server: do not wait for it.
    runtime.shutdown_timeout(crate::server::STOP_GRACE);
    drop(pidfile);
    if let Some(remover) = remover {
        remover.finish();
    }
    result
}

/// Whether commands run on the emulated device, which touches no device
/// and so needs no privilege.
fn is_emulated(settings: &Settings) -> bool {
    matches!(settings.executor, ExecutorSettings::Emulated { .. })
}

/// The daemon's first line, at the default level: its version, the way
/// commands will go and the multipathd socket reservation changes will be
/// reported to, so that an operator reading the log of a failed command
/// knows what ran it.
fn log_start(settings: &Settings) {
    let holds_rawio = keep(settings) == Keep::RawIo && privileges::holds_rawio();
    let start = StartLine::of(settings, holds_rawio, MultipathdAddress::from_env);
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        executor = %start.executor,
        executor_means = start.means,
        multipathd = %start.multipathd,
        "starting"
    );
}

/// What the start line says, in plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StartLine {
    /// The executor as the configuration file and `--executor` spell it.
    executor: &'static str,
    /// What that executor does here (for `auto`, which way it takes).
    means: &'static str,
    /// The multipathd socket, or `off` (no multipath routing).
    multipathd: String,
}

impl StartLine {
    /// The start line of `settings`, `holds_rawio` telling what `auto`
    /// means; `multipathd` is asked only when multipath routing is on.
    fn of(
        settings: &Settings,
        holds_rawio: bool,
        multipathd: impl FnOnce() -> MultipathdAddress,
    ) -> StartLine {
        match &settings.executor {
            ExecutorSettings::Device {
                interface,
                multipath,
                ..
            } => StartLine {
                executor: interface.name(),
                means: match (interface, holds_rawio) {
                    (DeviceInterface::SgIo, _) => "SG_IO",
                    (DeviceInterface::PrIoctl, _) => "the block layer's PR ioctls",
                    (DeviceInterface::Auto, true) => "SG_IO, as CAP_SYS_RAWIO is held",
                    (DeviceInterface::Auto, false) => {
                        "the PR ioctls where a device takes them, SG_IO elsewhere (no \
                         CAP_SYS_RAWIO)"
                    }
                },
                multipathd: if *multipath {
                    multipathd().to_string()
                } else {
                    "off".to_string()
                },
            },
            ExecutorSettings::Emulated { .. } => StartLine {
                executor: "emulated",
                means: "an in-memory SPC-4 device; no real device is touched",
                multipathd: "off".to_string(),
            },
        }
    }
}

/// Whether commands may go through the PR ioctls (which need no privilege).
fn uses_ioctls(settings: &Settings) -> bool {
    matches!(
        settings.executor,
        ExecutorSettings::Device {
            interface: DeviceInterface::PrIoctl | DeviceInterface::Auto,
            ..
        }
    )
}

/// Whether the daemon, root now, will run as another user.
fn becomes_another_user(settings: &Settings) -> bool {
    let euid = nix::unistd::geteuid();
    euid.is_root() && settings.identity.uid.is_some_and(|u| u != euid.as_raw())
}

/// Starts the process that removes the socket file and the pidfile at exit
/// and hands their removal over to it; if it cannot start, the daemon tries
/// itself (and logs why it fails).
fn remover_for(
    bound: &mut BoundSocket,
    pidfile: Option<&mut Pidfile>,
    mode: SeccompMode,
) -> Option<Remover> {
    let files: Vec<_> = bound
        .owned_file()
        .into_iter()
        .chain(pidfile.as_ref().map(|p| p.file()))
        .collect();
    if files.is_empty() {
        return None;
    }
    match leftovers::spawn(files, mode) {
        Ok(remover) => {
            bound.hand_over_removal();
            if let Some(p) = pidfile {
                p.hand_over_removal();
            }
            tracing::debug!(
                pid = remover.pid(),
                "the socket file and pidfile are removed at exit by a process of root's uid without capabilities"
            );
            Some(remover)
        }
        Err(e) => {
            tracing::warn!(
                cause = %e,
                "cannot start the process that removes the socket file and pidfile at exit:                  they stay behind"
            );
            None
        }
    }
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
