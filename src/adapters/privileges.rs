// SPDX-License-Identifier: GPL-2.0-or-later
//! Dropping privileges in one ordered sequence: bounding set, supplementary
//! groups, gid, uid, then the capability sets, then a check that nothing more
//! than planned is left.
//!
//! Capabilities are per thread on Linux, so this runs before any other thread
//! (the tokio runtime) exists; threads created later inherit the result.

use std::io;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{getegid, geteuid, getgid, getuid, setgid, setgroups, setuid, Gid, Uid};

use crate::config::Identity;

/// What dropping privileges achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeOutcome {
    /// Capabilities reduced to what was kept (and uid/gid switched if asked).
    Dropped,
    /// The process had no privileges to begin with: it runs, but the kernel
    /// will refuse PR commands through SG_IO.
    Unprivileged,
}

/// A step of the privilege sequence failed: the daemon must not go on.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A capability operation failed.
    #[error("cannot {step}: {source}")]
    Capability {
        /// Which step.
        step: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Changing uid, gid or groups failed.
    #[error("cannot {step}: {source}")]
    Identity {
        /// Which step.
        step: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// After the sequence the process still holds more than planned.
    #[error("privileges still held after dropping: {0}")]
    NotDropped(String),
}

/// The one capability the daemon keeps: SG_IO of PERSISTENT RESERVE commands
/// needs CAP_SYS_RAWIO. Multipath discovery reads sysfs, and no
/// device-mapper ioctl is made, so CAP_SYS_ADMIN is never kept.
pub const KEPT_CAPABILITY: Capability = Capability::CAP_SYS_RAWIO;

fn cap_err(step: &'static str) -> impl FnOnce(caps::errors::CapsError) -> PrivilegeError {
    move |e| PrivilegeError::Capability {
        step,
        source: io::Error::other(e.to_string()),
    }
}

fn id_err(step: &'static str) -> impl FnOnce(nix::errno::Errno) -> PrivilegeError {
    move |e| PrivilegeError::Identity {
        step,
        source: io::Error::from(e),
    }
}

fn cap_err_errno(step: &'static str) -> impl FnOnce(nix::errno::Errno) -> PrivilegeError {
    move |e| PrivilegeError::Capability {
        step,
        source: io::Error::from(e),
    }
}

/// What the daemon keeps when it drops privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// [`KEPT_CAPABILITY`]: SG_IO may run PR commands.
    RawIo,
    /// No capability at all: the PR ioctls need none.
    Nothing,
}

/// Whether this process may keep CAP_SYS_RAWIO when it drops privileges
/// (it is in its permitted set now): what `auto` decides on, read before
/// the drop, which keeps exactly that.
pub fn holds_rawio() -> bool {
    caps::has_cap(None, CapSet::Permitted, KEPT_CAPABILITY).unwrap_or(false)
}

