// SPDX-License-Identifier: GPL-2.0-or-later
//! An in-memory SPC-4 persistent reservation model of one logical unit.
//!
//! It behaves like the device server of a Linux LIO target
//! (`drivers/target/target_core_pr.c`): registrations per I_T nexus,
//! PRGENERATION, the six reservation types, every PR OUT service action but
//! REPLACE LOST RESERVATION, the four PR IN reports, RESERVATION CONFLICT and
//! ILLEGAL REQUEST where a target gives them, and unit attentions for the
//! nexuses that lose something.
//!
//! # Model
//! - An I_T nexus is a [`NexusId`]: a TransportID plus a relative target port
//!   identifier, both chosen by the caller. TransportIDs in a parameter list
//!   (SPEC_I_PT, REGISTER AND MOVE) name nexuses at the sending nexus's target
//!   port and must use its transport protocol.
//! - PRGENERATION wraps at 2^32 and is bumped once by every successful
//!   REGISTER and REGISTER AND IGNORE EXISTING KEY (including unregistering),
//!   CLEAR, PREEMPT, PREEMPT AND ABORT and REGISTER AND MOVE; never by RESERVE,
//!   RELEASE, PR IN or a refused command. A REGISTER of key zero from an
//!   unregistered nexus changes nothing and does not bump it.
//! - Holders: the reserving nexus; for the All Registrants types every
//!   registered nexus, and the reservation lasts until the last one
//!   unregisters. Unregistering the holder of another type releases the
//!   reservation (with RESERVATIONS RELEASED to the other registrants for the
//!   Registrants Only types).
//! - Unit attentions (RESERVATIONS PREEMPTED, REGISTRATIONS PREEMPTED,
//!   RESERVATIONS RELEASED) are queued per nexus and reported, one per
//!   command, on that nexus's next PR IN or PR OUT, which is then not carried
//!   out: LIO reports them on every command but INQUIRY, REPORT LUNS and
//!   REQUEST SENSE.
//! - APTPL is recorded from each REGISTER (and REGISTER AND MOVE) and
//!   reported as PTPL_A; CLEAR resets it. Nothing is written to disk.
//! - PREEMPT AND ABORT acts as PREEMPT: there is no task set to abort.
//!
//! # Where the model differs from LIO
//! As read in the LIO sources; LIO changed over kernel releases, and where it
//! disagrees with SPC-4 the model follows SPC-4.
//! - RELEASE whose TYPE or SCOPE differs from the reservation's: ILLEGAL
//!   REQUEST / INVALID RELEASE OF PERSISTENT RESERVATION (SPC-4); LIO answers
//!   RESERVATION CONFLICT.
//! - SCOPE other than LU_SCOPE on RESERVE and PREEMPT: INVALID FIELD IN CDB;
//!   LIO answers INVALID FIELD IN PARAMETER LIST.
//! - RELEASE checks the RESERVATION KEY before anything else; LIO answers GOOD
//!   to a registered non-holder with a wrong key.
//! - REGISTER AND IGNORE EXISTING KEY from an unregistered nexus ignores the
//!   RESERVATION KEY field (SPC-4); LIO answers RESERVATION CONFLICT when it
//!   is not zero.
//! - Unregistering bumps PRGENERATION (SPC-4); LIO does not. A SPEC_I_PT
//!   REGISTER bumps it once; LIO bumps it once per registration made.
//! - REGISTER by a registered ALL_TG_PT nexus without ALL_TG_PT is accepted
//!   (SPC-4 ignores the bit then); LIO answers INVALID FIELD IN CDB.
//! - REGISTER AND MOVE to an already registered nexus gives it the service
//!   action key (SPC-4); LIO keeps its old key.
//! - PREEMPT with key zero of an All Registrants reservation held by the
//!   preempting nexus alone succeeds; LIO answers RESERVATION CONFLICT because
//!   it removed no registration.
//! - READ FULL STATUS cut short by the ALLOCATION LENGTH keeps the ADDITIONAL
//!   LENGTH of the whole list (SPC-4); LIO counts only the descriptors that
//!   fit and sends no partial descriptor (seen on Linux 6.1).
//! - PR IN accepts any ALLOCATION LENGTH (SPC-4: zero is not an error); LIO
//!   answers INVALID FIELD IN CDB below 8 (below 6 for REPORT CAPABILITIES).
//! - A PR OUT parameter list of the wrong length is PARAMETER LIST LENGTH
//!   ERROR (SPC-4, newer LIO); older LIO answers INVALID FIELD IN PARAMETER
//!   LIST.
//! - No SPC-2 RESERVE/RELEASE, no ALUA, one target port.
//!
//! # Layout
//! - [`nexus`]: the I_T nexus identity, [`NexusId`].
//! - [`logical_unit`]: the state and its invariants.
//! - [`pr_out`], [`pr_in`]: the service actions and the reports.
//! - [`medium_access`]: which nexus may read or write under which reservation.
//! - [`unit_attention`]: the per-nexus unit attention queues.
//! - [`refusal`]: RESERVATION CONFLICT and CHECK CONDITION answers.
//! - [`command`]: CDB plus parameter list to reply.

pub mod command;
pub mod initiator_identity;
pub mod logical_unit;
pub mod medium_access;
pub mod nexus;
pub mod pr_in;
pub mod pr_out;
pub mod refusal;
pub mod unit_attention;

pub use initiator_identity::InitiatorIdentity;
pub use logical_unit::{Holder, LogicalUnit, PersistentReservation, Registration};
pub use medium_access::{AccessDecision, MediumAccess};
pub use nexus::NexusId;
pub use pr_out::LU_SCOPE;
pub use refusal::Refusal;
pub use unit_attention::UnitAttentions;

#[cfg(test)]
mod tests;
