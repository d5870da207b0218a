//! The request-serving logic, written once against the ports.
//!
//! [`run`] accepts connections until shutdown and serves each on its own task;
//! [`serve_connection`] speaks the protocol on one connection, through a
//! per-connection `Handler`. Protocol violations end that connection only;
//! everything else is a SCSI answer.
//!
//! No system call on a client's fd runs on the runtime's thread, which runs
//! every connection's task: `fstat` and `close` on a file of a stuck file
//! system (FUSE) never return. Each command makes one trip to the blocking
//! pool that inspects the fd, screens the command (device allowlist,
//! read-only fd), runs the executor, closes the fd and tries once to write
//! the reply, so that the reply leaves without a second thread hop; fds
//! dropped over a protocol violation are closed there too.
//!
//! No thread ever waits for a client: a reply the socket has no room for is
//! written by the connection's task, with the request timeout. What has to
//! run on a thread is bounded per peer process (`max_commands_per_peer`);
//! a command past the bound waits for a slot, as a task, costing no thread.

mod peers;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::field::DisplayValue;
use tracing::Instrument;

use crate::domain::allowlist::{DeviceAllowlist, PeerCredentials, PeerPolicy};
use crate::domain::audit::{action_name, sense_text, KeyDisplay, PrOutAudit};
use crate::domain::cdb::{PrCdb, PrDirection, CDB_LEN};
use crate::domain::command::PrCommand;
use crate::domain::device::DeviceInfo;
use crate::domain::framing::{
    check_client_features, check_fd_count, PrReply, ProtocolViolation, FEATURES_LEN,
    SUPPORTED_FEATURES,
};
use crate::domain::initiator::Initiator;
use crate::domain::log_throttle::LogThrottle;
use crate::domain::param_list::PrOutKeys;
use crate::domain::screening::Screening;
use crate::domain::sense::SenseCode;
use crate::ports::executor::ScsiExecutor;
use crate::ports::fd_inspector::FdInspector;
use crate::ports::received_fd::ReceivedFd;
use crate::ports::transport::{
    Connection, Incoming, Listener, Parking, ReadOutcome, ReplyFromThread, TransportError,
};
use crate::status::InFlight;
pub use crate::status::ServerStats;
use peers::{PeerConnection, Peers};

/// Once the daemon is stopping, how long a blocked reply write or a pending
/// close of a client's fds may still take before the connection is given up.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Refused connections logged in full per [`REFUSAL_LOG_INTERVAL`]; the rest
/// are counted in one summary line per interval.
const REFUSALS_LOGGED_PER_INTERVAL: u32 = 10;

/// How long a connection stays a task of its own after its last command.
/// Commands on a busy connection never pay for parking; a VM's connection,
/// silent for hours, costs a task only for this long.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// The interval of the refused-connection summary line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Threads of the blocking pool, which runs the commands (tokio's default,
/// stated: the per-peer bound is chosen against it).
pub const BLOCKING_THREADS: usize = 512;

/// Connections one peer process may have open: one QEMU with a
/// pr-manager-helper object per disk, and room to reconnect, stays far
/// below; a peer that opens connections in a loop leaves the other
/// 16,128 of the default cap to the others.
pub const MAX_CONNECTIONS_PER_PEER: usize = 256;

/// Commands one peer process may have on the blocking pool at once. QEMU
/// sends one command at a time per pr-manager-helper object, so one QEMU
/// with many disks (a failover that preempts on each of them at once) has
/// at most one per object in flight, and 64 objects make a large VM. It
/// takes 8 peers with every slot stuck on a stalled file system to fill the
/// pool's 512 threads. A command past the bound waits for a slot; it is
/// not refused.
pub const MAX_COMMANDS_PER_PEER: usize = 64;

/// The policy and limits the server enforces.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Which peers may connect.
    pub peers: PeerPolicy,
    /// Which devices commands may be sent to.
    pub devices: DeviceAllowlist,
    /// Learns what a received fd is, and its WWID when the allowlist or
    /// the audit line needs it.
    pub inspector: Arc<dyn FdInspector>,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections one peer process (SO_PEERCRED pid) may have open; more
    /// are closed at accept.
    pub max_connections_per_peer: usize,
    /// Commands of one peer process on the blocking pool at once; more
    /// wait for a slot.
    pub max_commands_per_peer: usize,
    /// Once a request has started, it must be complete within this time;
    /// a reply must be taken by the client within it too. Idle connections
    /// between commands are not limited.
    pub request_timeout: Duration,
    /// How keys appear in audit lines.
    pub audit_keys: KeyDisplay,
    /// Counts the service manager's status line reads.
    pub stats: Arc<ServerStats>,
    /// A connection idle this long with nothing in flight is handed to the
    /// transport to watch without a task of its own (when the transport can
    /// park connections), and a new one right after negotiation; `None`:
    /// never.
    pub park_after: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            peers: PeerPolicy::default(),
            devices: DeviceAllowlist::default(),
            inspector: Arc::new(crate::adapters::device::Inspector),
            max_connections: 16384,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_commands_per_peer: MAX_COMMANDS_PER_PEER,
            request_timeout: Duration::from_secs(30),
            audit_keys: KeyDisplay::Full,
            stats: Arc::default(),
            park_after: Some(PARK_AFTER),
        }
    }
}

/// How a connection ended, when it ended without a transport error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The client closed the connection between commands.
    ClientClosed,
    /// The daemon is shutting down and the connection was idle.
    Shutdown,
    /// Idle with nothing in flight: handed to the transport to watch until
    /// it has something to read.
    Idle,
}

impl std::fmt::Display for ConnectionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectionEnd::ClientClosed => "client closed",
            ConnectionEnd::Shutdown => "shutdown",
            ConnectionEnd::Idle => "idle",
        })
    }
}

/// Why a connection was dropped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The client broke the wire contract.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolViolation),
    /// A request started but was not complete within the request timeout.
    #[error("request stalled for more than {0:?}")]
    Stalled(Duration),
    /// The client did not read its reply in time (within the request
    /// timeout, or within the grace once the daemon stops).
    #[error("reply not read by the client within {0:?}")]
    ReplyStalled(Duration),
    /// The socket failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Serves connections from `listener` with `executor` until `shutdown`
/// completes; then stops accepting, lets commands in flight finish and
/// returns. Idle connections do not hold the return back.
pub async fn run<L, E, S>(listener: L, executor: Arc<E>, shutdown: S)
where
    L: Listener,
    E: ScsiExecutor + ?Sized + 'static,
    S: Future<Output = ()>,
{
    run_with(listener, executor, shutdown, ServerOptions::default()).await
}

