// SPDX-License-Identifier: GPL-2.0-or-later
//! Turning a reply into what the operator reads: sg_persist-like text.
//! Pure functions of the request and reply; JSON is in [`crate::json`], hex
//! in [`crate::hex`].

use std::fmt::Write as _;

use qemu_pr_helper::client::exit_status;
use qemu_pr_helper::client::request::{PrRequest, Reply};
use qemu_pr_helper::domain::cdb::Hex;
use qemu_pr_helper::domain::param_list::protocol_id;
use qemu_pr_helper::domain::pr_in_data::{
    Capabilities, Decoded, FullStatusDescriptor, PrInData, ReadFullStatus, ReadKeys,
    ReadReservation,
};
use qemu_pr_helper::domain::sense::{ScsiStatus, SenseCode};
use qemu_pr_helper::domain::service_action::{
    PrInServiceAction, PrOutServiceAction, ReservationType,
};

/// Text for standard output and standard error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// What goes to standard output.
    pub stdout: String,
    /// What goes to standard error.
    pub stderr: String,
}

/// What the command was, in sg_persist's words: "PR in (Read keys)",
/// "PR out (Reserve)", so that a script matching sg_persist's messages
/// matches ours.
pub fn command_name(request: &PrRequest) -> String {
    match (request.cdb().pr_in_action(), request.cdb().pr_out_action()) {
        (Some(a), _) => format!("PR in ({})", pr_in_name(a)),
        (_, Some(a)) => format!("PR out ({})", pr_out_name(a)),
        _ => "command".to_string(),
    }
}

/// The command as a token a script can match: the long option that asks
/// for it ("read-keys", "register-ignore", ...).
pub fn command_token(request: &PrRequest) -> String {
    use PrInServiceAction as In;
    use PrOutServiceAction as Out;
    let token = match (request.cdb().pr_in_action(), request.cdb().pr_out_action()) {
        (Some(In::ReadKeys), _) => "read-keys",
        (Some(In::ReadReservation), _) => "read-reservation",
        (Some(In::ReportCapabilities), _) => "report-capabilities",
        (Some(In::ReadFullStatus), _) => "read-full-status",
        (Some(In::Unknown(sa)), _) => return format!("pr-in-0x{sa:02x}"),
        (_, Some(Out::Register)) => "register",
        (_, Some(Out::Reserve)) => "reserve",
        (_, Some(Out::Release)) => "release",
        (_, Some(Out::Clear)) => "clear",
        (_, Some(Out::Preempt)) => "preempt",
        (_, Some(Out::PreemptAndAbort)) => "preempt-abort",
        (_, Some(Out::RegisterAndIgnoreExistingKey)) => "register-ignore",
        (_, Some(Out::RegisterAndMove)) => "register-move",
        (_, Some(Out::ReplaceLostReservation)) => "replace-lost",
        (_, Some(a)) => return format!("pr-out-0x{:02x}", a.code()),
        (None, None) => "command",
    };
    token.to_string()
}

/// sg_persist's name for a PR IN service action.
fn pr_in_name(a: PrInServiceAction) -> String {
    match a {
        PrInServiceAction::ReadKeys => "Read keys".into(),
        PrInServiceAction::ReadReservation => "Read reservation".into(),
        PrInServiceAction::ReportCapabilities => "Report capabilities".into(),
        PrInServiceAction::ReadFullStatus => "Read full status".into(),
        PrInServiceAction::Unknown(sa) => format!("service action=0x{sa:x}"),
    }
}

/// sg_persist's name for a PR OUT service action.
fn pr_out_name(a: PrOutServiceAction) -> String {
    match a {
        PrOutServiceAction::Register => "Register".into(),
        PrOutServiceAction::Reserve => "Reserve".into(),
        PrOutServiceAction::Release => "Release".into(),
        PrOutServiceAction::Clear => "Clear".into(),
        PrOutServiceAction::Preempt => "Preempt".into(),
        PrOutServiceAction::PreemptAndAbort => "Preempt and abort".into(),
        PrOutServiceAction::RegisterAndIgnoreExistingKey => {
            "Register and ignore existing key".into()
        }
        // sg_persist sends it from a routine of its own, which names it so.
        PrOutServiceAction::RegisterAndMove => "register and move".into(),
        PrOutServiceAction::ReplaceLostReservation => "Replace lost reservation".into(),
        a => format!("service action=0x{:x}", a.code()),
    }
}

