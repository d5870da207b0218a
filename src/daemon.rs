//! The daemon's lifecycle, in the order that keeps it safe: lock the pidfile,
//! listen (or adopt the systemd socket), daemonize, drop privileges, and only
//! then start the async runtime and serve until a signal.

use std::path::PathBuf;
use std::sync::Arc;

use crate::adapters::background::{self, BackgroundError};
use crate::adapters::emulated::{EmulatedExecutor, FaultInjection};
use crate::adapters::multipath::MultipathExecutor;
use crate::adapters::multipathd::{MultipathdAddress, MultipathdNotifier};
use crate::adapters::multipathd_relay;
use crate::adapters::pidfile::{Pidfile, PidfileError};
use crate::adapters::privileges::{self, PrivilegeError, PrivilegeOutcome};
use crate::adapters::sg_io::SgIoExecutor;
use crate::adapters::systemd::{self, ActivationError};
use crate::adapters::unix_socket::{BoundSocket, ListenError};
use crate::config::{ExecutorSettings, SeccompMode, Settings, SocketSource};
use crate::domain::fd_budget;
use crate::ports::executor::ScsiExecutor;
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

/// Builds the executor the settings ask for. Runs while still privileged, so
/// the multipathd connection (root peers only) is made here.
pub fn build_executor(settings: &Settings) -> Result<Arc<dyn ScsiExecutor>, DaemonError> {
    match &settings.executor {
        ExecutorSettings::SgIo {
            timeout,
            multipath: true,
        } => {
            let notifier = Arc::new(multipathd_notifier(settings.seccomp));
            Ok(Arc::new(MultipathExecutor::new(*timeout, notifier)))
        }
        ExecutorSettings::SgIo {
            timeout,
            multipath: false,
        } => Ok(Arc::new(SgIoExecutor::new(*timeout))),
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
            Ok(Arc::new(
                EmulatedExecutor::with_identity(*initiator)
                    .with_faults(faults, timeout.as_duration()),
            ))
        }
    }
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

/// The server's policy and limits from the settings.
pub fn server_options(settings: &Settings) -> ServerOptions {
    let defaults = ServerOptions::default();
    ServerOptions {
        peers: settings.peers.clone(),
        devices: settings.devices.clone(),
        inspector: Arc::new(crate::adapters::device::Inspector),
        max_connections: settings.max_connections.unwrap_or(defaults.max_connections),
        max_connections_per_peer: settings
            .max_connections_per_peer
            .unwrap_or(defaults.max_connections_per_peer),
        max_commands_per_peer: settings
            .max_commands_per_peer
            .unwrap_or(defaults.max_commands_per_peer),
        request_timeout: settings.request_timeout.unwrap_or(defaults.request_timeout),
        audit_keys: settings.audit_keys,
        stats: Arc::default(),
        park_after: defaults.park_after,
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
/// kernel truncates SCM_RIGHTS) and its connection would be dropped.
fn fit_to_fd_limit(options: &mut ServerOptions, open_file_limit: Option<u64>) {
    let Some(limit) = open_file_limit else {
        return;
    };
    if let Err(served) = fd_budget::clamp_connections(options.max_connections, limit) {
        tracing::warn!(
            max_connections = options.max_connections,
            open_file_limit = limit,
            lowered_to = served,
            fds_per_connection = fd_budget::FDS_PER_CONNECTION,
            reserved_fds = fd_budget::FD_RESERVE,
            "max_connections lowered to what the open-file limit can serve \
             (raise LimitNOFILE to serve more)"
        );
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

/// Runs the daemon to completion.
pub fn run(settings: Settings) -> Result<(), DaemonError> {
    // 0. The settings were checked when they were made: from here on, act.
    let mut options = server_options(&settings);
    let _ = shutdown_sigset().thread_block();
    fit_to_fd_limit(&mut options, raise_fd_limit());

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
    let bound = match systemd::take_activation_fd()? {
        Some(fd) => BoundSocket::adopt(fd)?,
        None => BoundSocket::bind(&settings.socket, settings.socket_permissions)?,
    };

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
    match privileges::drop_privileges(&settings.identity)? {
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
    let mode = settings.seccomp;
    crate::adapters::seccomp::install(mode).map_err(DaemonError::Seccomp)?;
    tracing::debug!(mode = %mode.name(), "seccomp filter installed");

    // 6. Serve. One thread runs every connection's task: a task only
    // accepts, reads a request and hands it to a blocking thread, which runs
    // the command and writes the reply, so there is nothing for a second
    // worker to share, and each worker would cost a thread and its memory.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(crate::server::BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let result = runtime.block_on(async {
        let listener = bound.into_listener()?;
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
