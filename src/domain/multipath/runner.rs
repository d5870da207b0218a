// SPDX-License-Identifier: GPL-2.0-or-later
//! Carries out a [`plan`] over a set of paths through a
//! [`PathRunner`], synchronously: retries, failover, rollback and the merge
//! of the paths' answers into one reply all happen here, so all of it is
//! tested with a scripted runner.

use crate::domain::framing::PrReply;
use crate::domain::param_list::PrOutParameters;
use crate::domain::pr_in_data::{ReadFullStatus, ReadReservation, Reservation};
use crate::domain::sense::{ScsiStatus, SenseCode};
use crate::domain::service_action::{PrOutServiceAction, ReservationKey};

use super::events::{MapEvent, PathList};
use super::holder::{HolderChange, OwnHolder};
use super::missed::{LeftWith, MissedPath};
use super::path::{active_paths, one_per_host, DmState, PathView};
use super::plan::{plan, Route};
use super::verdict::{verdict, PathReply, Verdict, MAX_RETRIES};
use super::{NO_ACTIVE_PATH, PATH_FAILURE};
use crate::domain::command::PrCommand;

/// Sends one command down one path and reports the answer. Implemented by
/// the adapter with SG_IO, and by tests with a script.
pub trait PathRunner {
    /// Runs `command` on path `path` (an index into the map's paths).
    fn run(&mut self, path: usize, command: &PrCommand) -> PathReply;
}

/// The merged answer for the client, and what to tell multipathd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reply for the client.
    pub reply: PrReply,
    /// Events for multipathd; empty unless the reply is GOOD. A
    /// `setprstatus` lists the paths that hold the key now (those with a
    /// known device number), never one that failed or was skipped.
    pub events: Vec<MapEvent>,
    /// Paths the command should have changed but could not reach, with what
    /// each still holds; empty unless the reply is GOOD.
    pub missed: Vec<MissedPath>,
    /// What became of the record of the nexus holding the map's reservation.
    pub holder: HolderChange,
    /// The PR OUT commands routing sent on its own (beyond the client's
    /// command on each path), each to be audited.
    pub own_commands: Vec<OwnCommand>,
    /// A reservation held with the map's key that the command would have
    /// moved or followed, left where it is because nothing shows that its
    /// holder is a nexus of this host.
    pub left_in_place: Option<Reservation>,
}

/// A PR OUT the helper sent on its own, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCommand {
    /// The path it went down (an index into the map's paths).
    pub path: usize,
    /// The command.
    pub command: PrCommand,
    /// Why it was sent.
    pub reason: OwnReason,
    /// The path's answer.
    pub reply: PrReply,
}

/// Why routing sent a PR OUT of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnReason {
    /// The map's other paths lost the key to a PREEMPT of the map's own key.
    ReregisterAfterPreempt,
    /// A REGISTER failed on a later path: the paths done are put back.
    Rollback,
    /// A key change missed the path that holds the map's reservation: the
    /// reservation follows the new key to a live path.
    FollowKeyChange,
    /// A RELEASE cannot reach the path that holds the map's reservation:
    /// the reservation is moved to a live path first.
    MoveToRelease,
    /// The guest's RELEASE, sent again on the path the reservation moved to.
    ReleaseMoved,
    /// The map's other live paths lost the key to that move.
    ReregisterAfterMove,
}

impl std::fmt::Display for OwnReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OwnReason::ReregisterAfterPreempt => {
                "the map's other paths lost the key to the PREEMPT of the map's own key"
            }
            OwnReason::Rollback => "a later path refused the REGISTER: undoing it on this path",
            OwnReason::FollowKeyChange => {
                "the key change missed this host's holder path: the reservation follows the new key"
            }
            OwnReason::MoveToRelease => {
                "this host's holder path cannot be reached: moving the reservation to release it"
            }
            OwnReason::ReleaseMoved => "releasing the reservation on the path it was moved to",
            OwnReason::ReregisterAfterMove => "the map's other paths lost the key to the move",
        })
    }
}

/// Passes commands to the adapter's runner and keeps the PR OUT commands
/// sent while a reason of routing's own is set.
struct Recorder<'r, R> {
    inner: &'r mut R,
    reason: Option<OwnReason>,
    sent: Vec<OwnCommand>,
}

impl<R: PathRunner> PathRunner for Recorder<'_, R> {
    fn run(&mut self, path: usize, command: &PrCommand) -> PathReply {
        let reply = self.inner.run(path, command);
        if let Some(reason) = self.reason {
            if command.cdb.pr_out_action().is_some() {
                self.sent.push(OwnCommand {
                    path,
                    command: command.clone(),
                    reason,
                    reply: reply.reply.clone(),
                });
            }
        }
        reply
    }
}

impl<R: PathRunner> Recorder<'_, R> {
    /// Runs `f` with the PR OUT commands it sends recorded as `reason`.
    fn own<T>(&mut self, reason: OwnReason, f: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.reason.replace(reason);
        let result = f(self);
        self.reason = before;
        result
    }
}

/// Routes `command` over the paths of a map (`paths`, in dm's order) and
/// merges their answers. `own` is the nexus through which the helper took
/// the map's reservation, if it did: only a reservation that nexus still
/// holds is moved or followed when its path cannot be reached.
pub fn route<R: PathRunner>(
    runner: &mut R,
    paths: &[PathView],
    command: &PrCommand,
    own: Option<&OwnHolder>,
) -> Outcome {
    let mut recorder = Recorder {
        inner: runner,
        reason: None,
        sent: Vec::new(),
    };
    let mut outcome = route_recorded(&mut recorder, paths, command, own);
    outcome.own_commands = recorder.sent;
    outcome
}