/// [`run`] with explicit policy and limits.
pub async fn run_with<L, E, S>(
    mut listener: L,
    executor: Arc<E>,
    shutdown: S,
    options: ServerOptions,
) where
    L: Listener,
    E: ScsiExecutor + ?Sized + 'static,
    S: Future<Output = ()>,
{
    let mut options = options;
    if !listener.can_park() {
        options.park_after = None;
    }
    let options = Arc::new(options);
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(OpenConnections::new(Arc::clone(&options.stats)));
    // Idle connections on their way from their task to the listener.
    let (park_tx, mut park_rx) = tokio::sync::mpsc::unbounded_channel::<L::Conn>();
    let peers = Arc::new(Peers::new(
        options.max_connections_per_peer,
        options.max_commands_per_peer,
    ));
    let mut refusals = RefusalLog::new();
    let spawner = Spawner {
        executor,
        options: Arc::clone(&options),
        open: Arc::clone(&open),
        peers,
        stop: stop_rx,
        park: park_tx,
        closings: Arc::clone(&refusals.closings),
    };
    let mut summary = tokio::time::interval(REFUSAL_LOG_INTERVAL);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(Incoming::New(conn)) => {
                    let initiator = conn.initiator();
                    let admission = admitted(&options, &initiator, open.count(), &mut refusals)
                        .then(|| admitted_for_peer(&spawner.peers, &options, &initiator, &mut refusals))
                        .flatten();
                    if let Some(peer) = admission {
                        spawner.spawn(conn, false, peer);
                    }
                }
                Ok(Incoming::Resumed(conn)) => spawner.resume(conn),
                Ok(Incoming::Lost(initiator, _)) => spawner.lost_parked(&initiator),
                // The transport closed what waited: nothing to spin on.
                Err(e @ TransportError::FdsExhausted { .. }) => {
                    if refusals.accept.record(Instant::now()) {
                        tracing::error!(cause = %e, "accept failed");
                    }
                }
                Err(e) => {
                    if refusals.accept.record(Instant::now()) {
                        tracing::error!(cause = %e, "accept failed");
                    }
                    // Back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(conn) = park_rx.recv() => hand_to_listener(&mut listener, conn, &spawner),
            _ = summary.tick() => refusals.summarize(),
        }
    }
    // Parked connections close with the listener: nothing is in flight on
    // them.
    drop(listener);
    drop(park_rx);
    open.forget_parked();
    refusals.summarize();
    let _ = stop_tx.send(true);
    let in_flight = open.count();
    if in_flight > 0 {
        tracing::info!(connections = in_flight, "waiting for commands in flight");
    }
    open.all_closed().await;
    // What the connections closed over since the last summary.
    refusals.summarize();
}

/// Gives an idle connection to the listener to watch; one it does not take
/// is served on by a task.
fn hand_to_listener<L, E>(listener: &mut L, conn: L::Conn, spawner: &Spawner<E, L::Conn>)
where
    L: Listener,
    E: ScsiExecutor + ?Sized + 'static,
{
    let initiator = conn.initiator();
    let conn_id = initiator.connection_id;
    match listener.park(conn) {
        Parking::Parked => tracing::trace!(conn_id, "idle: parked"),
        Parking::Kept(conn) => spawner.resume(conn),
        Parking::Closed(e) => {
            spawner.lost_parked(&initiator);
            tracing::debug!(conn_id, cause = %e, "idle connection lost while parking it");
        }
    }
}

/// Starts the task that serves one connection; shared by new connections
/// and parked ones that have something to read again.
struct Spawner<E: ?Sized, C> {
    executor: Arc<E>,
    options: Arc<ServerOptions>,
    open: Arc<OpenConnections>,
    /// Connections and command slots per peer process.
    peers: Arc<Peers>,
    stop: watch::Receiver<bool>,
    park: tokio::sync::mpsc::UnboundedSender<C>,
    /// The lines of connections closed over a violation, rate-limited.
    closings: Arc<std::sync::Mutex<LogThrottle>>,
}

impl<E, C> Spawner<E, C>
where
    E: ScsiExecutor + ?Sized + 'static,
    C: Connection + 'static,
{
    /// A connection counted as parked, served by a task again.
    fn resume(&self, conn: C) {
        self.open.unpark();
        let peer = Peers::resumed(&self.peers, conn.initiator().pid);
        self.spawn(conn, true, peer);
    }

    /// A parked connection of `initiator` that closed without a task.
    fn lost_parked(&self, initiator: &Initiator) {
        self.open.unpark();
        self.peers.close(initiator.pid);
    }

    /// `resumed`: the connection was negotiated before it was parked.
    fn spawn(&self, conn: C, resumed: bool, peer: PeerConnection) {
        let initiator = conn.initiator();
        let span = tracing::info_span!(
            "connection",
            conn_id = initiator.connection_id,
            peer_pid = initiator.pid,
            peer_uid = initiator.uid,
            peer_gid = initiator.gid,
        );
        // Owned by the task, borrowed by its handler: the task's future
        // holds one copy of each.
        let (executor, options) = (Arc::clone(&self.executor), Arc::clone(&self.options));
        let (mut conn, mut stop, park) = (conn, self.stop.clone(), self.park.clone());
        let closings = Arc::clone(&self.closings);
        let guard = OpenConnections::enter(&self.open);
        let task = async move {
            let open = guard;
            if resumed {
                tracing::trace!("served again after idling");
            } else {
                tracing::debug!("accepted");
            }
            let park_after = options.park_after;
            let handler = Handler::new(
                &mut conn,
                &executor,
                &mut stop,
                &options,
                peer.slots(),
                resumed,
                park_after,
            );
            match handler.run().await {
                Ok(ConnectionEnd::Idle) => {
                    // Counted as parked before this task stops counting it.
                    open.0.park();
                    if let Err(unsent) = park.send(conn) {
                        // The server is stopping: the connection just closes.
                        drop(unsent);
                        open.0.unpark();
                    } else {
                        peer.parked();
                    }
                }
                Ok(end) => tracing::debug!(%end, "connection closed"),
                Err(
                    e @ (ConnectionError::Protocol(_)
                    | ConnectionError::Stalled(_)
                    | ConnectionError::ReplyStalled(_)),
                ) => {
                    // A peer breaking the protocol in a loop would flood the
                    // journal (and have audit lines dropped): rate-limited.
                    let in_full = closings
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .record(Instant::now());
                    if in_full {
                        tracing::warn!(cause = %e, "closing connection");
                    }
                }
                Err(e) => tracing::debug!(cause = %e, "connection dropped"),
            }
        }
        .instrument(span);
        // Detached: `open` counts it until it ends.
        tokio::spawn(task);
    }
}

/// What ended an idle connection's wait for its next request.
enum Waited {
    /// Bytes arrived (or the client closed: 0), or the read failed.
    Read(Result<usize, TransportError>),
    /// The daemon is stopping.
    Stop,
    /// Nothing arrived within [`ServerOptions::park_after`].
    Idle,
    /// The last command's thread left part of the reply to the task.
    Unwritten,
}

/// How many connection tasks are open, and a way to wait until none is.
/// Lighter than a `JoinSet`: a task holds one counted reference and no list
/// entry, which matters with thousands of idle connections.
struct OpenConnections {
    /// Connections served by a task.
    tasks: std::sync::atomic::AtomicUsize,
    /// Connections parked with the transport: open, without a task.
    parked: std::sync::atomic::AtomicUsize,
    none_left: tokio::sync::Notify,
    /// Where the count is published for the service manager's status line.
    stats: Arc<ServerStats>,
}

/// One open connection task; counted until dropped (also when its task
/// ends early, or is dropped with the runtime).
struct OpenGuard(Arc<OpenConnections>);

impl OpenConnections {
    fn new(stats: Arc<ServerStats>) -> OpenConnections {
        OpenConnections {
            tasks: std::sync::atomic::AtomicUsize::new(0),
            parked: std::sync::atomic::AtomicUsize::new(0),
            none_left: tokio::sync::Notify::new(),
            stats,
        }
    }

    fn enter(this: &Arc<OpenConnections>) -> OpenGuard {
        this.tasks.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        this.publish();
        OpenGuard(Arc::clone(this))
    }

