// SPDX-License-Identifier: GPL-2.0-or-later
//! The thread that owns the log's sink. Whoever logs formats the line and
//! queues it; only this thread waits for the sink, so a journal, syslog
//! daemon or stderr reader that stops reading costs lines, never the
//! serving thread's time.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::queue::{Dropped, LineQueue};

/// Lines the queue holds: at a few hundred bytes each, well under a MiB,
/// and enough for a burst of commands at `-vv`.
pub const QUEUE_LINES: usize = 1024;

/// Places in the queue only audit lines may take.
pub const AUDIT_RESERVE: usize = 256;

/// How long [`LogWriter::start`] waits for its thread to run: a thread
/// starts in microseconds, but a loaded host must not stop the start.
const THREAD_START: Duration = Duration::from_secs(1);

/// One formatted line (or journal entry), ready for the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What the sink writes.
    pub bytes: Vec<u8>,
    /// The syslog severity of its level.
    pub severity: u8,
}

/// Where lines end up. Called on the writer thread only, so it may block;
/// an error loses that one line, which is counted.
pub trait Sink: Send {
    /// Writes one line.
    fn write(&mut self, line: &Line) -> io::Result<()>;
}

struct State {
    queue: LineQueue<Line>,
    /// The writer holds a line it took from the queue.
    busy: bool,
    /// The writer thread runs.
    running: bool,
    /// The sink, until the writer thread takes it.
    sink: Option<Box<dyn Sink>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: a line was queued.
    queued: Condvar,
    /// Wakes a flush: the writer has nothing left.
    idle: Condvar,
    /// Lines lost since start, readable without the lock.
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The queue of the log and its writer thread; clones share them.
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LogWriter {
    /// A queue of [`QUEUE_LINES`] for `sink`. Lines queue up until
    /// [`LogWriter::start`]: the thread is started once the process has
    /// forked, dropped its privileges and installed its system-call filter,
    /// which a thread made earlier would escape.
    pub fn new(sink: impl Sink + 'static) -> LogWriter {
        LogWriter::with_capacity(sink, QUEUE_LINES, AUDIT_RESERVE)
    }

    /// [`LogWriter::new`] with another size of queue.
    pub fn with_capacity(
        sink: impl Sink + 'static,
        lines: usize,
        audit_reserve: usize,
    ) -> LogWriter {
        LogWriter(Arc::new(Shared {
            state: Mutex::new(State {
                queue: LineQueue::new(lines, audit_reserve),
                busy: false,
                running: false,
                sink: Some(Box::new(sink)),
            }),
            queued: Condvar::new(),
            idle: Condvar::new(),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Queues `line` for the sink, or drops and counts it if the queue is
    /// full; never waits for the sink.
    pub fn push(&self, line: Line, audit: bool) {
        let mut state = self.0.lock();
        if state.queue.push(line, audit) {
            drop(state);
            self.0.queued.notify_one();
        } else {
            self.0
                .dropped
                .store(state.queue.total_dropped(), Ordering::Relaxed);
        }
    }

    /// Starts the writer thread (once; later calls do nothing) and waits
    /// until it runs (never for the sink), so that it exists, named, before
    /// the daemon serves.
    pub fn start(&self) -> io::Result<()> {
        let Some(sink) = self.0.lock().sink.take() else {
            return Ok(());
        };
        let shared = Arc::clone(&self.0);
        std::thread::Builder::new()
            .name("log-writer".into())
            // It formats only its own report of lost lines: a small stack.
            .stack_size(256 * 1024)
            .spawn(move || write_lines(&shared, sink))?;
        let state = self.0.lock();
        let _running = self
            .0
            .idle
            .wait_timeout_while(state, THREAD_START, |s| !s.running)
            .unwrap_or_else(PoisonError::into_inner);
        Ok(())
    }

    /// Waits until every queued line has been written, `within` at most
    /// (the sink may never read again: the process must still exit).
    /// Starts the writer if it was not. Returns whether all was written.
    pub fn flush(&self, within: Duration) -> bool {
        if self.start().is_err() {
            return false;
        }
        let deadline = Instant::now() + within;
        let mut state = self.0.lock();
        loop {
            if state.queue.is_empty() && !state.busy {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .0
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lines lost since start: dropped from a full queue or refused by the
    /// sink.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread: writes lines as they come and, once the sink has
/// caught up, says how many were lost.
fn write_lines(shared: &Shared, mut sink: Box<dyn Sink>) {
    let mut state = shared.lock();
    state.running = true;
    shared.idle.notify_all();
    loop {
        if let Some((line, audit)) = state.queue.pop() {
            state.busy = true;
            drop(state);
            let written = sink.write(&line);
            state = shared.lock();
            if written.is_err() {
                state.queue.lost(audit);
                shared
                    .dropped
                    .store(state.queue.total_dropped(), Ordering::Relaxed);
            }
            continue;
        }
        let dropped = state.queue.take_unreported();
        if !dropped.is_none() {
            // Logged like any line: queued again, in the sink's format.
            drop(state);
            report(dropped);
            state = shared.lock();
            continue;
        }
        state.busy = false;
        shared.idle.notify_all();
        state = shared
            .queued
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Says that lines were lost, once the sink takes lines again.
fn report(dropped: Dropped) {
    let lines = dropped.lines;
    if dropped.audit > 0 {
        tracing::error!(
            "log sink is not keeping up: {lines} lines dropped, {} of them audit lines",
            dropped.audit
        );
    } else {
        tracing::warn!("log sink is not keeping up: {lines} lines dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that hands each line to the test and waits for its word.
    struct Gated {
        written: mpsc::Sender<Vec<u8>>,
        gate: Arc<Mutex<()>>,
    }

    impl Sink for Gated {
        fn write(&mut self, line: &Line) -> io::Result<()> {
            let _open = self.gate.lock().unwrap();
            self.written.send(line.bytes.clone()).unwrap();
            Ok(())
        }
    }

    fn line(text: &str) -> Line {
        Line {
            bytes: text.as_bytes().to_vec(),
            severity: 5,
        }
    }

    #[test]
    fn a_sink_that_does_not_read_stalls_no_caller_and_costs_counted_lines() {
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let (tx, rx) = mpsc::channel();
        let writer = LogWriter::with_capacity(
            Gated {
                written: tx,
                gate: Arc::clone(&gate),
            },
            4,
            1,
        );
        writer.start().unwrap();
        // The writer takes one line and stays stuck in the sink with it.
        writer.push(line("first"), false);
        while !writer.0.lock().queue.is_empty() {
            std::thread::yield_now();
        }
        // Every push returns although the sink never takes a line: three
        // fit, the rest is dropped; the audit line keeps its place.
        for n in 0..10 {
            writer.push(line(&format!("other {n}")), false);
        }
        writer.push(line("audit"), true);
        assert_eq!(writer.dropped(), 7);
        assert!(
            !writer.flush(Duration::from_millis(50)),
            "flushed a stuck sink"
        );
        drop(closed);
        assert!(writer.flush(Duration::from_secs(10)));
        let written: Vec<Vec<u8>> = rx.try_iter().collect();
        let text: Vec<&str> = written
            .iter()
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        assert_eq!(text, ["first", "other 0", "other 1", "other 2", "audit"]);
    }
}
