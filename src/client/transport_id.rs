// SPDX-License-Identifier: GPL-2.0-or-later
//! TransportIDs as sg_persist spells them on its command line (`-X`), in a
//! file (`-X file=NAME`) or on standard input (`-X -`), and the same spelling
//! back for display, so that what the status table shows can be pasted into
//! `-X`.
//!
//! Forms (SPC-4 7.6.4): `sas,ADDR` (16 hex digits), `fcp,N_PORT_NAME`
//! (16 hex digits), `spi,SCSI_ADDRESS,RTPI` (both decimal), `sbp,EUI64`
//! (16 hex digits), `srp,PORT_ID` (32 hex digits), `sop,ROUTING_ID` (hex),
//! an iSCSI name (`iqn.…`, `eui.…`, `naa.…`, optionally `NAME,i,0xISID`),
//! or the bytes in hex, separated by commas or spaces (one or two digits a
//! byte) or run together, zero-padded to 24 bytes as sg_persist pads them.

use std::io::{BufRead, Read};

use super::shown::shown;
use crate::domain::framing::MAX_TRANSFER_LEN;
use crate::domain::param_list::{protocol_id, TransportId};

/// The most bytes read from a TransportID file or standard input: as much
/// as the largest PR OUT parameter list the protocol carries. More is
/// refused rather than read without end (`-X file=/dev/zero`).
pub const MAX_TRANSPORT_ID_TEXT: u64 = MAX_TRANSFER_LEN as u64;

/// Parses one `-X` argument: `-` and `file=NAME` read one TransportID a line
/// from standard input or the file, anything else is one TransportID.
pub fn parse_argument(arg: &str) -> Result<Vec<TransportId>, String> {
    if arg == "-" {
        return parse_bounded(std::io::stdin().lock(), "standard input");
    }
    let path = arg
        .strip_prefix("file=")
        .or_else(|| arg.strip_prefix("FILE="));
    match path {
        Some(path) => {
            let name = shown(path);
            let f = std::fs::File::open(path)
                .map_err(|e| format!("cannot read TransportIDs from {name}: {e}"))?;
            parse_bounded(f, &name)
        }
        None => parse(arg).map(|t| vec![t]),
    }
}

/// [`parse_lines`] on at most [`MAX_TRANSPORT_ID_TEXT`] bytes of `input`;
/// longer input is refused.
fn parse_bounded(input: impl Read, source: &str) -> Result<Vec<TransportId>, String> {
    let mut text = Vec::new();
    input
        .take(MAX_TRANSPORT_ID_TEXT + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read TransportIDs from {source}: {e}"))?;
    if text.len() as u64 > MAX_TRANSPORT_ID_TEXT {
        return Err(format!(
            "TransportIDs from {source}: more than {MAX_TRANSPORT_ID_TEXT} bytes, the largest \
             PR OUT parameter list; refused"
        ));
    }
    parse_lines(text.as_slice(), source)
}

/// One TransportID a line; blank lines and everything from `#` are ignored.
pub fn parse_lines(input: impl BufRead, source: &str) -> Result<Vec<TransportId>, String> {
    let mut tids = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read TransportIDs from {source}: {e}"))?;
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        tids.push(parse(text).map_err(|e| format!("{source} line {}: {e}", n + 1))?);
    }
    if tids.is_empty() {
        return Err(format!("no TransportID in {source}"));
    }
    Ok(tids)
}

/// Parses one TransportID in any of the forms in the module documentation.
pub fn parse(s: &str) -> Result<TransportId, String> {
    let t = s.trim();
    let s = shown(s);
    let s = s.as_ref();
    let lower = t.to_ascii_lowercase();
    let mut b = vec![0u8; 24];
    // The forms that are one name in hex at a fixed place: prefix,
    // PROTOCOL IDENTIFIER, where the name goes, what it is called.
    const NAMES: [(&str, u8, std::ops::Range<usize>, &str); 4] = [
        ("sas,", protocol_id::SAS, 4..12, "SAS address"),
        ("fcp,", protocol_id::FC, 8..16, "FCP N_PORT_NAME"),
        ("sbp,", protocol_id::SBP, 8..16, "SBP EUI-64 name"),
        (
            "srp,",
            protocol_id::SRP,
            8..24,
            "SRP initiator port identifier",
        ),
    ];
    let named = NAMES
        .iter()
        .find_map(|(prefix, id, at, what)| Some((lower.strip_prefix(prefix)?, id, at, what)));
    if let Some((name, id, at, what)) = named {
        b[0] = *id;
        b[at.clone()].copy_from_slice(&hex_exact(name, at.len() * 2, what)?);
    } else if let Some(rest) = lower.strip_prefix("spi,") {
        let (addr, rtpi) = rest
            .split_once(',')
            .ok_or_else(|| format!("'{s}': give spi,SCSI_ADDRESS,RELATIVE_PORT"))?;
        let num = |v: &str| {
            v.trim().parse::<u16>().map_err(|_| {
                format!(
                    "'{}' in '{s}' is not a decimal number up to 65535",
                    shown(v)
                )
            })
        };
        b[0] = protocol_id::SPI;
        b[2..4].copy_from_slice(&num(addr)?.to_be_bytes());
        b[6..8].copy_from_slice(&num(rtpi)?.to_be_bytes());
    } else if let Some(id) = lower.strip_prefix("sop,") {
        let id = id.trim_start_matches("0x");
        let routing = u16::from_str_radix(id, 16)
            .map_err(|_| format!("'{s}': the SOP routing identifier is up to 4 hex digits"))?;
        b[0] = protocol_id::SOP;
        b[2..4].copy_from_slice(&routing.to_be_bytes());
    } else if ["iqn.", "eui.", "naa."]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return iscsi(t);
    } else {
        return hex_bytes(s, t);
    }
    // Only the fixed-width forms reach here: 24 bytes, always decodable.
    TransportId::from_bytes(&b).ok_or_else(|| format!("bad TransportID '{s}'"))
}

