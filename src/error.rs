//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// Every fallible call in this crate returns this.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong, with the operation and the shapes or sizes involved.
///
/// Messages are lowercase and name the operation first, e.g.
/// `column_parallel.forward: shape mismatch: expected [*, 8], got [4, 6]`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Shapes or lengths that do not fit together.
    Shape {
        /// The operation that checked.
        op: &'static str,
        /// What it needed.
        expected: String,
        /// What it was given.
        got: String,
    },
    /// An argument out of its domain (tp size 0, a dim that is neither 0 nor 1, a root
    /// rank past the world size, ...).
    InvalidArgument {
        /// The operation that checked.
        op: &'static str,
        /// Why the argument is refused.
        message: String,
    },
    /// A tensor placed differently from what the operation needs.
    Placement {
        /// The operation that checked.
        op: &'static str,
        /// The placement it needs.
        expected: String,
        /// The placement it was given.
        got: String,
    },
    /// Tensors or layers from different groups were combined.
    GroupMismatch {
        /// The operation that checked.
        op: &'static str,
    },
    /// No adapter matched the request.
    NoAdapter {
        /// What was asked for (backends, name).
        wanted: String,
        /// The adapters that do exist, on any backend (name, backend, device type).
        available: Vec<String>,
    },
    /// The adapter refused to give a device.
    RequestDevice {
        /// The adapter's name and backend.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// A buffer larger than the device allows.
    BufferTooLarge {
        /// The operation that allocated.
        op: &'static str,
        /// Bytes requested.
        bytes: u64,
        /// The limit that refused it.
        limit: u64,
        /// The name of that limit in `wgpu::Limits`.
        limit_name: &'static str,
    },
    /// wgpu reported a validation error.
    Validation {
        /// The operation during which it was raised.
        op: &'static str,
        /// The rank whose device raised it.
        rank: usize,
        /// wgpu's message.
        message: String,
    },
    /// The device ran out of memory.
    OutOfMemory {
        /// The operation during which it was raised.
        op: &'static str,
        /// The rank whose device raised it.
        rank: usize,
        /// wgpu's message.
        message: String,
    },
    /// Mapping a staging buffer for read-back failed.
    Map {
        /// The operation that read back.
        op: &'static str,
        /// The rank whose buffer failed to map.
        rank: usize,
        /// wgpu's message.
        message: String,
    },
    /// Waiting on a device took longer than the group's timeout.
    Timeout {
        /// The operation that waited.
        op: &'static str,
        /// The rank waited on.
        rank: usize,
        /// The timeout in force.
        after: Duration,
    },
    /// A collective between processes failed: a peer process died, hung past the
    /// group's timeout or disagreed on the exchange (see `GroupBuilder::processes`,
    /// feature `mpi`).
    Processes {
        /// The operation.
        op: &'static str,
        /// What happened.
        message: String,
    },
    /// A checkpoint file or config is unreadable, incomplete or does not match what the
    /// model needs.
    Checkpoint {
        /// The file or tensor at fault.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// A result that is not a number where one is needed: a token picked from logits
    /// holding NaN or an infinity (weights or inputs that were not finite).
    NonFinite {
        /// The operation.
        op: &'static str,
        /// What was not finite.
        message: String,
    },
    /// The device was lost (driver reset, `Device::destroy`, ...).
    DeviceLost {
        /// The rank whose device is gone.
        rank: usize,
        /// What the driver said.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub(crate) fn shape(
        op: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Shape {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            message: message.into(),
        }
    }
}

impl Error {
    /// The same error reported by `op`, the caller that knows what the user called (a
    /// layer, rather than the helper it used), for argument errors; others unchanged.
    pub(crate) fn with_op(self, op: &'static str) -> Self {
        match self {
            Error::Shape { expected, got, .. } => Error::Shape { op, expected, got },
            Error::InvalidArgument { message, .. } => Error::InvalidArgument { op, message },
            Error::Placement { expected, got, .. } => Error::Placement { op, expected, got },
            Error::GroupMismatch { .. } => Error::GroupMismatch { op },
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, expected, got } => {
                write!(f, "{op}: shape mismatch: expected {expected}, got {got}")
            }
            Error::InvalidArgument { op, message } => {
                write!(f, "{op}: invalid argument: {message}")
            }
            Error::Placement { op, expected, got } => {
                write!(f, "{op}: wrong placement: expected {expected}, got {got}")
            }
            Error::GroupMismatch { op } => {
                write!(f, "{op}: tensors or layers belong to different groups")
            }
            Error::NoAdapter { wanted, available } => {
                write!(f, "no wgpu adapter found for {wanted}; ")?;
                if available.is_empty() {
                    write!(
                        f,
                        "no adapter exists on any backend (is a driver installed?)"
                    )
                } else {
                    write!(f, "adapters present: {}", available.join("; "))
                }
            }
            Error::RequestDevice { adapter, message } => {
                write!(f, "request_device on {adapter} failed: {message}")
            }
            Error::BufferTooLarge {
                op,
                bytes,
                limit,
                limit_name,
            } => write!(
                f,
                "{op}: buffer of {bytes} bytes exceeds the device's {limit_name} of {limit} bytes"
            ),
            Error::Validation { op, rank, message } => {
                write!(f, "{op}: wgpu validation error on rank {rank}: {message}")
            }
            Error::OutOfMemory { op, rank, message } => {
                write!(f, "{op}: out of memory on rank {rank}: {message}")
            }
            Error::Map { op, rank, message } => {
                write!(
                    f,
                    "{op}: mapping a read-back buffer failed on rank {rank}: {message}"
                )
            }
            Error::Timeout { op, rank, after } => {
                write!(f, "{op}: rank {rank} did not finish within {after:?}")
            }
            Error::Processes { op, message } => {
                write!(f, "{op}: collective between processes failed: {message}")
            }
            Error::Checkpoint { what, message } => write!(f, "checkpoint: {what}: {message}"),
            Error::NonFinite { op, message } => write!(f, "{op}: not finite: {message}"),
            Error::DeviceLost { rank, message } => write!(f, "rank {rank}: device lost: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Formats a shape as `[rows, cols]`.
pub(crate) fn fmt_shape(shape: [usize; 2]) -> String {
    format!("[{}, {}]", shape[0], shape[1])
}
