// SPDX-License-Identifier: GPL-2.0-or-later
//! Accepting connections and accounting for them: the accept loop
//! ([`run_with`]), the checks made at accept (peer allowlist, connection
//! caps), the count of open connections the shutdown waits on and the
//! status line shows, idle connections handed to the transport to park and
//! taken back, and the rate-limited lines about refused connections.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use super::handler::Handler;
use super::peers::{PeerConnection, Peers};
use super::{ConnectionEnd, ConnectionError, ServerOptions, ServerStats, TARGET};
use crate::domain::allowlist::PeerCredentials;
use crate::domain::initiator::Initiator;
use crate::domain::log_throttle::LogThrottle;
use crate::ports::executor::ScsiExecutor;
use crate::ports::transport::{Connection, Incoming, Listener, Parking, TransportError};

/// Refused connections logged in full per [`REFUSAL_LOG_INTERVAL`]; the rest
/// are counted in one summary line per interval.
const REFUSALS_LOGGED_PER_INTERVAL: u32 = 10;

/// The interval of the refused-connection summary line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves connections from `listener` with `executor`, under the policy and
/// limits of `options`, until `shutdown` completes; then stops accepting,
/// lets commands in flight finish and returns. Idle connections do not hold
/// the return back.
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
                        tracing::error!(target: TARGET, cause = %e, "accept failed");
                    }
                }
                Err(e) => {
                    if refusals.accept.record(Instant::now()) {
                        tracing::error!(target: TARGET, cause = %e, "accept failed");
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
        tracing::info!(target: TARGET, connections = in_flight, "waiting for commands in flight");
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
        Parking::Parked => tracing::trace!(target: TARGET, conn_id, "idle: parked"),
        Parking::Kept(conn) => spawner.resume(conn),
        Parking::Closed(e) => {
            spawner.lost_parked(&initiator);
            tracing::debug!(target: TARGET, conn_id, cause = %e, "idle connection lost while parking it");
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
            target: TARGET,
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
                tracing::trace!(target: TARGET, "served again after idling");
            } else {
                tracing::debug!(target: TARGET, "accepted");
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
                Ok(end) => tracing::debug!(target: TARGET, %end, "connection closed"),
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
                        tracing::warn!(target: TARGET, cause = %e, "closing connection");
                    }
                }
                Err(e) => tracing::debug!(target: TARGET, cause = %e, "connection dropped"),
            }
        }
        .instrument(span);
        // Detached: `open` counts it until it ends.
        tokio::spawn(task);
    }
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
                target: TARGET,
                count,
                interval_s = self.limit.interval().as_secs(),
                "more connections refused: connection limit reached (not logged one by one)"
            );
        }
        if let Some(count) = self.per_peer.take_suppressed() {
            tracing::warn!(
                target: TARGET,
                count,
                interval_s = self.per_peer.interval().as_secs(),
                "more connections refused: per-peer connection limit reached (not logged one by one)"
            );
        }
        if let Some(count) = self.accept.take_suppressed() {
            tracing::error!(
                target: TARGET,
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
                target: TARGET,
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
                target: TARGET,
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
            target: TARGET,
            peer_pid = initiator.pid,
            peer_uid = initiator.uid,
            limit = options.max_connections_per_peer,
            "connection refused: per-peer connection limit reached"
        );
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cdb::PrCdb;
    use crate::domain::command::PrCommand;
    use crate::domain::device::OpenMode;
    use crate::domain::framing::{PrReply, FEATURES_LEN, REPLY_HEADER_LEN};
    use crate::domain::sense::{ScsiStatus, SenseBuffer};
    use crate::domain::service_action::PrInServiceAction;
    use crate::ports::executor::DeviceFd;
    use crate::ports::received_fd::ReceivedFd;
    use crate::ports::transport::{ReadOutcome, ReplyFromThread};
    use crate::server::testing::{features, options, scripted, Chunk};

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
        let (busy, written) = scripted(vec![features(), Chunk::Bytes(cdb.bytes().to_vec(), 1)]);
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
        run_with(
            FakeListener(vec![Box::new(busy), Box::new(idle)]),
            exec,
            async {
                let _ = go_rx.await;
            },
            Arc::unwrap_or_clone(options(OpenMode::ReadWrite)),
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
