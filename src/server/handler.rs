// SPDX-License-Identifier: GPL-2.0-or-later
//! One connection, served by its own task: the features exchange, then
//! requests read whole within the request timeout, each handed to the
//! blocking pool (see `job`) and its reply written, until the
//! client closes, breaks a rule, idles long enough to be parked, or the
//! daemon stops.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::watch;

use super::job::{
    failed_outcome, log_outcome, log_unfinished, run_command, write_from_thread, Answered,
    Dispatch, JobEnd, Unfinished,
};
use super::status::InFlight;
use super::stop::{cancel_after_stop, cancel_at_stop};
use super::{ConnectionEnd, ConnectionError, ServerOptions, STOP_GRACE, TARGET};
use crate::domain::cdb::{PrCdb, PrDirection, CDB_LEN};
use crate::domain::framing::{
    check_client_features, check_fd_count, ProtocolViolation, FEATURES_LEN, SUPPORTED_FEATURES,
};
use crate::domain::param_list::PrOutKeys;
use crate::ports::executor::ScsiExecutor;
use crate::ports::received_fd::ReceivedFd;
use crate::ports::transport::{Connection, ReadOutcome, TransportError};

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

/// One connection being served: what it talks to and what it holds between
/// the reads of one command and the next. It borrows what the connection's
/// task owns, so that the task's future holds one copy of each.
pub(super) struct Handler<'a, C: ?Sized, E: ?Sized> {
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
    pub(super) fn new(
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
    pub(super) async fn run(mut self) -> Result<ConnectionEnd, ConnectionError> {
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
            Box::pin(close_on_blocking_pool(fds, self.slots, self.stop)).await;
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
        close_on_blocking_pool(std::mem::take(&mut self.held), self.slots, self.stop).await;
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
        tracing::trace!(target: TARGET, cdb = %cdb.hex(), data_len = data_out.len(), "request received");
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
        let slot = match cancel_after_stop(self.stop, timeout, acquired).await {
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
            let end = Arc::new(JobEnd::new(cdb, keys));
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
        match cancel_after_stop(self.stop, timeout, tokio::task::spawn_blocking(job)).await {
            None => {
                log_unfinished(self.options, &cdb, keys, Unfinished::Abandoned);
                Answered::Abandoned
            }
            Some(Ok(reply)) => Answered::ToWrite(reply),
            Some(Err(e)) => {
                tracing::error!(target: TARGET, cause = %e, "command thread failed");
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
        match cancel_after_stop(self.stop, timeout, job.wait()).await {
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
        match cancel_after_stop(self.stop, STOP_GRACE, write).await {
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
        match cancel_at_stop(self.stop, read).await {
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

/// Closes fds no command took (extra fds, fds sent during negotiation or
/// with a broken request) on the blocking pool, in a slot of the peer's (a
/// close blocks as long as the file system does), and waits for the closes:
/// the connection, and its place under `max_connections`, lasts until they
/// return. At stop they are abandoned after [`STOP_GRACE`] (and no longer
/// wait for a slot).
async fn close_on_blocking_pool(
    fds: Vec<ReceivedFd>,
    slots: &Arc<tokio::sync::Semaphore>,
    stop: &mut watch::Receiver<bool>,
) {
    if fds.is_empty() {
        return;
    }
    let slot = cancel_at_stop(stop, Arc::clone(slots).acquire_owned())
        .await
        .and_then(Result::ok);
    let closing = tokio::task::spawn_blocking(move || {
        drop(fds);
        drop(slot);
    });
    if cancel_after_stop(stop, STOP_GRACE, closing).await.is_none() {
        tracing::warn!(target: TARGET, "closing a client's fd still blocked at shutdown: abandoned");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::device::OpenMode;
    use crate::domain::framing::{PrReply, REPLY_HEADER_LEN};
    use crate::domain::initiator::Initiator;
    use crate::domain::sense::SenseCode;
    use crate::domain::service_action::{PrInServiceAction, PrOutServiceAction};
    use crate::ports::executor::MockScsiExecutor;
    use crate::ports::transport::MockConnection;
    use crate::server::testing::{features, options, scripted, Chunk};

    /// Speaks the protocol on one connection, as a connection's task does, but
    /// never parks it: no listener takes idle connections here.
    async fn serve_connection<C, E>(
        conn: &mut C,
        executor: Arc<E>,
        mut stop: watch::Receiver<bool>,
        options: Arc<ServerOptions>,
    ) -> Result<ConnectionEnd, ConnectionError>
    where
        C: Connection + ?Sized,
        E: ScsiExecutor + ?Sized + 'static,
    {
        let slots = Arc::new(tokio::sync::Semaphore::new(options.max_commands_per_peer));
        Handler::new(conn, &executor, &mut stop, &options, &slots, false, None)
            .run()
            .await
    }

    /// Serves `conn` to its end while the daemon keeps running, with every
    /// fd a disk opened `open_mode`.
    async fn serve_while_running<C>(
        conn: &mut C,
        exec: MockScsiExecutor,
        open_mode: OpenMode,
    ) -> ConnectionEnd
    where
        C: Connection + ?Sized,
    {
        serve_connection(conn, Arc::new(exec), running(), options(open_mode))
            .await
            .unwrap()
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
            Chunk::Bytes(cdb.bytes().to_vec(), 1),
            Chunk::Eof,
        ]);
        let mut exec = MockScsiExecutor::new();
        exec.expect_execute()
            .withf(move |_, command, _| command.cdb == cdb && command.data_out.is_empty())
            .times(1)
            .returning(|_, _, _| PrReply::good((0..16).collect()));
        let end = serve_while_running(&mut conn, exec, OpenMode::ReadOnly).await;
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
            Chunk::Bytes(cdb.bytes().to_vec(), 1),
            Chunk::Bytes(list, 0),
            Chunk::Eof,
        ]);
        let mut exec = MockScsiExecutor::new();
        exec.expect_execute()
            .withf(move |_, command, _| command.data_out == expected)
            .times(1)
            .returning(|_, _, _| PrReply::good(vec![1, 2, 3]));
        serve_while_running(&mut conn, exec, OpenMode::ReadWrite).await;
        let w = written.lock().unwrap();
        assert_eq!(w.len(), 4 + REPLY_HEADER_LEN);
        assert_eq!(&w[4..12], &[0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn read_only_pr_out_is_answered_without_the_executor() {
        let cdb = PrCdb::pr_out(PrOutServiceAction::Reserve, 1, 24);
        let (mut conn, written) = scripted(vec![
            features(),
            Chunk::Bytes(cdb.bytes().to_vec(), 1),
            Chunk::Bytes(vec![0; 24], 0),
            Chunk::Eof,
        ]);
        let mut exec = MockScsiExecutor::new();
        exec.expect_execute().times(0);
        serve_while_running(&mut conn, exec, OpenMode::ReadOnly).await;
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
                vec![Chunk::Bytes(vec![0, 0, 0, 2], 0)],
                ProtocolViolation::UnsupportedFeatures(2),
            ),
            (
                vec![features(), Chunk::Bytes(bad_opcode, 1)],
                ProtocolViolation::UnsupportedOpcode(0x12),
            ),
            (
                vec![features(), Chunk::Bytes(in_cdb.clone(), 0)],
                ProtocolViolation::MissingFd,
            ),
            (
                vec![features(), Chunk::Bytes(in_cdb, 3)],
                ProtocolViolation::TooManyFds(3),
            ),
            (
                vec![
                    features(),
                    Chunk::Bytes(out_cdb.clone(), 1),
                    Chunk::Bytes(vec![0; 24], 1),
                ],
                ProtocolViolation::TooManyFds(2),
            ),
            (
                vec![features(), Chunk::Bytes(out_cdb, 1), Chunk::Eof],
                ProtocolViolation::TruncatedRequest,
            ),
        ];
        for (chunks, expected) in cases {
            let (mut conn, written) = scripted(chunks);
            let mut exec = MockScsiExecutor::new();
            exec.expect_execute().times(0);
            match serve_connection(
                &mut conn,
                Arc::new(exec),
                running(),
                options(OpenMode::ReadWrite),
            )
            .await
            {
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
        let end = serve_connection(&mut conn, Arc::new(exec), rx, options(OpenMode::ReadWrite))
            .await
            .unwrap();
        assert_eq!(end, ConnectionEnd::Shutdown);
        drop(tx);
    }
}
