// SPDX-License-Identifier: GPL-2.0-or-later
//! What one path's answer means for routing: done, retry the same path, or
//! try another path.

use crate::domain::framing::PrReply;
use crate::domain::sense::{ScsiStatus, SenseKey};
use crate::domain::sg_io_result::Origin;

/// How many times a path is retried after UNIT ATTENTION or NOT READY "in
/// progress", as libmpathpersist does: up to four tries in all.
pub const MAX_RETRIES: u32 = 3;

/// One path's answer and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathReply {
    /// The answer.
    pub reply: PrReply,
    /// The device, or the path to it.
    pub origin: Origin,
}

impl PathReply {
    /// An answer from the device.
    pub fn device(reply: PrReply) -> PathReply {
        PathReply {
            reply,
            origin: Origin::Device,
        }
    }

    /// A failure of the path.
    pub fn transport(reply: PrReply) -> PathReply {
        PathReply {
            reply,
            origin: Origin::Transport,
        }
    }
}

/// The routing meaning of a [`PathReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// GOOD.
    Good,
    /// The device refused or failed the command: the answer is final.
    Answer,
    /// A condition that clears by itself: send the same command again.
    Retry,
    /// The path failed: another path may succeed.
    Transport,
}

/// Classifies a path's answer.
pub fn verdict(r: &PathReply) -> Verdict {
    if r.origin == Origin::Transport {
        return Verdict::Transport;
    }
    if r.reply.status == ScsiStatus::GOOD {
        return Verdict::Good;
    }
    if r.reply.status != ScsiStatus::CHECK_CONDITION {
        return Verdict::Answer;
    }
    match r.reply.sense.code() {
        Some(c) if c.key == SenseKey::UNIT_ATTENTION => Verdict::Retry,
        // LOGICAL UNIT IS IN PROCESS OF BECOMING READY, OPERATION IN PROGRESS.
        Some(c)
            if c.key == SenseKey::NOT_READY && c.asc == 0x04 && matches!(c.ascq, 0x01 | 0x07) =>
        {
            Verdict::Retry
        }
        _ => Verdict::Answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sense::SenseCode;

    fn cc(key: u8, asc: u8, ascq: u8) -> PathReply {
        PathReply::device(PrReply::check_condition(SenseCode {
            key: SenseKey(key),
            asc,
            ascq,
        }))
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict(&PathReply::device(PrReply::good(vec![]))),
            Verdict::Good
        );
        assert_eq!(
            verdict(&PathReply::device(PrReply::status_only(
                ScsiStatus::RESERVATION_CONFLICT
            ))),
            Verdict::Answer
        );
        assert_eq!(verdict(&cc(0x6, 0x29, 0x00)), Verdict::Retry);
        assert_eq!(verdict(&cc(0x6, 0x2a, 0x03)), Verdict::Retry);
        assert_eq!(verdict(&cc(0x2, 0x04, 0x07)), Verdict::Retry);
        assert_eq!(verdict(&cc(0x2, 0x04, 0x01)), Verdict::Retry);
        assert_eq!(verdict(&cc(0x2, 0x04, 0x02)), Verdict::Answer);
        assert_eq!(verdict(&cc(0x5, 0x24, 0x00)), Verdict::Answer);
        assert_eq!(
            verdict(&PathReply::transport(PrReply::check_condition(
                SenseCode::DEVICE_RESET
            ))),
            Verdict::Transport
        );
        assert_eq!(
            verdict(&PathReply::transport(PrReply::good(vec![]))),
            Verdict::Transport
        );
    }
}
