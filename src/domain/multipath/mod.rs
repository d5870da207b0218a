// SPDX-License-Identifier: GPL-2.0-or-later
//! Persistent reservations through a dm-multipath map, decided without I/O.
//!
//! A key is registered per I_T nexus, so a map with two paths is two
//! registrations. What goes down which path (in which order, by dm's view
//! of the paths), when to try another path, how to undo a half-done
//! REGISTER, how to release a reservation whose holder path is down, what a
//! path that was down is left with and what to tell multipathd afterwards
//! is decided here, following the behaviour libmpathpersist established
//! (reworked for path failures in multipath-tools 0.13); the adapter only
//! discovers, opens and drives the paths.

pub mod dm_path_state;
pub mod dm_view_cache;
pub mod events;
pub mod holder;
pub mod missed;
pub mod multipathd_reply;
pub mod path;
pub mod plan;
pub mod runner;
pub mod verdict;

use super::sense::SenseCode;

/// The answer when the map has no usable path. The C helper's documents do
/// not fix a code for this libmpathpersist error class: NOT READY tells the
/// initiator to retry later, which is right while paths come back.
pub const NO_ACTIVE_PATH: SenseCode = SenseCode::LUN_NOT_READY;

/// The answer when the multipath logic itself could not finish (a RELEASE
/// that no live path answered): the nexus is as good as lost.
pub const PATH_FAILURE: SenseCode = SenseCode::I_T_NEXUS_LOSS;
