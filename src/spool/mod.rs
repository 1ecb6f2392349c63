//! The durable instance store: the source of truth for every received instance.
//!
//! Each instance is one part-10 file at `study/series/sop.dcm` (sanitised UIDs) under the spool
//! root. A file is written under a temporary name in the hidden `.writing` directory, fsynced,
//! renamed into its series directory and that directory fsynced, so that after [`Spool::store`]
//! returns the instance survives a crash or power loss (tests/power_cut.rs); only then may
//! the receiver acknowledge it.
//! The received dataset bytes are written as they came, after a file meta group of our own, so
//! the sender's transfer syntax is preserved and nothing is re-encoded. The database index can
//! always be rebuilt from these files ([`walk`], [`record`]).

mod meta;
mod path;
pub mod record;
pub mod scan;
mod store;
mod walk;

pub use meta::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
pub use path::{relative_path, sanitise_uid};
pub use store::{Incoming, Planned, Spool, Stored};
pub use walk::walk;

use std::path::PathBuf;

/// Why the spool could not store or read an instance.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The filesystem refused (full disk, permissions, I/O error).
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A spool file is not a readable part-10 file.
    #[error("spool file {path} is not readable DICOM: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// An identifier needed to place or describe the instance is missing.
    #[error("missing {0}")]
    Missing(&'static str),
}

impl SpoolError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SpoolError::Io {
            path: path.into(),
            source,
        }
    }
}
