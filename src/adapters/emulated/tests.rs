// SPDX-License-Identifier: GPL-2.0-or-later
//! The emulated device driven as clusters drive shared disks, through the
//! executor port, with real fds on temporary files.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::adapters::fd_inspector::inspect;
use crate::domain::cdb::PrCdb;
use crate::domain::param_list::{PrOutParameters, RegisterAndMoveParameters};
use crate::domain::pr_in_data::{ReadFullStatus, ReadKeys, ReadReservation};
use crate::domain::reservation::{AccessDecision, MediumAccess};
use crate::domain::sense::{ScsiStatus, SenseCode};
use crate::domain::service_action::{
    PrInServiceAction as In, PrOutServiceAction as Out, ReservationKey, ReservationType,
};

const WERO: ReservationType = ReservationType::WriteExclusiveRegistrantsOnly;

fn open(path: &Path) -> DeviceFd {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    inspect(file.into())
}

fn unit_of(path: &Path) -> UnitId {
    let d = open(path);
    (d.info.dev, d.info.ino)
}

fn conn(id: u64) -> Initiator {
    Initiator {
        connection_id: id,
        ..Default::default()
    }
}

fn params(key: u64, sa_key: u64) -> PrOutParameters {
    PrOutParameters {
        reservation_key: ReservationKey(key),
        service_action_key: ReservationKey(sa_key),
        ..Default::default()
    }
}

/// One cluster node's view: a connection to the helper and a disk path.
struct Node<'a> {
    exec: &'a EmulatedExecutor,
    disk: &'a Path,
    conn: u64,
}

impl<'a> Node<'a> {
    fn new(exec: &'a EmulatedExecutor, disk: &'a Path, conn: u64) -> Node<'a> {
        Node { exec, disk, conn }
    }
    fn out_raw(&self, sa: Out, t: u8, data: Vec<u8>) -> PrReply {
        let command = PrCommand {
            cdb: PrCdb::pr_out(sa, t, data.len() as u16),
            data_out: data,
        };
        self.exec
            .execute(open(self.disk), command, &conn(self.conn))
    }
    fn out(&self, sa: Out, t: u8, key: u64, sa_key: u64) -> PrReply {
        self.out_raw(sa, t, params(key, sa_key).encode())
    }
    fn pr_in(&self, sa: In) -> PrReply {
        let command = PrCommand {
            cdb: PrCdb::pr_in(sa, 8192),
            data_out: Vec::new(),
        };
        self.exec
            .execute(open(self.disk), command, &conn(self.conn))
    }
    fn keys(&self) -> Vec<u64> {
        let r = self.pr_in(In::ReadKeys);
        assert_eq!(r.status, ScsiStatus::GOOD, "{:?}", r.sense);
        let d = ReadKeys::decode(&r.payload).unwrap().value;
        d.keys.iter().map(|k| k.0).collect()
    }
    fn may(&self, access: MediumAccess) -> bool {
        let unit = self.exec.unit(unit_of(self.disk)).unwrap_or_default();
        unit.access(
            &nexus_of(InitiatorIdentity::Connection, &conn(self.conn)),
            access,
        ) == AccessDecision::Allowed
    }
}

/// The cluster sequences shared with the tests over the wire.
#[path = "../../../tests/common/cluster.rs"]
#[allow(dead_code)] // what the other layer uses
mod cluster;

use cluster::{Nexus, Outcome, Stage};

fn outcome(r: &PrReply) -> Outcome {
    Outcome {
        status: r.status.0,
        sense: (r.status == ScsiStatus::CHECK_CONDITION).then(|| {
            let c = r.sense.code().unwrap();
            (c.key.0, c.asc, c.ascq)
        }),
    }
}