/// Exactly `digits` hex digits (an optional `0x` aside), as bytes.
fn hex_exact(s: &str, digits: usize, what: &str) -> Result<Vec<u8>, String> {
    let h = s.trim().trim_start_matches("0x");
    if h.len() != digits || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
        let s = shown(s);
        return Err(format!("the {what} is {digits} hex digits, not '{s}'"));
    }
    (0..digits)
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// Hex bytes: separated (one or two digits each) or run together.
fn hex_bytes(original: &str, t: &str) -> Result<TransportId, String> {
    let t = t.trim_start_matches("0x");
    let separated = t.contains([',', ' ', '\t', ':']);
    let bytes: Result<Vec<u8>, _> = if separated {
        t.split([',', ' ', '\t', ':'])
            .filter(|x| !x.is_empty())
            .map(|x| {
                if x.len() > 2 {
                    Err(())
                } else {
                    u8::from_str_radix(x, 16).map_err(|_| ())
                }
            })
            .collect()
    } else if t.len() % 2 == 0 {
        (0..t.len())
            .step_by(2)
            .map(|i| {
                t.get(i..i + 2)
                    .and_then(|x| u8::from_str_radix(x, 16).ok())
                    .ok_or(())
            })
            .collect()
    } else {
        Err(())
    };
    let mut bytes = match bytes {
        Ok(b) if !b.is_empty() => b,
        _ => {
            return Err(format!(
                "'{original}' is not a TransportID: give sas,ADDR, fcp,WWN, spi,ADDR,RTPI, \
                 sbp,EUI64, srp,ID, sop,ID, an iSCSI name or hex bytes"
            ))
        }
    };
    if bytes.len() < 24 {
        bytes.resize(24, 0);
    }
    TransportId::from_bytes(&bytes).ok_or_else(|| {
        format!(
            "'{original}' is not one valid TransportID ({} bytes; FC/SPI/SBP/SRP/SAS/SOP are \
             24 bytes, iSCSI 4 + its additional length)",
            bytes.len()
        )
    })
}

/// An iSCSI name; `NAME,i,0xISID` is format 01b, a bare name format 00b.
fn iscsi(name: &str) -> Result<TransportId, String> {
    let format: u8 = if name.to_ascii_lowercase().contains(",i,0x") {
        1
    } else {
        0
    };
    let shown_name = shown(name);
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    while n.len() < 20 || n.len() % 4 != 0 {
        n.push(0);
    }
    let len = u16::try_from(n.len()).map_err(|_| format!("iSCSI name too long: '{shown_name}'"))?;
    let mut b = vec![(format << 6) | protocol_id::ISCSI, 0];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&n);
    TransportId::from_bytes(&b).ok_or_else(|| format!("bad iSCSI TransportID '{shown_name}'"))
}

