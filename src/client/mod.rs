// SPDX-License-Identifier: GPL-2.0-or-later
//! The client side of the helper protocol, as `qemu-pr-client` uses it and as
//! integration tests and benchmarks can reuse it. How answers are shown lives
//! beside the binary; here is what a request needs.
//!
//! - [`cli`]: the command line of `qemu-pr-client` (sg_persist's options), in
//!   the library so man pages and completions come from the same definition.
//! - [`request`]: building requests from options and the reply type (pure).
//! - [`transport_id`]: TransportIDs as sg_persist spells them (pure).
//! - [`connection`]: the Unix-socket transport (blocking std I/O, SCM_RIGHTS).
//! - [`exit_status`]: sg3_utils' exit status values.
//! - [`error`]: why the client could not send a command or get its answer.
//! - [`shown`]: names from the command line as errors quote them.

pub mod cli;
pub mod connection;
pub mod error;
pub mod exit_status;
pub mod request;
pub mod shown;
pub mod transport_id;

pub use connection::{ClientError, HelperConnection, Phase};
pub use request::{PrOutOptions, PrRequest, Reply, RequestError};