impl Nexus for Node<'_> {
    fn pr_out(&mut self, sa: u8, rtype: u8, key: u64, sa_key: u64) -> Outcome {
        outcome(&self.out(Out::from_code(sa), rtype, key, sa_key))
    }
    fn read_keys(&mut self) -> Result<Vec<u64>, Outcome> {
        let r = self.pr_in(In::ReadKeys);
        match outcome(&r) {
            Outcome::GOOD => Ok(ReadKeys::decode(&r.payload)
                .unwrap()
                .value
                .keys
                .iter()
                .map(|k| k.0)
                .collect()),
            other => Err(other),
        }
    }
    fn holder(&mut self) -> Option<(u64, u8)> {
        let r = self.pr_in(In::ReadReservation);
        good(&r);
        let res = ReadReservation::decode(&r.payload)
            .unwrap()
            .value
            .reservation?;
        Some((res.key.0, res.reservation_type().unwrap().code()))
    }
}

#[track_caller]
fn good(r: &PrReply) {
    assert_eq!(r.status, ScsiStatus::GOOD, "{:?}", r.sense);
}

/// fence_scsi through the executor port, and what only the executor shows:
/// who may write at each stage.
#[test]
fn fence_scsi_fences_a_node_with_preempt_and_abort_and_unfences_it() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let (mut a, mut b) = (
        Node::new(&exec, disk.path(), 1),
        Node::new(&exec, disk.path(), 2),
    );
    cluster::fence_scsi(&mut a, &mut b, |stage, a, b| match stage {
        Stage::Reserved => assert!(a.may(MediumAccess::Write) && b.may(MediumAccess::Write)),
        Stage::Fenced => {
            assert!(!b.may(MediumAccess::Write));
            assert!(b.may(MediumAccess::Read));
            assert!(a.may(MediumAccess::Write));
        }
        Stage::Back => assert!(b.may(MediumAccess::Write)),
    });
}

#[test]
fn fencing_the_reservation_holder_moves_the_reservation() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let a = Node::new(&exec, disk.path(), 1);
    let b = Node::new(&exec, disk.path(), 2);
    good(&a.out(Out::RegisterAndIgnoreExistingKey, 0, 0, 0xa));
    good(&b.out(Out::RegisterAndIgnoreExistingKey, 0, 0, 0xb));
    good(&a.out(Out::Reserve, WERO.code(), 0xa, 0));

    good(&b.out(Out::PreemptAndAbort, WERO.code(), 0xb, 0xa));
    let r = b.pr_in(In::ReadReservation);
    let res = ReadReservation::decode(&r.payload).unwrap().value;
    assert_eq!(res.reservation.unwrap().key, ReservationKey(0xb));
    assert!(!a.may(MediumAccess::Write));
    let r = a.pr_in(In::ReadReservation);
    assert_eq!(r.sense.code(), Some(SenseCode::REGISTRATIONS_PREEMPTED));
}

/// Failover clustering's arbitration through the executor port, and what
/// only the executor shows: READ FULL STATUS names the new owner's nexus,
/// and who may write.
#[test]
fn failover_cluster_challenger_takes_over_a_dead_owner() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let mut owner = Node::new(&exec, disk.path(), 10);
    let mut challenger = Node::new(&exec, disk.path(), 11);
    cluster::failover(
        &mut owner,
        &mut challenger,
        |stage, owner, challenger| match stage {
            Stage::Reserved => {}
            Stage::Fenced => {
                let r = challenger.pr_in(In::ReadFullStatus);
                let d = ReadFullStatus::decode(&r.payload)
                    .unwrap()
                    .value
                    .descriptors;
                assert_eq!(d.len(), 1);
                assert!(d[0].r_holder);
                assert_eq!(d[0].key, ReservationKey(0x4d53_4654_0000_0002));
                assert_eq!(
                    d[0].parsed_transport_id(),
                    Some(TransportId::sas(INITIATOR_SAS_BASE + 11))
                );
                assert_eq!(d[0].relative_target_port, TARGET_PORT);
                assert!(!owner.may(MediumAccess::Write));
            }
            Stage::Back => {
                assert!(owner.may(MediumAccess::Write));
                assert!(challenger.may(MediumAccess::Read));
            }
        },
    );
}