/// Keeps what `keep` says only and becomes `identity`. Any failure leaves
/// the caller to exit.
pub fn drop_privileges(
    identity: &Identity,
    keep: Keep,
) -> Result<PrivilegeOutcome, PrivilegeError> {
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(cap_err("read the permitted set"))?;
    let switching = identity.uid.is_some_and(|u| u != getuid().as_raw())
        || identity.gid.is_some_and(|g| g != getgid().as_raw());

    if permitted.is_empty() && !geteuid().is_root() {
        // Nothing to drop; an identity change can only fail, and must
        // fail loudly rather than be ignored.
        if let Some(gid) = identity.gid {
            setgid(Gid::from_raw(gid)).map_err(id_err("switch group"))?;
        }
        if let Some(uid) = identity.uid {
            setuid(Uid::from_raw(uid)).map_err(id_err("switch user"))?;
        }
        nix::sys::prctl::set_no_new_privs().map_err(cap_err_errno("set no_new_privs"))?;
        return Ok(PrivilegeOutcome::Unprivileged);
    }

    let keep: CapsHashSet = match keep {
        Keep::RawIo => [KEPT_CAPABILITY].into_iter().collect(),
        Keep::Nothing => CapsHashSet::new(),
    };

    // 1. Bounding set: needs CAP_SETPCAP, so it goes first. Without it
    //    (a user started with an ambient capability) the set cannot change,
    //    and no_new_privs below makes it grant nothing.
    if permitted.contains(&Capability::CAP_SETPCAP) {
        clear_bounding_set(&keep)?;
    }
    caps::clear(None, CapSet::Ambient).map_err(cap_err("clear the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(cap_err("clear the inheritable set"))?;

    // 2. Identity. Keep the permitted set across setuid; reduce it below.
    if switching {
        caps::securebits::set_keepcaps(true).map_err(cap_err("set PR_SET_KEEPCAPS"))?;
    }
    if geteuid().is_root() || permitted.contains(&Capability::CAP_SETGID) {
        setgroups(&[]).map_err(id_err("drop supplementary groups"))?;
    }
    if let Some(gid) = identity.gid {
        setgid(Gid::from_raw(gid)).map_err(id_err("switch group"))?;
    }
    if let Some(uid) = identity.uid {
        setuid(Uid::from_raw(uid)).map_err(id_err("switch user"))?;
    }
    if switching {
        caps::securebits::set_keepcaps(false).map_err(cap_err("clear PR_SET_KEEPCAPS"))?;
    }

    // 3. Capability sets: only what PR commands need.
    let keep: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Effective, &CapsHashSet::new())
        .map_err(cap_err("clear the effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(cap_err("reduce the permitted set"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(cap_err("set the effective set"))?;

    // 4. No exec may ever gain privileges again (setuid binaries, file
    // capabilities): the daemon never execs, so this costs nothing.
    nix::sys::prctl::set_no_new_privs().map_err(cap_err_errno("set no_new_privs"))?;

    // 5. Verify.
    let left = caps::read(None, CapSet::Permitted).map_err(cap_err("read the permitted set"))?;
    if !left.is_subset(&keep) {
        return Err(PrivilegeError::NotDropped(format!(
            "permitted set {left:?}"
        )));
    }
    if let Some(uid) = identity.uid {
        if uid != 0 && (getuid().as_raw() != uid || geteuid().as_raw() != uid) {
            return Err(PrivilegeError::NotDropped("user id".into()));
        }
        if uid != 0 && setuid(Uid::from_raw(0)).is_ok() {
            return Err(PrivilegeError::NotDropped("root can be regained".into()));
        }
    }
    if let Some(gid) = identity.gid {
        if getegid().as_raw() != gid {
            return Err(PrivilegeError::NotDropped("group id".into()));
        }
    }
    Ok(PrivilegeOutcome::Dropped)
}

/// Drops every capability from every set, keeping the user and group: for
/// the multipathd relay, which needs root's uid (multipathd checks it) and no
/// privilege at all. Without CAP_SETPCAP the bounding set is left as it is
/// (nothing is permitted then anyway).
pub fn drop_all_capabilities() -> Result<(), PrivilegeError> {
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(cap_err("read the permitted set"))?;
    if permitted.contains(&Capability::CAP_SETPCAP) {
        clear_bounding_set(&CapsHashSet::new())?;
    }
    for (set, step) in [
        (CapSet::Ambient, "clear the ambient set"),
        (CapSet::Inheritable, "clear the inheritable set"),
        (CapSet::Effective, "clear the effective set"),
        (CapSet::Permitted, "clear the permitted set"),
    ] {
        caps::clear(None, set).map_err(cap_err(step))?;
    }
    let left = caps::read(None, CapSet::Permitted).map_err(cap_err("read the permitted set"))?;
    if !left.is_empty() {
        return Err(PrivilegeError::NotDropped(format!(
            "permitted set {left:?}"
        )));
    }
    Ok(())
}

/// Removes every capability but `keep` from the bounding set (needs
/// CAP_SETPCAP).
fn clear_bounding_set(keep: &CapsHashSet) -> Result<(), PrivilegeError> {
    for cap in caps::all() {
        if !keep.contains(&cap)
            && caps::has_cap(None, CapSet::Bounding, cap)
                .map_err(cap_err("read the bounding set"))?
        {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(cap_err("clear the capability bounding set"))?;
        }
    }
    Ok(())
}
