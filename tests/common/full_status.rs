// SPDX-License-Identifier: GPL-2.0-or-later
// READ FULL STATUS of two SAS registrants, the first holding Write
// Exclusive - Registrants Only, and the status table it makes: the fixture
// of the table's unit test (src/bin/qemu-pr-client/status.rs) and of the client's test
// against a fake helper (tests/client_fake_helper.rs). Both `include!` it
// in a module that has ReadFullStatus, FullStatusDescriptor, ReservationKey
// and TransportId in scope (the crate's paths differ between the two).

/// Two registrants; the first holds the reservation.
pub fn full_status_of_two() -> ReadFullStatus {
    let desc = |key: u64, holder: bool, sas: u64| FullStatusDescriptor {
        key: ReservationKey(key),
        all_tg_pt: false,
        r_holder: holder,
        scope: 0,
        type_code: if holder { 5 } else { 0 },
        relative_target_port: 1,
        transport_id: TransportId::sas(sas).as_bytes().to_vec(),
    };
    ReadFullStatus {
        generation: 4,
        descriptors: vec![
            desc(0xabc, true, 0x5000_0002_0000_0001),
            desc(0xdef, false, 0x5000_0002_0000_0002),
        ],
    }
}

/// The table `--status` prints for [`full_status_of_two`].
pub const TABLE_OF_TWO: &str = "  PR generation=0x4 (from READ FULL STATUS)
  reservation: Write Exclusive, registrants only, LU_SCOPE; holder marked *
  HOLDER  KEY                 PORT   TRANSPORT ID
  *       0xabc               1      sas,5000000200000001
          0xdef               1      sas,5000000200000002
";
