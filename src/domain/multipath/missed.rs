// SPDX-License-Identifier: GPL-2.0-or-later
//! Paths that a command meant for every path could not reach, and what each
//! was left holding, so that the operator is told what to expect when the
//! path comes back.

use crate::domain::service_action::ReservationKey;

/// What a path that was down (failed, offline, or failing its SG_IO) holds
/// after a command that should have changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftWith {
    /// Still registered with `old`, while the map's paths now have `new`
    /// (zero: the map unregistered). multipathd replaces it with the map's
    /// key when the path returns, if it knows the key; an unregister it
    /// does not undo.
    StaleKey {
        /// The key the path still has.
        old: ReservationKey,
        /// The key the map's live paths have now.
        new: ReservationKey,
    },
    /// Kept whatever registration it had (REGISTER AND IGNORE EXISTING KEY
    /// does not say what that was), while the map's paths have `key` (zero:
    /// unregistered).
    Unchanged {
        /// The key the map's live paths have now.
        key: ReservationKey,
    },
    /// Not registered (a fresh registration missed it, or the PREEMPT that
    /// moved the reservation removed it), while the map's paths have `key`.
    Unregistered {
        /// The key the map's live paths have.
        key: ReservationKey,
    },
}

impl LeftWith {
    /// The key the map's live paths have now (zero: none).
    pub fn map_key(&self) -> ReservationKey {
        match *self {
            LeftWith::StaleKey { new, .. } => new,
            LeftWith::Unchanged { key } | LeftWith::Unregistered { key } => key,
        }
    }
}

/// One path that did not get a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissedPath {
    /// The path (index into the map's paths).
    pub path: usize,
    /// What it holds now.
    pub left_with: LeftWith,
}