    /// Open connections: with a task, and parked.
    fn count(&self) -> usize {
        self.tasks() + self.parked.load(std::sync::atomic::Ordering::Acquire)
    }

    fn tasks(&self) -> usize {
        self.tasks.load(std::sync::atomic::Ordering::Acquire)
    }

    fn park(&self) {
        self.parked
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.publish();
    }

    fn unpark(&self) {
        // Saturating: at shutdown the count is reset while tasks may still
        // hand connections over.
        let _ = self.parked.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| n.checked_sub(1),
        );
        self.publish();
    }

    /// At shutdown, when the parked connections have been closed.
    fn forget_parked(&self) {
        self.parked.store(0, std::sync::atomic::Ordering::Release);
        self.publish();
    }

    fn publish(&self) {
        self.stats.set_connections(self.count());
    }

    /// Waits until no task serves a connection.
    async fn all_closed(&self) {
        loop {
            let notified = self.none_left.notified();
            if self.tasks() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let left = self
            .0
            .tasks
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            - 1;
        self.0.publish();
        if left == 0 {
            self.0.none_left.notify_one();
        }
    }
}

/// The lines about refused connections, rate-limited: a peer refused in a
/// loop would otherwise flood the journal, whose own rate limit would then
/// drop the PR OUT audit lines (which are never limited).
struct RefusalLog {
    peers: LogThrottle,
    limit: LogThrottle,
    per_peer: LogThrottle,
    /// Failed accepts (out of fds): one line per failure would be a line
    /// every 100 ms for as long as it lasts.
    accept: LogThrottle,
    /// Connections closed over a protocol violation or a stalled request or
    /// reply: written from the connections' tasks.
    closings: Arc<std::sync::Mutex<LogThrottle>>,
}

impl RefusalLog {
    fn new() -> RefusalLog {
        let throttle = || LogThrottle::new(REFUSALS_LOGGED_PER_INTERVAL, REFUSAL_LOG_INTERVAL);
        RefusalLog {
            peers: throttle(),
            limit: throttle(),
            per_peer: throttle(),
            accept: throttle(),
            closings: Arc::new(std::sync::Mutex::new(throttle())),
        }
    }

    /// One line per kind of refusal that was not logged in full since the
    /// last summary.
    fn summarize(&mut self) {
        if let Some(count) = self.peers.take_suppressed() {
            tracing::warn!(
                target: "audit",
                count,
                interval_s = self.peers.interval().as_secs(),
                "more peers refused: not in allowed_uids/allowed_gids (not logged one by one)"
            );
        }
        if let Some(count) = self.limit.take_suppressed() {
            tracing::warn!(
                count,
                interval_s = self.limit.interval().as_secs(),
                "more connections refused: connection limit reached (not logged one by one)"
            );
        }
        if let Some(count) = self.per_peer.take_suppressed() {
            tracing::warn!(
                count,
                interval_s = self.per_peer.interval().as_secs(),
                "more connections refused: per-peer connection limit reached (not logged one by one)"
            );
        }
        if let Some(count) = self.accept.take_suppressed() {
            tracing::error!(
                count,
                interval_s = self.accept.interval().as_secs(),
                "more accepts failed (not logged one by one)"
            );
        }
        let closings = self
            .closings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_suppressed();
        if let Some(count) = closings {
            tracing::warn!(
                count,
                interval_s = REFUSAL_LOG_INTERVAL.as_secs(),
                "more connections closed over a protocol violation or a stalled request or \
                 reply: lines suppressed"
            );
        }
    }
}

/// The checks made at accept, before negotiation: the peer allowlist and the
/// connection cap. A refused connection is dropped (closed) by the caller.
fn admitted(
    options: &ServerOptions,
    initiator: &Initiator,
    open: usize,
    refusals: &mut RefusalLog,
) -> bool {
    let creds = initiator
        .uid
        .zip(initiator.gid)
        .map(|(uid, gid)| PeerCredentials { uid, gid });
    if !options.peers.admits(creds) {
        if refusals.peers.record(Instant::now()) {
            tracing::warn!(
                target: "audit",
                peer_pid = initiator.pid,
                peer_uid = initiator.uid,
                peer_gid = initiator.gid,
                "peer refused: not in allowed_uids/allowed_gids"
            );
        }
        return false;
    }
    if open >= options.max_connections {
        if refusals.limit.record(Instant::now()) {
            tracing::warn!(
                peer_pid = initiator.pid,
                limit = options.max_connections,
                "connection refused: connection limit reached"
            );
        }
        return false;
    }
    true
}

/// The per-peer connection cap, checked once the other checks admitted the
/// connection: its place among its peer's connections, or `None` (refused,
/// logged).
fn admitted_for_peer(
    peers: &Arc<Peers>,
    options: &ServerOptions,
    initiator: &Initiator,
    refusals: &mut RefusalLog,
) -> Option<PeerConnection> {
    let peer = Peers::open(peers, initiator.pid);
    if peer.is_none() && refusals.per_peer.record(Instant::now()) {
        tracing::warn!(
            peer_pid = initiator.pid,
            peer_uid = initiator.uid,
            limit = options.max_connections_per_peer,
            "connection refused: per-peer connection limit reached"
        );
    }
    peer
}

/// Speaks the protocol on one connection: negotiation, then commands until
/// the client closes, breaks a rule, or `stop` turns true between commands.
pub async fn serve_connection<C, E>(
    conn: &mut C,
    executor: Arc<E>,
    stop: watch::Receiver<bool>,
) -> Result<ConnectionEnd, ConnectionError>
where
    C: Connection + ?Sized,
    E: ScsiExecutor + ?Sized + 'static,
{
    serve_connection_with(conn, executor, stop, Arc::new(ServerOptions::default())).await
}

/// [`serve_connection`] with explicit policy and limits.
pub async fn serve_connection_with<C, E>(
    conn: &mut C,
    executor: Arc<E>,
    mut stop: watch::Receiver<bool>,
    options: Arc<ServerOptions>,
) -> Result<ConnectionEnd, ConnectionError>
where
    C: Connection + ?Sized,
    E: ScsiExecutor + ?Sized + 'static,
{
    // No listener to hand an idle connection to: it is never parked.
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_commands_per_peer));
    Handler::new(conn, &executor, &mut stop, &options, &slots, false, None)
        .run()
        .await
}

/// One connection being served: what it talks to and what it holds between
/// the reads of one command and the next. It borrows what the connection's
/// task owns, so that the task's future holds one copy of each.
struct Handler<'a, C: ?Sized, E: ?Sized> {
    conn: &'a mut C,
    executor: &'a Arc<E>,
    stop: &'a mut watch::Receiver<bool>,
    options: &'a Arc<ServerOptions>,
    /// The slots on the blocking pool of this connection's peer process.
    slots: &'a Arc<tokio::sync::Semaphore>,
    /// Every fd the client sent and no command took: closed on the blocking
    /// pool, on whatever path the connection ends.
    held: Vec<ReceivedFd>,
    /// The last command, while its thread may still run, or its reply is
    /// still to be written.
    pending: Option<Arc<JobEnd>>,
    /// Negotiated before it was parked: commands come next.
    resumed: bool,
    /// Parked after negotiation and after this long idle; `None`: never.
    park_after: Option<Duration>,
}

