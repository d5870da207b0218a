//! The request-serving logic, written once against the ports.
//!
//! [`run`] accepts connections until shutdown and serves each on its own task;
//! [`serve_connection`] speaks the protocol on one connection. Protocol
//! violations end that connection only; everything else is a SCSI answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::domain::cdb::{PrCdb, PrDirection, CDB_LEN};
use crate::domain::framing::{
    check_client_features, check_fd_count, PrReply, ProtocolViolation, FEATURES_LEN,
    SUPPORTED_FEATURES,
};
use crate::domain::sense::SenseCode;
use crate::ports::executor::{AccessMode, DeviceFd, PrCommand, ScsiExecutor};
use crate::ports::transport::{Connection, Listener, ReadOutcome, TransportError};

/// How a connection ended, when it ended without a transport error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The client closed the connection between commands.
    ClientClosed,
    /// The daemon is shutting down and the connection was idle.
    Shutdown,
}

/// Why a connection was dropped.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The client broke the wire contract.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolViolation),
    /// The socket failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Serves connections from `listener` with `executor` until `shutdown`
/// completes; then stops accepting, lets commands in flight finish and
/// returns. Idle connections do not hold the return back.
pub async fn run<L, E, S>(mut listener: L, executor: Arc<E>, shutdown: S)
where
    L: Listener,
    E: ScsiExecutor + ?Sized + 'static,
    S: Future<Output = ()>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    let initiator = conn.initiator();
                    let span = tracing::info_span!(
                        "connection",
                        id = initiator.connection_id,
                        peer_pid = ?initiator.pid,
                        peer_uid = ?initiator.uid,
                    );
                    let executor = Arc::clone(&executor);
                    let stop = stop_rx.clone();
                    tasks.spawn(
                        async move {
                            tracing::debug!("accepted");
                            let mut conn = conn;
                            match serve_connection(&mut conn, &*executor, stop).await {
                                Ok(end) => tracing::debug!(?end, "connection closed"),
                                Err(ConnectionError::Protocol(v)) => {
                                    tracing::warn!(violation = %v, "closing connection")
                                }
                                Err(e) => tracing::debug!(cause = %e, "connection dropped"),
                            }
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = tasks.len();
    if in_flight > 0 {
        tracing::info!(connections = in_flight, "waiting for commands in flight");
    }
    while tasks.join_next().await.is_some() {}
}

/// Speaks the protocol on one connection: negotiation, then commands until
/// the client closes, breaks a rule, or `stop` turns true between commands.
pub async fn serve_connection<C, E>(
    conn: &mut C,
    executor: &E,
    mut stop: watch::Receiver<bool>,
) -> Result<ConnectionEnd, ConnectionError>
where
    C: Connection + ?Sized,
    E: ScsiExecutor + ?Sized,
{
    conn.write_all(&SUPPORTED_FEATURES.to_be_bytes()).await?;
    let mut features = [0u8; FEATURES_LEN];
    let mut stray = Vec::new();
    if let Some(end) = read_part(conn, &mut stop, &mut features, &mut stray, true).await? {
        return Ok(end);
    }
    // Fds sent during negotiation are closed here, as the C helper does.
    drop(stray);
    check_client_features(features)?;

    let initiator = conn.initiator();
    loop {
        let mut cdb = [0u8; CDB_LEN];
        let mut fds: Vec<DeviceFd> = Vec::new();
        if let Some(end) = read_part(conn, &mut stop, &mut cdb, &mut fds, true).await? {
            return Ok(end);
        }
        check_fd_count(fds.len())?;
        let cdb = PrCdb::try_from(&cdb)?;

        let mut data_out = Vec::new();
        if cdb.direction() == PrDirection::Out && cdb.transfer_len() > 0 {
            // Allocated only now that a command is in flight: idle
            // connections cost no data buffer.
            data_out = vec![0u8; cdb.transfer_len()];
            if let Some(end) = read_part(conn, &mut stop, &mut data_out, &mut fds, false).await? {
                return Ok(end);
            }
            check_fd_count(fds.len())?;
        }
        let Some(device) = fds.pop() else {
            return Err(ProtocolViolation::MissingFd.into());
        };

        let allocation_len = match cdb.direction() {
            PrDirection::In => cdb.transfer_len(),
            PrDirection::Out => 0,
        };
        let reply =
            if cdb.direction() == PrDirection::Out && device.info.access == AccessMode::ReadOnly {
                // Same answer as the C helper: a read-only fd may not change
                // reservations. The fd is dropped (closed) right here.
                drop(device);
                PrReply::check_condition(SenseCode::INVALID_OPCODE)
            } else {
                let command = PrCommand { cdb, data_out };
                executor.execute(device, command, &initiator).await
            }
            .fit_to(allocation_len);
        tracing::debug!(
            cdb = ?&cdb.command(),
            status = %reply.status,
            sense = ?reply.sense,
            payload_len = reply.payload.len(),
            "command done"
        );

        conn.write_all(&reply.encode_header()).await?;
        if !reply.payload.is_empty() {
            conn.write_all(&reply.payload).await?;
        }
        if *stop.borrow() {
            return Ok(ConnectionEnd::Shutdown);
        }
    }
}

/// Reads one part of a request. `Ok(None)`: the buffer is full. `Ok(Some)`:
/// the connection ends without error, because the daemon stops or because the
/// client closed cleanly at a `boundary` (nothing of the part received).
async fn read_part<C: Connection + ?Sized>(
    conn: &mut C,
    stop: &mut watch::Receiver<bool>,
    buf: &mut [u8],
    fds: &mut Vec<DeviceFd>,
    boundary: bool,
) -> Result<Option<ConnectionEnd>, ConnectionError> {
    match until_stopped(stop, conn.read_exact(buf, fds)).await {
        None => Ok(Some(ConnectionEnd::Shutdown)),
        Some(Ok(ReadOutcome::Complete)) => Ok(None),
        Some(Ok(ReadOutcome::Eof { read: 0 })) if boundary && fds.is_empty() => {
            Ok(Some(ConnectionEnd::ClientClosed))
        }
        Some(Ok(ReadOutcome::Eof { .. })) => Err(ProtocolViolation::TruncatedRequest.into()),
        Some(Err(e)) => Err(e.into()),
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
