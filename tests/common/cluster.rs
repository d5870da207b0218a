// SPDX-License-Identifier: GPL-2.0-or-later
//! The cluster sequences on one shared disk, written once and run at two
//! layers: on the emulated device through the executor port
//! (src/adapters/emulated/tests.rs includes this file by path) and on the
//! daemon over the wire (tests/emulated.rs). Each layer implements
//! [`Nexus`] and adds, at the [`Stage`]s, what only it can see. Plain std
//! only, so that both can include it.

/// GOOD.
pub const GOOD: u8 = 0x00;
/// CHECK CONDITION.
pub const CHECK_CONDITION: u8 = 0x02;
/// RESERVATION CONFLICT.
pub const RESERVATION_CONFLICT: u8 = 0x18;
/// Write Exclusive - Registrants Only.
pub const WERO: u8 = 0x05;
/// UNIT ATTENTION, REGISTRATIONS PREEMPTED.
pub const REGISTRATIONS_PREEMPTED: (u8, u8, u8) = (0x6, 0x2a, 0x05);

/// PERSISTENT RESERVE OUT service actions the sequences use.
pub mod out {
    pub const REGISTER: u8 = 0x00;
    pub const RESERVE: u8 = 0x01;
    pub const RELEASE: u8 = 0x02;
    pub const CLEAR: u8 = 0x03;
    pub const PREEMPT: u8 = 0x04;
    pub const PREEMPT_AND_ABORT: u8 = 0x05;
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
}

/// A status and, with CHECK CONDITION, the (sense key, ASC, ASCQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    pub sense: Option<(u8, u8, u8)>,
}

impl Outcome {
    pub const GOOD: Outcome = Outcome {
        status: GOOD,
        sense: None,
    };
    pub const CONFLICT: Outcome = Outcome {
        status: RESERVATION_CONFLICT,
        sense: None,
    };
    pub const PREEMPTED: Outcome = Outcome {
        status: CHECK_CONDITION,
        sense: Some(REGISTRATIONS_PREEMPTED),
    };
}

/// One initiator (one I_T nexus) of a cluster node.
pub trait Nexus {
    /// PERSISTENT RESERVE OUT with a basic parameter list.
    fn pr_out(&mut self, sa: u8, rtype: u8, key: u64, sa_key: u64) -> Outcome;
    /// READ KEYS: the keys, or the outcome when it is not GOOD.
    fn read_keys(&mut self) -> Result<Vec<u64>, Outcome>;
    /// READ RESERVATION (asserted GOOD): the holder's key and type.
    fn holder(&mut self) -> Option<(u64, u8)>;

    /// `pr_out`, asserted to have `expected` as its outcome.
    #[track_caller]
    fn expect(&mut self, expected: Outcome, sa: u8, rtype: u8, key: u64, sa_key: u64) {
        assert_eq!(
            self.pr_out(sa, rtype, key, sa_key),
            expected,
            "PR OUT {sa:#x}"
        );
    }

    /// READ KEYS, asserted GOOD.
    #[track_caller]
    fn keys(&mut self) -> Vec<u64> {
        self.read_keys().expect("READ KEYS is GOOD")
    }

    /// REGISTER AND IGNORE EXISTING KEY, asserted GOOD.
    #[track_caller]
    fn register(&mut self, key: u64) {
        self.expect(
            Outcome::GOOD,
            out::REGISTER_AND_IGNORE_EXISTING_KEY,
            0,
            0,
            key,
        );
    }
}

/// Where a sequence stops for the layer's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Both registered, the first holds WERO.
    Reserved,
    /// The second node fenced (fence_scsi) or the owner taken over
    /// (failover).
    Fenced,
    /// The fenced node back (fence_scsi), the owner back in charge
    /// (failover).
    Back,
}

