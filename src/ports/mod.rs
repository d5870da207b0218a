// SPDX-License-Identifier: GPL-2.0-or-later
//! The traits the request-serving logic is written against. Adapters implement
//! them for real sockets and devices; tests implement them with
//! mockall doubles.

pub mod executor;
pub mod fd_inspector;
pub mod received_fd;
pub mod transport;

pub use executor::{DeviceFd, ScsiExecutor};
pub use fd_inspector::FdInspector;
pub use received_fd::ReceivedFd;
pub use transport::{Connection, Incoming, Listener, Parking, ReadOutcome, TransportError};
