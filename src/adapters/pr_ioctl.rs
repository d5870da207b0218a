// SPDX-License-Identifier: GPL-2.0-or-later
//! The block layer's persistent-reservation ioctls (`<linux/pr.h>`): the one
//! home of `IOC_PR_*`.
//!
//! They need no capability: PR OUT needs an fd open for writing (Linux 6.5),
//! READ KEYS and READ RESERVATION an fd open for reading (Linux 6.19, which
//! added them). Only block devices reach them: another driver may give the
//! same numbers another meaning. What a command becomes, and what the
//! return code means, is the domain's ([`crate::domain::pr_ioctl`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;

use crate::adapters::sg_io::classify_errno;
use crate::domain::command::PrCommand;
use crate::domain::framing::PrReply;
use crate::domain::initiator::Initiator;
use crate::domain::pr_ioctl::outcome::{
    capabilities, read_keys_data, read_reservation_data, reply_for_failure, IoctlError,
};
use crate::domain::pr_ioctl::pr_type::BlockPrType;
use crate::domain::pr_ioctl::request::{translate, AptplZero, IoctlRequest};
use crate::domain::sense::SenseCode;
use crate::domain::sg_io_result::{reply_for_ioctl_failure, IoctlFailure, Origin};
use crate::ports::executor::{DeviceFd, ScsiExecutor};

mod bindings {
    //! The structures and request numbers of `<linux/pr.h>` (linux-libc-dev
    //! 7.2), field for field.

    /// `PR_FL_IGNORE_KEY`.
    pub const PR_FL_IGNORE_KEY: u32 = 1;

    /// `struct pr_registration`.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct PrRegistration {
        pub old_key: u64,
        pub new_key: u64,
        pub flags: u32,
        pub pad: u32,
    }

    /// `struct pr_reservation`.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct PrReservation {
        pub key: u64,
        pub pr_type: u32,
        pub flags: u32,
    }

    /// `struct pr_preempt`.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct PrPreempt {
        pub old_key: u64,
        pub new_key: u64,
        pub pr_type: u32,
        pub flags: u32,
    }

    /// `struct pr_clear`.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct PrClear {
        pub key: u64,
        pub flags: u32,
        pub pad: u32,
    }

    /// `struct pr_read_keys`.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct PrReadKeys {
        pub generation: u32,
        pub num_keys: u32,
        pub keys_ptr: u64,
    }

    /// `struct pr_read_reservation`.
    #[repr(C)]
    #[derive(Debug, Default)]
    pub struct PrReadReservation {
        pub key: u64,
        pub generation: u32,
        pub pr_type: u32,
    }

    nix::ioctl_write_ptr!(pr_register, b'p', 200, PrRegistration);
    nix::ioctl_write_ptr!(pr_reserve, b'p', 201, PrReservation);
    nix::ioctl_write_ptr!(pr_release, b'p', 202, PrReservation);
    nix::ioctl_write_ptr!(pr_preempt, b'p', 203, PrPreempt);
    nix::ioctl_write_ptr!(pr_preempt_abort, b'p', 204, PrPreempt);
    nix::ioctl_write_ptr!(pr_clear, b'p', 205, PrClear);
    nix::ioctl_readwrite!(pr_read_keys, b'p', 206, PrReadKeys);
    nix::ioctl_read!(pr_read_reservation, b'p', 207, PrReadReservation);
}

/// The request numbers of the eight ioctls, for the system-call filter.
pub const REQUESTS: [u64; 8] = [
    nix::request_code_write!(b'p', 200, std::mem::size_of::<bindings::PrRegistration>()) as u64,
    nix::request_code_write!(b'p', 201, std::mem::size_of::<bindings::PrReservation>()) as u64,
    nix::request_code_write!(b'p', 202, std::mem::size_of::<bindings::PrReservation>()) as u64,
    nix::request_code_write!(b'p', 203, std::mem::size_of::<bindings::PrPreempt>()) as u64,
    nix::request_code_write!(b'p', 204, std::mem::size_of::<bindings::PrPreempt>()) as u64,
    nix::request_code_write!(b'p', 205, std::mem::size_of::<bindings::PrClear>()) as u64,
    nix::request_code_readwrite!(b'p', 206, std::mem::size_of::<bindings::PrReadKeys>()) as u64,
    nix::request_code_read!(
        b'p',
        207,
        std::mem::size_of::<bindings::PrReadReservation>()
    ) as u64,
];

