// SPDX-License-Identifier: GPL-2.0-or-later
//! The journal's native protocol: each event becomes one entry of
//! `NAME`/value fields (its message, priority, target, source line, the
//! fields of its spans and its own), encoded by whoever logs and sent by
//! the writer thread.
//!
//! tracing-journald encodes the same fields but sends them itself, on the
//! logging thread, on a socket with no timeout: a journal that stops
//! reading would stop the daemon. It offers no way to have the entry
//! without sending it, so the encoding, which is short, is done here with
//! the field names it used.

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::socket::{sendmsg, sendto, ControlMessage, MsgFlags, UnixAddr};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::writer::{Line, LogWriter, Sink};
use super::{severity, AUDIT_TARGET, IDENTIFIER, JOURNAL_SOCKET};

/// How long the writer waits for a journal whose socket is full before it
/// drops the entry. Only the writer thread waits.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The journal's socket, for the writer thread.
#[derive(Debug)]
pub struct Journal {
    socket: UnixDatagram,
    address: UnixAddr,
}

impl Journal {
    /// Makes the socket (before the system-call filter) and checks that the
    /// journal listens: an empty datagram, which it discards. A journal
    /// that is there but does not read counts as reachable; waiting for it
    /// is the writer's business.
    pub fn connect() -> io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        let address = UnixAddr::new(JOURNAL_SOCKET)?;
        match sendto(socket.as_raw_fd(), &[], &address, MsgFlags::MSG_DONTWAIT) {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => Ok(Journal { socket, address }),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends an entry too large for a datagram in a sealed memfd, as the
    /// native protocol allows.
    fn send_large(&self, entry: &[u8]) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
        let memfd = memfd_create(
            c"journal-entry",
            MemFdCreateFlag::MFD_ALLOW_SEALING | MemFdCreateFlag::MFD_CLOEXEC,
        )?;
        let mut file = std::fs::File::from(memfd);
        file.write_all(entry)?;
        let seals = SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SEAL;
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))?;
        let fds = [file.as_raw_fd()];
        sendmsg(
            self.socket.as_raw_fd(),
            &[],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&self.address),
        )?;
        Ok(())
    }
}

impl Sink for Journal {
    fn write(&mut self, line: &Line) -> io::Result<()> {
        match sendto(
            self.socket.as_raw_fd(),
            &line.bytes,
            &self.address,
            MsgFlags::empty(),
        ) {
            Ok(_) => Ok(()),
            Err(nix::errno::Errno::EMSGSIZE) => self.send_large(&line.bytes),
            Err(e) => Err(e.into()),
        }
    }
}

/// The layer that encodes events as journal entries and queues them.
#[derive(Debug)]
pub struct JournalLayer {
    writer: LogWriter,
}

impl JournalLayer {
    /// Entries go to `writer`, whose sink is a [`Journal`].
    pub fn new(writer: LogWriter) -> JournalLayer {
        JournalLayer { writer }
    }
}

/// A span's encoded fields, kept with the span for each of its events.
struct SpanFields(Vec<u8>);

impl<S> tracing_subscriber::Layer<S> for JournalLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut buf = Vec::with_capacity(256);
        put_field(&mut buf, "SPAN_NAME", span.name().as_bytes());
        put_metadata(&mut buf, span.metadata(), "SPAN_");
        attrs.record(&mut Fields(&mut buf));
        span.extensions_mut().insert(SpanFields(buf));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(buf)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Fields(buf));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut buf = Vec::with_capacity(512);
        for span in ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                buf.extend_from_slice(fields);
            }
        }
        let meta = event.metadata();
        let severity = severity(meta.level());
        put_field(&mut buf, "PRIORITY", &[b'0' + severity]);
        put_metadata(&mut buf, meta, "");
        put_field(&mut buf, "SYSLOG_IDENTIFIER", IDENTIFIER.as_bytes());
        event.record(&mut Fields(&mut buf));
        self.writer.push(
            Line {
                bytes: buf,
                severity,
            },
            meta.target() == AUDIT_TARGET,
        );
    }
}

/// The target, source file and line of a call site, each name after
/// `prefix`.
fn put_metadata(buf: &mut Vec<u8>, meta: &Metadata<'_>, prefix: &str) {
    put_field(buf, &format!("{prefix}TARGET"), meta.target().as_bytes());
    if let Some(file) = meta.file() {
        put_field(buf, &format!("{prefix}CODE_FILE"), file.as_bytes());
    }
    if let Some(line) = meta.line() {
        put_field(
            buf,
            &format!("{prefix}CODE_LINE"),
            line.to_string().as_bytes(),
        );
    }
}

/// One field in the binary form (name, newline, little-endian 64-bit
/// length, value, newline), which allows any value, newlines included.
/// The name is made one the journal accepts: `.` becomes `_`, leading `_`
/// and characters other than ASCII letters, digits and `_` go, letters are
/// upper-cased (`peer_pid` is `PEER_PID`, `message` is `MESSAGE`).
fn put_field(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend(
        name.bytes()
            .map(|c| if c == b'.' { b'_' } else { c })
            .skip_while(|&c| c == b'_')
            .filter(|&c| c == b'_' || c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase()),
    );
    buf.push(b'\n');
    buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// Encodes each recorded field.
struct Fields<'a>(&'a mut Vec<u8>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        put_field(self.0, field.name(), value.as_bytes());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        put_field(self.0, field.name(), text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_made_ones_the_journal_accepts() {
        let mut buf = Vec::new();
        put_field(&mut buf, "_peer.pid-x", b"a\nb");
        let mut want = b"PEER_PIDX\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(buf, want);
    }
}