/// The TransportID in the spelling [`parse`] reads, or its bytes in hex when
/// it is none of the known forms.
pub fn to_text(t: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let be16 = |i: usize| u16::from_be_bytes([t[i], t[i + 1]]);
    if t.len() == 24 && t[0] >> 6 == 0 {
        match t[0] & 0x0f {
            protocol_id::SAS => return format!("sas,{}", hex(&t[4..12])),
            protocol_id::FC => return format!("fcp,{}", hex(&t[8..16])),
            protocol_id::SBP => return format!("sbp,{}", hex(&t[8..16])),
            protocol_id::SRP => return format!("srp,{}", hex(&t[8..24])),
            protocol_id::SPI => return format!("spi,{},{}", be16(2), be16(6)),
            protocol_id::SOP => return format!("sop,{:x}", be16(2)),
            _ => {}
        }
    }
    if t.len() > 4 && t[0] & 0x0f == protocol_id::ISCSI && t[0] >> 6 <= 1 {
        let name = &t[4..];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        if let Ok(s) = std::str::from_utf8(&name[..end]) {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) {
                return s.to_string();
            }
        }
    }
    hex(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Vec<u8> {
        parse(s).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn sas_and_fcp_put_the_address_where_spc_says() {
        let sas = bytes("SAS,5000c50005b32001");
        assert_eq!(sas[0], 0x06);
        assert_eq!(
            &sas[4..12],
            &[0x50, 0x00, 0xc5, 0x00, 0x05, 0xb3, 0x20, 0x01]
        );
        let fc = bytes("fcp,10000000C9F3A571");
        assert_eq!(fc[0], 0x00);
        assert_eq!(&fc[8..16], &[0x10, 0, 0, 0, 0xc9, 0xf3, 0xa5, 0x71]);
        assert!(parse("sas,1234").is_err(), "sg_persist wants 16 digits");
    }

    #[test]
    fn spi_sbp_srp_sop() {
        let spi = bytes("spi,7,2");
        assert_eq!(spi[0], protocol_id::SPI);
        assert_eq!(&spi[2..8], &[0, 7, 0, 0, 0, 2]);
        let sbp = bytes("sbp,0011223344556677");
        assert_eq!(sbp[0], protocol_id::SBP);
        assert_eq!(&sbp[8..16], &[0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
        let srp = bytes("srp,000102030405060708090a0b0c0d0e0f");
        assert_eq!(srp[0], protocol_id::SRP);
        assert_eq!(&srp[8..24], &(0..16u8).collect::<Vec<_>>()[..]);
        let sop = bytes("sop,1a2");
        assert_eq!(sop[0], protocol_id::SOP);
        assert_eq!(&sop[2..4], &[0x01, 0xa2]);
        for s in [&spi, &sbp, &srp, &sop] {
            assert_eq!(s.len(), 24);
        }
        assert!(parse("spi,7").is_err());
        assert!(parse("srp,0011").is_err());
    }

    #[test]
    fn hex_forms_as_sg_persist_reads_them() {
        // One or two digits a byte, padded to 24, as sg_persist reads them.
        let t = bytes("6,0,0,0,50,0,c5,0,5,b3,20,1");
        assert_eq!(t, bytes("sas,5000c50005b32001"));
        let run = "060000005000c50005b32001";
        assert_eq!(bytes(run), t);
        assert_eq!(bytes("06 00 00 00 50 00 c5 00 05 b3 20 01"), t);
        assert!(parse("6,0,0,0,50,0,c5,0,5,b3,20,100").is_err());
        assert!(parse("zz").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn iscsi_names_with_and_without_isid() {
        let t = bytes("iqn.2026-11.example:node1");
        assert_eq!(t[0], 0x05);
        assert_eq!(t.len() % 4, 0);
        let isid = bytes("iqn.2026-11.example:node1,i,0x23d000000001");
        assert_eq!(isid[0], 0x45);
        assert_eq!(to_text(&isid), "iqn.2026-11.example:node1,i,0x23d000000001");
    }

    #[test]
    fn text_form_reads_back() {
        for s in [
            "sas,5001405000000001",
            "fcp,21000024ff000001",
            "spi,7,2",
            "sbp,0011223344556677",
            "srp,000102030405060708090a0b0c0d0e0f",
            "sop,1a2",
            "iqn.2026-11.example:node1",
        ] {
            assert_eq!(to_text(&bytes(s)), s);
        }
        assert_eq!(to_text(&[0x09, 1, 2]), "090102");
    }

    #[test]
    fn lines_skip_comments_and_blanks() {
        let input =
            "# initiators\n\nsas,5001405000000001  # node a\n  6,0,0,0,50,1,40,50,0,0,0,2\n";
        let t = parse_lines(input.as_bytes(), "test").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(to_text(t[1].as_bytes()), "sas,5001405000000002");
        let e = parse_lines("sas,1\n".as_bytes(), "f").unwrap_err();
        assert!(e.starts_with("f line 1:"), "{e}");
        assert!(parse_lines("# nothing\n".as_bytes(), "f").is_err());
    }

    #[test]
    fn file_argument() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"sas,5001405000000001\nfcp,21000024ff000001\n").unwrap();
        let arg = format!("file={}", f.path().display());
        assert_eq!(parse_argument(&arg).unwrap().len(), 2);
        assert!(parse_argument("file=/nonexistent/tids").is_err());
    }
}