/// What the return code of an ioctl says, in the domain's terms.
fn result(rc: nix::Result<libc::c_int>) -> Result<i32, IoctlError> {
    rc.map_err(|errno| {
        tracing::debug!(errno = errno as i32, cause = %errno.desc(), "PR ioctl failed");
        match errno {
            Errno::EINVAL => IoctlError::InvalidArgument,
            Errno::EOPNOTSUPP | Errno::ENOTTY => IoctlError::NotSupported,
            Errno::EPERM | Errno::EACCES => IoctlError::NotPermitted,
            other => IoctlError::Other(classify_errno(other)),
        }
    })
}

/// `IOC_PR_READ_RESERVATION`: (key, generation, type) or the return code.
fn read_reservation(
    fd: BorrowedFd<'_>,
) -> Result<(u64, u32, BlockPrType), Result<i32, IoctlError>> {
    let mut out = bindings::PrReadReservation::default();
    // SAFETY: `out` is a live `struct pr_read_reservation` the kernel writes
    // into (_IOR, its size encoded in the request). The caller checked that
    // `fd` is a block device, whose layer defines this number.
    let rc = unsafe { bindings::pr_read_reservation(fd.as_raw_fd(), &mut out) };
    match result(rc) {
        Ok(0) => Ok((out.key, out.generation, BlockPrType(out.pr_type))),
        other => Err(other),
    }
}

/// `IOC_PR_READ_KEYS` with room for `max_keys`: generation, the count the
/// device reported, and the keys that fit.
#[allow(clippy::type_complexity)]
fn read_keys(
    fd: BorrowedFd<'_>,
    max_keys: u32,
) -> Result<(u32, u32, Vec<u64>), Result<i32, IoctlError>> {
    let mut keys = vec![0u64; max_keys as usize];
    let mut arg = bindings::PrReadKeys {
        generation: 0,
        num_keys: max_keys,
        keys_ptr: keys.as_mut_ptr() as u64,
    };
    // SAFETY: `arg` is a live `struct pr_read_keys`; its `keys_ptr` points at
    // `keys`, `num_keys` u64s, alive and unaliased until the ioctl returns,
    // and the kernel writes at most `num_keys` keys there. The caller checked
    // that `fd` is a block device.
    let rc = unsafe { bindings::pr_read_keys(fd.as_raw_fd(), &mut arg) };
    match result(rc) {
        Ok(0) => {
            let shown = arg.num_keys.min(max_keys) as usize;
            keys.truncate(shown);
            Ok((arg.generation, arg.num_keys, keys))
        }
        other => Err(other),
    }
}

/// Runs one PR OUT ioctl; its return code.
fn pr_out(fd: BorrowedFd<'_>, request: IoctlRequest) -> Result<i32, IoctlError> {
    let raw = fd.as_raw_fd();
    // SAFETY (every block below): the argument is a live, fully initialised
    // structure of the layout `<linux/pr.h>` gives the request (_IOW: the
    // kernel only reads it), and the caller checked that `fd` is a block
    // device, whose layer defines these numbers.
    let rc = match request {
        IoctlRequest::Register {
            old_key,
            new_key,
            ignore_key,
            ..
        } => {
            let arg = bindings::PrRegistration {
                old_key,
                new_key,
                flags: if ignore_key {
                    bindings::PR_FL_IGNORE_KEY
                } else {
                    0
                },
                pad: 0,
            };
            // SAFETY: as above, `struct pr_registration`.
            unsafe { bindings::pr_register(raw, &arg) }
        }
        IoctlRequest::Reserve { key, pr_type } => {
            let arg = bindings::PrReservation {
                key,
                pr_type: pr_type.0,
                flags: 0,
            };
            // SAFETY: as above, `struct pr_reservation`.
            unsafe { bindings::pr_reserve(raw, &arg) }
        }
        IoctlRequest::Release { key, pr_type } => {
            let arg = bindings::PrReservation {
                key,
                pr_type: pr_type.0,
                flags: 0,
            };
            // SAFETY: as above, `struct pr_reservation`.
            unsafe { bindings::pr_release(raw, &arg) }
        }
        IoctlRequest::Clear { key } => {
            let arg = bindings::PrClear {
                key,
                flags: 0,
                pad: 0,
            };
            // SAFETY: as above, `struct pr_clear`.
            unsafe { bindings::pr_clear(raw, &arg) }
        }
        IoctlRequest::Preempt {
            old_key,
            new_key,
            pr_type,
            abort,
        } => {
            let arg = bindings::PrPreempt {
                old_key,
                new_key,
                pr_type: pr_type.0,
                flags: 0,
            };
            if abort {
                // SAFETY: as above, `struct pr_preempt`.
                unsafe { bindings::pr_preempt_abort(raw, &arg) }
            } else {
                // SAFETY: as above, `struct pr_preempt`.
                unsafe { bindings::pr_preempt(raw, &arg) }
            }
        }
        IoctlRequest::ReadKeys { .. }
        | IoctlRequest::ReadReservation
        | IoctlRequest::ReportCapabilities => Err(Errno::EINVAL),
    };
    result(rc)
}

