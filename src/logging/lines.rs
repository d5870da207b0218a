// SPDX-License-Identifier: GPL-2.0-or-later
//! The text and JSON layers' output: each formatted line is queued for the
//! writer thread with its severity and whether it is an audit line, instead
//! of being written by the thread that logged it.

use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use super::writer::{Line, LogWriter};
use super::{severity, AUDIT_TARGET};

/// Hands the formatting layer one [`QueuedLine`] per event.
#[derive(Debug, Clone)]
pub struct QueuedLines(pub LogWriter);

/// One formatted line, queued when dropped.
#[derive(Debug)]
pub struct QueuedLine<'a> {
    writer: &'a LogWriter,
    severity: u8,
    audit: bool,
    buf: Vec<u8>,
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = Line {
                bytes: std::mem::take(&mut self.buf),
                severity: self.severity,
            };
            self.writer.push(line, self.audit);
        }
    }
}

impl<'a> MakeWriter<'a> for QueuedLines {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> QueuedLine<'a> {
        QueuedLine {
            writer: &self.0,
            severity: severity(&Level::INFO),
            audit: false,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> QueuedLine<'a> {
        QueuedLine {
            writer: &self.0,
            severity: severity(meta.level()),
            audit: meta.target() == AUDIT_TARGET,
            buf: Vec::new(),
        }
    }
}
