// SPDX-License-Identifier: GPL-2.0-or-later
//! One command's trip to the blocking pool: inspect the client's fd, screen
//! the command, run the executor, close the fd, and (when the transport
//! lets a thread write) try once to write the reply; with the command's
//! debug line and, for every PR OUT and every refused device, its audit
//! line, also when the daemon's stop leaves it unfinished.

use std::sync::Arc;

use tracing::field::DisplayValue;

use super::{ConnectionError, ServerOptions, TARGET};
use crate::domain::audit::{action_name, sense_text, PrOutAudit};
use crate::domain::cdb::{PrCdb, PrDirection};
use crate::domain::command::PrCommand;
use crate::domain::device::DeviceInfo;
use crate::domain::framing::PrReply;
use crate::domain::initiator::Initiator;
use crate::domain::param_list::PrOutKeys;
use crate::domain::screening::Screening;
use crate::domain::sense::SenseCode;
use crate::ports::executor::ScsiExecutor;
use crate::ports::received_fd::ReceivedFd;
use crate::ports::transport::{ReplyFromThread, TransportError};

/// What the blocking part of a command learnt and answered.
pub(super) struct JobReport {
    reply: PrReply,
    info: Option<DeviceInfo>,
    wwid: Option<String>,
    device_refused: bool,
}

/// How a command's reply left, or will.
pub(super) enum Answered {
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
pub(super) struct Dispatch {
    pub(super) cdb: PrCdb,
    pub(super) data_out: Vec<u8>,
    pub(super) device: ReceivedFd,
    pub(super) sink: Option<Arc<dyn ReplyFromThread>>,
}

/// How a command whose thread writes the reply ended. The thread records it
/// and stores a permit in `done`: no task is woken unless one waits, so a
/// command whose reply the socket takes costs one trip to the blocking pool
/// and no trip back. A reply left unwritten wakes the task (`unwritten`).
pub(super) struct JobEnd {
    done: tokio::sync::Notify,
    pub(super) unwritten: tokio::sync::Notify,
    /// `Ok(Some)`: the bytes of the reply the thread could not write.
    written: std::sync::Mutex<Option<ThreadWrite>>,
    /// For the audit line of a PR OUT abandoned at shutdown.
    pub(super) cdb: PrCdb,
    pub(super) keys: PrOutKeys,
}

/// What the thread wrote of a reply: all (`None`), or not the rest.
pub(super) type ThreadWrite = Result<Option<Vec<u8>>, ConnectionError>;

impl JobEnd {
    /// A command going to its thread, nothing written yet.
    pub(super) fn new(cdb: PrCdb, keys: PrOutKeys) -> JobEnd {
        JobEnd {
            done: tokio::sync::Notify::new(),
            unwritten: tokio::sync::Notify::new(),
            written: std::sync::Mutex::new(None),
            cdb,
            keys,
        }
    }

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

    pub(super) async fn wait(&self) -> ThreadWrite {
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
pub(super) fn write_from_thread(
    work: impl FnOnce() -> PrReply,
    sink: &dyn ReplyFromThread,
    end: &JobEnd,
    options: &ServerOptions,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let reply = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(reply) => reply,
        Err(_) => {
            tracing::error!(target: TARGET, "command thread failed");
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
pub(super) fn failed_outcome() -> JobReport {
    JobReport {
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
            key = $record.key.as_ref().map(tracing::field::display),
            sa_key = $record.sa_key.as_ref().map(tracing::field::display),
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
pub(super) enum Unfinished {
    Abandoned,
    NotStarted,
}

/// The lines for a command the stop left unfinished: a warning, and for a
/// PR OUT its audit line, since every PR OUT has one.
pub(super) fn log_unfinished(
    options: &ServerOptions,
    cdb: &PrCdb,
    keys: PrOutKeys,
    how: Unfinished,
) {
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
    tracing::warn!(target: TARGET, "{line}");
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
pub(super) fn log_outcome(
    options: &ServerOptions,
    cdb: &PrCdb,
    keys: PrOutKeys,
    outcome: JobReport,
) -> PrReply {
    let is_out = cdb.direction() == PrDirection::Out;
    let reply = outcome.reply.fit_to(cdb.allocation_len());
    let sense = sense_text(&reply);
    tracing::debug!(
        target: TARGET,
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
pub(super) fn run_command<E: ScsiExecutor + ?Sized>(
    executor: &E,
    options: &ServerOptions,
    initiator: &Initiator,
    cdb: PrCdb,
    data_out: Vec<u8>,
    device: ReceivedFd,
) -> JobReport {
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
    JobReport {
        reply,
        info: Some(info),
        wwid,
        device_refused: screening == Screening::DeviceRefused,
    }
}
