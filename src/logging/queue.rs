// SPDX-License-Identifier: GPL-2.0-or-later
//! The bounded queue between the threads that log and the thread that
//! writes to the sink: which line is dropped when the sink falls behind.
//!
//! A line is never waited for: when the queue is full it is dropped and
//! counted. Audit lines (who did what to which reservation) are the last to
//! go: the last free places are theirs alone, and when even those are taken
//! an audit line pushes out the oldest other line.

use std::collections::VecDeque;

/// Lines lost since they were last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Every line lost, audit lines included.
    pub lines: u64,
    /// Audit lines among them.
    pub audit: u64,
}

impl Dropped {
    /// Whether nothing was lost.
    pub fn is_none(&self) -> bool {
        self.lines == 0
    }
}

/// The lines waiting for the sink, oldest first.
#[derive(Debug)]
pub struct LineQueue<T> {
    lines: VecDeque<(T, bool)>,
    capacity: usize,
    audit_reserve: usize,
    unreported: Dropped,
    total: u64,
}

impl<T> LineQueue<T> {
    /// A queue of at most `capacity` lines whose last `audit_reserve`
    /// places only audit lines may take.
    pub fn new(capacity: usize, audit_reserve: usize) -> LineQueue<T> {
        LineQueue {
            lines: VecDeque::new(),
            capacity,
            audit_reserve: audit_reserve.min(capacity),
            unreported: Dropped::default(),
            total: 0,
        }
    }

    /// Queues `line`, or drops it (and counts it) when there is no place
    /// for it; returns whether it was queued. An audit line that finds the
    /// queue full takes the place of the oldest other line.
    pub fn push(&mut self, line: T, audit: bool) -> bool {
        let limit = if audit {
            self.capacity
        } else {
            self.capacity - self.audit_reserve
        };
        if self.lines.len() < limit {
            self.lines.push_back((line, audit));
            return true;
        }
        if audit {
            if let Some(oldest) = self.lines.iter().position(|(_, a)| !a) {
                self.lines.remove(oldest);
                self.lost(false);
                self.lines.push_back((line, audit));
                return true;
            }
        }
        self.lost(audit);
        false
    }

    /// The oldest line and whether it is an audit line.
    pub fn pop(&mut self) -> Option<(T, bool)> {
        self.lines.pop_front()
    }

    /// Counts a line lost after it left the queue (the sink refused it).
    pub fn lost(&mut self, audit: bool) {
        self.unreported.lines += 1;
        self.unreported.audit += u64::from(audit);
        self.total += 1;
    }

    /// The lines lost since the last call, to be reported now.
    pub fn take_unreported(&mut self) -> Dropped {
        std::mem::take(&mut self.unreported)
    }

    /// Every line lost since start.
    pub fn total_dropped(&self) -> u64 {
        self.total
    }

    /// Lines waiting.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line waits.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut LineQueue<u32>) -> Vec<(u32, bool)> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn other_lines_stop_short_of_the_audit_reserve_and_are_counted() {
        let mut q = LineQueue::new(8, 3);
        let queued = (0..20).filter(|&n| q.push(n, false)).count();
        assert_eq!(queued, 5);
        assert_eq!(
            q.take_unreported(),
            Dropped {
                lines: 15,
                audit: 0
            }
        );
        assert_eq!(q.take_unreported(), Dropped::default());
        assert_eq!(q.total_dropped(), 15);
        // The oldest lines stay: what was dropped is what came last.
        assert_eq!(
            drain(&mut q),
            (0..5).map(|n| (n, false)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn audit_lines_survive_when_other_lines_are_dropped() {
        let mut q = LineQueue::new(8, 3);
        for n in 0..100 {
            q.push(n, false);
        }
        // The reserve takes three audit lines...
        for n in 1000..1003 {
            assert!(q.push(n, true), "audit line {n} dropped");
        }
        // ...and further ones push out the oldest other lines.
        for n in 1003..1008 {
            assert!(q.push(n, true), "audit line {n} dropped");
        }
        assert_eq!(q.len(), 8);
        let lines = drain(&mut q);
        let audit: Vec<u32> = lines.iter().filter(|l| l.1).map(|l| l.0).collect();
        assert_eq!(audit, (1000..1008).collect::<Vec<_>>());
        assert!(lines.iter().all(|l| l.1), "{lines:?}");
        assert_eq!(
            q.take_unreported(),
            Dropped {
                lines: 100,
                audit: 0
            }
        );
    }

    #[test]
    fn audit_lines_are_dropped_only_when_the_queue_holds_nothing_else() {
        let mut q = LineQueue::new(4, 1);
        q.push(1, false);
        for n in 10..14 {
            assert!(q.push(n, true));
        }
        assert!(!q.push(14, true));
        assert_eq!(q.take_unreported(), Dropped { lines: 2, audit: 1 });
        // Order is kept: audit lines are written in the order they came.
        assert_eq!(
            drain(&mut q),
            vec![(10, true), (11, true), (12, true), (13, true)]
        );
    }

    #[test]
    fn lines_the_sink_refused_count_as_dropped() {
        let mut q: LineQueue<u32> = LineQueue::new(4, 1);
        q.lost(true);
        q.lost(false);
        assert_eq!(q.take_unreported(), Dropped { lines: 2, audit: 1 });
        assert_eq!(q.total_dropped(), 2);
    }
}
