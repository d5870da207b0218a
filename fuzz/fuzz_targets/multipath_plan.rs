// SPDX-License-Identifier: GPL-2.0-or-later
//! Multipath routing of one client command: `plan` on the command, then
//! `runner::route` over up to four fake paths. Each path is its own I_T
//! nexus on one shared reservation model; the input also scripts path
//! failures and unit attentions.
//!
//! Input: a path byte (bits 1..0: path count - 1, bits 7..4: which paths are
//! failed), a host byte (2 bits per path: SCSI host), then the command as in
//! `reservation_model` (opcode, SCOPE/TYPE, length, parameter list), then
//! one script byte per path command: 0 transport failure, 1 UNIT ATTENTION,
//! 2 BUSY, anything else (or no byte left) the model answers.
//!
//! Checks: whatever the plan writes for the paths (the rest-of-paths copy,
//! rollback, re-register) is a valid CDB whose length matches its parameter
//! list, and the copy for the other paths carries no TransportIDs; the
//! outcome has events only on GOOD and a payload only on GOOD; the number
//! of path commands is bounded; the model's invariants hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_pr_helper::domain::cdb::{PrCdb, CDB_LEN, PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT};
use qemu_pr_helper::domain::command::PrCommand;
use qemu_pr_helper::domain::framing::{PrReply, MAX_TRANSFER_LEN};
use qemu_pr_helper::domain::multipath::path::{DevNumber, DmState, PathState, PathView};
use qemu_pr_helper::domain::multipath::plan::{plan, Route};
use qemu_pr_helper::domain::multipath::runner::{route, PathRunner};
use qemu_pr_helper::domain::multipath::verdict::{PathReply, MAX_RETRIES};
use qemu_pr_helper::domain::param_list::{PrOutParameters, TransportId};
use qemu_pr_helper::domain::reservation::{LogicalUnit, NexusId};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseCode};

struct Runner<'a> {
    lu: LogicalUnit,
    script: &'a [u8],
    calls: usize,
}

impl PathRunner for Runner<'_> {
    fn run(&mut self, path: usize, command: &PrCommand) -> PathReply {
        self.calls += 1;
        if command.cdb.pr_out_action().is_some() {
            assert_eq!(command.data_out.len(), command.cdb.transfer_len());
        } else {
            assert!(command.data_out.is_empty());
        }
        let step = match self.script.split_first() {
            Some((&b, rest)) => {
                self.script = rest;
                b
            }
            None => 0xff,
        };
        match step {
            0 => PathReply::transport(PrReply::check_condition(SenseCode::LUN_COMM_FAILURE)),
            1 => PathReply::device(PrReply::check_condition(SenseCode::DEVICE_RESET)),
            2 => PathReply::device(PrReply::status_only(ScsiStatus::BUSY)),
            _ => {
                let nexus = NexusId::new(TransportId::sas(0x5000_0000_0000_0000), path as u16 + 1);
                let reply = self.lu.execute(&nexus, &command.cdb, &command.data_out);
                assert!(self.lu.invariants_hold(), "{:?}", self.lu);
                PathReply::device(reply.fit_to(command.cdb.transfer_len()))
            }
        }
    }
}

fn check_command(c: &PrCommand) {
    assert_eq!(PrCdb::try_from(c.cdb.bytes()), Ok(c.cdb));
    assert_eq!(c.data_out.len(), c.cdb.transfer_len());
    PrOutParameters::try_from(&c.data_out[..]).expect("a planned list decodes");
}

fuzz_target!(|input: &[u8]| {
    let [paths_byte, hosts, op, scope_type, len, tail @ ..] = input else {
        return;
    };
    let paths: Vec<PathView> = (0..=usize::from(paths_byte & 3))
        .map(|i| PathView {
            state: if paths_byte & (0x10 << i) != 0 {
                PathState::Failed
            } else {
                PathState::Active
            },
            dm: DmState::Unknown,
            host: Some(u32::from(hosts >> (2 * i) & 3)),
            dev: Some(DevNumber {
                major: 8,
                minor: 16 * i as u32,
            }),
        })
        .collect();

    let mut cdb = [0u8; CDB_LEN];
    cdb[1] = (op >> 1) & 0x1f;
    let (data, script) = if op & 1 == 1 {
        let n = usize::from(*len).min(tail.len());
        cdb[0] = PERSISTENT_RESERVE_OUT;
        cdb[2] = *scope_type;
        cdb[5..9].copy_from_slice(&(n as u32).to_be_bytes());
        tail.split_at(n)
    } else {
        cdb[0] = PERSISTENT_RESERVE_IN;
        let alloc = (u32::from(*len) * 33).min(MAX_TRANSFER_LEN) as u16;
        cdb[7..9].copy_from_slice(&alloc.to_be_bytes());
        (&[][..], tail)
    };
    let command = PrCommand {
        cdb: PrCdb::try_from(&cdb).expect("built within the protocol's limits"),
        data_out: data.to_vec(),
    };

    if let Ok(p) = plan(&command) {
        match &p.route {
            Route::OnePath | Route::Release { .. } => {}
            Route::OnePathThenReregister { reregister, .. } => check_command(reregister),
            Route::EveryPath { rest, rollback, .. } => {
                check_command(rest);
                let params = PrOutParameters::try_from(&rest.data_out[..]).unwrap();
                assert_eq!(params.transport_ids, None);
                if let Some(undo) = rollback {
                    check_command(undo);
                }
            }
        }
        for e in &p.events {
            let _ = e.to_string();
        }
    }

    let mut runner = Runner {
        lu: LogicalUnit::new(),
        script,
        calls: 0,
    };
    // A fresh logical unit holds no reservation the helper could have
    // taken before this command: no record of one.
    let outcome = route(&mut runner, &paths, &command, None);
    let good = outcome.reply.status == ScsiStatus::GOOD;
    assert!(good || outcome.events.is_empty());
    assert!(good || outcome.reply.payload.is_empty());
    assert!(outcome.reply.payload.len() <= command.cdb.transfer_len());
    // Each path sees the command, a rollback and a check at most, each with
    // its retries.
    let tries = MAX_RETRIES as usize + 1;
    assert!(
        runner.calls <= 3 * paths.len() * tries,
        "{} calls",
        runner.calls
    );
    assert!(runner.lu.invariants_hold());
});
