//! The client side of the helper protocol, as `qemu-pr-client` uses it and as
//! integration tests and benchmarks can reuse it.
//!
//! - [`cli`]: the command line of `qemu-pr-client`.
//! - [`request`]: building requests from options and the reply type (pure).
//! - [`connection`]: the Unix-socket transport (blocking std I/O, SCM_RIGHTS).
//! - [`render`]: sg_persist-like text, JSON and hex output (pure).
//! - [`timing`]: `--repeat` and `--direct`, the round-trip summary.

pub mod cli;
pub mod connection;
pub mod render;
pub mod request;
pub mod timing;

pub use connection::{ClientError, HelperConnection, Phase};
pub use request::{PrOutOptions, PrRequest, Reply, RequestError};
