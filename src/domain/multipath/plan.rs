// SPDX-License-Identifier: GPL-2.0-or-later
//! The routing policy: which paths a command goes to, how each path's copy
//! is written, and how a failed registration is undone.
//!
//! - PR IN, RESERVE, PREEMPT (of another key), CLEAR, REGISTER AND MOVE and
//!   anything unknown: one active path, another only if the path failed.
//! - REGISTER and REGISTER AND IGNORE EXISTING KEY: every active path, since
//!   each path is its own I_T nexus; SPEC_I_PT TransportIDs only on the
//!   first path (they are registered by then); with ALL_TG_PT once per SCSI
//!   host. A failure rolls the paths already done back.
//! - RELEASE: every active path (a non-holder's RELEASE is a GOOD no-op),
//!   then READ RESERVATION to check that the reservation is gone.
//! - PREEMPT of the map's own key: SPC removes the key from every other
//!   nexus, i.e. from the map's other paths, so they are registered again.

use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters, BASIC_PARAM_LEN};
use crate::domain::sense::SenseCode;
use crate::domain::service_action::{PrOutServiceAction, ReservationKey};

use super::events::{events_after, MapEvent};
use super::missed::LeftWith;
use crate::domain::command::PrCommand;

/// Where a command goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One active path; the next one only after a transport failure.
    OnePath,
    /// One path as [`Route::OnePath`]; after GOOD, `reregister` goes to every
    /// other active path.
    OnePathThenReregister {
        /// REGISTER AND IGNORE EXISTING KEY with the map's key.
        reregister: PrCommand,
        /// The map's key.
        key: ReservationKey,
    },
    /// Every active path, in map order, stopping at the first failure.
    EveryPath {
        /// The command for every path after the first (SPEC_I_PT removed).
        rest: PrCommand,
        /// What undoes the command on a path where it succeeded; `None` when
        /// the command changes nothing (same old and new key).
        rollback: Option<PrCommand>,
        /// ALL_TG_PT: one path per SCSI host.
        once_per_host: bool,
        /// What a path that cannot be reached is left with.
        missed: Option<LeftWith>,
    },
    /// Every active path, then a check that no nexus of ours holds it.
    Release {
        /// The key the map is registered with.
        key: ReservationKey,
    },
}

/// The route and what multipathd is told if the command succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where the command goes.
    pub route: Route,
    /// Sent to multipathd after GOOD.
    pub events: Vec<MapEvent>,
}

impl Plan {
    fn one_path() -> Plan {
        Plan {
            route: Route::OnePath,
            events: Vec::new(),
        }
    }
}

/// Plans `command`, or says why it is refused before any path sees it.
pub fn plan(command: &PrCommand) -> Result<Plan, SenseCode> {
    let Some(action) = command.cdb.pr_out_action() else {
        return Ok(Plan::one_path());
    };
    let data = &command.data_out[..];
    // Routing needs the keys: a list too short to hold them is refused, as
    // the C helper refuses it on a multipath device.
    if data.len() < BASIC_PARAM_LEN {
        return Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR);
    }
    let scope_type = command.cdb.bytes()[2];
    match action {
        PrOutServiceAction::RegisterAndMove => {
            RegisterAndMoveParameters::try_from(data).map_err(|e| e.sense())?;
            Ok(Plan::one_path())
        }
        // The device decides about what routing does not know.
        PrOutServiceAction::ReplaceLostReservation | PrOutServiceAction::Unknown(_) => {
            Ok(Plan::one_path())
        }
        _ => {
            let params = PrOutParameters::try_from(data).map_err(|e| e.sense())?;
            let events = events_after(action, &params);
            let route = match action {
                PrOutServiceAction::Register | PrOutServiceAction::RegisterAndIgnoreExistingKey => {
                    register_route(action, scope_type, &params)
                }
                PrOutServiceAction::Release => Route::Release {
                    key: params.reservation_key,
                },
                PrOutServiceAction::Preempt | PrOutServiceAction::PreemptAndAbort
                    if params.reservation_key == params.service_action_key
                        && params.reservation_key.0 != 0 =>
                {
                    let again = PrOutParameters {
                        service_action_key: params.reservation_key,
                        all_tg_pt: params.all_tg_pt,
                        ..Default::default()
                    };
                    Route::OnePathThenReregister {
                        reregister: PrCommand::pr_out(
                            PrOutServiceAction::RegisterAndIgnoreExistingKey,
                            0,
                            &again,
                        ),
                        key: params.reservation_key,
                    }
                }
                _ => Route::OnePath,
            };
            Ok(Plan { route, events })
        }
    }
}