/// Runs `command` through the PR ioctls on `fd` (a block device), blocking;
/// the answer, and whether it came from the device or the path (multipath
/// fails over on the latter).
pub fn send_pr_command_with_origin(
    fd: BorrowedFd<'_>,
    command: &PrCommand,
    aptpl_zero: AptplZero,
) -> (PrReply, Origin) {
    let request = match translate(command, aptpl_zero) {
        Ok(request) => request,
        Err(refusal) => {
            tracing::debug!(
                cdb = %command.cdb.hex(),
                reason = refusal.reason,
                sense = %refusal.code,
                "refused: the PR ioctls cannot express it"
            );
            return (refusal.reply(), Origin::Device);
        }
    };
    let failed = |rc| reply_for_failure(&request, rc);
    match request {
        IoctlRequest::ReadKeys { max_keys } => match read_keys(fd, max_keys) {
            Ok((generation, total, keys)) => (
                PrReply::good(read_keys_data(generation, total, &keys)),
                Origin::Device,
            ),
            Err(rc) => failed(rc),
        },
        IoctlRequest::ReadReservation => match read_reservation(fd) {
            Ok((key, generation, pr_type)) => reservation_reply(fd, key, generation, pr_type),
            Err(rc) => failed(rc),
        },
        IoctlRequest::ReportCapabilities => match read_reservation(fd) {
            Ok(_) => (PrReply::good(capabilities().encode()), Origin::Device),
            Err(rc) => failed(rc),
        },
        IoctlRequest::Register {
            aptpl_requested: false,
            ..
        } => {
            tracing::info!(
                cdb = %command.cdb.hex(),
                "REGISTER with APTPL=0 runs with APTPL=1: the kernel's sd driver sets it \
                 (REPORT CAPABILITIES shows PTPL_A=1; aptpl_zero = \"refuse\" refuses instead)"
            );
            failed(pr_out(fd, request))
        }
        _ => failed(pr_out(fd, request)),
    }
}

/// READ RESERVATION data. With no reservation, `sd` leaves the generation
/// out (it reports 0): READ KEYS, which always carries it, fills it in.
fn reservation_reply(
    fd: BorrowedFd<'_>,
    key: u64,
    mut generation: u32,
    pr_type: BlockPrType,
) -> (PrReply, Origin) {
    if pr_type.0 == 0 && key == 0 && generation == 0 {
        match read_keys(fd, 0) {
            Ok((g, _, _)) => generation = g,
            Err(rc) => return reply_for_failure(&IoctlRequest::ReadKeys { max_keys: 0 }, rc),
        }
    }
    match read_reservation_data(generation, key, pr_type) {
        Some(data) => (PrReply::good(data), Origin::Device),
        None => {
            tracing::warn!(
                key = %format_args!("0x{key:x}"),
                r#type = pr_type.0,
                "READ RESERVATION: the kernel reports a reservation of a type it cannot name \
                 (an obsolete SCSI type): not answered, SG_IO would show it"
            );
            (
                PrReply::check_condition(SenseCode::IO_PROCESS_TERMINATED),
                Origin::Device,
            )
        }
    }
}