impl<'a, C, E> Handler<'a, C, E>
where
    C: Connection + ?Sized,
    E: ScsiExecutor + ?Sized + 'static,
{
    fn new(
        conn: &'a mut C,
        executor: &'a Arc<E>,
        stop: &'a mut watch::Receiver<bool>,
        options: &'a Arc<ServerOptions>,
        slots: &'a Arc<tokio::sync::Semaphore>,
        resumed: bool,
        park_after: Option<Duration>,
    ) -> Self {
        Handler {
            conn,
            executor,
            stop,
            options,
            slots,
            held: Vec::new(),
            pending: None,
            resumed,
            park_after,
        }
    }

    /// Serves the connection to its end, then waits for the command in
    /// flight and closes the fds no command took.
    async fn run(mut self) -> Result<ConnectionEnd, ConnectionError> {
        let mut result = self.serve().await;
        if let Some(job) = self.pending.take() {
            // The command in flight is waited for (and its failure wins).
            match Box::pin(self.finish(job)).await {
                Err(e) => result = Err(e),
                Ok(Some(end)) if result.is_ok() => result = Ok(end),
                Ok(_) => {}
            }
        }
        if !self.held.is_empty() {
            let fds = std::mem::take(&mut self.held);
            Box::pin(close_off_workers(fds, self.slots, self.stop)).await;
        }
        result
    }

    /// Negotiation, then commands until the connection ends.
    ///
    /// While a connection is idle its future holds only the wait for
    /// readiness and for `stop`: the negotiation and each command run in a
    /// future of their own, allocated while they run, so that thousands of
    /// idle connections do not each keep the largest state any command needs.
    async fn serve(&mut self) -> Result<ConnectionEnd, ConnectionError> {
        if !self.resumed {
            if let Some(end) = Box::pin(self.negotiate()).await? {
                return Ok(end);
            }
            // A new connection waits for its first command as long as its VM
            // does not use persistent reservations: parked at once, a burst
            // of VMs starting costs no task per VM even for a second.
            if self.park_after.is_some() && self.held.is_empty() {
                return Ok(ConnectionEnd::Idle);
            }
        }
        loop {
            // Idle between commands: no time limit until the first bytes. A
            // command is handed over only once the previous one is over
            // (below), so a client whose fds never close ties up one
            // blocking thread per connection.
            let mut cdb = [0u8; CDB_LEN];
            if *self.stop.borrow() {
                return Ok(ConnectionEnd::Shutdown);
            }
            // Polled by hand rather than with `select!`, which would keep a
            // second copy of both futures in every idle connection's state.
            let first = {
                let (conn, held) = (&mut *self.conn, &mut self.held);
                // A reply its thread could not write wakes the task to
                // write it, whatever the client does meanwhile.
                let job = self.pending.as_deref();
                let mut unwritten = std::pin::pin!(async move {
                    match job {
                        Some(job) => job.unwritten.notified().await,
                        None => std::future::pending().await,
                    }
                });
                let mut stopping = std::pin::pin!(self.stop.changed());
                let park_after = self.park_after;
                let mut idle_for_long = std::pin::pin!(async move {
                    match park_after {
                        Some(after) => tokio::time::sleep(after).await,
                        None => std::future::pending().await,
                    }
                });
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(read) = conn.poll_read_some(cx, &mut cdb, held) {
                        return Poll::Ready(Waited::Read(read));
                    }
                    // A change can only be to true; a dropped sender means
                    // the server is gone: stop either way.
                    if stopping.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Waited::Stop);
                    }
                    if unwritten.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Waited::Unwritten);
                    }
                    idle_for_long.as_mut().poll(cx).map(|()| Waited::Idle)
                })
                .await
            };
            // The previous command must be over before anything else
            // happens: it usually is, and its thread did not wake this task
            // to say so.
            if let Some(job) = self.pending.take() {
                if let Some(end) = Box::pin(self.finish(job)).await? {
                    return Ok(end);
                }
            }
            let first = match first {
                Waited::Stop => return Ok(ConnectionEnd::Shutdown),
                // Written (above): wait for the next request.
                Waited::Unwritten => continue,
                // Nothing in flight (just waited for) and no fd held: the
                // transport may watch it alone.
                Waited::Idle if self.held.is_empty() => return Ok(ConnectionEnd::Idle),
                Waited::Idle => continue,
                Waited::Read(read) => read?,
            };
            if first == 0 {
                if self.held.is_empty() {
                    return Ok(ConnectionEnd::ClientClosed);
                }
                return Err(ProtocolViolation::TruncatedRequest.into());
            }
            if let Some(end) = Box::pin(self.command(cdb, first)).await? {
                return Ok(end);
            }
        }
    }

    /// The features exchange. `Some`: the connection ended during it.
    async fn negotiate(&mut self) -> Result<Option<ConnectionEnd>, ConnectionError> {
        let limit = self.options.request_timeout;
        self.write_reply(limit, &SUPPORTED_FEATURES.to_be_bytes())
            .await?;
        let mut features = [0u8; FEATURES_LEN];
        let negotiation = self.read_part(&mut features, true);
        match tokio::time::timeout(limit, negotiation).await {
            Err(_) => return Err(ConnectionError::Stalled(limit)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(end))) => return Ok(Some(end)),
            Ok(Ok(None)) => {}
        }
        // Fds sent during negotiation are closed here, as the C helper does.
        close_off_workers(std::mem::take(&mut self.held), self.slots, self.stop).await;
        check_client_features(features)?;
        Ok(None)
    }

    /// One command, from its first `got` bytes (in `cdb`) to its reply.
    /// `Some`: the connection ends without error.
    async fn command(
        &mut self,
        cdb: [u8; CDB_LEN],
        got: usize,
    ) -> Result<Option<ConnectionEnd>, ConnectionError> {
        let limit = self.options.request_timeout;
        // Once a request has started it must arrive whole in time.
        let rest = self.read_request(cdb, got);
        let (cdb, data_out, device) = match tokio::time::timeout(limit, rest).await {
            Err(_) => return Err(ConnectionError::Stalled(limit)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Request::End(end))) => return Ok(Some(end)),
            Ok(Ok(Request::Command(cdb, data_out, device))) => (cdb, data_out, device),
        };
        let request = Dispatch {
            cdb,
            data_out,
            device,
            sink: self.conn.reply_from_thread(),
        };
        match self.answer(request).await {
            Answered::Abandoned => return Ok(Some(ConnectionEnd::Shutdown)),
            Answered::Dispatched(job) => self.pending = Some(job),
            Answered::ToWrite(reply) => {
                self.write_reply(limit, &reply.encode_header()).await?;
                if !reply.payload.is_empty() {
                    self.write_reply(limit, &reply.payload).await?;
                }
            }
        }
        if *self.stop.borrow() {
            return Ok(Some(ConnectionEnd::Shutdown));
        }
        Ok(None)
    }

    /// Reads the rest of a request whose first `got` CDB bytes (and their
    /// fds, in `held`) arrived: the CDB, then for PR OUT the parameter list.
    async fn read_request(
        &mut self,
        mut cdb: [u8; CDB_LEN],
        got: usize,
    ) -> Result<Request, ConnectionError> {
        if got < CDB_LEN {
            if let Some(end) = self.read_part(&mut cdb[got..], false).await? {
                return Ok(Request::End(end));
            }
        }
        check_fd_count(self.held.len())?;
        let cdb = PrCdb::try_from(&cdb)?;

        let mut data_out = Vec::new();
        if cdb.direction() == PrDirection::Out && cdb.transfer_len() > 0 {
            // Allocated only now that a command is in flight: idle
            // connections cost no data buffer.
            data_out = vec![0u8; cdb.transfer_len()];
            if let Some(end) = self.read_part(&mut data_out, false).await? {
                return Ok(Request::End(end));
            }
            check_fd_count(self.held.len())?;
        }
        let Some(device) = self.held.pop() else {
            return Err(ProtocolViolation::MissingFd.into());
        };
        Ok(Request::Command(cdb, data_out, device))
    }

    /// Runs (or refuses) one command on the blocking pool, in a slot of its
    /// peer's, and writes its audit line; with a writer for threads, that
    /// thread tries once to write the reply too, so that a reply the socket
    /// takes leaves from the thread that made it and the connection's task
    /// is not woken for it.
    async fn answer(&mut self, request: Dispatch) -> Answered {
        let Dispatch {
            cdb,
            data_out,
            device,
            sink,
        } = request;
        tracing::trace!(cdb = %cdb.hex(), data_len = data_out.len(), "request received");
        // The keys, for the audit line only.
        let keys = if cdb.direction() == PrDirection::Out {
            PrOutKeys::from(&data_out[..])
        } else {
            PrOutKeys::default()
        };
        // Waiting for a slot costs no thread. Once the daemon stops, the
        // command gets the request timeout to find one, as commands in
        // flight get to finish.
        let timeout = self.options.request_timeout;
        let acquired = Arc::clone(self.slots).acquire_owned();
        let slot = match unless_stopped_for(self.stop, timeout, acquired).await {
            Some(Ok(slot)) => slot,
            // Stopped (the slots are never closed): the command never ran.
            _ => {
                log_unfinished(self.options, &cdb, keys, Unfinished::NotStarted);
                // A close can block: on the pool, not waited for.
                drop(tokio::task::spawn_blocking(move || drop(device)));
                return Answered::Abandoned;
            }
        };
        let work = {
            let executor = Arc::clone(self.executor);
            let options = Arc::clone(self.options);
            let initiator = self.conn.initiator();
            move || {
                let _in_flight = InFlight::start(&options.stats);
                let outcome = run_command(&*executor, &options, &initiator, cdb, data_out, device);
                log_outcome(&options, &cdb, keys, outcome)
            }
        };
        let span = tracing::Span::current();
        if let Some(sink) = sink {
            let end = Arc::new(JobEnd {
                done: tokio::sync::Notify::new(),
                unwritten: tokio::sync::Notify::new(),
                written: std::sync::Mutex::new(None),
                cdb,
                keys,
            });
            let job = {
                let (end, options) = (Arc::clone(&end), Arc::clone(self.options));
                move || {
                    let _entered = span.enter();
                    write_from_thread(work, &*sink, &end, &options, slot);
                }
            };
            // Detached: the thread reports through `end`.
            drop(tokio::task::spawn_blocking(job));
            return Answered::Dispatched(end);
        }
        let job = move || {
            let _entered = span.enter();
            let reply = work();
            drop(slot);
            reply
        };
        match unless_stopped_for(self.stop, timeout, tokio::task::spawn_blocking(job)).await {
            None => {
                log_unfinished(self.options, &cdb, keys, Unfinished::Abandoned);
                Answered::Abandoned
            }
            Some(Ok(reply)) => Answered::ToWrite(reply),
            Some(Err(e)) => {
                tracing::error!(cause = %e, "command thread failed");
                let outcome = failed_outcome();
                Answered::ToWrite(log_outcome(self.options, &cdb, keys, outcome))
            }
        }
    }

    /// Waits for a dispatched command and writes what its thread could not
    /// of the reply: `Err` if the reply could not be written, `Some` when the
    /// daemon stopped and the command did not end within the request
    /// timeout (it is abandoned).
    async fn finish(&mut self, job: Arc<JobEnd>) -> Result<Option<ConnectionEnd>, ConnectionError> {
        let timeout = self.options.request_timeout;
        match unless_stopped_for(self.stop, timeout, job.wait()).await {
            Some(Ok(None)) => Ok(None),
            Some(Ok(Some(rest))) => {
                self.write_reply(timeout, &rest).await?;
                Ok(None)
            }
            Some(Err(e)) => Err(e),
            None => {
                log_unfinished(self.options, &job.cdb, job.keys, Unfinished::Abandoned);
                Ok(Some(ConnectionEnd::Shutdown))
            }
        }
    }

    /// Writes `buf` to the client, which must take it within `limit`; once
    /// the daemon stops, within [`STOP_GRACE`].
    async fn write_reply(&mut self, limit: Duration, buf: &[u8]) -> Result<(), ConnectionError> {
        let write = tokio::time::timeout(limit, self.conn.write_all(buf));
        match unless_stopped_for(self.stop, STOP_GRACE, write).await {
            Some(Ok(written)) => Ok(written?),
            Some(Err(_)) => Err(ConnectionError::ReplyStalled(limit)),
            None => Err(ConnectionError::ReplyStalled(STOP_GRACE)),
        }
    }

    /// Reads one part of a request; its fds go to `held`. `Ok(None)`: the
    /// buffer is full. `Ok(Some)`: the connection ends without error,
    /// because the daemon stops or because the client closed cleanly at a
    /// `boundary` (nothing of the part received).
    async fn read_part(
        &mut self,
        buf: &mut [u8],
        boundary: bool,
    ) -> Result<Option<ConnectionEnd>, ConnectionError> {
        let read = self.conn.read_exact(buf, &mut self.held);
        match until_stopped(self.stop, read).await {
            None => Ok(Some(ConnectionEnd::Shutdown)),
            Some(Ok(ReadOutcome::Complete)) => Ok(None),
            Some(Ok(ReadOutcome::Eof { read: 0 })) if boundary && self.held.is_empty() => {
                Ok(Some(ConnectionEnd::ClientClosed))
            }
            Some(Ok(ReadOutcome::Eof { .. })) => Err(ProtocolViolation::TruncatedRequest.into()),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

/// A complete request, or the end of the connection.
enum Request {
    /// The CDB, the PR OUT parameter list (empty for PR IN) and the fd.
    Command(PrCdb, Vec<u8>, ReceivedFd),
    /// The connection ends without error.
    End(ConnectionEnd),
}

/// What the blocking part of a command learnt and answered.
struct Outcome {
    reply: PrReply,
    info: Option<DeviceInfo>,
    wwid: Option<String>,
    device_refused: bool,
}

/// How a command's reply left, or will.
enum Answered {
    /// The blocking thread writes it, or what of it the socket takes; how
    /// that went is learnt from the [`JobEnd`] when the connection next
    /// needs to know.
    Dispatched(Arc<JobEnd>),
    /// The connection's task writes it (the transport has no blocking
    /// writer).
    ToWrite(PrReply),
    /// The daemon stopped and the command did not finish within the request
    /// timeout; its thread is abandoned.
    Abandoned,
}

/// One command as it goes to the blocking pool.
struct Dispatch {
    cdb: PrCdb,
    data_out: Vec<u8>,
    device: ReceivedFd,
    sink: Option<Arc<dyn ReplyFromThread>>,
}

/// How a command whose thread writes the reply ended. The thread records it
/// and stores a permit in `done`: no task is woken unless one waits, so a
/// command whose reply the socket takes costs one trip to the blocking pool
/// and no trip back. A reply left unwritten wakes the task (`unwritten`).
struct JobEnd {
    done: tokio::sync::Notify,
    unwritten: tokio::sync::Notify,
    /// `Ok(Some)`: the bytes of the reply the thread could not write.
    written: std::sync::Mutex<Option<ThreadWrite>>,
    /// For the audit line of a PR OUT abandoned at shutdown.
    cdb: PrCdb,
    keys: PrOutKeys,
}

/// What the thread wrote of a reply: all (`None`), or not the rest.
type ThreadWrite = Result<Option<Vec<u8>>, ConnectionError>;

impl JobEnd {
    fn record(&self, written: ThreadWrite) {
        let left = matches!(written, Ok(Some(_)));
        *self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(written);
        self.done.notify_one();
        if left {
            self.unwritten.notify_one();
        }
    }

    async fn wait(&self) -> ThreadWrite {
        loop {
            let done = self.done.notified();
            let written = self
                .written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(written) = written {
                return written;
            }
            done.await;
        }
    }
}

/// The blocking job of a command whose thread writes the reply: runs `work`
/// (a panic in it is answered as an internal target failure, with its audit
/// line), gives the peer's `slot` back, writes what the socket takes of the
/// reply without waiting, and records in `end` what is left.
fn write_from_thread(
    work: impl FnOnce() -> PrReply,
    sink: &dyn ReplyFromThread,
    end: &JobEnd,
    options: &ServerOptions,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let reply = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(reply) => reply,
        Err(_) => {
            tracing::error!("command thread failed");
            let outcome = failed_outcome();
            log_outcome(options, &end.cdb, end.keys, outcome)
        }
    };
    drop(slot);
    let header = reply.encode_header();
    let parts: [&[u8]; 2] = [&header, &reply.payload];
    let written = match sink.try_write_parts(&parts) {
        Ok(n) => Ok(unwritten(&parts, n)),
        Err(e) => Err(TransportError::Send(e).into()),
    };
    end.record(written);
}

/// The bytes of `parts` after the first `written`; `None` when none are left.
fn unwritten(parts: &[&[u8]], mut written: usize) -> Option<Vec<u8>> {
    let mut rest = Vec::new();
    for part in parts {
        let skip = written.min(part.len());
        written -= skip;
        rest.extend_from_slice(&part[skip..]);
    }
    (!rest.is_empty()).then_some(rest)
}

/// The answer when the command's thread failed.
fn failed_outcome() -> Outcome {
    Outcome {
        reply: PrReply::check_condition(SenseCode::INTERNAL_TARGET_FAILURE),
        info: None,
        wwid: None,
        device_refused: false,
    }
}

/// One audit line (target `audit`): the same fields, in the same order, for
/// every PR OUT, answered or abandoned; a field that does not apply is left
/// out.
macro_rules! audit_line {
    ($level:expr, $record:expr, device = $device:expr, wwid = $wwid:expr, $($message:tt)+) => {
        tracing::event!(
            target: "audit",
            $level,
            device = $device,
            wwid = $wwid,
            action = %$record.action,
            scope = $record.scope,
            scope_name = $record.scope_name,
            r#type = $record.type_code,
            type_name = $record.type_name_text().as_deref(),
            key = %$record.key,
            sa_key = %$record.sa_key,
            status = $record.status.map(|s| s.0),
            status_name = $record.status.map(|s| s.name()),
            abandoned = $record.status.is_none().then_some(true),
            sense = $record.sense.as_deref(),
            $($message)+
        )
    };
}

/// A command the daemon's stop left unfinished: still running (abandoned:
/// it may yet change the device after the daemon has gone), or still
/// waiting for a slot of its peer's (never run).
#[derive(Clone, Copy)]
enum Unfinished {
    Abandoned,
    NotStarted,
}

/// The lines for a command the stop left unfinished: a warning, and for a
/// PR OUT its audit line, since every PR OUT has one.
fn log_unfinished(options: &ServerOptions, cdb: &PrCdb, keys: PrOutKeys, how: Unfinished) {
    let (line, audit) = match how {
        Unfinished::Abandoned => (
            "command still running at shutdown: abandoned",
            "PR OUT abandoned at shutdown: whether the device ran it is unknown",
        ),
        Unfinished::NotStarted => (
            "command still waiting for a slot at shutdown: not run",
            "PR OUT not run: the daemon stopped before its peer had a slot free",
        ),
    };
    tracing::warn!("{line}");
    if cdb.direction() == PrDirection::Out {
        let record = PrOutAudit::abandoned(cdb, keys, options.audit_keys);
        audit_line!(
            tracing::Level::WARN,
            record,
            device = None::<DisplayValue<DeviceInfo>>,
            wwid = None::<&str>,
            "{audit}"
        );
    }
}

/// Cuts the reply to the allocation length and writes the command's debug
/// line and, for PR OUT or a refused device, its audit line, before the
/// reply leaves.
fn log_outcome(options: &ServerOptions, cdb: &PrCdb, keys: PrOutKeys, outcome: Outcome) -> PrReply {
    let is_out = cdb.direction() == PrDirection::Out;
    let reply = outcome.reply.fit_to(cdb.allocation_len());
    let sense = sense_text(&reply);
    tracing::debug!(
        device = outcome.info.as_ref().map(tracing::field::display),
        action = %action_name(cdb),
        cdb = %cdb.hex(),
        status = reply.status.0,
        status_name = reply.status.name(),
        sense = sense.as_deref(),
        payload_len = reply.payload.len(),
        "command done"
    );
    if is_out || outcome.device_refused {
        let record = PrOutAudit::new(cdb, keys, &reply, options.audit_keys);
        audit_line!(
            tracing::Level::INFO,
            record,
            device = outcome.info.map(tracing::field::display),
            wwid = outcome.wwid.as_deref(),
            "{}",
            if outcome.device_refused {
                "device refused"
            } else {
                "PR OUT"
            }
        );
    }
    reply
}

/// The blocking part of a command, on one thread: inspect the fd, screen
/// the command (which needs what `fstat` and sysfs say), run the executor,
/// close the fd.
fn run_command<E: ScsiExecutor + ?Sized>(
    executor: &E,
    options: &ServerOptions,
    initiator: &Initiator,
    cdb: PrCdb,
    data_out: Vec<u8>,
    device: ReceivedFd,
) -> Outcome {
    let direction = cdb.direction();
    let want_wwid = Screening::wants_wwid(&options.devices, direction);
    let (device, wwid) = options.inspector.inspect(device.into_owned(), want_wwid);
    let info = device.info;
    let screening = Screening::of(&options.devices, direction, &info, wwid.as_deref());
    let reply = match screening.refusal() {
        // The ioctl never runs; the fd closes here.
        Some(sense) => {
            drop(device);
            PrReply::check_condition(sense)
        }
        None => executor.execute(device, PrCommand { cdb, data_out }, initiator),
    };
    Outcome {
        reply,
        info: Some(info),
        wwid,
        device_refused: screening == Screening::DeviceRefused,
    }
}

/// Closes fds no command took (extra fds, fds sent during negotiation or
/// with a broken request) on the blocking pool, in a slot of the peer's (a
/// close blocks as long as the file system does), and waits for the closes:
/// the connection, and its place under `max_connections`, lasts until they
/// return. At stop they are abandoned after [`STOP_GRACE`] (and no longer
/// wait for a slot).
async fn close_off_workers(
    fds: Vec<ReceivedFd>,
    slots: &Arc<tokio::sync::Semaphore>,
    stop: &mut watch::Receiver<bool>,
) {
    if fds.is_empty() {
        return;
    }
    let slot = until_stopped(stop, Arc::clone(slots).acquire_owned())
        .await
        .and_then(Result::ok);
    let closing = tokio::task::spawn_blocking(move || {
        drop(fds);
        drop(slot);
    });
    if unless_stopped_for(stop, STOP_GRACE, closing)
        .await
        .is_none()
    {
        tracing::warn!("closing a client's fd still blocked at shutdown: abandoned");
    }
}

/// Runs `fut` unless `stop` turns true first (`None` then).
async fn until_stopped<F: Future>(stop: &mut watch::Receiver<bool>, fut: F) -> Option<F::Output> {
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        out = fut => Some(out),
        _ = stop.wait_for(|&s| s) => None,
    }
}