/// Which of sg_persist's three failure messages a command gets: PR IN,
/// PR OUT, and REGISTER AND MOVE (which has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVoice {
    /// PERSISTENT RESERVE IN.
    PrIn,
    /// PERSISTENT RESERVE OUT, all but REGISTER AND MOVE.
    PrOut,
    /// PERSISTENT RESERVE OUT, REGISTER AND MOVE.
    RegisterAndMove,
}

impl FailureVoice {
    fn of(request: &PrRequest) -> FailureVoice {
        match request.cdb().pr_out_action() {
            None => FailureVoice::PrIn,
            Some(PrOutServiceAction::RegisterAndMove) => FailureVoice::RegisterAndMove,
            Some(_) => FailureVoice::PrOut,
        }
    }
}

/// What sg_persist 1.48 says after the command's name when it fails, from
/// the exit status it would return: its own words for the ILLEGAL REQUEST
/// cases (which differ between PR IN, PR OUT and REGISTER AND MOVE), and
/// sg3_utils' category words for the rest, spelling included.
pub fn failure_words(exit_status: u8, voice: FailureVoice) -> &'static str {
    match (exit_status, voice) {
        (exit_status::INVALID_OPCODE, _) => "command not supported",
        (exit_status::ILLEGAL_REQUEST, FailureVoice::PrIn) => {
            "bad field in cdb or parameter list (perhaps unsupported service action)"
        }
        (exit_status::ILLEGAL_REQUEST, _) => {
            "bad field in cdb (perhaps unsupported service action)"
        }
        (exit_status::INVALID_PARAMETER_LIST, FailureVoice::PrIn) => {
            "Illegal request, Invalid field in parameter list"
        }
        (exit_status::INVALID_PARAMETER_LIST, FailureVoice::PrOut) => "bad field parameter list",
        (exit_status::INVALID_PARAMETER_LIST, FailureVoice::RegisterAndMove) => {
            "bad field in parameter list"
        }
        (exit_status::NOT_READY, _) => "Device not ready",
        (exit_status::NOT_READY_STANDBY, _) => "Device not ready, standby",
        (exit_status::NOT_READY_UNAVAILABLE, _) => "Device not ready, unavailable",
        (exit_status::MEDIUM_HARD, _) => "Medium or hardware error",
        (exit_status::UNIT_ATTENTION, _) => "Unit attention",
        (exit_status::DATA_PROTECT, _) => "Data protect",
        (exit_status::COPY_ABORTED, _) => "Copy aborted",
        (exit_status::ABORTED_COMMAND, _) => "Aborted command",
        (exit_status::MISCOMPARE, _) => "Miscompare",
        (exit_status::LBA_OUT_OF_RANGE, _) => "LBA out of range",
        (exit_status::RESERVATION_CONFLICT, _) => "Reservation conflict",
        (exit_status::CONDITION_MET, _) => "Condition met",
        (exit_status::BUSY, _) => "Busy",
        (exit_status::TASK_SET_FULL, _) => "Task set full",
        // sg3_utils' spelling, which scripts may match.
        (exit_status::ACA_ACTIVE, _) => "ACA aactive",
        (exit_status::TASK_ABORTED, _) => "Task aborted",
        (exit_status::PROTECTION, _) => "Aborted command, protection error",
        (exit_status::OTHER_SENSE, _) => "Some other sense error",
        _ => "Some other error",
    }
}

