//! The client side of the helper protocol, as `qemu-pr-client` uses it and as
//! integration tests and benchmarks can reuse it.
//!
//! - [`cli`]: the command line of `qemu-pr-client` (sg_persist's options).
//! - [`run`]: one run of the client: options in, output and exit status out.
//! - [`request`]: building requests from options and the reply type (pure).
//! - [`transport_id`]: TransportIDs as sg_persist spells them (pure).
//! - [`connection`]: the Unix-socket transport (blocking std I/O, SCM_RIGHTS).
//! - [`render`]: sg_persist-like text (pure).
//! - [`hex`]: `-H` and `-v` output in sg3_utils' hex layout (pure).
//! - [`json`]: `--json`, one line for every outcome (pure).
//! - [`status`]: the `--status` table (pure).
//! - [`exit_status`]: sg3_utils' exit status values.
//! - [`error`]: why the client could not show an answer.
//! - [`shown`]: names from the command line as errors quote them.
//! - [`timing`]: `--repeat` and `--direct`, the round-trip summary.

pub mod cli;
pub mod connection;
pub mod error;
pub mod exit_status;
pub mod hex;
pub mod json;
pub mod render;
pub mod request;
pub mod run;
pub mod shown;
pub mod status;
pub mod timing;
pub mod transport_id;

pub use connection::{ClientError, HelperConnection, Phase};
pub use request::{PrOutOptions, PrRequest, Reply, RequestError};
