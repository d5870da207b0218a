// SPDX-License-Identifier: GPL-2.0-or-later
//! The paths of a map as routing sees them: their state, dm's view of them,
//! the SCSI host (initiator port) they leave from and their device number.

use std::fmt;

/// Whether a path can carry commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Usable: commands are sent down it.
    Active,
    /// Failed, offline or not openable: skipped.
    Failed,
}

/// dm-multipath's own view of a path (the table status of the map), as
/// multipathd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmState {
    /// dm sends I/O down it.
    Active,
    /// dm failed it (I/O errors, or multipathd's checker): it is tried only
    /// after every path dm still uses, since it is likely down even while
    /// its SCSI device state says running.
    Failed,
    /// Not known (multipathd not reachable): only the SCSI state counts.
    Unknown,
}

/// A path's block device number, which multipathd names a path by in a
/// `pathlist` (its `dev_t` field, written `major:minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNumber {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for DevNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One path of a map, in the order the map lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathView {
    /// Usable or not.
    pub state: PathState,
    /// dm's view of it.
    pub dm: DmState,
    /// SCSI host number, when known. Paths on the same host share an
    /// initiator port, which matters for ALL_TG_PT registrations.
    pub host: Option<u32>,
    /// Its block device number, when known: multipathd is told the paths a
    /// REGISTER put the key on by these.
    pub dev: Option<DevNumber>,
}

impl PathView {
    /// An active path on `host`.
    pub fn active(host: u32) -> PathView {
        PathView {
            state: PathState::Active,
            dm: DmState::Unknown,
            host: Some(host),
            dev: None,
        }
    }

    /// A failed path on `host`.
    pub fn failed(host: u32) -> PathView {
        PathView {
            state: PathState::Failed,
            dm: DmState::Unknown,
            host: Some(host),
            dev: None,
        }
    }

    /// The same path with dm's view of it.
    pub fn with_dm(self, dm: DmState) -> PathView {
        PathView { dm, ..self }
    }

    /// The same path with its device number.
    pub fn with_dev(self, major: u32, minor: u32) -> PathView {
        PathView {
            dev: Some(DevNumber { major, minor }),
            ..self
        }
    }
}

/// Indices of the active paths in the order they are tried: map order, but
/// the paths dm has failed after all the others.
pub fn active_paths(paths: &[PathView]) -> Vec<usize> {
    let usable = |i: &usize| paths[*i].state == PathState::Active;
    let dm_failed = |i: &usize| paths[*i].dm == DmState::Failed;
    let (mut first, last): (Vec<usize>, Vec<usize>) =
        (0..paths.len()).filter(usable).partition(|i| !dm_failed(i));
    first.extend(last);
    first
}

/// Keeps the first of `indices` per SCSI host. An ALL_TG_PT registration
/// covers every target port of the initiator port it came from, so sending
/// it again from the same host would find the nexus already registered.
/// Paths with an unknown host are all kept.
pub fn one_per_host(paths: &[PathView], indices: &[usize]) -> Vec<usize> {
    let mut seen = Vec::new();
    indices
        .iter()
        .copied()
        .filter(|&i| match paths.get(i).and_then(|p| p.host) {
            Some(host) if seen.contains(&host) => false,
            Some(host) => {
                seen.push(host);
                true
            }
            None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_paths_are_used() {
        let paths = [
            PathView::failed(0),
            PathView::active(1),
            PathView::failed(2),
            PathView::active(3),
        ];
        assert_eq!(active_paths(&paths), vec![1, 3]);
        assert!(active_paths(&[PathView::failed(0)]).is_empty());
    }

    #[test]
    fn paths_dm_failed_are_tried_last_and_dm_never_revives_a_dead_path() {
        let paths = [
            PathView::active(0).with_dm(DmState::Failed),
            PathView::active(1).with_dm(DmState::Active),
            PathView::failed(2).with_dm(DmState::Active),
            PathView::active(3).with_dm(DmState::Failed),
            PathView::active(4),
        ];
        assert_eq!(active_paths(&paths), vec![1, 4, 0, 3]);
    }

    #[test]
    fn one_path_per_host_keeps_the_first_and_unknown_hosts() {
        let unknown = PathView {
            state: PathState::Active,
            dm: DmState::Unknown,
            host: None,
            dev: None,
        };
        let paths = [
            PathView::active(1),
            PathView::active(1),
            PathView::active(2),
            unknown,
            unknown,
        ];
        assert_eq!(one_per_host(&paths, &[0, 1, 2, 3, 4]), vec![0, 2, 3, 4]);
        assert_eq!(one_per_host(&paths, &[1, 2]), vec![1, 2]);
    }
}