#[test]
fn two_paths_of_one_host_are_two_nexuses_with_one_key() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let path1 = Node::new(&exec, disk.path(), 1);
    let path2 = Node::new(&exec, disk.path(), 2);
    let other = Node::new(&exec, disk.path(), 3);
    good(&path1.out(Out::Register, 0, 0, 0xa));
    // Registering one path does not register the other.
    assert_eq!(
        path2.out(Out::Reserve, WERO.code(), 0xa, 0).status,
        ScsiStatus::RESERVATION_CONFLICT
    );
    good(&path2.out(Out::Register, 0, 0, 0xa));
    good(&path1.out(Out::Reserve, WERO.code(), 0xa, 0));
    good(&other.out(Out::Register, 0, 0, 0xc));
    // Preempting the host's key removes both paths.
    good(&other.out(Out::Preempt, WERO.code(), 0xc, 0xa));
    assert_eq!(other.keys(), vec![0xc]);
    for p in [&path1, &path2] {
        let r = p.pr_in(In::ReadKeys);
        assert_eq!(r.sense.code(), Some(SenseCode::REGISTRATIONS_PREEMPTED));
    }
}

#[test]
fn spec_i_pt_and_register_and_move_name_connections_by_sas_address() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let a = Node::new(&exec, disk.path(), 1);
    let b = Node::new(&exec, disk.path(), 2);
    let p = PrOutParameters {
        service_action_key: ReservationKey(0xa),
        transport_ids: Some(vec![TransportId::sas(INITIATOR_SAS_BASE + 2)]),
        ..Default::default()
    };
    good(&a.out_raw(Out::Register, 0, p.encode()));
    assert_eq!(a.keys(), vec![0xa, 0xa]);
    good(&a.out(Out::Reserve, 1, 0xa, 0));
    let mv = RegisterAndMoveParameters {
        reservation_key: ReservationKey(0xa),
        service_action_key: ReservationKey(0xb),
        unreg: true,
        aptpl: false,
        relative_target_port: TARGET_PORT,
        transport_id: TransportId::sas(INITIATOR_SAS_BASE + 2),
    };
    good(&a.out_raw(Out::RegisterAndMove, 0, mv.encode()));
    assert!(b.may(MediumAccess::Write) && !a.may(MediumAccess::Write));
    assert_eq!(b.keys(), vec![0xb]);
}

#[test]
fn each_file_is_its_own_logical_unit_and_every_open_of_it_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.img"), dir.path().join("two.img"));
    std::fs::write(&one, b"").unwrap();
    std::fs::write(&two, b"").unwrap();
    let link = dir.path().join("one-link.img");
    std::fs::hard_link(&one, &link).unwrap();
    let exec = EmulatedExecutor::new();
    let on_one = Node::new(&exec, &one, 1);
    let on_two = Node::new(&exec, &two, 1);
    let on_link = Node::new(&exec, &link, 2);
    good(&on_one.out(Out::Register, 0, 0, 0xa));
    assert_eq!(on_two.keys(), Vec::<u64>::new());
    assert_eq!(on_link.keys(), vec![0xa]);
    assert!(exec.unit(unit_of(&one)).is_some());
    assert_eq!(exec.unit(unit_of(&two)).unwrap().generation(), 0);
}

#[test]
fn a_read_only_fd_and_other_file_kinds_are_served_too() {
    // The server refuses PR OUT on read-only fds before asking the executor;
    // the executor itself only looks at the file's identity.
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let ro = inspect(std::fs::File::open(disk.path()).unwrap().into());
    let command = PrCommand {
        cdb: PrCdb::pr_out(Out::Register, 0, 24),
        data_out: params(0, 0xa).encode(),
    };
    good(&exec.execute(ro, command, &conn(1)));
    let dir = tempfile::tempdir().unwrap();
    let d = inspect(std::fs::File::open(dir.path()).unwrap().into());
    let command = PrCommand {
        cdb: PrCdb::pr_in(In::ReadKeys, 8192),
        data_out: Vec::new(),
    };
    let r = exec.execute(d, command, &conn(1));
    good(&r);
    assert_eq!(r.payload, vec![0; 8]);
}

