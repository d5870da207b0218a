// SPDX-License-Identifier: GPL-2.0-or-later
//! The block layer numbers reservation types 1..6 (`enum pr_type`); SCSI
//! numbers them 1, 3, 5, 6, 7, 8. Every value crosses here, both ways.

use crate::domain::service_action::ReservationType;

/// A reservation type as `<linux/pr.h>` numbers it (`PR_WRITE_EXCLUSIVE` = 1
/// ... `PR_EXCLUSIVE_ACCESS_ALL_REGS` = 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPrType(pub u32);

impl From<ReservationType> for BlockPrType {
    fn from(t: ReservationType) -> BlockPrType {
        BlockPrType(match t {
            ReservationType::WriteExclusive => 1,
            ReservationType::ExclusiveAccess => 2,
            ReservationType::WriteExclusiveRegistrantsOnly => 3,
            ReservationType::ExclusiveAccessRegistrantsOnly => 4,
            ReservationType::WriteExclusiveAllRegistrants => 5,
            ReservationType::ExclusiveAccessAllRegistrants => 6,
        })
    }
}

impl BlockPrType {
    /// The SCSI type; `None` for 0 (what the kernel reports when there is no
    /// reservation, or one of a type it cannot name) and unknown values.
    pub fn scsi(self) -> Option<ReservationType> {
        match self.0 {
            1 => Some(ReservationType::WriteExclusive),
            2 => Some(ReservationType::ExclusiveAccess),
            3 => Some(ReservationType::WriteExclusiveRegistrantsOnly),
            4 => Some(ReservationType::ExclusiveAccessRegistrantsOnly),
            5 => Some(ReservationType::WriteExclusiveAllRegistrants),
            6 => Some(ReservationType::ExclusiveAccessAllRegistrants),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_six_types_map_both_ways_as_the_kernel_numbers_them() {
        let table = [(1, 1), (2, 3), (3, 5), (4, 6), (5, 7), (6, 8)];
        for (block, scsi) in table {
            let t = ReservationType::from_code(scsi).unwrap();
            assert_eq!(BlockPrType::from(t), BlockPrType(block), "SCSI {scsi}");
            assert_eq!(BlockPrType(block).scsi(), Some(t), "block {block}");
        }
        assert_eq!(BlockPrType(0).scsi(), None);
        assert_eq!(BlockPrType(7).scsi(), None);
    }
}
