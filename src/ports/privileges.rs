//! The privilege port: after the socket is open, keep only what PR commands
//! need and become the requested user.

/// What to keep and whom to become.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrivilegePlan {
    /// Switch to this user id (`-u`).
    pub uid: Option<u32>,
    /// Switch to this group id (`-g`, or the user's primary group).
    pub gid: Option<u32>,
    /// Also keep CAP_SYS_ADMIN (needed for the device-mapper control node).
    pub keep_sys_admin: bool,
}

/// What dropping privileges achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeOutcome {
    /// Capabilities reduced as planned (and uid/gid switched if asked).
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

/// Drops privileges in one ordered sequence.
#[cfg_attr(test, mockall::automock)]
pub trait PrivilegeControl {
    /// Applies `plan`. Any failure leaves the caller to exit.
    fn drop_privileges(&self, plan: &PrivilegePlan) -> Result<PrivilegeOutcome, PrivilegeError>;
}