fn route_recorded<R: PathRunner>(
    runner: &mut Recorder<'_, R>,
    paths: &[PathView],
    command: &PrCommand,
    own: Option<&OwnHolder>,
) -> Outcome {
    let plan = match plan(command) {
        Ok(plan) => plan,
        Err(code) => return failed(PrReply::check_condition(code)),
    };
    let active = active_paths(paths);
    if active.is_empty() {
        return failed(PrReply::check_condition(NO_ACTIVE_PATH));
    }
    let mut dead: Vec<usize> = (0..paths.len()).filter(|p| !active.contains(p)).collect();
    let mut unsettled = Vec::new();
    let mut holder = HolderChange::Unchanged;
    let mut left_in_place = None;
    let mut registered = Vec::new();
    let action = command.cdb.pr_out_action();
    let (reply, left_with) = match &plan.route {
        Route::OnePath => {
            let takes = takes_reservation(runner, &active, command);
            let (first, used) = one_path(runner, &active, command);
            if let Some(used) = used.filter(|_| verdict(&first) == Verdict::Good) {
                holder = match (action, takes) {
                    (_, Some(key)) => holder_after(runner, used, key),
                    (
                        Some(
                            PrOutServiceAction::Clear
                            | PrOutServiceAction::RegisterAndMove
                            | PrOutServiceAction::ReplaceLostReservation,
                        ),
                        None,
                    ) => HolderChange::Forgotten,
                    _ => HolderChange::Unchanged,
                };
            }
            (first.reply, None)
        }
        Route::OnePathThenReregister { reregister, key } => {
            let (first, used) = one_path(runner, &active, command);
            let reply = match used {
                Some(used) if verdict(&first) == Verdict::Good => {
                    // RK = SARK: the reservation, if held with the map's key,
                    // is now this path's.
                    holder = holder_after(runner, used, *key);
                    let others: Vec<usize> =
                        active.iter().copied().filter(|&p| p != used).collect();
                    let done = runner.own(OwnReason::ReregisterAfterPreempt, |r| {
                        every_live_path(r, paths, &others, reregister, reregister)
                    });
                    dead.extend(done.unreachable);
                    done.failure.unwrap_or(first.reply)
                }
                _ => first.reply,
            };
            (reply, Some(LeftWith::Unregistered { key: *key }))
        }
        Route::EveryPath {
            rest,
            rollback,
            once_per_host: once,
            missed,
        } => {
            let targets = if *once {
                // One path per host covers the host's other paths too: only
                // hosts with no live path at all count as missed.
                let all = one_per_host(paths, &(0..paths.len()).collect::<Vec<_>>());
                dead.retain(|p| all.contains(p) && !same_host_live(paths, &active, *p));
                one_per_host(paths, &active)
            } else {
                active.clone()
            };
            let done = every_live_path(runner, paths, &targets, command, rest);
            let mut left_with = *missed;
            let reply = match done.failure {
                None if done.succeeded.is_empty() => done
                    .last_transport
                    .unwrap_or_else(|| PrReply::check_condition(NO_ACTIVE_PATH)),
                None => {
                    dead.extend(done.unreachable);
                    unsettled = done.unsettled;
                    registered = reached(paths, &active, &done.succeeded, *once);
                    // A key change that missed a path: if that path holds
                    // the reservation, it still holds it with the old key.
                    if let Some(LeftWith::StaleKey { old, new }) = left_with {
                        if new.0 == 0 {
                            holder = HolderChange::Forgotten;
                        } else if !dead.is_empty() {
                            match follow_key_change(runner, &done.succeeded, old, new, own) {
                                Followed::Moved(change) => {
                                    holder = change;
                                    left_with = Some(LeftWith::Unregistered { key: new });
                                }
                                Followed::NotOurs(held) => {
                                    holder = HolderChange::Forgotten;
                                    left_in_place = Some(held);
                                }
                                Followed::Nothing => {}
                            }
                        }
                    }
                    PrReply::good(Vec::new())
                }
                Some(failure) => {
                    if let Some(undo) = rollback {
                        runner.own(OwnReason::Rollback, |r| {
                            for &p in &done.succeeded {
                                // Best effort: the client gets the first failure.
                                let _ = with_retries(r, p, undo);
                            }
                        });
                    }
                    failure
                }
            };
            (reply, left_with)
        }
        Route::Release { key } => {
            let released = release(runner, &active, command, *key, own);
            dead.extend(released.unreachable);
            let left = released
                .moved
                .then_some(LeftWith::Unregistered { key: *key });
            holder = released.holder;
            left_in_place = released.left_in_place;
            (released.reply, left)
        }
    };
    if reply.status != ScsiStatus::GOOD {
        return failed(reply);
    }
    dead.sort_unstable();
    dead.dedup();
    let missed = match left_with {
        Some(left_with) => {
            let kept = LeftWith::Unchanged {
                key: left_with.map_key(),
            };
            let mut missed: Vec<MissedPath> = dead
                .into_iter()
                .map(|path| MissedPath { path, left_with })
                .chain(unsettled.into_iter().map(|path| MissedPath {
                    path,
                    left_with: kept,
                }))
                .collect();
            missed.sort_by_key(|m| m.path);
            missed
        }
        None => Vec::new(),
    };
    // The paths that hold the key now, by device number, for multipathd.
    let registered = PathList::new(registered.iter().filter_map(|&p| paths.get(p)?.dev));
    Outcome {
        reply,
        events: plan
            .events
            .into_iter()
            .map(|e| e.with_registered(&registered))
            .collect(),
        missed,
        holder,
        own_commands: Vec::new(),
        left_in_place,
    }
}

fn failed(reply: PrReply) -> Outcome {
    Outcome {
        reply,
        events: Vec::new(),
        missed: Vec::new(),
        holder: HolderChange::Unchanged,
        own_commands: Vec::new(),
        left_in_place: None,
    }
}

/// For a RESERVE, or a PREEMPT that will take the reservation, the key this
/// host will hold it with; `None` for anything else. A PREEMPT takes the
/// reservation only from a holder registered with its SERVICE ACTION
/// RESERVATION KEY, so it is checked with READ RESERVATION first (the
/// holder could be another host that shares the map's key).
fn takes_reservation<R: PathRunner>(
    runner: &mut R,
    live: &[usize],
    command: &PrCommand,
) -> Option<ReservationKey> {
    let params = PrOutParameters::try_from(&command.data_out[..]).ok()?;
    match command.cdb.pr_out_action()? {
        PrOutServiceAction::Reserve => Some(params.reservation_key),
        PrOutServiceAction::Preempt | PrOutServiceAction::PreemptAndAbort => {
            match held_with(runner, live, params.service_action_key) {
                HeldWith::Yes(_) => Some(params.reservation_key),
                HeldWith::Unknown | HeldWith::No => None,
            }
        }
        _ => None,
    }
}

/// What READ RESERVATION shows about a reservation held with one key: the
/// check a PREEMPT, a key change and a RELEASE through the map each make
/// before acting on the reservation.
enum HeldWith {
    /// No live path answered READ RESERVATION: nothing is known.
    Unknown,
    /// No reservation, one held with another key, or an answer that does
    /// not decode.
    No,
    /// Held with the key, as shown.
    Yes(Reservation),
}

/// READ RESERVATION on the first of the `live` paths that answers it, and
/// whether the reservation it shows is held with `key`.
fn held_with<R: PathRunner>(runner: &mut R, live: &[usize], key: ReservationKey) -> HeldWith {
    let (check, _) = one_path(runner, live, &PrCommand::read_reservation());
    if check.reply.status != ScsiStatus::GOOD {
        return HeldWith::Unknown;
    }
    match ReadReservation::decode(&check.reply.payload)
        .ok()
        .and_then(|d| d.value.reservation)
    {
        Some(held) if held.key == key => HeldWith::Yes(held),
        _ => HeldWith::No,
    }
}

/// READ FULL STATUS on the first of `paths` that answers it.
fn read_full_status<R: PathRunner>(runner: &mut R, paths: &[usize]) -> Option<ReadFullStatus> {
    let (status, _) = one_path(runner, paths, &PrCommand::read_full_status());
    (status.reply.status == ScsiStatus::GOOD)
        .then(|| ReadFullStatus::decode(&status.reply.payload).ok())
        .flatten()
        .map(|d| d.value)
}

/// The record after `path` took the reservation with `key`: READ FULL
/// STATUS on that path names its nexus as the holder. Forgotten when it
/// cannot be read or shows no single holder with `key`: the helper then
/// never moves that reservation.
fn holder_after<R: PathRunner>(runner: &mut R, path: usize, key: ReservationKey) -> HolderChange {
    read_full_status(runner, &[path])
        .and_then(|status| OwnHolder::from_full_status(&status, key))
        .map_or(HolderChange::Forgotten, HolderChange::Took)
}

/// Whether READ FULL STATUS, read on a live path, shows `own` (the nexus
/// the helper took the map's reservation through) still holding it: the
/// positive evidence a move needs.
fn held_by_own<R: PathRunner>(runner: &mut R, live: &[usize], own: Option<&OwnHolder>) -> bool {
    let Some(own) = own else {
        return false;
    };
    read_full_status(runner, live).is_some_and(|status| own.holds_in(&status))
}

/// The live paths a registration that succeeded on `succeeded` reached:
/// those paths, and with ALL_TG_PT (`once_per_host`) every live path that
/// leaves from the same SCSI host (the device registered the initiator port
/// on every target port).
fn reached(
    paths: &[PathView],
    active: &[usize],
    succeeded: &[usize],
    once_per_host: bool,
) -> Vec<usize> {
    if !once_per_host {
        return succeeded.to_vec();
    }
    active
        .iter()
        .copied()
        .filter(|&p| {
            succeeded.contains(&p) || {
                let host = paths.get(p).and_then(|v| v.host);
                host.is_some()
                    && succeeded
                        .iter()
                        .any(|&s| paths.get(s).and_then(|v| v.host) == host)
            }
        })
        .collect()
}

/// Whether a live path leaves from the same SCSI host as `path`.
fn same_host_live(paths: &[PathView], active: &[usize], path: usize) -> bool {
    let host = paths.get(path).and_then(|p| p.host);
    host.is_some()
        && active
            .iter()
            .any(|&a| paths.get(a).and_then(|p| p.host) == host)
}

/// Runs `command` on `path`, again while the device says a condition will
/// clear, at most [`MAX_RETRIES`] more times.
fn with_retries<R: PathRunner>(runner: &mut R, path: usize, command: &PrCommand) -> PathReply {
    let mut tries = 0;
    loop {
        let reply = runner.run(path, command);
        if verdict(&reply) != Verdict::Retry || tries == MAX_RETRIES {
            return reply;
        }
        tries += 1;
    }
}