/// sg_persist-like text. A failure is sg_persist's one line on stderr
/// ("PR out (Reserve): Reservation conflict"); with `verbose`, the status
/// and sense follow it. A PR OUT that succeeds prints nothing, or with
/// `verbose` sg_persist's line on stderr.
pub fn human(request: &PrRequest, reply: &Reply, verbose: u8) -> Rendered {
    let mut out = Rendered::default();
    let status = reply.header.scsi_status();
    let what = command_name(request);
    if status != ScsiStatus::GOOD {
        let code = exit_status::for_reply(status, &reply.header.sense);
        let _ = writeln!(
            out.stderr,
            "{what}: {}",
            failure_words(code, FailureVoice::of(request))
        );
        if verbose > 0 {
            let _ = write!(out.stderr, "  status: {}", status.name());
            if status == ScsiStatus::CHECK_CONDITION {
                match reply.header.sense.code() {
                    Some(code) => {
                        let _ = write!(out.stderr, ", sense: {code}");
                        if let Some(name) = code.name() {
                            let _ = write!(out.stderr, " {name}");
                        }
                    }
                    None => out.stderr.push_str(", no recognisable sense data"),
                }
            }
            out.stderr.push('\n');
        }
        if status == ScsiStatus::CHECK_CONDITION
            && reply.header.sense.code() == Some(SenseCode::INVALID_OPCODE)
            && request.cdb().pr_out_action().is_some()
        {
            out.stderr.push_str(
                "  (the helper answers this to PR OUT on a device opened read-only: \
                 drop --readonly)\n",
            );
        }
        return out;
    }
    let Some(action) = request.cdb().pr_in_action() else {
        if verbose > 0 {
            let name = request
                .cdb()
                .pr_out_action()
                .map_or_else(String::new, pr_out_name);
            if FailureVoice::of(request) == FailureVoice::RegisterAndMove {
                let _ = writeln!(out.stderr, "PR out ({name}): command successful");
            } else {
                let _ = writeln!(out.stderr, "PR out: command ({name}) successful");
            }
        }
        return out;
    };
    match PrInData::decode(action, &reply.payload) {
        Err(e) => {
            let _ = writeln!(
                out.stderr,
                "{what}: {e}; raw data: {}",
                hex_string(&reply.payload)
            );
        }
        Ok(None) => {
            let _ = writeln!(out.stdout, "{}", hex_string(&reply.payload));
        }
        Ok(Some(data)) => {
            match &data {
                PrInData::Keys(d) => human_keys(&mut out.stdout, d),
                PrInData::Reservation(d) => human_reservation(&mut out.stdout, d),
                PrInData::Capabilities(d) => human_capabilities(&mut out.stdout, d),
                PrInData::FullStatus(d) => human_full_status(&mut out.stdout, d),
            }
            completeness_note(&mut out.stderr, &data, request);
        }
    }
    out
}

fn completeness_note(err: &mut String, data: &PrInData, request: &PrRequest) {
    let (truncated, claimed, received, leftover) = match data {
        PrInData::Keys(d) => (d.truncated, d.claimed_total(8), d.received, d.leftover),
        PrInData::Reservation(d) => (d.truncated, d.claimed_total(8), d.received, d.leftover),
        PrInData::Capabilities(d) => (d.truncated, d.claimed_total(0), d.received, d.leftover),
        PrInData::FullStatus(d) => (d.truncated, d.claimed_total(8), d.received, d.leftover),
    };
    if truncated {
        let _ = writeln!(
            err,
            "warning: response truncated: {received} of {claimed} bytes (allocation length {}); \
             raise --alloc-length",
            request.cdb().transfer_len()
        );
    }
    if leftover != 0 {
        let _ = writeln!(
            err,
            "warning: {leftover} bytes of the response form no whole item: malformed data"
        );
    }
}

fn human_keys(out: &mut String, d: &Decoded<ReadKeys>) {
    let keys = &d.value.keys;
    let _ = write!(out, "  PR generation=0x{:x}, ", d.value.generation);
    match keys.len() {
        0 if d.truncated => out.push_str("registered reservation keys were cut off\n"),
        0 => out.push_str("there are NO registered reservation keys\n"),
        1 => out.push_str("1 registered reservation key follows:\n"),
        n => {
            let _ = writeln!(out, "{n} registered reservation keys follow:");
        }
    }
    for k in keys {
        let _ = writeln!(out, "    {k}");
    }
}

/// sg_persist's name for a TYPE nibble.
pub fn type_name(code: u8) -> String {
    match ReservationType::from_code(code) {
        Some(t) => t.to_string(),
        None => format!("obsolete [{:#x}]", code & 0x0f),
    }
}

fn scope_type_line(out: &mut String, indent: &str, scope: u8, type_code: u8) {
    if scope == 0 {
        let _ = write!(out, "{indent}scope: LU_SCOPE, ");
    } else {
        let _ = write!(out, "{indent}scope: {scope} ");
    }
    let _ = writeln!(out, " type: {}", type_name(type_code));
}

fn human_reservation(out: &mut String, d: &Decoded<ReadReservation>) {
    let _ = write!(out, "  PR generation=0x{:x}, ", d.value.generation);
    match &d.value.reservation {
        Some(r) => {
            out.push_str("Reservation follows:\n");
            let _ = writeln!(out, "    Key={}", r.key);
            scope_type_line(out, "    ", r.scope, r.type_code);
        }
        None if d.truncated => out.push_str("the reservation was cut off\n"),
        None => out.push_str("there is NO reservation held\n"),
    }
}

