// SPDX-License-Identifier: GPL-2.0-or-later
//! Implementations of the ports for Linux: the Unix socket, SG_IO, the PR
//! ioctls, capabilities and identity, systemd, the pidfile; and an emulated
//! device that keeps persistent reservations in memory. `unsafe` lives only here,
//! each block with its reason.

pub mod background;
pub mod dm_path_views;
pub mod emulated;
pub mod fd_inspector;
pub mod forked_child;
pub mod idle_connections;
pub mod interface;
pub mod leftovers;
pub mod multipath;
pub mod multipathd;
pub mod pidfile;
pub mod pr_ioctl;
pub mod privileges;
pub mod seccomp;
pub mod sg_io;
pub mod systemd;
pub mod unix_socket;
