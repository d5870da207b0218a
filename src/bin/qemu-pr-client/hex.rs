// SPDX-License-Identifier: GPL-2.0-or-later
//! Hex output in sg3_utils' layout: `-H` prints PR IN data as `sg_persist -H`
//! does, and `-v` prints the CDB, the parameter list and the helper's raw
//! reply header as `sg_persist -v` prints what it sends.

use std::fmt::Write as _;

use qemu_pr_helper::client::request::{PrRequest, Reply};
use qemu_pr_helper::domain::cdb::PrDirection;
use qemu_pr_helper::domain::service_action::PrInServiceAction;

/// How sg3_utils lays out a hex dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Offset, then 16 bytes a line (sg3_utils' `no_ascii > 0`).
    Offsets,
    /// Offset, 16 bytes and their ASCII (`no_ascii == 0`).
    OffsetsAscii,
    /// Only the bytes (`no_ascii < 0`).
    Bare,
}

/// `bytes` as sg3_utils' `hex2stdout` prints them: a space between bytes and
/// one more after the eighth, the offset in hex first unless `Bare`.
pub fn dump(bytes: &[u8], layout: Layout) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let mut line = String::new();
        if layout != Layout::Bare {
            let _ = write!(line, " {:02x}", i * 16);
            while line.len() < 8 {
                line.push(' ');
            }
        }
        for (j, b) in chunk.iter().enumerate() {
            if j == 8 {
                line.push(' ');
            }
            let _ = write!(line, "{b:02x} ");
        }
        if layout == Layout::OffsetsAscii {
            // ASCII starts in column 60, as in sg3_utils.
            while line.len() < 60 {
                line.push(' ');
            }
            line.extend(chunk.iter().map(|&c| {
                if (0x20..0x7f).contains(&c) {
                    char::from(c)
                } else {
                    '.'
                }
            }));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// PR IN data as `sg_persist -H` (once), `-HH` or `-HHH` prints it.
pub fn pr_in(action: PrInServiceAction, alloc_len: usize, payload: &[u8], level: u8) -> String {
    if action == PrInServiceAction::ReportCapabilities {
        return dump(&payload[..payload.len().min(8)], Layout::Offsets);
    }
    let be32 = |at: usize| {
        payload
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (generation, add_len) = (be32(0), be32(4) as usize);
    let body_end = payload.len().min(8usize.saturating_add(add_len));
    if level > 1 {
        let layout = if level == 2 {
            Layout::Offsets
        } else {
            Layout::Bare
        };
        return dump(&payload[..body_end], layout);
    }
    let mut out = format!("  PR generation=0x{generation:x}, ");
    if add_len > alloc_len.saturating_sub(8) {
        let _ = writeln!(out, "Additional length too large={add_len}, truncate");
    } else {
        let _ = writeln!(out, "Additional length={add_len}");
    }
    out.push_str(&dump(
        payload.get(8..body_end).unwrap_or(&[]),
        Layout::Offsets,
    ));
    out
}

/// What `-v` shows before a command goes out: its CDB and, from `-vv`, the
/// PR OUT parameter list, with sg_persist's wording.
pub fn sent(request: &PrRequest, verbose: u8) -> String {
    let what = match request.cdb().direction() {
        PrDirection::In => "Persistent reservation in",
        PrDirection::Out => "Persistent reservation out",
    };
    let cdb: Vec<String> = request
        .cdb()
        .command()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = format!("    {what} cdb: [{}]\n", cdb.join(" "));
    if verbose > 1 && !request.params().is_empty() {
        let _ = writeln!(out, "    {what} parameters:");
        out.push_str(&dump(request.params(), Layout::OffsetsAscii));
    }
    out
}

/// What `-v` shows when the answer arrives: the helper's 104-byte reply
/// header as received (status, payload length, sense).
pub fn received(reply: &Reply) -> String {
    let mut out = format!(
        "    helper reply header: status={}, payload length={}\n",
        reply.header.scsi_status(),
        reply.header.payload_len
    );
    out.push_str(&dump(&reply.raw_header, Layout::Offsets));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu_pr_helper::domain::pr_in_data::ReadKeys;
    use qemu_pr_helper::domain::service_action::ReservationKey;

    #[test]
    fn layout_matches_hex2stdout() {
        // As `sg_vpd -H` prints 40 bytes 30h..57h with sg3-utils 1.46.
        let b: Vec<u8> = (0x30..0x58).collect();
        assert_eq!(
            dump(&b, Layout::Offsets),
            " 00     30 31 32 33 34 35 36 37  38 39 3a 3b 3c 3d 3e 3f\n \
             10     40 41 42 43 44 45 46 47  48 49 4a 4b 4c 4d 4e 4f\n \
             20     50 51 52 53 54 55 56 57\n"
        );
        assert_eq!(
            dump(&b[..18], Layout::Bare),
            "30 31 32 33 34 35 36 37  38 39 3a 3b 3c 3d 3e 3f\n40 41\n"
        );
        let ascii = dump(b"AB\x01", Layout::OffsetsAscii);
        assert_eq!(
            ascii,
            format!(" 00     41 42 01{}AB.\n", " ".repeat(60 - 16))
        );
        let long = dump(&[0u8; 0x110], Layout::Offsets);
        assert!(long.lines().nth(16).unwrap().starts_with(" 100    00 00"));
    }

    #[test]
    fn read_keys_once_twice_thrice() {
        let data = ReadKeys {
            generation: 3,
            keys: vec![ReservationKey(0x1234), ReservationKey(0x5678)],
        }
        .encode();
        assert_eq!(
            pr_in(PrInServiceAction::ReadKeys, 8192, &data, 1),
            "  PR generation=0x3, Additional length=16\n \
             00     00 00 00 00 00 00 12 34  00 00 00 00 00 00 56 78\n"
        );
        assert_eq!(
            pr_in(PrInServiceAction::ReadKeys, 8192, &data, 2),
            " 00     00 00 00 03 00 00 00 10  00 00 00 00 00 00 12 34\n \
             10     00 00 00 00 00 00 56 78\n"
        );
        assert!(pr_in(PrInServiceAction::ReadKeys, 8192, &data, 3).starts_with("00 00 00 03"));
        let cut = pr_in(PrInServiceAction::ReadKeys, 16, &data[..16], 1);
        assert!(cut.starts_with("  PR generation=0x3, Additional length too large=16, truncate\n"));
        assert_eq!(cut.lines().count(), 2);
    }

    #[test]
    fn capabilities_are_their_eight_bytes() {
        let caps = [0, 8, 0x0d, 0x81, 0xea, 0x01, 0, 0];
        assert_eq!(
            pr_in(PrInServiceAction::ReportCapabilities, 8192, &caps, 1),
            " 00     00 08 0d 81 ea 01 00 00\n"
        );
    }

    #[test]
    fn verbose_shows_cdb_then_parameters() {
        let mut o = qemu_pr_helper::client::PrOutOptions::new(
            qemu_pr_helper::domain::service_action::PrOutServiceAction::Register,
        );
        o.service_action_key = 0xabc;
        let r = o.build().unwrap();
        assert_eq!(
            sent(&r, 1),
            "    Persistent reservation out cdb: [5f 00 00 00 00 00 00 00 18 00]\n"
        );
        let two = sent(&r, 2);
        assert!(two.contains("    Persistent reservation out parameters:\n 00     00 00"));
        assert_eq!(two.lines().count(), 4);
    }
}