/// Whether this kernel and device take the PR ioctls, from one READ
/// RESERVATION: detected, never guessed from a version string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// The ioctl reached the device (whatever it answered).
    Supported,
    /// `ENOTTY` or `EINVAL`: the kernel has no `IOC_PR_READ_RESERVATION`
    /// (before Linux 6.19 `sd` answers an unknown ioctl with `EINVAL`), or
    /// the device refuses READ RESERVATION.
    NoReadIoctls,
    /// `EOPNOTSUPP`: the device's driver has no PR operations.
    NoPrOperations,
    /// `EPERM`: a partition, or an fd the kernel will not let read PR state.
    NotPermitted,
    /// Another errno (the path, the device): undecided, ask again next time.
    Undecided(i32),
}

impl Support {
    /// Why, in words, for the log line of the first use on a device.
    pub fn reason(self) -> &'static str {
        match self {
            Support::Supported => "the kernel and the device take the PR ioctls",
            Support::NoReadIoctls => {
                "IOC_PR_READ_RESERVATION is refused (ENOTTY or EINVAL): a kernel before 6.19, \
                 or a device without READ RESERVATION"
            }
            Support::NoPrOperations => "the device's driver has no PR operations (EOPNOTSUPP)",
            Support::NotPermitted => "the PR ioctls are not permitted on it (EPERM: a partition?)",
            Support::Undecided(_) => "READ RESERVATION failed on the way: asked again next time",
        }
    }
}

/// Probes `fd` (a block device) with `IOC_PR_READ_RESERVATION`.
pub fn probe(fd: BorrowedFd<'_>) -> Support {
    let mut out = bindings::PrReadReservation::default();
    // SAFETY: as in `read_reservation`: `out` is a live `struct
    // pr_read_reservation`, and the caller checked `fd` is a block device.
    let rc = unsafe { bindings::pr_read_reservation(fd.as_raw_fd(), &mut out) };
    match rc {
        Ok(_) => Support::Supported,
        Err(Errno::ENOTTY | Errno::EINVAL) => Support::NoReadIoctls,
        Err(Errno::EOPNOTSUPP) => Support::NoPrOperations,
        Err(Errno::EPERM | Errno::EACCES) => Support::NotPermitted,
        Err(other) => Support::Undecided(other as i32),
    }
}

/// Executes PR commands on the client's fd with the PR ioctls alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrIoctlExecutor {
    aptpl_zero: AptplZero,
}

impl PrIoctlExecutor {
    /// An executor answering REGISTER with APTPL=0 as `aptpl_zero` says.
    pub fn new(aptpl_zero: AptplZero) -> PrIoctlExecutor {
        PrIoctlExecutor { aptpl_zero }
    }

    /// Runs `command` on `fd`, which the caller checked is a block device.
    pub fn send(&self, fd: BorrowedFd<'_>, command: &PrCommand) -> (PrReply, Origin) {
        send_pr_command_with_origin(fd, command, self.aptpl_zero)
    }
}

/// The answer for an fd that is not a block device: the PR ioctls are the
/// block layer's. As SG_IO answers a file that is not a SCSI device.
pub fn not_a_block_device() -> PrReply {
    reply_for_ioctl_failure(IoctlFailure::Other(Errno::ENOTTY as i32))
}