/// fence_scsi: both nodes register (unfencing), the first reserves WERO;
/// the first fences the second with PREEMPT AND ABORT; the second learns it
/// once, is refused, and unfences again after its reboot.
pub fn fence_scsi<N: Nexus>(a: &mut N, b: &mut N, mut at: impl FnMut(Stage, &mut N, &mut N)) {
    let (ka, kb) = (0x1_0000_0001, 0x1_0000_0002);
    a.register(ka);
    b.register(kb);
    a.expect(Outcome::GOOD, out::RESERVE, WERO, ka, 0);
    assert_eq!(a.keys(), vec![ka, kb]);
    assert_eq!(b.holder(), Some((ka, WERO)));
    at(Stage::Reserved, a, b);

    a.expect(Outcome::GOOD, out::PREEMPT_AND_ABORT, WERO, ka, kb);
    at(Stage::Fenced, a, b);

    // B's next command (a PR IN here) learns it was preempted, then B is
    // locked out.
    assert_eq!(b.read_keys(), Err(Outcome::PREEMPTED));
    assert_eq!(b.keys(), vec![ka]);
    b.expect(Outcome::CONFLICT, out::RESERVE, WERO, kb, 0);
    b.expect(Outcome::CONFLICT, out::PREEMPT_AND_ABORT, WERO, kb, ka);

    // After its reboot B unfences: registers again.
    b.register(kb);
    assert_eq!(a.keys(), vec![ka, kb]);
    at(Stage::Back, a, b);
}

/// Failover clustering's arbitration: the owner registers and reserves WERO,
/// a challenger registers; a challenge while the owner lives conflicts and
/// the owner defends by preempting the challenger's key; the challenger
/// registers again and, the owner now silent, takes the disk over with
/// PREEMPT; the returning owner is told once, refused until it registers,
/// and defends by preempting back; CLEAR ends the cluster.
pub fn failover<N: Nexus>(
    owner: &mut N,
    challenger: &mut N,
    mut at: impl FnMut(Stage, &mut N, &mut N),
) {
    let (ko, kc) = (0x4d53_4654_0000_0001, 0x4d53_4654_0000_0002);
    owner.register(ko);
    owner.expect(Outcome::GOOD, out::RESERVE, WERO, ko, 0);
    challenger.register(kc);
    assert_eq!(challenger.holder(), Some((ko, WERO)));
    at(Stage::Reserved, owner, challenger);

    // A challenge while the owner is alive fails; the owner defends.
    challenger.expect(Outcome::CONFLICT, out::RESERVE, WERO, kc, 0);
    owner.expect(Outcome::GOOD, out::PREEMPT, WERO, ko, kc);
    assert_eq!(owner.keys(), vec![ko]);

    // The challenger is told, registers again and takes over.
    assert_eq!(challenger.read_keys(), Err(Outcome::PREEMPTED));
    challenger.register(kc);
    challenger.expect(Outcome::GOOD, out::PREEMPT, WERO, kc, ko);
    assert_eq!(challenger.holder(), Some((kc, WERO)));
    at(Stage::Fenced, owner, challenger);

    // The old owner comes back: told once (on a PR OUT, which does not
    // run), then refused until it registers.
    owner.expect(Outcome::PREEMPTED, out::RESERVE, WERO, ko, 0);
    owner.expect(Outcome::CONFLICT, out::PREEMPT, WERO, ko, kc);
    owner.expect(Outcome::CONFLICT, out::RELEASE, WERO, ko, 0);
    // Defence: re-register, then preempt back.
    owner.register(ko);
    owner.expect(Outcome::GOOD, out::PREEMPT, WERO, ko, kc);
    assert_eq!(owner.holder(), Some((ko, WERO)));
    assert_eq!(owner.keys(), vec![ko]);
    at(Stage::Back, owner, challenger);

    // Clean shutdown of the cluster: CLEAR leaves nothing behind.
    owner.expect(Outcome::GOOD, out::CLEAR, 0, ko, 0);
    assert_eq!(owner.holder(), None);
    assert_eq!(owner.keys(), Vec::<u64>::new());
}
