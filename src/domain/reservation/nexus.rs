// SPDX-License-Identifier: GPL-2.0-or-later
//! The I_T nexus: the pair (initiator port, target port) that registrations
//! and unit attentions belong to.

use crate::domain::param_list::{protocol_id, TransportId};

/// One I_T nexus, identified the way a PERSISTENT RESERVE OUT parameter list
/// names one: the initiator port's TransportID and the RELATIVE TARGET PORT
/// IDENTIFIER of the target port.
///
/// The caller decides what an initiator is; the model only compares them. For
/// fixed-length TransportIDs (SAS, Fibre Channel) only the identifying bytes
/// count, so a TransportID with junk in its reserved bytes names the same port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NexusId {
    initiator: TransportId,
    relative_target_port: u16,
}

impl NexusId {
    /// The nexus between `initiator` and the target port `relative_target_port`.
    pub fn new(initiator: TransportId, relative_target_port: u16) -> NexusId {
        NexusId {
            initiator: canonical(initiator),
            relative_target_port,
        }
    }

    /// The initiator port's TransportID (reserved bytes zeroed).
    pub fn initiator(&self) -> &TransportId {
        &self.initiator
    }

    /// RELATIVE TARGET PORT IDENTIFIER of the target port.
    pub fn relative_target_port(&self) -> u16 {
        self.relative_target_port
    }
}

/// Rebuilds fixed-format TransportIDs from their identifying field only.
fn canonical(tid: TransportId) -> TransportId {
    let b = tid.as_bytes();
    match (tid.protocol(), b.len()) {
        (protocol_id::SAS, 24) if b[0] >> 6 == 0 => {
            let mut address = [0u8; 8];
            address.copy_from_slice(&b[4..12]);
            TransportId::sas(u64::from_be_bytes(address))
        }
        (protocol_id::FC, 24) if b[0] >> 6 == 0 => {
            let mut c = [0u8; 24];
            c[0] = protocol_id::FC;
            c[8..16].copy_from_slice(&b[8..16]);
            TransportId::from_bytes(&c).unwrap_or(tid)
        }
        _ => tid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_reserved_bytes_do_not_make_a_different_nexus() {
        let mut raw = TransportId::sas(0x5000_0000_0000_0001).as_bytes().to_vec();
        raw[1] = 0xff;
        raw[20] = 0x77;
        let noisy = TransportId::from_bytes(&raw).unwrap();
        assert_eq!(
            NexusId::new(noisy, 1),
            NexusId::new(TransportId::sas(0x5000_0000_0000_0001), 1)
        );
        assert_ne!(
            NexusId::new(TransportId::sas(1), 1),
            NexusId::new(TransportId::sas(1), 2)
        );
        assert_ne!(
            NexusId::new(TransportId::sas(1), 1),
            NexusId::new(TransportId::sas(2), 1)
        );
    }

    #[test]
    fn fibre_channel_compares_by_port_name() {
        let mut a = [0u8; 24];
        a[8..16].copy_from_slice(&0x2100_0024_ff00_0001u64.to_be_bytes());
        let mut b = a;
        b[3] = 9;
        let (a, b) = (
            TransportId::from_bytes(&a).unwrap(),
            TransportId::from_bytes(&b).unwrap(),
        );
        assert_eq!(NexusId::new(a, 1), NexusId::new(b, 1));
    }
}
