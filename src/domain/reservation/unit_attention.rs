// SPDX-License-Identifier: GPL-2.0-or-later
//! Unit attention conditions queued per I_T nexus.
//!
//! A PR OUT that takes something away from other nexuses (their registration,
//! their reservation) leaves a unit attention for each of them; the next
//! command that nexus sends is answered with CHECK CONDITION / UNIT ATTENTION
//! instead of being carried out, and the condition is cleared (UA_INTLCK_CTRL
//! 00b, LIO's default). Conditions are reported oldest first, one per command;
//! a condition already pending for a nexus is not queued twice.

use std::collections::{HashMap, VecDeque};

use super::nexus::NexusId;
use crate::domain::sense::SenseCode;

/// The pending unit attentions of every nexus of one logical unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitAttentions {
    pending: HashMap<NexusId, VecDeque<SenseCode>>,
}

impl UnitAttentions {
    /// Queues `code` for `nexus`, unless it is already pending there.
    pub fn establish(&mut self, nexus: &NexusId, code: SenseCode) {
        let queue = self.pending.entry(nexus.clone()).or_default();
        if !queue.contains(&code) {
            queue.push_back(code);
        }
    }

    /// Takes the oldest condition pending for `nexus`, clearing it.
    pub fn take(&mut self, nexus: &NexusId) -> Option<SenseCode> {
        let queue = self.pending.get_mut(nexus)?;
        let code = queue.pop_front();
        if queue.is_empty() {
            self.pending.remove(nexus);
        }
        code
    }

    /// The conditions pending for `nexus`, oldest first, without clearing them.
    pub fn pending(&self, nexus: &NexusId) -> Vec<SenseCode> {
        self.pending
            .get(nexus)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::param_list::TransportId;

    #[test]
    fn conditions_come_out_oldest_first_once_each() {
        let a = NexusId::new(TransportId::sas(1), 1);
        let b = NexusId::new(TransportId::sas(2), 1);
        let mut ua = UnitAttentions::default();
        ua.establish(&a, SenseCode::REGISTRATIONS_PREEMPTED);
        ua.establish(&a, SenseCode::RESERVATIONS_RELEASED);
        ua.establish(&a, SenseCode::REGISTRATIONS_PREEMPTED);
        assert_eq!(ua.pending(&b), vec![]);
        assert_eq!(ua.take(&b), None);
        assert_eq!(ua.take(&a), Some(SenseCode::REGISTRATIONS_PREEMPTED));
        assert_eq!(ua.take(&a), Some(SenseCode::RESERVATIONS_RELEASED));
        assert_eq!(ua.take(&a), None);
        assert_eq!(ua, UnitAttentions::default());
    }
}
