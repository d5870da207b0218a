// SPDX-License-Identifier: GPL-2.0-or-later
//! A drop-in replacement for QEMU's `qemu-pr-helper`: the privileged daemon
//! that runs SCSI PERSISTENT RESERVE IN/OUT commands on behalf of virtual
//! machines, over QEMU's `pr-manager-helper` wire protocol.
//!
//! # Layout
//! - [`domain`]: pure logic (CDB and parameter-list rules, sense data, wire
//!   framing, SG_IO result mapping, the translation of commands to the block
//!   layer's PR ioctls and of their results back, the persistent reservation model of the
//!   emulated device, routing over dm-multipath paths) and the values every
//!   layer shares (a PR command, the facts about a client's fd, the
//!   initiator). No I/O.
//! - [`ports`]: the traits the service is written against: the transport, the
//!   fd inspector, the SCSI executor.
//! - [`adapters`]: their implementations: Unix socket with SCM_RIGHTS, Linux
//!   SG_IO, the PR ioctls and the choice between the two per device,
//!   dm-multipath path discovery and multipathd, capabilities and
//!   uid/gid, systemd activation, the pidfile, the in-memory emulated device.
//! - [`server`]: the request-serving logic, written once against the ports,
//!   and its live counts for the service manager.
//! - [`config`]: the daemon's settings, from its command line (clap, as the
//!   binary parses it) and a TOML file.
//! - [`logging`]: log levels, `-T` targets and where the log goes.
//! - [`client`]: the client side of the protocol, for `qemu-pr-client` and tests.
#![deny(missing_docs)]

pub mod adapters;
pub mod client;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod logging;
pub mod ports;
pub mod server;