#[test]
fn long_reports_come_back_whole_for_the_server_to_cut() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    for c in 0..10 {
        let n = Node::new(&exec, disk.path(), c);
        good(&n.out(Out::Register, 0, 0, 0x100 + c));
    }
    let command = PrCommand {
        cdb: PrCdb::pr_in(In::ReadFullStatus, 16),
        data_out: Vec::new(),
    };
    let r = exec.execute(open(disk.path()), command, &conn(0));
    assert_eq!(r.payload.len(), 8 + 10 * 48);
    let cut = r.fit_to(16);
    assert_eq!(&cut.payload[4..8], &480u32.to_be_bytes());
}

#[test]
fn concurrent_connections_all_register() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = Arc::new(EmulatedExecutor::new());
    let mut tasks = Vec::new();
    for c in 0..32u64 {
        let exec = Arc::clone(&exec);
        let path = disk.path().to_path_buf();
        tasks.push(std::thread::spawn(move || {
            let command = PrCommand {
                cdb: PrCdb::pr_out(Out::Register, 0, 24),
                data_out: params(0, 0x1000 + c).encode(),
            };
            exec.execute(open(&path), command, &conn(c))
        }));
    }
    for t in tasks {
        good(&t.join().unwrap());
    }
    let unit = exec.unit(unit_of(disk.path())).unwrap();
    assert_eq!(unit.registrations().len(), 32);
    assert_eq!(unit.generation(), 32);
}

#[test]
fn by_peer_uid_every_connection_of_one_user_is_one_nexus() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::with_identity(InitiatorIdentity::PeerUid);
    let as_user = |connection_id, uid| Initiator {
        connection_id,
        uid,
        ..Default::default()
    };
    let run = |sa: Out, t: u8, key: u64, sa_key: u64| PrCommand {
        cdb: PrCdb::pr_out(sa, t, 24),
        data_out: params(key, sa_key).encode(),
    };
    // One tool run per command, as sg_persist-like clients do.
    let r = exec.execute(
        open(disk.path()),
        run(Out::Register, 0, 0, 0xa),
        &as_user(1, Some(1000)),
    );
    good(&r);
    let r = exec.execute(
        open(disk.path()),
        run(Out::Reserve, 1, 0xa, 0),
        &as_user(2, Some(1000)),
    );
    good(&r);
    // Another user is another nexus; so is a peer of unknown uid.
    for other in [as_user(3, Some(1001)), as_user(4, None)] {
        let r = exec.execute(open(disk.path()), run(Out::Release, 1, 0xa, 0), &other);
        assert_eq!(r.status, ScsiStatus::RESERVATION_CONFLICT);
    }
    let unit = exec.unit(unit_of(disk.path())).unwrap();
    let holder = nexus_of(InitiatorIdentity::PeerUid, &as_user(9, Some(1000)));
    assert!(unit.is_holder(&holder));
    assert_eq!(holder.initiator(), &TransportId::sas(UID_SAS_BASE + 1000));
}

fn faulty(path: &Path, fault: &str, count: Option<u32>) -> EmulatedExecutor {
    EmulatedExecutor::new().with_faults(
        [FaultInjection {
            unit: unit_of(path),
            fault: fault.parse().unwrap(),
            count,
        }],
        Duration::from_millis(200),
    )
}

#[test]
fn a_unit_attention_is_shown_once_to_each_nexus_and_the_command_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("ua.img");
    std::fs::write(&disk, b"").unwrap();
    let exec = faulty(&disk, "unit_attention", None);
    let a = Node::new(&exec, &disk, 1);
    let b = Node::new(&exec, &disk, 2);
    let r = a.out(Out::Register, 0, 0, 0xa);
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(r.sense.code(), Some(SenseCode::DEVICE_RESET));
    assert_eq!(
        b.pr_in(In::ReadKeys).sense.code(),
        Some(SenseCode::DEVICE_RESET)
    );
    // The REGISTER that met the unit attention did not happen.
    assert_eq!(a.keys(), Vec::<u64>::new());
    good(&a.out(Out::Register, 0, 0, 0xa));
    assert_eq!(b.keys(), vec![0xa]);
}