impl ScsiExecutor for PrIoctlExecutor {
    fn execute(&self, device: DeviceFd, command: PrCommand, _initiator: &Initiator) -> PrReply {
        if device.info.kind != crate::domain::device::DeviceKind::Block {
            tracing::warn!(
                device = %device.info,
                kind = %device.info.kind,
                "refusing the PR ioctls on a file that is not a block device"
            );
            return not_a_block_device();
        }
        self.send(device.fd.as_fd(), &command).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::fd_inspector::inspect;
    use crate::domain::cdb::PrCdb;
    use crate::domain::sense::ScsiStatus;
    use crate::domain::service_action::PrInServiceAction;

    #[test]
    fn structures_have_the_kernel_layout() {
        use std::mem::size_of;
        assert_eq!(size_of::<bindings::PrRegistration>(), 24);
        assert_eq!(size_of::<bindings::PrReservation>(), 16);
        assert_eq!(size_of::<bindings::PrPreempt>(), 24);
        assert_eq!(size_of::<bindings::PrClear>(), 16);
        assert_eq!(size_of::<bindings::PrReadKeys>(), 16);
        assert_eq!(size_of::<bindings::PrReadReservation>(), 16);
    }

    #[test]
    fn request_numbers_are_the_headers() {
        // _IOW('p', 200..205), _IOWR('p', 206), _IOR('p', 207) with the
        // sizes above, as <linux/pr.h> defines them on x86-64 and arm64.
        assert_eq!(
            REQUESTS,
            [
                0x4018_70c8,
                0x4010_70c9,
                0x4010_70ca,
                0x4018_70cb,
                0x4018_70cc,
                0x4010_70cd,
                0xc010_70ce,
                0x8010_70cf
            ]
        );
    }

    fn read_keys_command() -> PrCommand {
        PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReadKeys, 64),
            data_out: Vec::new(),
        }
    }

    #[test]
    fn a_regular_file_never_reaches_the_ioctl() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let device = inspect(std::fs::File::open(tmp.path()).unwrap().into());
        let reply =
            PrIoctlExecutor::default().execute(device, read_keys_command(), &Initiator::default());
        assert_eq!(reply.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(reply.sense.code(), Some(SenseCode::IO_PROCESS_TERMINATED));
        let null = inspect(std::fs::File::open("/dev/null").unwrap().into());
        let reply =
            PrIoctlExecutor::default().execute(null, read_keys_command(), &Initiator::default());
        assert_eq!(reply.sense.code(), Some(SenseCode::IO_PROCESS_TERMINATED));
    }

    #[test]
    fn on_a_driver_without_them_the_ioctls_fail_and_answer_invalid_opcode() {
        // /dev/null's driver has no PR ioctls: the real calls run and fail
        // harmlessly (ENOTTY), which exercises the return-code path.
        let null = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(probe(null.as_fd()), Support::NoReadIoctls);
        let (reply, origin) =
            send_pr_command_with_origin(null.as_fd(), &read_keys_command(), AptplZero::Persist);
        assert_eq!(reply.sense.code(), Some(SenseCode::INVALID_OPCODE));
        assert_eq!(origin, Origin::Device);
    }

    #[test]
    fn every_pr_out_ioctl_runs_and_its_errno_is_answered() {
        use crate::domain::service_action::PrOutServiceAction as Sa;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .unwrap();
        let mut list = vec![0u8; 24];
        list[7] = 0x11;
        list[15] = 0x22;
        list[20] = 0x01;
        for action in [
            Sa::Register,
            Sa::RegisterAndIgnoreExistingKey,
            Sa::Reserve,
            Sa::Release,
            Sa::Clear,
            Sa::Preempt,
            Sa::PreemptAndAbort,
        ] {
            let command = PrCommand {
                cdb: PrCdb::pr_out(action, 0x05, 24),
                data_out: list.clone(),
            };
            let (reply, origin) =
                send_pr_command_with_origin(null.as_fd(), &command, AptplZero::Refuse);
            // /dev/null: ENOTTY, no PR support.
            assert_eq!(
                reply.sense.code(),
                Some(SenseCode::INVALID_OPCODE),
                "{action}"
            );
            assert_eq!(origin, Origin::Device);
        }
        let caps = PrCommand {
            cdb: PrCdb::pr_in(PrInServiceAction::ReportCapabilities, 8),
            data_out: Vec::new(),
        };
        let (reply, _) = send_pr_command_with_origin(null.as_fd(), &caps, AptplZero::Persist);
        assert_eq!(
            reply.sense.code(),
            Some(SenseCode::INVALID_OPCODE),
            "REPORT CAPABILITIES is answered only once the device took READ RESERVATION"
        );
    }

    #[test]
    fn a_refused_command_never_reaches_the_ioctl() {
        let null = std::fs::File::open("/dev/null").unwrap();
        let full_status = PrCommand::read_full_status();
        let (reply, _) =
            send_pr_command_with_origin(null.as_fd(), &full_status, AptplZero::Persist);
        assert_eq!(reply.sense.code(), Some(SenseCode::INVALID_FIELD_IN_CDB));
        assert_eq!(&reply.sense.0[15..18], &[0xcc, 0, 1]);
    }
}
