// SPDX-License-Identifier: GPL-2.0-or-later
//! The Linux block layer's persistent-reservation ioctls (`<linux/pr.h>`)
//! as a third way to run PERSISTENT RESERVE IN/OUT: one that needs no
//! capability at all, only an fd open for writing (PR OUT) or reading
//! (READ KEYS, READ RESERVATION).
//!
//! The ioctls say less than a CDB: no READ FULL STATUS, no REGISTER AND
//! MOVE, no SPEC_I_PT or ALL_TG_PT, and `sd` registers with APTPL set
//! whatever the caller wants. [`request`] turns a command into an ioctl, or
//! into the answer a device without the feature gives; [`outcome`] turns
//! what the ioctl returned into SCSI status, sense and PR IN data;
//! [`pr_type`] maps the reservation type codes between the two numberings.

pub mod outcome;
pub mod pr_type;
pub mod request;
