//! The traits the request-serving logic is written against. Adapters implement
//! them for real sockets and devices; tests implement them with
//! mockall doubles.

pub mod executor;
pub mod received_fd;
pub mod transport;

pub use executor::{
    AccessMode, DeviceFd, DeviceInfo, DeviceKind, Initiator, PrCommand, ScsiExecutor,
};
pub use received_fd::ReceivedFd;
pub use transport::{Connection, Listener, ReadOutcome, TransportError};