#[test]
fn a_counted_fault_heals_after_that_many_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (bad, fine) = (dir.path().join("bad.img"), dir.path().join("fine.img"));
    std::fs::write(&bad, b"").unwrap();
    std::fs::write(&fine, b"").unwrap();
    let exec = faulty(&bad, "not_ready", Some(2));
    let on_bad = Node::new(&exec, &bad, 1);
    let on_fine = Node::new(&exec, &fine, 1);
    assert_eq!(on_fine.keys(), Vec::<u64>::new());
    for _ in 0..2 {
        let r = on_bad.pr_in(In::ReadKeys);
        assert_eq!(r.sense.code(), Some(SenseCode::LUN_NOT_READY));
    }
    assert_eq!(on_bad.keys(), Vec::<u64>::new());
}

#[test]
fn a_device_that_never_answers_is_busy_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("slow.img");
    std::fs::write(&disk, b"").unwrap();
    let exec = faulty(&disk, "timeout", None);
    let node = Node::new(&exec, &disk, 1);
    let started = std::time::Instant::now();
    let r = node.pr_in(In::ReadKeys);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.status, ScsiStatus::BUSY);
    assert!(r.payload.is_empty());
}

#[test]
fn a_conflict_with_a_key_of_the_same_session_is_explained() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let run = |sa: Out, t: u8, key: u64, sa_key: u64| PrCommand {
        cdb: PrCdb::pr_out(sa, t, 24),
        data_out: params(key, sa_key).encode(),
    };
    // One process per command, all from this test's session.
    let from_here = |connection_id| Initiator {
        connection_id,
        pid: Some(std::process::id() as i32),
        ..Default::default()
    };
    let unit = unit_of(disk.path());
    let register = run(Out::Register, 0, 0, 0xabc);
    let registered = exec.execute(open(disk.path()), register.clone(), &from_here(1));
    good(&registered);
    let nexus = |c| nexus_of(InitiatorIdentity::Connection, &from_here(c));
    assert!(!exec.conflicts_with_own_session(
        unit,
        &nexus(1),
        &register,
        &registered,
        &from_here(1)
    ));
    // The next run reserves with that key: a new, unregistered nexus.
    let reserve = run(Out::Reserve, 5, 0xabc, 0);
    let conflict = exec.execute(open(disk.path()), reserve.clone(), &from_here(2));
    assert_eq!(conflict.status, ScsiStatus::RESERVATION_CONFLICT);
    assert!(exec.conflicts_with_own_session(unit, &nexus(2), &reserve, &conflict, &from_here(2)));
    // A peer whose session is unknown is not told about another's key.
    assert!(!exec.conflicts_with_own_session(unit, &nexus(3), &reserve, &conflict, &conn(3)));
}

#[test]
fn the_sessions_of_registrations_are_forgotten_with_the_registrations() {
    let disk = tempfile::NamedTempFile::new().unwrap();
    let exec = EmulatedExecutor::new();
    let from_here = |connection_id| Initiator {
        connection_id,
        pid: Some(std::process::id() as i32),
        ..Default::default()
    };
    // A thousand one-command connections, each registering and then
    // unregistering its key: nothing of them is left to remember.
    for c in 0..1000 {
        let register = PrCommand {
            cdb: PrCdb::pr_out(Out::Register, 0, 24),
            data_out: params(0, 0x100 + c).encode(),
        };
        good(&exec.execute(open(disk.path()), register, &from_here(c)));
        let unregister = PrCommand {
            cdb: PrCdb::pr_out(Out::Register, 0, 24),
            data_out: params(0x100 + c, 0).encode(),
        };
        good(&exec.execute(open(disk.path()), unregister, &from_here(c)));
    }
    let remembered = exec.registered_from.lock().unwrap().len();
    assert_eq!(remembered, 0);
}
