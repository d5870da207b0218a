// SPDX-License-Identifier: GPL-2.0-or-later
//! Pure protocol and SCSI logic: no I/O, no async, no unsafe.
//!
//! Everything the helper decides (is this request acceptable, what does this
//! SG_IO outcome mean, what does a parameter list say) is decided here, so it
//! can be tested byte for byte without a device or a socket.

pub mod allowlist;
pub mod audit;
pub mod cdb;
pub mod command;
pub mod device;
pub mod fault;
pub mod fd_budget;
pub mod framing;
pub mod initiator;
pub mod log_throttle;
pub mod multipath;
pub mod param_list;
pub mod pr_in_data;
pub mod pr_ioctl;
pub mod reservation;
pub mod screening;
pub mod sense;
pub mod service_action;
pub mod sg_io_result;
pub mod sg_io_timeout;
