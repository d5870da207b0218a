// SPDX-License-Identifier: GPL-2.0-or-later
//! Standard error or a log file as the sink: each line written whole, by
//! the writer thread, which alone waits if a pipe reader falls behind.

use std::io::{self, Write};

use super::writer::{Line, Sink};

/// A byte stream the log is written to.
#[derive(Debug)]
pub struct Stream<W>(pub W);

impl<W: Write + Send> Sink for Stream<W> {
    fn write(&mut self, line: &Line) -> io::Result<()> {
        self.0.write_all(&line.bytes)?;
        self.0.flush()
    }
}
