// SPDX-License-Identifier: GPL-2.0-or-later
//! Which commands reach a device: the administrator's device allowlist and
//! the read-only rule, decided on the facts about the client's fd before any
//! ioctl runs. A refused command is answered here and never reaches the
//! executor.

use super::allowlist::DeviceAllowlist;
use super::cdb::PrDirection;
use super::device::{DeviceInfo, OpenMode};
use super::sense::SenseCode;

/// The decision for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screening {
    /// The executor runs it.
    Run,
    /// The device is not on the allowlist: LOGICAL UNIT NOT SUPPORTED, and
    /// an audit line even for PR IN.
    DeviceRefused,
    /// A PR OUT on a read-only fd: INVALID COMMAND OPERATION CODE, the C
    /// helper's answer.
    ReadOnly,
}

impl Screening {
    /// Screens a command going `direction` to the device described by
    /// `info`, whose WWID (when it was looked up) is `wwid`.
    pub fn of(
        devices: &DeviceAllowlist,
        direction: PrDirection,
        info: &DeviceInfo,
        wwid: Option<&str>,
    ) -> Screening {
        if !devices.allows(info.major(), info.minor(), wwid) {
            Screening::DeviceRefused
        } else if direction == PrDirection::Out && info.open_mode == OpenMode::ReadOnly {
            Screening::ReadOnly
        } else {
            Screening::Run
        }
    }

    /// Whether the device's WWID is needed: to check a restricted allowlist,
    /// and for the audit line of every PR OUT.
    pub fn wants_wwid(devices: &DeviceAllowlist, direction: PrDirection) -> bool {
        devices.is_restricted() || direction == PrDirection::Out
    }

    /// The CHECK CONDITION a refused command is answered with; `None` when
    /// it runs.
    pub fn refusal(self) -> Option<SenseCode> {
        match self {
            Screening::Run => None,
            Screening::DeviceRefused => Some(SenseCode::LOGICAL_UNIT_NOT_SUPPORTED),
            Screening::ReadOnly => Some(SenseCode::INVALID_OPCODE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::allowlist::DeviceSelector;
    use crate::domain::device::DeviceKind;

    fn sdb(open_mode: OpenMode) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Block,
            open_mode,
            dev: 0,
            ino: 0,
            rdev: 0x810, // 8:16
        }
    }

    fn only(selector: DeviceSelector) -> DeviceAllowlist {
        DeviceAllowlist(vec![selector])
    }

    #[test]
    fn an_empty_allowlist_runs_everything_but_read_only_pr_out() {
        let any = DeviceAllowlist::default();
        for mode in [OpenMode::ReadOnly, OpenMode::WriteOnly, OpenMode::ReadWrite] {
            assert_eq!(
                Screening::of(&any, PrDirection::In, &sdb(mode), None),
                Screening::Run
            );
        }
        assert_eq!(
            Screening::of(&any, PrDirection::Out, &sdb(OpenMode::ReadOnly), None),
            Screening::ReadOnly
        );
        for mode in [OpenMode::WriteOnly, OpenMode::ReadWrite] {
            assert_eq!(
                Screening::of(&any, PrDirection::Out, &sdb(mode), None),
                Screening::Run
            );
        }
    }

    #[test]
    fn a_device_off_the_allowlist_is_refused_in_both_directions() {
        let other = only(DeviceSelector::MajorMinor(8, 32));
        for dir in [PrDirection::In, PrDirection::Out] {
            let s = Screening::of(&other, dir, &sdb(OpenMode::ReadWrite), Some("naa.1"));
            assert_eq!(s, Screening::DeviceRefused);
        }
        let listed = only(DeviceSelector::MajorMinor(8, 16));
        let s = Screening::of(&listed, PrDirection::Out, &sdb(OpenMode::ReadWrite), None);
        assert_eq!(s, Screening::Run);
    }

    #[test]
    fn the_allowlist_is_checked_before_the_open_mode() {
        let other = only(DeviceSelector::MajorMinor(8, 32));
        let s = Screening::of(&other, PrDirection::Out, &sdb(OpenMode::ReadOnly), None);
        assert_eq!(s, Screening::DeviceRefused);
    }

    #[test]
    fn a_wwid_selector_needs_the_wwid() {
        let by_wwid = only(DeviceSelector::Wwid("naa.600a".into()));
        let info = sdb(OpenMode::ReadWrite);
        let dir = PrDirection::In;
        assert_eq!(
            Screening::of(&by_wwid, dir, &info, Some("NAA.600A")),
            Screening::Run
        );
        assert_eq!(
            Screening::of(&by_wwid, dir, &info, Some("naa.600b")),
            Screening::DeviceRefused
        );
        assert_eq!(
            Screening::of(&by_wwid, dir, &info, None),
            Screening::DeviceRefused
        );
    }

    #[test]
    fn the_wwid_is_wanted_for_a_restricted_allowlist_or_a_pr_out() {
        let any = DeviceAllowlist::default();
        assert!(!Screening::wants_wwid(&any, PrDirection::In));
        assert!(Screening::wants_wwid(&any, PrDirection::Out));
        let listed = only(DeviceSelector::MajorMinor(8, 16));
        assert!(Screening::wants_wwid(&listed, PrDirection::In));
    }

    #[test]
    fn each_refusal_has_its_sense() {
        assert_eq!(Screening::Run.refusal(), None);
        assert_eq!(
            Screening::DeviceRefused.refusal(),
            Some(SenseCode::LOGICAL_UNIT_NOT_SUPPORTED)
        );
        assert_eq!(
            Screening::ReadOnly.refusal(),
            Some(SenseCode::INVALID_OPCODE)
        );
    }
}