/// REGISTER on every path. The rollback registers the old key again with
/// REGISTER AND IGNORE EXISTING KEY, which needs no knowledge of the new
/// key's state; an old key of 0 (a fresh registration) unregisters.
fn register_route(action: PrOutServiceAction, scope_type: u8, params: &PrOutParameters) -> Route {
    let rest = PrOutParameters {
        transport_ids: None,
        ..params.clone()
    };
    let old = params.reservation_key;
    let rollback = (params.service_action_key != old).then(|| {
        let undo = PrOutParameters {
            reservation_key: params.service_action_key,
            service_action_key: old,
            all_tg_pt: params.all_tg_pt,
            aptpl: false,
            transport_ids: None,
        };
        PrCommand::pr_out(PrOutServiceAction::RegisterAndIgnoreExistingKey, 0, &undo)
    });
    let new = params.service_action_key;
    let missed = match action {
        _ if old == new && action == PrOutServiceAction::Register => None,
        PrOutServiceAction::Register if old.0 != 0 => Some(LeftWith::StaleKey { old, new }),
        PrOutServiceAction::Register if new.0 != 0 => Some(LeftWith::Unregistered { key: new }),
        PrOutServiceAction::Register => None,
        _ => Some(LeftWith::Unchanged { key: new }),
    };
    Route::EveryPath {
        rest: PrCommand::pr_out(action, scope_type, &rest),
        rollback,
        once_per_host: params.all_tg_pt,
        missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cdb::PrCdb;
    use crate::domain::param_list::TransportId;
    use crate::domain::service_action::PrInServiceAction;

    fn out(action: PrOutServiceAction, p: &PrOutParameters) -> PrCommand {
        PrCommand::pr_out(action, 0x05, p)
    }

    fn keys(old: u64, new: u64) -> PrOutParameters {
        PrOutParameters {
            reservation_key: ReservationKey(old),
            service_action_key: ReservationKey(new),
            ..Default::default()
        }
    }

    #[test]
    fn pr_in_goes_to_one_path() {
        for sa in [0, 1, 2, 3] {
            let c = PrCommand {
                cdb: PrCdb::pr_in(PrInServiceAction::from_code(sa), 100),
                data_out: Vec::new(),
            };
            assert_eq!(plan(&c), Ok(Plan::one_path()));
        }
    }

    #[test]
    fn short_lists_are_refused_before_routing() {
        for len in [0u16, 8, 23] {
            let c = PrCommand {
                cdb: PrCdb::pr_out(PrOutServiceAction::Register, 0, len),
                data_out: vec![0; usize::from(len)],
            };
            assert_eq!(plan(&c), Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR));
        }
    }

    #[test]
    fn broken_lists_are_refused() {
        let mut c = out(PrOutServiceAction::Register, &keys(0, 1));
        c.data_out[20] |= 0x08; // SPEC_I_PT without a TransportID length
        assert_eq!(plan(&c), Err(SenseCode::PARAMETER_LIST_LENGTH_ERROR));
        c.data_out.extend_from_slice(&[0, 0, 0, 24]);
        c.data_out.extend_from_slice(&[0x0f; 24]); // unknown protocol
        assert_eq!(plan(&c), Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST));
        let mut c = out(PrOutServiceAction::RegisterAndMove, &keys(1, 2));
        c.data_out[20..24].copy_from_slice(&[0, 0, 0, 24]);
        assert_eq!(plan(&c), Err(SenseCode::INVALID_FIELD_IN_PARAMETER_LIST));
    }

    #[test]
    fn register_everywhere_with_spec_i_pt_only_first_and_a_rollback() {
        let mut p = keys(0xa, 0xb);
        p.transport_ids = Some(vec![TransportId::sas(1), TransportId::sas(2)]);
        p.aptpl = true;
        let c = out(PrOutServiceAction::Register, &p);
        let plan = plan(&c).unwrap();
        let Route::EveryPath {
            rest,
            rollback,
            once_per_host,
            missed,
        } = plan.route
        else {
            panic!("not every path: {plan:?}");
        };
        assert!(!once_per_host);
        assert_eq!(
            missed,
            Some(LeftWith::StaleKey {
                old: ReservationKey(0xa),
                new: ReservationKey(0xb)
            })
        );
        let rest_p = PrOutParameters::try_from(&rest.data_out[..]).unwrap();
        assert_eq!(rest_p.transport_ids, None);
        assert_eq!(rest.cdb.transfer_len(), 24);
        assert_eq!(rest.cdb.pr_out_action(), Some(PrOutServiceAction::Register));
        let rollback = rollback.unwrap();
        assert_eq!(
            rollback.cdb.pr_out_action(),
            Some(PrOutServiceAction::RegisterAndIgnoreExistingKey)
        );
        let undo = PrOutParameters::try_from(&rollback.data_out[..]).unwrap();
        assert_eq!(undo.service_action_key, ReservationKey(0xa));
        assert_eq!(
            plan.events,
            vec![
                MapEvent::SetKey {
                    key: ReservationKey(0xb),
                    aptpl: true
                },
                MapEvent::SetStatus {
                    registered: crate::domain::multipath::events::PathList::NONE
                }
            ]
        );
    }

    #[test]
    fn same_key_register_needs_no_rollback_and_all_tg_pt_goes_once_per_host() {
        let mut p = keys(7, 7);
        p.all_tg_pt = true;
        let Route::EveryPath {
            rollback,
            once_per_host,
            ..
        } = plan(&out(PrOutServiceAction::RegisterAndIgnoreExistingKey, &p))
            .unwrap()
            .route
        else {
            panic!("not every path");
        };
        assert_eq!(rollback, None);
        assert!(once_per_host);
    }

    #[test]
    fn what_a_path_missed_by_a_registration_is_left_with() {
        use PrOutServiceAction::*;
        let missed = |action, old, new| match plan(&out(action, &keys(old, new))).unwrap().route {
            Route::EveryPath { missed, .. } => missed,
            other => panic!("not every path: {other:?}"),
        };
        let k = ReservationKey;
        assert_eq!(
            missed(Register, 1, 2),
            Some(LeftWith::StaleKey {
                old: k(1),
                new: k(2)
            })
        );
        assert_eq!(
            missed(Register, 1, 0),
            Some(LeftWith::StaleKey {
                old: k(1),
                new: k(0)
            })
        );
        assert_eq!(
            missed(Register, 0, 2),
            Some(LeftWith::Unregistered { key: k(2) })
        );
        assert_eq!(missed(Register, 0, 0), None);
        assert_eq!(missed(Register, 3, 3), None);
        assert_eq!(
            missed(RegisterAndIgnoreExistingKey, 9, 3),
            Some(LeftWith::Unchanged { key: k(3) })
        );
    }

    #[test]
    fn release_is_checked_with_the_key() {
        let plan = plan(&out(PrOutServiceAction::Release, &keys(9, 0))).unwrap();
        assert_eq!(
            plan.route,
            Route::Release {
                key: ReservationKey(9)
            }
        );
        assert_eq!(plan.events, vec![MapEvent::UnsetHold]);
    }

    #[test]
    fn preempting_our_own_key_registers_the_other_paths_again() {
        let Route::OnePathThenReregister { reregister, .. } =
            plan(&out(PrOutServiceAction::Preempt, &keys(4, 4)))
                .unwrap()
                .route
        else {
            panic!("no re-registration");
        };
        let p = PrOutParameters::try_from(&reregister.data_out[..]).unwrap();
        assert_eq!(p.service_action_key, ReservationKey(4));
        assert_eq!(
            plan(&out(PrOutServiceAction::PreemptAndAbort, &keys(4, 5)))
                .unwrap()
                .route,
            Route::OnePath
        );
    }

    #[test]
    fn single_path_actions() {
        use PrOutServiceAction::*;
        for a in [
            Reserve,
            Clear,
            Preempt,
            ReplaceLostReservation,
            Unknown(0x1f),
        ] {
            assert_eq!(plan(&out(a, &keys(1, 2))).unwrap().route, Route::OnePath);
        }
        let m = RegisterAndMoveParameters {
            reservation_key: ReservationKey(1),
            service_action_key: ReservationKey(2),
            unreg: false,
            aptpl: false,
            relative_target_port: 1,
            transport_id: TransportId::sas(9),
        };
        let data = m.encode();
        let c = PrCommand {
            cdb: PrCdb::pr_out(RegisterAndMove, 0x01, data.len() as u16),
            data_out: data,
        };
        assert_eq!(plan(&c), Ok(Plan::one_path()));
    }
}