fn human_capabilities(out: &mut String, d: &Decoded<Capabilities>) {
    let c = &d.value;
    let b = u8::from;
    out.push_str("Report capabilities response:\n");
    let _ = writeln!(
        out,
        "  Replace Lost Reservation Capable(RLR_C): {}",
        b(c.rlr_c)
    );
    let _ = writeln!(out, "  Compatible Reservation Handling(CRH): {}", b(c.crh));
    let _ = writeln!(
        out,
        "  Specify Initiator Ports Capable(SIP_C): {}",
        b(c.sip_c)
    );
    let _ = writeln!(out, "  All Target Ports Capable(ATP_C): {}", b(c.atp_c));
    let _ = writeln!(
        out,
        "  Persist Through Power Loss Capable(PTPL_C): {}",
        b(c.ptpl_c)
    );
    let _ = writeln!(out, "  Type Mask Valid(TMV): {}", b(c.tmv));
    let _ = writeln!(out, "  Allow Commands: {}", c.allow_commands);
    let _ = writeln!(
        out,
        "  Persist Through Power Loss Active(PTPL_A): {}",
        b(c.ptpl_a)
    );
    if c.tmv {
        out.push_str("    Support indicated in Type mask:\n");
        // sg_persist's order: the mask's bit order.
        for t in [
            ReservationType::WriteExclusiveAllRegistrants,
            ReservationType::ExclusiveAccessRegistrantsOnly,
            ReservationType::WriteExclusiveRegistrantsOnly,
            ReservationType::ExclusiveAccess,
            ReservationType::WriteExclusive,
            ReservationType::ExclusiveAccessAllRegistrants,
        ] {
            let on = c.type_mask & Capabilities::type_mask_bit(t) != 0;
            let _ = writeln!(out, "      {t}: {}", u8::from(on));
        }
    }
}

fn human_full_status(out: &mut String, d: &Decoded<ReadFullStatus>) {
    let _ = writeln!(out, "  PR generation=0x{:x}", d.value.generation);
    if d.value.descriptors.is_empty() && !d.truncated {
        out.push_str("  No full status descriptors\n");
    }
    for desc in &d.value.descriptors {
        let _ = writeln!(out, "    Key={}", desc.key);
        if desc.all_tg_pt {
            out.push_str("      All target ports bit set\n");
        } else {
            out.push_str("      All target ports bit clear\n");
            let _ = writeln!(
                out,
                "      Relative port address: 0x{:x}",
                desc.relative_target_port
            );
        }
        if desc.r_holder {
            out.push_str("      << Reservation holder >>\n");
            scope_type_line(out, "      ", desc.scope, desc.type_code);
        } else {
            out.push_str("      not reservation holder\n");
        }
        if !desc.transport_id.is_empty() {
            human_transport_id(out, "      ", desc);
        }
    }
}

fn human_transport_id(out: &mut String, indent: &str, desc: &FullStatusDescriptor) {
    let t = &desc.transport_id;
    let _ = writeln!(out, "{indent}Transport Id of initiator:");
    let format = t[0] >> 6;
    match t[0] & 0x0f {
        protocol_id::SAS if t.len() >= 12 => {
            let _ = writeln!(out, "{indent}  SAS address: 0x{}", hex_string(&t[4..12]));
        }
        protocol_id::FC if t.len() >= 16 => {
            let _ = writeln!(
                out,
                "{indent}  FCP-2 World Wide Name: 0x{}",
                hex_string(&t[8..16])
            );
        }
        protocol_id::ISCSI if t.len() > 4 => {
            let label = if format == 1 {
                "name and session id"
            } else {
                "name"
            };
            let _ = writeln!(out, "{indent}  iSCSI {label}: {}", iscsi_name(&t[4..]));
        }
        p => {
            let _ = writeln!(
                out,
                "{indent}  protocol id=0x{p:x} format code={format}: {}",
                hex_string(t)
            );
        }
    }
}

