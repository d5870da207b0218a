//! The paths of a map as routing sees them: their state and the SCSI host
//! (initiator port) they leave from.

/// Whether a path can carry commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Usable: commands are sent down it.
    Active,
    /// Failed, offline or not openable: skipped.
    Failed,
}

/// One path of a map, in the order the map lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathView {
    /// Usable or not.
    pub state: PathState,
    /// SCSI host number, when known. Paths on the same host share an
    /// initiator port, which matters for ALL_TG_PT registrations.
    pub host: Option<u32>,
}

impl PathView {
    /// An active path on `host`.
    pub fn active(host: u32) -> PathView {
        PathView {
            state: PathState::Active,
            host: Some(host),
        }
    }

    /// A failed path on `host`.
    pub fn failed(host: u32) -> PathView {
        PathView {
            state: PathState::Failed,
            host: Some(host),
        }
    }
}

/// Indices of the active paths, in map order.
pub fn active_paths(paths: &[PathView]) -> Vec<usize> {
    paths
        .iter()
        .enumerate()
        .filter(|(_, p)| p.state == PathState::Active)
        .map(|(i, _)| i)
        .collect()
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
    fn one_path_per_host_keeps_the_first_and_unknown_hosts() {
        let unknown = PathView {
            state: PathState::Active,
            host: None,
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
