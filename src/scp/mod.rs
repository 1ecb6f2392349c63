//! DICOM upper-layer service: associations, C-ECHO, C-STORE, AE policy, TLS.
//!
//! [`Server`] accepts associations on tokio, one task each. The calling AE is checked against
//! the allowlist, presentation contexts are negotiated ([`contexts`]), and C-STOREs are written
//! to the [`Spool`](crate::spool::Spool) and the index before they are acknowledged.

mod association;
mod cert_dates;
mod command;
pub mod contexts;
mod echo;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod group_commit;
mod index;
mod listener;
mod live;
mod policy;
pub mod recover;
mod store;
mod tls;
mod wire;

pub use index::{IndexError, InstanceIndex};
pub use listener::Server;
pub use live::{Reloaded, Reloader};
pub use tls::{TlsSetupError, certificate_expires, check_tls};

use std::net::SocketAddr;

/// Why the listener or an association failed.
#[derive(Debug, thiserror::Error)]
pub enum ScpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// The caller's TLS handshake failed: no or an untrusted client certificate, no common
    /// protocol version, or plain DICOM sent to the TLS port.
    #[error("TLS handshake: {0}")]
    Handshake(String),
}