/// An iSCSI name up to its NUL, with anything unprintable escaped.
fn iscsi_name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end])
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Lower-case hex without separators, as the daemon's log lines show bytes.
pub fn hex_string(b: &[u8]) -> String {
    Hex(b).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_pr_helper::client::request::PrOutOptions;
    use qemu_pr_helper::domain::framing::PrReply;
    use qemu_pr_helper::domain::param_list::TransportId;
    use qemu_pr_helper::domain::pr_in_data::Reservation;
    use qemu_pr_helper::domain::service_action::{
        PrInServiceAction, PrOutServiceAction, ReservationKey,
    };

    fn reply(r: PrReply) -> Reply {
        Reply::from_pr_reply(r).unwrap()
    }

    fn pr_in(a: PrInServiceAction) -> PrRequest {
        PrRequest::pr_in(a, 8192).unwrap()
    }

    #[test]
    fn read_keys_like_sg_persist() {
        let data = ReadKeys {
            generation: 3,
            keys: vec![ReservationKey(0x1234), ReservationKey(0x5678)],
        };
        let r = human(
            &pr_in(PrInServiceAction::ReadKeys),
            &reply(PrReply::good(data.encode())),
            0,
        );
        assert_eq!(
            r.stdout,
            "  PR generation=0x3, 2 registered reservation keys follow:\n    0x1234\n    0x5678\n"
        );
        assert_eq!(r.stderr, "");
        let none = human(
            &pr_in(PrInServiceAction::ReadKeys),
            &reply(PrReply::good(ReadKeys::default().encode())),
            0,
        );
        assert_eq!(
            none.stdout,
            "  PR generation=0x0, there are NO registered reservation keys\n"
        );
    }

    #[test]
    fn truncated_reply_warns_on_stderr() {
        let data = ReadKeys {
            generation: 1,
            keys: vec![ReservationKey(1), ReservationKey(2)],
        };
        let req = PrRequest::pr_in(PrInServiceAction::ReadKeys, 16).unwrap();
        let r = human(&req, &reply(PrReply::good(data.encode()).fit_to(16)), 0);
        assert!(r.stdout.contains("1 registered reservation key follows:"));
        assert!(
            r.stderr.contains("truncated: 16 of 24 bytes"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn reservation_and_none() {
        let data = ReadReservation {
            generation: 4,
            reservation: Some(Reservation::new(
                ReservationKey(0xabc),
                ReservationType::WriteExclusiveRegistrantsOnly,
            )),
        };
        let r = human(
            &pr_in(PrInServiceAction::ReadReservation),
            &reply(PrReply::good(data.encode())),
            0,
        );
        assert_eq!(
            r.stdout,
            "  PR generation=0x4, Reservation follows:\n    Key=0xabc\n    scope: LU_SCOPE,  \
             type: Write Exclusive, registrants only\n"
        );
        let r = human(
            &pr_in(PrInServiceAction::ReadReservation),
            &reply(PrReply::good(ReadReservation::default().encode())),
            0,
        );
        assert_eq!(
            r.stdout,
            "  PR generation=0x0, there is NO reservation held\n"
        );
    }

    #[test]
    fn capabilities_list_the_type_mask() {
        let c = Capabilities {
            atp_c: true,
            tmv: true,
            type_mask: Capabilities::mask_of(&[ReservationType::WriteExclusive]),
            ..Default::default()
        };
        let r = human(
            &pr_in(PrInServiceAction::ReportCapabilities),
            &reply(PrReply::good(c.encode())),
            0,
        );
        assert!(r.stdout.contains("  All Target Ports Capable(ATP_C): 1\n"));
        assert!(r.stdout.contains("      Write Exclusive: 1\n"));
        assert!(r.stdout.contains("      Exclusive Access: 0\n"));
    }

    #[test]
    fn full_status_shows_holder_and_transport_id() {
        let mut iscsi = vec![0x05, 0, 0, 20];
        iscsi.extend_from_slice(b"iqn.x:\x1bnode\0\0\0\0\0\0\0\0\0");
        let fs = ReadFullStatus {
            generation: 2,
            descriptors: vec![
                FullStatusDescriptor {
                    key: ReservationKey(0x11),
                    all_tg_pt: false,
                    r_holder: true,
                    scope: 0,
                    type_code: 1,
                    relative_target_port: 1,
                    transport_id: TransportId::sas(0x5001_4050_0000_0001).as_bytes().to_vec(),
                },
                FullStatusDescriptor {
                    key: ReservationKey(0x22),
                    all_tg_pt: true,
                    r_holder: false,
                    scope: 0,
                    type_code: 0,
                    relative_target_port: 0,
                    transport_id: iscsi,
                },
            ],
        };
        let r = human(
            &pr_in(PrInServiceAction::ReadFullStatus),
            &reply(PrReply::good(fs.encode())),
            0,
        );
        let expected = "  PR generation=0x2
    Key=0x11
      All target ports bit clear
      Relative port address: 0x1
      << Reservation holder >>
      scope: LU_SCOPE,  type: Write Exclusive
      Transport Id of initiator:
        SAS address: 0x5001405000000001
    Key=0x22
      All target ports bit set
      not reservation holder
      Transport Id of initiator:
        iSCSI name: iqn.x:\\u{1b}node
";
        assert_eq!(r.stdout, expected);
    }

    #[test]
    fn a_failure_is_sg_persists_line_and_the_sense_only_with_verbose() {
        let mut o = PrOutOptions::new(PrOutServiceAction::Register);
        o.service_action_key = 1;
        let req = o.build().unwrap();
        let rep = reply(PrReply::check_condition(SenseCode::INVALID_OPCODE));
        let r = human(&req, &rep, 0);
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr,
            "PR out (Register): command not supported\n  (the helper answers this to PR OUT \
             on a device opened read-only: drop --readonly)\n"
        );
        let r = human(&req, &rep, 1);
        assert!(
            r.stderr.starts_with(
                "PR out (Register): command not supported\n  status: CHECK CONDITION, sense: \
                 ILLEGAL REQUEST (5h) asc/ascq 20h/00h INVALID COMMAND OPERATION CODE\n"
            ),
            "{}",
            r.stderr
        );
        // Names come from the domain's one table, this one included.
        let rel = PrOutOptions::new(PrOutServiceAction::Release)
            .build()
            .unwrap();
        let rep = reply(PrReply::check_condition(
            SenseCode::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
        ));
        assert_eq!(
            human(&rel, &rep, 0).stderr,
            "PR out (Release): bad field in cdb (perhaps unsupported service action)\n"
        );
        assert!(human(&rel, &rep, 1)
            .stderr
            .ends_with("26h/04h INVALID RELEASE OF PERSISTENT RESERVATION\n"),);
    }

    #[test]
    fn reservation_conflict_and_pr_out_good() {
        let req = PrOutOptions::new(PrOutServiceAction::Reserve)
            .build()
            .unwrap();
        let conflict = reply(PrReply::status_only(ScsiStatus::RESERVATION_CONFLICT));
        let r = human(&req, &conflict, 0);
        assert_eq!(r.stdout, "");
        assert_eq!(r.stderr, "PR out (Reserve): Reservation conflict\n");
        let r = human(&req, &reply(PrReply::good(Vec::new())), 0);
        assert_eq!(r, Rendered::default(), "success is silent");
        let r = human(&req, &reply(PrReply::good(Vec::new())), 1);
        assert_eq!(r.stdout, "");
        assert_eq!(r.stderr, "PR out: command (Reserve) successful\n");
        // REGISTER AND MOVE has sg_persist's other form.
        let mut mv = PrOutOptions::new(PrOutServiceAction::RegisterAndMove);
        mv.transport_ids = vec![qemu_pr_helper::domain::param_list::TransportId::sas(1)];
        let mv = mv.build().unwrap();
        let r = human(&mv, &reply(PrReply::good(Vec::new())), 1);
        assert_eq!(r.stderr, "PR out (register and move): command successful\n");
    }

    #[test]
    fn pr_in_failures_name_the_action_as_sg_persist_does() {
        let r = human(
            &pr_in(PrInServiceAction::ReadKeys),
            &reply(PrReply::check_condition(SenseCode::INVALID_FIELD_IN_CDB)),
            0,
        );
        assert_eq!(
            r.stderr,
            "PR in (Read keys): bad field in cdb or parameter list (perhaps unsupported \
             service action)\n"
        );
        let r = human(
            &pr_in(PrInServiceAction::ReadFullStatus),
            &reply(PrReply::status_only(ScsiStatus::BUSY)),
            0,
        );
        assert_eq!(r.stderr, "PR in (Read full status): Busy\n");
    }

    #[test]
    fn every_action_has_sg_persists_name_and_an_option_token() {
        let r = pr_in(PrInServiceAction::ReportCapabilities);
        assert_eq!(command_name(&r), "PR in (Report capabilities)");
        assert_eq!(command_token(&r), "report-capabilities");
        let r = PrOutOptions::new(PrOutServiceAction::RegisterAndIgnoreExistingKey)
            .build()
            .unwrap();
        assert_eq!(
            command_name(&r),
            "PR out (Register and ignore existing key)"
        );
        assert_eq!(command_token(&r), "register-ignore");
    }
}