/// Runs `fut` to completion, except that once `stop` turns true it gets only
/// `grace` more (`None` if that runs out).
async fn unless_stopped_for<F: Future>(
    stop: &mut watch::Receiver<bool>,
    grace: Duration,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    if !*stop.borrow() {
        tokio::select! {
            out = &mut fut => return Some(out),
            Ok(_) = stop.wait_for(|&s| s) => {}
        }
    }
    tokio::time::timeout(grace, fut).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cdb::PrCdb;
    use crate::domain::device::OpenMode;
    use crate::domain::framing::REPLY_HEADER_LEN;
    use crate::domain::sense::{ScsiStatus, SenseBuffer};
    use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};
    use crate::ports::executor::{DeviceFd, MockScsiExecutor};
    use crate::ports::transport::MockConnection;
    use std::sync::Mutex;

    /// /dev/null opened with `access`: what the server then sees in `fstat`
    /// and `fcntl`.
    fn device(access: OpenMode) -> ReceivedFd {
        let file = std::fs::OpenOptions::new()
            .read(access != OpenMode::WriteOnly)
            .write(access != OpenMode::ReadOnly)
            .open("/dev/null")
            .unwrap();
        ReceivedFd::new(file.into())
    }

    /// One read the mock connection answers: bytes and how many fds.
    enum Chunk {
        Bytes(Vec<u8>, usize, OpenMode),
        Eof,
    }

    /// A connection that plays `chunks` in order and records what is written.
    fn scripted(chunks: Vec<Chunk>) -> (MockConnection, Arc<Mutex<Vec<u8>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut conn = MockConnection::new();
        let w = Arc::clone(&written);
        conn.expect_write_all().returning(move |b| {
            w.lock().unwrap().extend_from_slice(b);
            Ok(())
        });
        conn.expect_initiator().returning(Initiator::default);
        conn.expect_reply_from_thread().returning(|| None);
        let chunks = Arc::new(Mutex::new(std::collections::VecDeque::from(chunks)));
        let some = Arc::clone(&chunks);
        conn.expect_poll_read_some().returning(move |_, buf, fds| {
            match some.lock().unwrap().pop_front() {
                Some(Chunk::Bytes(bytes, nfds, access)) => {
                    assert_eq!(bytes.len(), buf.len(), "scripted chunk has the wrong size");
                    buf.copy_from_slice(&bytes);
                    for _ in 0..nfds {
                        fds.push(device(access));
                    }
                    std::task::Poll::Ready(Ok(bytes.len()))
                }
                Some(Chunk::Eof) | None => std::task::Poll::Ready(Ok(0)),
            }
        });
        conn.expect_read_exact().returning(move |buf, fds| {
            match chunks.lock().unwrap().pop_front() {
                Some(Chunk::Bytes(bytes, nfds, access)) => {
                    assert_eq!(bytes.len(), buf.len(), "scripted chunk has the wrong size");
                    buf.copy_from_slice(&bytes);
                    for _ in 0..nfds {
                        fds.push(device(access));
                    }
                    Ok(ReadOutcome::Complete)
                }
                Some(Chunk::Eof) | None => Ok(ReadOutcome::Eof { read: 0 }),
            }
        });
        (conn, written)
    }

    fn features() -> Chunk {
        Chunk::Bytes(vec![0; 4], 0, OpenMode::ReadWrite)
    }

    fn running() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        rx
    }

    #[tokio::test]
    async fn pr_in_runs_on_the_executor_and_the_payload_is_cut_to_the_allocation_length() {
        let cdb = PrCdb::pr_in(PrInServiceAction::ReadKeys, 8);
        let (mut conn, written) = scripted(vec![
            features(),
            Chunk::Bytes(cdb.bytes().to_vec(), 1, OpenMode::ReadOnly),
            Chunk::Eof,
        ]);
        let mut exec = MockScsiExecutor::new();
        exec.expect_execute()
            .withf(move |_, command, _| command.cdb == cdb && command.data_out.is_empty())
            .times(1)
            .returning(|_, _, _| PrReply::good((0..16).collect()));
        let end = serve_connection(&mut conn, Arc::new(exec), running())
            .await
            .unwrap();
        assert_eq!(end, ConnectionEnd::ClientClosed);
        let w = written.lock().unwrap();
        assert_eq!(&w[..4], &[0, 0, 0, 0], "features word first");
        let reply = &w[4..];
        assert_eq!(reply.len(), REPLY_HEADER_LEN + 8);
        assert_eq!(&reply[..8], &[0, 0, 0, 0, 0, 0, 0, 8]);
        assert_eq!(&reply[REPLY_HEADER_LEN..], &[0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn pr_out_reads_its_parameter_list_and_never_returns_a_payload() {
        let cdb = PrCdb::pr_out(PrOutServiceAction::Register, 0, 24);
        let list: Vec<u8> = (0..24).collect();
        let expected = list.clone();
        let (mut conn, written) = scripted(vec![
            features(),
            Chunk::Bytes(cdb.bytes().to_vec(), 1, OpenMode::ReadWrite),
            Chunk::Bytes(list, 0, OpenMode::ReadWrite),
            Chunk::Eof,
        ]);
        let mut exec = MockScsiExecutor::new();
        exec.expect_execute()
            .withf(move |_, command, _| command.data_out == expected)
            .times(1)
            .returning(|_, _, _| PrReply::good(vec![1, 2, 3]));
        serve_connection(&mut conn, Arc::new(exec), running())
            .await
            .unwrap();
        let w = written.lock().unwrap();
        assert_eq!(w.len(), 4 + REPLY_HEADER_LEN);
        assert_eq!(&w[4..12], &[0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn read_only_pr_out_is_answered_without_the_executor() {
        let cdb = PrCdb::pr_out(PrOutServiceAction::Reserve, 1, 24);
        let (mut conn, written) = scripted(vec![
            features(),
            Chunk::Bytes(cdb.bytes().to_vec(), 1, OpenMode::ReadOnly),
            Chunk::Bytes(vec![0; 24], 0, OpenMode::ReadOnly),
            Chunk::Eof,
        ]);
        let mut exec = MockScsiExecutor::new();
        exec.expect_execute().times(0);
        serve_connection(&mut conn, Arc::new(exec), running())
            .await
            .unwrap();
        let w = written.lock().unwrap();
        let expected = PrReply::check_condition(SenseCode::INVALID_OPCODE).encode_header();
        assert_eq!(&w[4..], &expected[..]);
    }

    #[tokio::test]
    async fn violations_end_the_connection_without_running_anything() {
        let in_cdb = PrCdb::pr_in(PrInServiceAction::ReadKeys, 8)
            .bytes()
            .to_vec();
        let out_cdb = PrCdb::pr_out(PrOutServiceAction::Register, 0, 24)
            .bytes()
            .to_vec();
        let mut bad_opcode = in_cdb.clone();
        bad_opcode[0] = 0x12;
        let cases: Vec<(Vec<Chunk>, ProtocolViolation)> = vec![
            (
                vec![Chunk::Bytes(vec![0, 0, 0, 2], 0, OpenMode::ReadWrite)],
                ProtocolViolation::UnsupportedFeatures(2),
            ),
            (
                vec![features(), Chunk::Bytes(bad_opcode, 1, OpenMode::ReadWrite)],
                ProtocolViolation::UnsupportedOpcode(0x12),
            ),
            (
                vec![
                    features(),
                    Chunk::Bytes(in_cdb.clone(), 0, OpenMode::ReadWrite),
                ],
                ProtocolViolation::MissingFd,
            ),
            (
                vec![features(), Chunk::Bytes(in_cdb, 3, OpenMode::ReadWrite)],
                ProtocolViolation::TooManyFds(3),
            ),
            (
                vec![
                    features(),
                    Chunk::Bytes(out_cdb.clone(), 1, OpenMode::ReadWrite),
                    Chunk::Bytes(vec![0; 24], 1, OpenMode::ReadWrite),
                ],
                ProtocolViolation::TooManyFds(2),
            ),
            (
                vec![
                    features(),
                    Chunk::Bytes(out_cdb, 1, OpenMode::ReadWrite),
                    Chunk::Eof,
                ],
                ProtocolViolation::TruncatedRequest,
            ),
        ];
        for (chunks, expected) in cases {
            let (mut conn, written) = scripted(chunks);
            let mut exec = MockScsiExecutor::new();
            exec.expect_execute().times(0);
            match serve_connection(&mut conn, Arc::new(exec), running()).await {
                Err(ConnectionError::Protocol(v)) => assert_eq!(v, expected),
                other => panic!("expected {expected:?}, got {other:?}"),
            }
            assert_eq!(
                written.lock().unwrap().len(),
                4,
                "{expected:?}: nothing but features"
            );
        }
    }

    #[tokio::test]
    async fn an_idle_connection_ends_at_shutdown() {
        let mut conn = MockConnection::new();
        conn.expect_write_all().returning(|_| Ok(()));
        conn.expect_initiator().returning(Initiator::default);
        conn.expect_read_exact()
            .returning(|_, _| Ok(ReadOutcome::Eof { read: 0 }))
            .times(0);
        let (tx, rx) = watch::channel(true);
        let exec = MockScsiExecutor::new();
        let end = serve_connection(&mut conn, Arc::new(exec), rx)
            .await
            .unwrap();
        assert_eq!(end, ConnectionEnd::Shutdown);
        drop(tx);
    }

    /// A negotiated client that then never sends anything.
    struct IdleConnection;

    #[async_trait::async_trait]
    impl Connection for IdleConnection {
        async fn read_exact(
            &mut self,
            buf: &mut [u8],
            _: &mut Vec<ReceivedFd>,
        ) -> Result<ReadOutcome, TransportError> {
            assert_eq!(buf.len(), FEATURES_LEN, "only the features word is read");
            buf.fill(0);
            Ok(ReadOutcome::Complete)
        }
        async fn read_some(
            &mut self,
            _: &mut [u8],
            _: &mut Vec<ReceivedFd>,
        ) -> Result<usize, TransportError> {
            std::future::pending().await
        }
        async fn write_all(&mut self, _: &[u8]) -> Result<(), TransportError> {
            Ok(())
        }
        fn initiator(&self) -> Initiator {
            Initiator::default()
        }
        fn poll_read_some(
            &mut self,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
            _: &mut Vec<ReceivedFd>,
        ) -> std::task::Poll<Result<usize, TransportError>> {
            std::task::Poll::Pending
        }
        fn reply_from_thread(&self) -> Option<Arc<dyn ReplyFromThread>> {
            None
        }
    }

    #[async_trait::async_trait]
    impl Connection for Box<dyn Connection> {
        async fn read_exact(
            &mut self,
            buf: &mut [u8],
            fds: &mut Vec<ReceivedFd>,
        ) -> Result<ReadOutcome, TransportError> {
            (**self).read_exact(buf, fds).await
        }
        async fn read_some(
            &mut self,
            buf: &mut [u8],
            fds: &mut Vec<ReceivedFd>,
        ) -> Result<usize, TransportError> {
            (**self).read_some(buf, fds).await
        }
        async fn write_all(&mut self, buf: &[u8]) -> Result<(), TransportError> {
            (**self).write_all(buf).await
        }
        fn initiator(&self) -> Initiator {
            (**self).initiator()
        }
        fn poll_read_some(
            &mut self,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
            fds: &mut Vec<ReceivedFd>,
        ) -> std::task::Poll<Result<usize, TransportError>> {
            (**self).poll_read_some(cx, buf, fds)
        }
        fn reply_from_thread(&self) -> Option<Arc<dyn ReplyFromThread>> {
            (**self).reply_from_thread()
        }
    }

    /// A listener that yields prepared connections, then waits forever.
    struct FakeListener(Vec<Box<dyn Connection>>);

    #[async_trait::async_trait]
    impl Listener for FakeListener {
        type Conn = Box<dyn Connection>;
        async fn accept(&mut self) -> Result<Incoming<Box<dyn Connection>>, TransportError> {
            match self.0.pop() {
                Some(c) => Ok(Incoming::New(c)),
                None => std::future::pending().await,
            }
        }
    }

    struct SlowExecutor {
        started: tokio::sync::Notify,
    }

    impl ScsiExecutor for SlowExecutor {
        fn execute(&self, _: DeviceFd, _: PrCommand, _: &Initiator) -> PrReply {
            self.started.notify_one();
            std::thread::sleep(Duration::from_millis(200));
            PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT)
        }
    }

    #[tokio::test]
    async fn shutdown_lets_the_command_in_flight_finish_and_reply() {
        let cdb = PrCdb::pr_in(PrInServiceAction::ReadKeys, 8);
        let (busy, written) = scripted(vec![
            features(),
            Chunk::Bytes(cdb.bytes().to_vec(), 1, OpenMode::ReadWrite),
        ]);
        // An idle one too: it must not hold the exit back.
        let idle = IdleConnection;
        let exec = Arc::new(SlowExecutor {
            started: tokio::sync::Notify::new(),
        });
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let e = Arc::clone(&exec);
        let waiter = tokio::spawn(async move {
            e.started.notified().await;
            let _ = go_tx.send(());
        });
        let started = std::time::Instant::now();
        run(
            FakeListener(vec![Box::new(busy), Box::new(idle)]),
            exec,
            async {
                let _ = go_rx.await;
            },
        )
        .await;
        waiter.await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        let w = written.lock().unwrap();
        assert_eq!(
            w.len(),
            4 + REPLY_HEADER_LEN,
            "the in-flight command was answered"
        );
        assert_eq!(&w[4..8], &[0, 0, 0, 0x18]);
        let _ = SenseBuffer::empty();
    }
}