/// The first of `paths` whose answer is not a transport failure, and which
/// path gave it; with every path failed, the last failure and `None`.
fn one_path<R: PathRunner>(
    runner: &mut R,
    paths: &[usize],
    command: &PrCommand,
) -> (PathReply, Option<usize>) {
    let mut last = PathReply::transport(PrReply::check_condition(NO_ACTIVE_PATH));
    for &p in paths {
        let reply = with_retries(runner, p, command);
        if verdict(&reply) != Verdict::Transport {
            return (reply, Some(p));
        }
        last = reply;
    }
    (last, None)
}

/// What happened to a command sent down every live path.
#[derive(Debug, Default)]
struct EveryPath {
    /// The paths that answered GOOD.
    succeeded: Vec<usize>,
    /// The paths that failed as paths (not the device's answer).
    unreachable: Vec<usize>,
    /// The last of those failures.
    last_transport: Option<PrReply>,
    /// Paths dm has failed whose device refused after another path had
    /// accepted: stale (their registration is not the map's), so they keep
    /// it rather than fail the map's command.
    unsettled: Vec<usize>,
    /// The device's first answer that is not GOOD; the paths after it were
    /// not tried.
    failure: Option<PrReply>,
}

/// `first` on paths until one succeeds, `rest` on the paths after it. A
/// path that fails as a path is skipped (it is down: the device never saw
/// the command there); a device's refusal stops the walk, unless it comes
/// from a path dm has failed after another path accepted the command: such
/// a path may have missed an earlier change while it was down (multipathd
/// registers the map's key on it when it reinstates it), and its stale
/// registration must not fail the map.
fn every_live_path<R: PathRunner>(
    runner: &mut R,
    views: &[PathView],
    paths: &[usize],
    first: &PrCommand,
    rest: &PrCommand,
) -> EveryPath {
    let mut done = EveryPath::default();
    for &p in paths {
        let command = if done.succeeded.is_empty() {
            first
        } else {
            rest
        };
        let reply = with_retries(runner, p, command);
        match verdict(&reply) {
            Verdict::Good => done.succeeded.push(p),
            Verdict::Transport => {
                done.unreachable.push(p);
                done.last_transport = Some(reply.reply);
            }
            _ if !done.succeeded.is_empty()
                && views.get(p).is_some_and(|v| v.dm == DmState::Failed) =>
            {
                done.unsettled.push(p);
            }
            _ => {
                done.failure = Some(reply.reply);
                return done;
            }
        }
    }
    done
}

/// What became of the reservation after a key change that missed a path.
enum Followed {
    /// Moved to a live path with the new key (and what the record became).
    Moved(HolderChange),
    /// Held with the old key by a nexus not shown to be this host's: left.
    NotOurs(Reservation),
    /// Not held with the old key, or the move failed: nothing to do.
    Nothing,
}

/// After a key change from `old` to `new` that a path missed: when the
/// reservation is still held with `old` by the nexus the helper took it
/// through (`own`), that holder is a path that did not get the new key, so
/// the reservation is moved to a live path with PREEMPT (RK = `new`, SARK =
/// `old`, the holder's scope and type), which also removes `old` from the
/// paths that missed the change. A holder with `old` that is not shown to be
/// this host's (another host may share the key) keeps its reservation. A
/// failure leaves the key change done and the reservation where it was.
fn follow_key_change<R: PathRunner>(
    runner: &mut Recorder<'_, R>,
    live: &[usize],
    old: ReservationKey,
    new: ReservationKey,
    own: Option<&OwnHolder>,
) -> Followed {
    let HeldWith::Yes(held) = held_with(runner, live, old) else {
        return Followed::Nothing;
    };
    if !held_by_own(runner, live, own) {
        return Followed::NotOurs(held);
    }
    let keys = PrOutParameters {
        reservation_key: new,
        service_action_key: old,
        ..Default::default()
    };
    let preempt = PrCommand::pr_out(
        PrOutServiceAction::Preempt,
        held.scope << 4 | held.type_code,
        &keys,
    );
    let (taken, used) = runner.own(OwnReason::FollowKeyChange, |r| one_path(r, live, &preempt));
    match used.filter(|_| verdict(&taken) == Verdict::Good) {
        Some(used) => Followed::Moved(holder_after(runner, used, new)),
        None => Followed::Nothing,
    }
}

/// What a RELEASE through the map came to.
struct Released {
    /// The answer.
    reply: PrReply,
    /// The reservation was moved to a live path first.
    moved: bool,
    /// Live paths that could not be registered again after the move.
    unreachable: Vec<usize>,
    /// What became of the record of the map's holder.
    holder: HolderChange,
    /// Held with the map's key by a nexus not shown to be this host's.
    left_in_place: Option<Reservation>,
}

impl Released {
    fn answer(reply: PrReply) -> Released {
        Released {
            reply,
            moved: false,
            unreachable: Vec::new(),
            holder: HolderChange::Unchanged,
            left_in_place: None,
        }
    }
}

/// RELEASE down every path, then READ RESERVATION: GOOD once no nexus of the
/// map holds the reservation. A reservation still held with the map's key
/// after every live path answered GOOD is the map's only if READ FULL STATUS
/// shows the nexus the helper took it through (`own`) as its holder: that
/// nexus cannot be reached (a dead path, or one no longer in the map), so
/// the reservation is moved to a live path and released there. Held by any
/// other nexus (another host may share the key), it stays: the RELEASE was,
/// as the device answers a non-holder, GOOD and changed nothing.
fn release<R: PathRunner>(
    runner: &mut Recorder<'_, R>,
    paths: &[usize],
    command: &PrCommand,
    key: ReservationKey,
    own: Option<&OwnHolder>,
) -> Released {
    let mut any_good = false;
    let mut first_bad = None;
    for &p in paths {
        let reply = with_retries(runner, p, command);
        if verdict(&reply) == Verdict::Good {
            any_good = true;
        } else if first_bad.is_none() {
            first_bad = Some(reply.reply);
        }
    }
    if !any_good {
        // No path released anything: the device's answer stands.
        return Released::answer(
            first_bad.unwrap_or_else(|| PrReply::check_condition(PATH_FAILURE)),
        );
    }
    let held = match held_with(runner, paths, key) {
        // Unchecked: the RELEASE went everywhere it could.
        HeldWith::Unknown => return Released::answer(PrReply::good(Vec::new())),
        HeldWith::Yes(held) if key.0 != 0 => held,
        HeldWith::Yes(_) | HeldWith::No => {
            return Released {
                holder: HolderChange::Forgotten,
                ..Released::answer(PrReply::good(Vec::new()))
            }
        }
    };
    if let Some(refusal) = first_bad {
        // A live path refused the RELEASE (not registered with the key, or
        // another key): it could not PREEMPT either.
        return Released::answer(refusal);
    }
    if !held_by_own(runner, paths, own) {
        return Released {
            holder: HolderChange::Forgotten,
            left_in_place: Some(held),
            ..Released::answer(PrReply::good(Vec::new()))
        };
    }
    move_and_release(runner, paths, command, key, held)
}

