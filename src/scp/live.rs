//! What a reload (SIGHUP) changes while associations are served: who may call, and the TLS
//! certificate, key, client CAs and revocation lists.
//!
//! A CA publishes a new revocation list every day or so, a certificate is renewed every year or
//! two, and a new modality is added to the allowlist whenever one is installed; none of these
//! should cost a restart, which refuses associations for the seconds it takes. Every other
//! setting (ports, limits, spool, database) is read at start only.
//!
//! Each association reads this state once, when it starts: one already in progress keeps the
//! policy and certificate it started with.

use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use tokio_rustls::TlsAcceptor;

use super::policy::AePolicy;
use super::tls::{Identity, TlsSetupError};
use crate::config::DicomConfig;

/// The reloadable part of the service.
pub(crate) struct Live {
    policy: RwLock<Arc<AePolicy>>,
    /// `None` when the daemon started without `[dicom.tls]`: no TLS port is open to serve it.
    tls: Option<RwLock<Identity>>,
}

impl Live {
    pub fn new(policy: AePolicy, tls: Option<Identity>) -> Self {
        Live {
            policy: RwLock::new(Arc::new(policy)),
            tls: tls.map(RwLock::new),
        }
    }

    /// The AE policy as it stands now.
    pub fn policy(&self) -> Arc<AePolicy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The TLS port's acceptor as it stands now.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let slot = self.tls.as_ref()?;
        let identity = slot.read().unwrap_or_else(PoisonError::into_inner);
        Some(identity.acceptor.clone())
    }

    fn identity(&self) -> Option<Identity> {
        let slot = self.tls.as_ref()?;
        Some(slot.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// Applies a new configuration to a running [`Server`](super::Server); cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) live: Arc<Live>,
}

/// What a reload applied.
#[derive(Debug)]
pub struct Reloaded {
    pub callers: usize,
    pub accept_any_caller: bool,
    /// When the TLS port's certificate, as reloaded, expires.
    pub certificate_expires: Option<DateTime<Utc>>,
}

impl Reloader {
    /// Applies `cfg`'s called AE title, calling-AE allowlist and, when the TLS port is open,
    /// its certificate, key, client CAs and CRLs. All or nothing: when a file cannot be used,
    /// the error names it and the daemon goes on exactly as before.
    ///
    /// A configuration that adds or removes `[dicom.tls]` cannot open or close the port; its
    /// TLS files are then not read (see [`Config::restart_only_changes`]).
    ///
    /// [`Config::restart_only_changes`]: crate::config::Config::restart_only_changes
    pub fn reload(&self, cfg: &DicomConfig) -> Result<Reloaded, TlsSetupError> {
        let identity = match (&self.live.tls, &cfg.tls) {
            (Some(_), Some(tls)) => Some(Identity::load(tls)?),
            _ => None,
        };
        let policy = AePolicy::new(cfg);
        *self
            .live
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        if let (Some(slot), Some(identity)) = (&self.live.tls, identity) {
            identity.log_expiry(Utc::now());
            *slot.write().unwrap_or_else(PoisonError::into_inner) = identity;
        }
        Ok(Reloaded {
            callers: cfg.callers.len(),
            accept_any_caller: cfg.accept_any_caller,
            certificate_expires: self.certificate_expires(),
        })
    }

    /// When the TLS port's certificate expires, if the port is open.
    pub fn certificate_expires(&self) -> Option<DateTime<Utc>> {
        self.live.identity().map(|id| id.expires)
    }

    /// Logs a warning when the TLS certificate ends within 30 days, an error once it has
    /// ended. The daemon calls this daily: a certificate lapses on a date, not at an event.
    pub fn check_certificate(&self) {
        if let Some(identity) = self.live.identity() {
            identity.log_expiry(Utc::now());
        }
    }
}
