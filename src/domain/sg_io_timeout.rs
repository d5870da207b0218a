// SPDX-License-Identifier: GPL-2.0-or-later
//! How long the kernel waits for a device to answer one command: the
//! `timeout` of `struct sg_io_hdr`, which is in milliseconds and 32 bits
//! wide. Kept in that form from the settings to the ioctl, so it is converted
//! once, where it is read.

use std::time::Duration;

/// An SG_IO timeout in milliseconds, never 0 (the kernel would read 0 as its
/// own default, which is never what someone writing it means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SgIoTimeout(u32);

impl SgIoTimeout {
    /// Generous enough for a busy array, unlike the C helper's 1 ms (which
    /// the kernel then treats as "the default").
    pub const DEFAULT: SgIoTimeout = SgIoTimeout(30_000);

    /// `ms` milliseconds; `None` for 0. More than `sg_io_hdr` holds is cut to
    /// the most it holds (about 49 days).
    pub fn from_millis(ms: u64) -> Option<SgIoTimeout> {
        (ms != 0).then(|| SgIoTimeout(u32::try_from(ms).unwrap_or(u32::MAX)))
    }

    /// As `sg_io_hdr.timeout` takes it.
    pub fn as_millis(self) -> u32 {
        self.0
    }

    /// The same span, for waiting as a device would.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }
}

impl From<Duration> for SgIoTimeout {
    /// Rounded down to milliseconds, at least 1, at most what `sg_io_hdr`
    /// holds.
    fn from(d: Duration) -> SgIoTimeout {
        SgIoTimeout(u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused_and_large_values_are_cut_to_what_sg_io_holds() {
        assert_eq!(SgIoTimeout::from_millis(0), None);
        assert_eq!(SgIoTimeout::from_millis(1).unwrap().as_millis(), 1);
        assert_eq!(
            SgIoTimeout::from_millis(u64::MAX).unwrap().as_millis(),
            u32::MAX
        );
        assert_eq!(SgIoTimeout::DEFAULT.as_duration(), Duration::from_secs(30));
        assert_eq!(SgIoTimeout::from(Duration::from_secs(2)).as_millis(), 2000);
    }
}