/// Moves the map's reservation from an unreachable nexus to a live path and
/// releases it there: PREEMPT of the map's own key with the reservation's
/// scope and type (which takes the reservation over and removes the key from
/// every other nexus), RELEASE on the path that preempted, then the other
/// live paths registered again. The guest's RELEASE must name the type the
/// holder reserved with, as it would have to on the holder itself.
fn move_and_release<R: PathRunner>(
    runner: &mut Recorder<'_, R>,
    paths: &[usize],
    release: &PrCommand,
    key: ReservationKey,
    held: Reservation,
) -> Released {
    let scope_type = release.cdb.bytes()[2];
    if scope_type != (held.scope << 4 | held.type_code) {
        return Released::answer(PrReply::check_condition(
            SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
        ));
    }
    let own = PrOutParameters {
        reservation_key: key,
        service_action_key: key,
        ..Default::default()
    };
    let preempt = PrCommand::pr_out(PrOutServiceAction::Preempt, scope_type, &own);
    let (taken, used) = runner.own(OwnReason::MoveToRelease, |r| one_path(r, paths, &preempt));
    let Some(used) = used.filter(|_| verdict(&taken) == Verdict::Good) else {
        return Released::answer(taken.reply);
    };
    let released = runner.own(OwnReason::ReleaseMoved, |r| with_retries(r, used, release));
    let again = PrOutParameters {
        service_action_key: key,
        ..Default::default()
    };
    let reregister = PrCommand::pr_out(PrOutServiceAction::RegisterAndIgnoreExistingKey, 0, &again);
    let others: Vec<usize> = paths.iter().copied().filter(|&p| p != used).collect();
    let done = runner.own(OwnReason::ReregisterAfterMove, |r| {
        every_live_path(r, &[], &others, &reregister, &reregister)
    });
    // Once released, a live path left unregistered is reported, not
    // answered: the guest's RELEASE took effect and a retry would be a no-op.
    let mut unreachable = done.unreachable;
    if done.failure.is_some() {
        unreachable.extend(
            others
                .iter()
                .copied()
                .filter(|p| !done.succeeded.contains(p)),
        );
    }
    Released {
        reply: if verdict(&released) == Verdict::Good {
            PrReply::good(Vec::new())
        } else {
            released.reply
        },
        moved: true,
        unreachable,
        holder: HolderChange::Forgotten,
        left_in_place: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use super::*;

    const UP: bool = true;
    const DOWN: bool = false;

    /// Paths by (SCSI state up, host): `views([(UP, 1), (DOWN, 2)])`.
    fn views<const N: usize>(paths: [(bool, u32); N]) -> [PathView; N] {
        paths.map(|(up, host)| {
            if up {
                PathView::active(host)
            } else {
                PathView::failed(host)
            }
        })
    }
    use crate::domain::cdb::PrCdb;
    use crate::domain::param_list::{PrOutParameters, TransportId};
    use crate::domain::pr_in_data::{FullStatusDescriptor, Reservation};
    use crate::domain::sense::SenseCode;
    use crate::domain::service_action::{PrInServiceAction, ReservationType};

    /// Answers from a per-path script (GOOD once the script runs out) and
    /// records every command sent.
    #[derive(Default)]
    struct Script {
        answers: HashMap<usize, VecDeque<PathReply>>,
        reservation: Option<u64>,
        /// The initiator port (last TransportID byte) of the holder.
        holder: Option<u8>,
        sent: Vec<(usize, PrCommand)>,
    }

    /// This host's initiator port, and another host's.
    const OURS: u8 = 1;
    const THEIRS: u8 = 3;

    fn nexus(key: u64, port: u8, r_holder: bool) -> FullStatusDescriptor {
        FullStatusDescriptor {
            key: ReservationKey(key),
            all_tg_pt: false,
            r_holder,
            scope: 0,
            type_code: 1,
            relative_target_port: 1,
            transport_id: vec![6, 0, 0, 0, 0, 0, 0, 0, 0x50, 0, 0, 0, 0, 0, 0, port],
        }
    }

    /// The record of a reservation this host took through its nexus OURS.
    fn ours() -> OwnHolder {
        let status = ReadFullStatus {
            generation: 1,
            descriptors: vec![nexus(0, OURS, true)],
        };
        OwnHolder::from_full_status(&status, ReservationKey(0)).unwrap()
    }

    fn route_own<R: PathRunner>(
        runner: &mut R,
        paths: &[PathView],
        command: &PrCommand,
    ) -> Outcome {
        super::route(runner, paths, command, Some(&ours()))
    }

    impl Script {
        fn on(mut self, path: usize, replies: &[PathReply]) -> Script {
            self.answers
                .entry(path)
                .or_default()
                .extend(replies.iter().cloned());
            self
        }

        fn paths_sent(&self) -> Vec<usize> {
            self.sent.iter().map(|(p, _)| *p).collect()
        }

        fn actions_sent(&self) -> Vec<(usize, Option<PrOutServiceAction>)> {
            self.sent
                .iter()
                .map(|(p, c)| (*p, c.cdb.pr_out_action()))
                .collect()
        }
    }

    impl PathRunner for Script {
        fn run(&mut self, path: usize, command: &PrCommand) -> PathReply {
            self.sent.push((path, command.clone()));
            if let Some(r) = self.answers.get_mut(&path).and_then(|q| q.pop_front()) {
                return r;
            }
            if command.cdb.pr_in_action() == Some(PrInServiceAction::ReadReservation) {
                let data = ReadReservation {
                    generation: 1,
                    reservation: self.reservation.map(|k| {
                        Reservation::new(ReservationKey(k), ReservationType::WriteExclusive)
                    }),
                };
                return PathReply::device(PrReply::good(data.encode()));
            }
            if command.cdb.pr_out_action() == Some(PrOutServiceAction::Preempt) {
                // A PREEMPT of the holder's key takes the reservation.
                let p = sent_params(command);
                if self.reservation == Some(p.service_action_key.0) {
                    self.reservation = Some(p.reservation_key.0);
                    self.holder = Some(OURS);
                }
            }
            if command.cdb.pr_in_action() == Some(PrInServiceAction::ReadFullStatus) {
                let data = ReadFullStatus {
                    generation: 1,
                    descriptors: self
                        .reservation
                        .zip(self.holder)
                        .map(|(key, port)| vec![nexus(key, port, true)])
                        .unwrap_or_default(),
                };
                return PathReply::device(PrReply::good(data.encode()));
            }
            PathReply::device(PrReply::good(vec![0xaa; 8]))
        }
    }

    /// Routing with no record of a reservation taken by the helper.
    fn route<R: PathRunner>(runner: &mut R, paths: &[PathView], command: &PrCommand) -> Outcome {
        super::route(runner, paths, command, None)
    }

    fn two_paths() -> Vec<PathView> {
        vec![PathView::active(1), PathView::active(2)]
    }

    fn read_keys() -> PrCommand {
        PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadKeys, 64),
            data_out: Vec::new(),
        }
    }

    fn out(action: PrOutServiceAction, old: u64, new: u64) -> PrCommand {
        let p = PrOutParameters {
            reservation_key: ReservationKey(old),
            service_action_key: ReservationKey(new),
            ..Default::default()
        };
        PrCommand::pr_out(action, 0x01, &p)
    }

    fn lost() -> PathReply {
        PathReply::transport(PrReply::check_condition(SenseCode::I_T_NEXUS_LOSS))
    }

    fn not_responding() -> PathReply {
        PathReply::transport(PrReply::check_condition(SenseCode::LUN_NOT_RESPONDING))
    }

    fn conflict() -> PathReply {
        PathReply::device(PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT))
    }

    fn ua() -> PathReply {
        PathReply::device(PrReply::check_condition(SenseCode::RESERVATIONS_PREEMPTED))
    }

    fn sent_params(c: &PrCommand) -> PrOutParameters {
        PrOutParameters::try_from(&c.data_out[..]).unwrap()
    }

    #[test]
    fn pr_in_uses_the_first_active_path_only() {
        let mut s = Script::default();
        let paths = views([(DOWN, 0), (UP, 1), (UP, 2)]);
        let o = route(&mut s, &paths, &read_keys());
        assert_eq!(o.reply, PrReply::good(vec![0xaa; 8]));
        assert_eq!(s.paths_sent(), vec![1]);
        assert!(o.events.is_empty());
    }

    #[test]
    fn pr_in_fails_over_on_transport_failure_and_reports_the_last() {
        let mut s = Script::default().on(0, &[lost()]);
        let o = route(&mut s, &two_paths(), &read_keys());
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(s.paths_sent(), vec![0, 1]);

        let mut s = Script::default()
            .on(0, &[lost()])
            .on(1, &[not_responding()]);
        let o = route(&mut s, &two_paths(), &read_keys());
        assert_eq!(o.reply.sense.code(), Some(SenseCode::LUN_NOT_RESPONDING));
    }

    #[test]
    fn a_device_answer_is_not_tried_elsewhere() {
        let bad = PathReply::device(PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB));
        let mut s = Script::default().on(0, std::slice::from_ref(&bad));
        let o = route(&mut s, &two_paths(), &read_keys());
        assert_eq!(o.reply, bad.reply);
        assert_eq!(s.paths_sent(), vec![0]);
    }

    #[test]
    fn no_active_path_is_not_ready() {
        let mut s = Script::default();
        let o = route(&mut s, &[PathView::failed(0)], &read_keys());
        assert_eq!(o.reply.sense.code(), Some(SenseCode::LUN_NOT_READY));
        let o = route(&mut s, &[], &out(PrOutServiceAction::Register, 0, 1));
        assert_eq!(o.reply.sense.code(), Some(SenseCode::LUN_NOT_READY));
        assert!(s.sent.is_empty());
    }

    #[test]
    fn short_parameter_list_never_reaches_a_path() {
        let mut s = Script::default();
        let c = PrCommand {
            cdb: PrCdb::pr_out(PrOutServiceAction::Register, 0, 10),
            data_out: vec![0; 10],
        };
        let o = route(&mut s, &two_paths(), &c);
        assert_eq!(
            o.reply.sense.code(),
            Some(SenseCode::PARAMETER_LIST_LENGTH_ERROR)
        );
        assert!(s.sent.is_empty());
    }

    #[test]
    fn unit_attention_and_in_progress_are_retried_a_bounded_number_of_times() {
        let in_progress = PathReply::device(PrReply::check_condition(SenseCode {
            key: crate::domain::sense::SenseKey::NOT_READY,
            asc: 0x04,
            ascq: 0x07,
        }));
        let mut s = Script::default().on(0, &[ua(), in_progress]);
        let o = route(&mut s, &two_paths(), &read_keys());
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(s.paths_sent(), vec![0, 0, 0]);

        let mut s = Script::default().on(0, &[ua(), ua(), ua(), ua(), ua()]);
        let o = route(&mut s, &two_paths(), &read_keys());
        assert_eq!(o.reply, ua().reply);
        assert_eq!(s.paths_sent(), vec![0; 1 + MAX_RETRIES as usize]);
    }

    #[test]
    fn register_goes_to_every_active_path_and_tells_multipathd() {
        let mut s = Script::default().on(2, &[ua()]);
        let paths = views([(UP, 1), (DOWN, 2), (UP, 3)]);
        let o = route(&mut s, &paths, &out(PrOutServiceAction::Register, 0, 0x77));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert_eq!(s.paths_sent(), vec![0, 2, 2]);
        assert_eq!(
            o.events,
            vec![
                MapEvent::SetKey {
                    key: ReservationKey(0x77),
                    aptpl: false
                },
                MapEvent::SetStatus {
                    registered: PathList::NONE
                }
            ]
        );
    }

    fn set_status(devs: &[(u32, u32)]) -> MapEvent {
        use crate::domain::multipath::path::DevNumber;
        MapEvent::SetStatus {
            registered: PathList::new(
                devs.iter()
                    .map(|&(major, minor)| DevNumber { major, minor }),
            ),
        }
    }

    /// multipathd is told which paths got the key (as `major:minor`), so
    /// that it registers only the others: a path down, one that failed as a
    /// path and a stale one dm failed are not listed.
    #[test]
    fn setprstatus_lists_exactly_the_paths_that_got_the_key() {
        use PrOutServiceAction::*;
        let paths = [
            PathView::active(1).with_dev(8, 16),
            PathView::failed(2).with_dev(8, 32),
            PathView::active(3).with_dev(8, 48),
            PathView::active(4).with_dev(8, 64),
            PathView::active(5).with_dev(8, 80).with_dm(DmState::Failed),
        ];
        let mut s = Script::default().on(3, &[lost()]).on(4, &[conflict()]);
        let o = route(&mut s, &paths, &out(Register, 0, 0x77));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert_eq!(o.events[1], set_status(&[(8, 16), (8, 48)]));
        assert_eq!(
            o.events[1].message("mpatha"),
            r#"setprstatus map mpatha pathlist "8:16 8:48""#
        );

        // REGISTER AND IGNORE EXISTING KEY, and a key change, the same.
        for (action, old) in [(RegisterAndIgnoreExistingKey, 0), (Register, 0x77)] {
            let mut s = Script::default();
            let o = route(&mut s, &paths[..3], &out(action, old, 0x88));
            assert_eq!(o.events[1], set_status(&[(8, 16), (8, 48)]));
        }

        // A path whose device number is not known is left out; the others
        // are still listed (an unlisted path is only checked again).
        let mut s = Script::default();
        let o = route(
            &mut s,
            &[PathView::active(1), PathView::active(2).with_dev(8, 32)],
            &out(Register, 0, 0x77),
        );
        assert_eq!(o.events[1], set_status(&[(8, 32)]));

        // Refused: nothing is told.
        let mut s = Script::default().on(2, &[conflict()]);
        let o = route(&mut s, &paths, &out(Register, 0, 0x77));
        assert!(o.events.is_empty());
    }

    /// With ALL_TG_PT one REGISTER per SCSI host registers the host's other
    /// paths too: they are listed, a path of another host that failed is not.
    #[test]
    fn setprstatus_lists_the_paths_all_tg_pt_reached() {
        let p = PrOutParameters {
            service_action_key: ReservationKey(0x77),
            all_tg_pt: true,
            ..Default::default()
        };
        let c = PrCommand::pr_out(PrOutServiceAction::Register, 0, &p);
        let paths = [
            PathView::active(1).with_dev(8, 16),
            PathView::active(1).with_dev(8, 32),
            PathView::active(2).with_dev(8, 48),
            PathView::failed(1).with_dev(8, 64),
        ];
        let mut s = Script::default().on(2, &[lost()]);
        let o = route(&mut s, &paths, &c);
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(s.paths_sent(), vec![0, 2]);
        assert_eq!(o.events[1], set_status(&[(8, 16), (8, 32)]));
    }

    #[test]
    fn spec_i_pt_list_goes_down_the_first_path_only() {
        let p = PrOutParameters {
            service_action_key: ReservationKey(5),
            transport_ids: Some(vec![TransportId::sas(0x5000)]),
            ..Default::default()
        };
        let c = PrCommand::pr_out(PrOutServiceAction::Register, 0, &p);
        let mut s = Script::default();
        let o = route(&mut s, &two_paths(), &c);
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(s.sent[0].1, c);
        assert_eq!(s.sent[1].1.data_out.len(), 24);
        assert_eq!(sent_params(&s.sent[1].1).transport_ids, None);
        assert_eq!(
            sent_params(&s.sent[1].1).service_action_key,
            ReservationKey(5)
        );
    }

    #[test]
    fn a_failed_register_is_rolled_back_to_the_old_key() {
        let mut s = Script::default().on(1, &[conflict()]);
        let paths = views([(UP, 1), (UP, 2), (UP, 3)]);
        let o = route(&mut s, &paths, &out(PrOutServiceAction::Register, 0xa, 0xb));
        assert_eq!(o.reply, conflict().reply);
        assert!(o.events.is_empty());
        use PrOutServiceAction::*;
        assert_eq!(
            s.actions_sent(),
            vec![
                (0, Some(Register)),
                (1, Some(Register)),
                (0, Some(RegisterAndIgnoreExistingKey))
            ]
        );
        let undo = sent_params(&s.sent[2].1);
        assert_eq!(undo.service_action_key, ReservationKey(0xa));
    }

    #[test]
    fn a_path_that_fails_as_a_path_is_skipped_by_register_and_reported() {
        use PrOutServiceAction::*;
        // A fresh registration: the live path registers, the lost one is
        // reported unregistered, nothing is rolled back.
        let mut s = Script::default().on(1, &[lost()]);
        let o = route(&mut s, &two_paths(), &out(Register, 0, 0xb));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert_eq!(
            s.actions_sent(),
            vec![(0, Some(Register)), (1, Some(Register))]
        );
        assert_eq!(
            o.missed,
            vec![MissedPath {
                path: 1,
                left_with: LeftWith::Unregistered {
                    key: ReservationKey(0xb)
                }
            }]
        );
        assert_eq!(o.events.len(), 2);
        // A key change with one path failed before and one failing now:
        // both keep the old key.
        let paths = views([(DOWN, 1), (UP, 2), (UP, 3)]);
        let mut s = Script::default().on(2, &[not_responding()]);
        let o = route(&mut s, &paths, &out(Register, 0xa, 0xb));
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        let stale = LeftWith::StaleKey {
            old: ReservationKey(0xa),
            new: ReservationKey(0xb),
        };
        assert_eq!(
            o.missed,
            vec![
                MissedPath {
                    path: 0,
                    left_with: stale
                },
                MissedPath {
                    path: 2,
                    left_with: stale
                }
            ]
        );
        // An unregister likewise.
        let mut s = Script::default().on(0, &[lost()]);
        let o = route(&mut s, &two_paths(), &out(Register, 0xa, 0));
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(
            o.missed,
            vec![MissedPath {
                path: 0,
                left_with: LeftWith::StaleKey {
                    old: ReservationKey(0xa),
                    new: ReservationKey(0)
                }
            }]
        );
    }

    #[test]
    fn paths_dm_failed_come_last_and_their_stale_keys_do_not_fail_a_key_change() {
        use crate::domain::multipath::path::DmState;
        use PrOutServiceAction::*;
        let paths = [
            PathView::active(1).with_dm(DmState::Failed),
            PathView::active(2).with_dm(DmState::Active),
            PathView::active(3).with_dm(DmState::Active),
        ];
        // One-path commands: dm's live paths first.
        let mut s = Script::default();
        route(&mut s, &paths, &out(Reserve, 1, 0));
        // The RESERVE, then READ FULL STATUS for the holder's record.
        assert_eq!(s.paths_sent(), vec![1, 1]);
        // A key change: path 0 still has an older key and refuses; the map
        // changes anyway, and path 0 is reported.
        let mut s = Script::default().on(0, &[conflict()]);
        let o = route(&mut s, &paths, &out(Register, 0xa, 0xb));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert_eq!(s.paths_sent(), vec![1, 2, 0]);
        assert_eq!(
            o.missed,
            vec![MissedPath {
                path: 0,
                left_with: LeftWith::Unchanged {
                    key: ReservationKey(0xb)
                }
            }]
        );
        // The same refusal from a path dm uses rolls back.
        let mut s = Script::default().on(2, &[conflict()]);
        let o = route(&mut s, &paths, &out(Register, 0xa, 0xb));
        assert_eq!(o.reply, conflict().reply);
        // And from a dm-failed path when no other path accepted first.
        let only_failed = [PathView::active(1).with_dm(DmState::Failed)];
        let mut s = Script::default().on(0, &[conflict()]);
        let o = route(&mut s, &only_failed, &out(Register, 0xa, 0xb));
        assert_eq!(o.reply, conflict().reply);
    }

    #[test]
    fn a_key_change_that_missed_the_holder_moves_the_reservation_to_the_new_key() {
        use PrOutServiceAction::*;
        let paths = views([(DOWN, 1), (UP, 2)]);
        // The dead path holds the reservation with the old key 0xa, taken
        // through this host's nexus.
        let mut s = held_by_us(0xa);
        let o = route_own(&mut s, &paths, &out(Register, 0xa, 0xb));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        // READ RESERVATION and READ FULL STATUS (the evidence), the PREEMPT,
        // READ FULL STATUS (the new record).
        assert_eq!(
            s.actions_sent(),
            vec![
                (1, Some(Register)),
                (1, None),
                (1, None),
                (1, Some(Preempt)),
                (1, None)
            ]
        );
        assert_eq!(
            o.own_commands
                .iter()
                .map(|c| (c.path, c.reason))
                .collect::<Vec<_>>(),
            vec![(1, OwnReason::FollowKeyChange)]
        );
        assert!(matches!(o.holder, HolderChange::Took(_)));
        let preempt = &s.sent[3].1;
        assert_eq!(preempt.cdb.bytes()[2], 0x01);
        let p = sent_params(preempt);
        assert_eq!(
            (p.reservation_key, p.service_action_key),
            (ReservationKey(0xb), ReservationKey(0xa))
        );
        // The PREEMPT removed the old key from the dead path.
        assert_eq!(
            o.missed,
            vec![MissedPath {
                path: 0,
                left_with: LeftWith::Unregistered {
                    key: ReservationKey(0xb)
                }
            }]
        );
        // Held with another key, or no path missed: nothing more is sent.
        let mut s = held_by_us(0x99);
        route_own(&mut s, &paths, &out(Register, 0xa, 0xb));
        assert_eq!(s.actions_sent(), vec![(1, Some(Register)), (1, None)]);
        let mut s = held_by_us(0xa);
        route(&mut s, &two_paths(), &out(Register, 0xa, 0xb));
        assert_eq!(s.sent.len(), 2);
        // An unregister never preempts.
        let mut s = held_by_us(0xa);
        route(&mut s, &paths, &out(Register, 0xa, 0));
        assert_eq!(s.sent.len(), 1);
    }

    #[test]
    fn register_reaching_no_path_answers_the_path_failure() {
        let mut s = Script::default()
            .on(0, &[lost()])
            .on(1, &[not_responding()]);
        let o = route(
            &mut s,
            &two_paths(),
            &out(PrOutServiceAction::Register, 0xa, 0xb),
        );
        assert_eq!(o.reply, not_responding().reply);
        assert!(o.events.is_empty());
        assert!(o.missed.is_empty());
        assert_eq!(s.paths_sent(), vec![0, 1]);
    }

    #[test]
    fn a_refusal_after_a_dead_path_still_rolls_back() {
        let paths = views([(UP, 1), (UP, 2), (UP, 3)]);
        let mut s = Script::default().on(1, &[lost()]).on(2, &[conflict()]);
        let o = route(&mut s, &paths, &out(PrOutServiceAction::Register, 0, 0xb));
        assert_eq!(o.reply, conflict().reply);
        assert!(o.missed.is_empty());
        use PrOutServiceAction::*;
        assert_eq!(
            s.actions_sent(),
            vec![
                (0, Some(Register)),
                (1, Some(Register)),
                (2, Some(Register)),
                (0, Some(RegisterAndIgnoreExistingKey))
            ]
        );
    }

    #[test]
    fn spec_i_pt_goes_to_the_first_path_that_is_up() {
        let p = PrOutParameters {
            service_action_key: ReservationKey(5),
            transport_ids: Some(vec![TransportId::sas(0x5000)]),
            ..Default::default()
        };
        let c = PrCommand::pr_out(PrOutServiceAction::Register, 0, &p);
        let paths = views([(UP, 1), (UP, 2), (UP, 3)]);
        let mut s = Script::default().on(0, &[lost()]);
        let o = route(&mut s, &paths, &c);
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(s.sent[1].1, c);
        assert_eq!(sent_params(&s.sent[2].1).transport_ids, None);
    }

    #[test]
    fn a_failed_unregister_registers_the_key_again() {
        let mut s = Script::default().on(1, &[conflict()]);
        let o = route(
            &mut s,
            &two_paths(),
            &out(PrOutServiceAction::Register, 0xc, 0),
        );
        assert_eq!(o.reply, conflict().reply);
        assert_eq!(
            sent_params(&s.sent[2].1).service_action_key,
            ReservationKey(0xc)
        );
    }

    #[test]
    fn first_path_failure_needs_no_rollback() {
        let mut s = Script::default().on(0, &[conflict()]);
        let o = route(
            &mut s,
            &two_paths(),
            &out(PrOutServiceAction::Register, 1, 2),
        );
        assert_eq!(o.reply, conflict().reply);
        assert_eq!(s.paths_sent(), vec![0]);
    }

    #[test]
    fn all_tg_pt_registers_once_per_host() {
        let p = PrOutParameters {
            service_action_key: ReservationKey(5),
            all_tg_pt: true,
            ..Default::default()
        };
        let c = PrCommand::pr_out(PrOutServiceAction::RegisterAndIgnoreExistingKey, 0, &p);
        let paths = views([(UP, 1), (UP, 1), (UP, 2)]);
        let mut s = Script::default();
        assert_eq!(route(&mut s, &paths, &c).reply.status, ScsiStatus::GOOD);
        assert_eq!(s.paths_sent(), vec![0, 2]);
    }

    #[test]
    fn reserve_preempt_clear_use_one_path_with_failover() {
        use PrOutServiceAction::*;
        for (action, events) in [
            (Reserve, vec![MapEvent::SetHold]),
            (Preempt, vec![]),
            (PreemptAndAbort, vec![]),
            (
                Clear,
                vec![
                    MapEvent::UnsetKey,
                    MapEvent::UnsetStatus,
                    MapEvent::UnsetHold,
                ],
            ),
        ] {
            // Path 0 fails as a path (a PREEMPT's READ RESERVATION first).
            let mut s = Script::default().on(0, &[lost(), lost()]);
            let o = route(&mut s, &two_paths(), &out(action, 1, 2));
            assert_eq!(o.reply.status, ScsiStatus::GOOD, "{action:?}");
            assert_eq!(
                s.actions_sent()
                    .into_iter()
                    .filter(|(_, a)| a.is_some())
                    .collect::<Vec<_>>(),
                vec![(0, Some(action)), (1, Some(action))],
                "{action:?}"
            );
            assert_eq!(o.events, events, "{action:?}");
        }
        let mut s = Script::default().on(0, &[conflict()]);
        let o = route(&mut s, &two_paths(), &out(Reserve, 1, 0));
        assert_eq!(o.reply, conflict().reply);
        assert_eq!(s.paths_sent(), vec![0]);
        assert!(o.events.is_empty());
    }

    #[test]
    fn preempting_our_own_key_registers_the_other_paths_again() {
        use PrOutServiceAction::*;
        let paths = views([(UP, 1), (UP, 2), (UP, 3)]);
        let mut s = Script::default().on(0, &[lost()]);
        let o = route(&mut s, &paths, &out(Preempt, 4, 4));
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(
            s.actions_sent(),
            vec![
                (0, Some(Preempt)),
                (1, Some(Preempt)),
                (1, None),
                (0, Some(RegisterAndIgnoreExistingKey)),
                (2, Some(RegisterAndIgnoreExistingKey)),
            ]
        );
        assert_eq!(
            sent_params(&s.sent[4].1).service_action_key,
            ReservationKey(4)
        );
        // The re-registrations are audited as the helper's own.
        assert_eq!(
            o.own_commands
                .iter()
                .map(|c| (c.path, c.reason))
                .collect::<Vec<_>>(),
            vec![
                (0, OwnReason::ReregisterAfterPreempt),
                (2, OwnReason::ReregisterAfterPreempt)
            ]
        );

        let mut s = Script::default().on(1, &[conflict()]);
        let o = route(&mut s, &two_paths(), &out(Preempt, 4, 4));
        assert_eq!(o.reply, conflict().reply);
    }

    #[test]
    fn release_goes_everywhere_and_is_checked() {
        use PrOutServiceAction::*;
        // Path 1 holds the reservation; path 0 is a registered non-holder.
        let mut s = Script::default();
        let o = route(&mut s, &two_paths(), &out(Release, 3, 0));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert_eq!(o.events, vec![MapEvent::UnsetHold]);
        assert_eq!(
            s.actions_sent(),
            vec![(0, Some(Release)), (1, Some(Release)), (0, None)]
        );
        assert_eq!(
            s.sent[2].1.cdb.pr_in_action(),
            Some(PrInServiceAction::ReadReservation)
        );
    }

    #[test]
    fn release_held_elsewhere_is_good_held_by_us_is_not() {
        use PrOutServiceAction::*;
        // Another host holds it: our RELEASE is a no-op, and GOOD.
        let mut s = Script {
            reservation: Some(0x99),
            ..Default::default()
        };
        assert_eq!(
            route(&mut s, &two_paths(), &out(Release, 3, 0))
                .reply
                .status,
            ScsiStatus::GOOD
        );
        // Still ours: the holding path failed (see the move tests below).
        // Still ours, and one path said why.
        let mut s = Script {
            reservation: Some(3),
            ..Default::default()
        }
        .on(1, &[conflict()]);
        let o = route(&mut s, &two_paths(), &out(Release, 3, 0));
        assert_eq!(o.reply, conflict().reply);
    }

    /// Held with `key` by the nexus this host took it through.
    fn held_by_us(key: u64) -> Script {
        Script {
            reservation: Some(key),
            holder: Some(OURS),
            ..Default::default()
        }
    }

    /// Held with `key` by another host's nexus.
    fn held_by_another_host(key: u64) -> Script {
        Script {
            reservation: Some(key),
            holder: Some(THEIRS),
            ..Default::default()
        }
    }

    #[test]
    fn release_with_the_holder_down_moves_the_reservation_to_a_live_path() {
        use PrOutServiceAction::*;
        let paths = views([(UP, 1), (UP, 2), (DOWN, 3)]);
        let mut s = held_by_us(3);
        let o = route_own(&mut s, &paths, &out(Release, 3, 0));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert_eq!(o.events, vec![MapEvent::UnsetHold]);
        assert_eq!(
            s.actions_sent(),
            vec![
                (0, Some(Release)),
                (1, Some(Release)),
                (0, None),
                (0, None),
                (0, Some(Preempt)),
                (0, Some(Release)),
                (1, Some(RegisterAndIgnoreExistingKey)),
            ]
        );
        assert_eq!(
            s.sent[3].1.cdb.pr_in_action(),
            Some(PrInServiceAction::ReadFullStatus)
        );
        // Every command of the move is audited with its reason.
        assert_eq!(
            o.own_commands
                .iter()
                .map(|c| (c.path, c.reason))
                .collect::<Vec<_>>(),
            vec![
                (0, OwnReason::MoveToRelease),
                (0, OwnReason::ReleaseMoved),
                (1, OwnReason::ReregisterAfterMove)
            ]
        );
        assert_eq!(o.holder, HolderChange::Forgotten);
        // PREEMPT of our own key, with the reservation's scope and type.
        let preempt = &s.sent[4].1;
        assert_eq!(preempt.cdb.bytes()[2], 0x01);
        let p = sent_params(preempt);
        assert_eq!(
            (p.reservation_key, p.service_action_key),
            (ReservationKey(3), ReservationKey(3))
        );
        assert_eq!(
            sent_params(&s.sent[6].1).service_action_key,
            ReservationKey(3)
        );
        // The dead path lost its registration to the PREEMPT.
        assert_eq!(
            o.missed,
            vec![MissedPath {
                path: 2,
                left_with: LeftWith::Unregistered {
                    key: ReservationKey(3)
                }
            }]
        );
    }

    #[test]
    fn another_hosts_reservation_with_the_map_key_is_never_moved_by_a_release() {
        use PrOutServiceAction::*;
        // Another host holds with the key this map is registered with (QEMU's
        // migrate-pr, one key per cluster); one of our paths is down. With no
        // record, and with a record of a nexus that no longer holds it.
        for paths in [two_paths(), views([(UP, 1), (DOWN, 2)]).to_vec()] {
            for own in [None, Some(ours())] {
                let mut s = held_by_another_host(3);
                let o = super::route(&mut s, &paths, &out(Release, 3, 0), own.as_ref());
                assert_eq!(o.reply, PrReply::good(Vec::new()), "{own:?}");
                let out_sent: Vec<_> = s
                    .actions_sent()
                    .into_iter()
                    .filter_map(|(_, a)| a)
                    .collect();
                assert!(out_sent.iter().all(|a| *a == Release), "{out_sent:?}");
                assert!(o.own_commands.is_empty());
                assert_eq!(o.holder, HolderChange::Forgotten);
                assert_eq!(o.left_in_place.map(|r| r.key), Some(ReservationKey(3)));
                assert_eq!(s.reservation, Some(3), "still held");
            }
        }
        // READ FULL STATUS cannot be read: no evidence, nothing moves.
        let mut s = held_by_us(3).on(
            0,
            &[
                PathReply::device(PrReply::good(vec![])),
                PathReply::device(PrReply::good(
                    ReadReservation {
                        generation: 1,
                        reservation: Some(Reservation::new(
                            ReservationKey(3),
                            ReservationType::WriteExclusive,
                        )),
                    }
                    .encode(),
                )),
                conflict(),
            ],
        );
        let o = route_own(&mut s, &views([(UP, 1), (DOWN, 2)]), &out(Release, 3, 0));
        assert_eq!(o.reply, PrReply::good(Vec::new()));
        assert!(o.own_commands.is_empty());
        assert!(o.left_in_place.is_some());
    }

    #[test]
    fn a_key_change_leaves_another_hosts_reservation_with_the_old_key() {
        use PrOutServiceAction::*;
        let paths = views([(DOWN, 1), (UP, 2)]);
        for own in [None, Some(ours())] {
            let mut s = held_by_another_host(0xa);
            let o = super::route(&mut s, &paths, &out(Register, 0xa, 0xb), own.as_ref());
            assert_eq!(o.reply, PrReply::good(Vec::new()));
            let out_sent: Vec<_> = s
                .actions_sent()
                .into_iter()
                .filter(|(_, a)| a.is_some())
                .collect();
            assert_eq!(out_sent, vec![(1, Some(Register))], "no PREEMPT");
            assert_eq!(s.reservation, Some(0xa));
            assert!(o.own_commands.is_empty());
            assert_eq!(o.left_in_place.map(|r| r.key), Some(ReservationKey(0xa)));
            // The dead path keeps the old key: it was never preempted.
            assert_eq!(
                o.missed,
                vec![MissedPath {
                    path: 0,
                    left_with: LeftWith::StaleKey {
                        old: ReservationKey(0xa),
                        new: ReservationKey(0xb)
                    }
                }]
            );
        }
    }

    #[test]
    fn the_holder_is_recorded_only_when_this_host_took_the_reservation() {
        use PrOutServiceAction::*;
        // RESERVE: READ FULL STATUS on the path that reserved names it.
        let mut s = held_by_us(1);
        let o = route(&mut s, &two_paths(), &out(Reserve, 1, 0));
        assert_eq!(o.holder, HolderChange::Took(ours()));
        // A PREEMPT of another key takes the reservation only from a holder
        // with that key: checked before, so another host sharing our key
        // that holds it is not recorded as ours.
        let mut s = held_by_another_host(1);
        let o = route(&mut s, &two_paths(), &out(Preempt, 1, 2));
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(o.holder, HolderChange::Unchanged);
        let mut s = held_by_another_host(2);
        let o = route(&mut s, &two_paths(), &out(Preempt, 1, 2));
        assert_eq!(o.holder, HolderChange::Took(ours()));
        // CLEAR and an unregister forget it.
        let mut s = Script::default();
        assert_eq!(
            route(&mut s, &two_paths(), &out(Clear, 1, 0)).holder,
            HolderChange::Forgotten
        );
        let mut s = Script::default();
        assert_eq!(
            route(&mut s, &two_paths(), &out(Register, 1, 0)).holder,
            HolderChange::Forgotten
        );
        // A RELEASE that leaves no reservation forgets it too.
        let mut s = Script::default();
        assert_eq!(
            route(&mut s, &two_paths(), &out(Release, 1, 0)).holder,
            HolderChange::Forgotten
        );
    }

    #[test]
    fn the_move_preempts_from_the_next_path_when_the_first_fails() {
        use PrOutServiceAction::*;
        let paths = views([(UP, 1), (UP, 2), (DOWN, 3)]);
        let good = PathReply::device(PrReply::good(vec![]));
        let mut s = held_by_us(3).on(0, &[good, lost(), lost(), lost()]);
        let o = route_own(&mut s, &paths, &out(Release, 3, 0));
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(
            s.actions_sent(),
            vec![
                (0, Some(Release)),
                (1, Some(Release)),
                (0, None),
                (1, None),
                (0, None),
                (1, None),
                (0, Some(Preempt)),
                (1, Some(Preempt)),
                (1, Some(Release)),
                (0, Some(RegisterAndIgnoreExistingKey)),
            ]
        );
        assert_eq!(o.missed.iter().map(|m| m.path).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn no_move_for_another_type_a_refused_preempt_or_a_refusing_path() {
        use PrOutServiceAction::*;
        let paths = views([(UP, 1), (DOWN, 2)]);
        // The guest names another type than the holder reserved with: the
        // holder would have refused it; nothing is preempted.
        let mut s = held_by_us(3);
        let p = PrOutParameters {
            reservation_key: ReservationKey(3),
            ..Default::default()
        };
        let o = route_own(&mut s, &paths, &PrCommand::pr_out(Release, 0x05, &p));
        assert_eq!(
            o.reply.sense.code(),
            Some(SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
        );
        assert_eq!(
            s.actions_sent(),
            vec![(0, Some(Release)), (0, None), (0, None)]
        );
        assert!(o.events.is_empty() && o.missed.is_empty());
        // The PREEMPT is refused: its answer, no RELEASE after it.
        let good = PathReply::device(PrReply::good(vec![]));
        let held = ReadReservation {
            generation: 1,
            reservation: Some(Reservation::new(
                ReservationKey(3),
                ReservationType::WriteExclusive,
            )),
        };
        let held = PathReply::device(PrReply::good(held.encode()));
        let status = ReadFullStatus {
            generation: 1,
            descriptors: vec![nexus(3, OURS, true)],
        };
        let status = PathReply::device(PrReply::good(status.encode()));
        let mut s = held_by_us(3).on(0, &[good, held, status, conflict()]);
        let o = route_own(&mut s, &paths, &out(Release, 3, 0));
        assert_eq!(o.reply, conflict().reply);
        assert_eq!(s.sent.len(), 4);
        assert!(o.events.is_empty());
        // No live path can reach the reservation: nothing moves.
        let mut s = held_by_us(3).on(0, &[lost(), lost()]);
        let o = route_own(&mut s, &paths, &out(Release, 3, 0));
        assert_eq!(o.reply, lost().reply);
    }

    #[test]
    fn release_refused_by_every_path_passes_the_answer() {
        let mut s = Script::default().on(0, &[conflict()]).on(1, &[conflict()]);
        let o = route(
            &mut s,
            &two_paths(),
            &out(PrOutServiceAction::Release, 0, 0),
        );
        assert_eq!(o.reply, conflict().reply);
        assert_eq!(s.sent.len(), 2);
    }

    #[test]
    fn no_parameter_list_stops_the_routing() {
        // Any service action with any list, on any mix of path answers:
        // always one reply, never a panic, and nothing but GOOD notifies.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let answers = [
            PathReply::device(PrReply::good(vec![])),
            conflict(),
            ua(),
            lost(),
            PathReply::device(PrReply::good(vec![0xff; 3])),
        ];
        for _ in 0..2000 {
            let action = PrOutServiceAction::from_code((next() % 10) as u8);
            let len = match next() % 4 {
                0 => 24,
                1 => (next() % 64) as usize,
                _ => 24 + (next() % 200) as usize,
            };
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 28 && next() % 2 == 0 {
                data[20] |= 0x08;
                let tpdl = (len - 28) as u32;
                data[24..28].copy_from_slice(&tpdl.to_be_bytes());
            }
            let command = PrCommand {
                cdb: PrCdb::pr_out(action, (next() % 256) as u8, len as u16),
                data_out: data,
            };
            let paths: Vec<PathView> = (0..(next() % 4))
                .map(|h| {
                    if next() % 3 == 0 {
                        PathView::failed(h as u32)
                    } else {
                        PathView::active((next() % 2) as u32)
                    }
                })
                .collect();
            let mut s = Script::default();
            for p in 0..paths.len() {
                let script: Vec<PathReply> = (0..(next() % 6))
                    .map(|_| answers[(next() % answers.len() as u64) as usize].clone())
                    .collect();
                s = s.on(p, &script);
            }
            let o = route(&mut s, &paths, &command);
            if o.reply.status != ScsiStatus::GOOD {
                assert!(o.events.is_empty());
            }
            assert!(s.sent.len() <= 4 * (2 * paths.len() + 1) * 2);
        }
    }

    #[test]
    fn release_unchecked_when_read_reservation_fails_is_good() {
        let mut s = Script::default()
            .on(0, &[PathReply::device(PrReply::good(vec![])), lost()])
            .on(1, &[PathReply::device(PrReply::good(vec![])), lost()]);
        let o = route(
            &mut s,
            &two_paths(),
            &out(PrOutServiceAction::Release, 3, 0),
        );
        assert_eq!(o.reply.status, ScsiStatus::GOOD);
        assert_eq!(s.sent.len(), 4);
    }
}
