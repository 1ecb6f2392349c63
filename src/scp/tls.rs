//! DICOM over TLS (PS3.15 Annex B.9, the BCP 195 secure transport profile).
//!
//! A second listener, usually on DICOM's registered TLS port 2762, whose connections complete a
//! TLS handshake before the upper layer starts; from the A-ASSOCIATE-RQ on they are served
//! exactly as plain ones, with the same AE policy, limits and durability rule. rustls offers
//! TLS 1.2 and 1.3 with forward-secret AEAD suites only, which is what BCP 195 asks for.
//!
//! With `client_ca` set the handshake also demands a client certificate issued by one of those
//! CAs (mutual TLS): a modality without one never reaches the association layer; `client_crl`
//! adds the CAs' revocation lists, so a stolen or retired modality's certificate can be refused.

use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use super::cert_dates;
use crate::config::TlsConfig;

/// Why the TLS listener could not be set up. Each names the file an operator has to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("TLS: cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("TLS: {path} holds no PEM certificate revocation list")]
    NoRevocationList { path: PathBuf },
    #[error("TLS: {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Days before our certificate's end from which the daemon warns.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// What the TLS port shows and checks: the acceptor built from the configured PEM files, and
/// when our certificate stops being valid. Loaded at start and again at each reload (SIGHUP).
#[derive(Clone)]
pub(crate) struct Identity {
    pub acceptor: TlsAcceptor,
    /// Our certificate's file, for the operator's log.
    pub certificate: PathBuf,
    /// Its `notAfter`.
    pub expires: DateTime<Utc>,
}

impl Identity {
    /// Reads every file `cfg` names and builds the acceptor; an error names the file to fix.
    pub fn load(cfg: &TlsConfig) -> Result<Identity, TlsSetupError> {
        let chain = certificates(&cfg.certificate)?;
        let expires = end_of(&cfg.certificate, &chain[0])?;
        Ok(Identity {
            acceptor: acceptor(cfg, chain)?,
            certificate: cfg.certificate.clone(),
            expires,
        })
    }

    /// Logs how long our certificate has left when that is under [`EXPIRY_WARNING_DAYS`], or
    /// that it has lapsed; says nothing otherwise.
    pub fn log_expiry(&self, now: DateTime<Utc>) {
        let path = self.certificate.display();
        match expiry(self.expires, now) {
            Expiry::Valid => {}
            Expiry::Soon { days } => warn!(
                certificate = %path,
                expires = %self.expires,
                "the TLS certificate expires in {days} day(s); renew it and reload (SIGHUP)"
            ),
            Expiry::Lapsed => error!(
                certificate = %path,
                expired = %self.expires,
                "the TLS certificate has expired: callers that check dates refuse it; renew it \
                 and reload (SIGHUP)"
            ),
        }
    }
}

/// Reads every file `cfg` names and builds what the TLS port would serve, as a start or a
/// reload does; returns when our certificate expires. For `brainaged check-config`.
pub fn check_tls(cfg: &TlsConfig) -> Result<DateTime<Utc>, TlsSetupError> {
    Identity::load(cfg).map(|identity| identity.expires)
}

/// When the first certificate of the PEM file at `path` (ours, in `[dicom.tls] certificate`)
/// stops being valid; for `brainaged status`, which does not build an acceptor.
pub fn certificate_expires(path: &Path) -> Result<DateTime<Utc>, TlsSetupError> {
    end_of(path, &certificates(path)?[0])
}

/// The `notAfter` of `cert`, read from the file at `path`.
fn end_of(path: &Path, cert: &CertificateDer) -> Result<DateTime<Utc>, TlsSetupError> {
    cert_dates::not_after(cert.as_ref()).map_err(|e| invalid(path, e))
}

/// How near our certificate is to its end.
#[derive(Debug, PartialEq)]
enum Expiry {
    Valid,
    /// Ends within [`EXPIRY_WARNING_DAYS`]: `days` whole days left (0 on its last day).
    Soon {
        days: i64,
    },
    Lapsed,
}

fn expiry(expires: DateTime<Utc>, now: DateTime<Utc>) -> Expiry {
    let left = expires - now;
    if left < TimeDelta::zero() {
        Expiry::Lapsed
    } else if left.num_days() < EXPIRY_WARNING_DAYS {
        Expiry::Soon {
            days: left.num_days(),
        }
    } else {
        Expiry::Valid
    }
}

/// Builds the acceptor for our certificate `chain` and the key and client CAs `cfg` names.
fn acceptor(
    cfg: &TlsConfig,
    chain: Vec<CertificateDer<'static>>,
) -> Result<TlsAcceptor, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = private_key(&cfg.private_key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&cfg.certificate, e))?;
    let builder = match (&cfg.client_ca, &cfg.client_crl) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(crl)) => {
            return Err(invalid(crl, "client_crl is set without client_ca"));
        }
        (Some(ca), crl) => {
            builder.with_client_cert_verifier(client_verifier(ca, crl.as_deref(), provider)?)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => invalid(
            &cfg.private_key,
            format!(
                "not the key of the certificate in {}",
                cfg.certificate.display()
            ),
        ),
        other => invalid(&cfg.private_key, other),
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A verifier that requires a certificate chaining to one of the CAs in `ca`, and not revoked
/// by the lists in `crl`. A CA with no list there is not asked about: with several client CAs a
/// site may hold a list for some only, and refusing every caller of the others would be worse.
fn client_verifier(
    ca: &Path,
    crl: Option<&Path>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| invalid(ca, e))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if let Some(path) = crl {
        builder = builder
            .with_crls(revocation_lists(path)?)
            .allow_unknown_revocation_status();
    }
    builder.build().map_err(|e| invalid(crl.unwrap_or(ca), e))
}

/// Every CRL in a PEM file.
fn revocation_lists(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let crls = CertificateRevocationListDer::pem_reader_iter(open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if crls.is_empty() {
        return Err(TlsSetupError::NoRevocationList { path: path.into() });
    }
    Ok(crls)
}

/// Every certificate in a PEM file, in order (ours first, then its intermediates).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let reader = open(path)?;
    let certs = CertificateDer::pem_reader_iter(reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

/// The first private key in a PEM file. A key other users can read is used, with a warning:
/// refusing to start would stop a hospital's intake over a file mode.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let reader = open(path)?;
    let mode = reader.get_ref().metadata().map(|m| m.permissions().mode());
    if let Ok(mode) = mode
        && mode & 0o077 != 0
    {
        warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the TLS private key is readable by other users; chmod 600 it"
        );
    }
    PrivateKeyDer::from_pem_reader(reader).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::NoKey { path: path.into() },
        other => invalid(path, other),
    })
}

/// Logs what a completed handshake agreed and who the caller proved to be: the protocol, the
/// cipher suite, and the SHA-256 fingerprint of the client's certificate (as `openssl x509
/// -fingerprint -sha256` prints it, without the colons), which names a device, not a patient.
pub(crate) fn log_established(conn: &rustls::ServerConnection) {
    let client_cert = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| hex::encode(Sha256::digest(cert.as_ref())));
    info!(
        version = conn.protocol_version().map(|v| format!("{v:?}")),
        cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
        client_cert_sha256 = client_cert.as_deref().unwrap_or("none"),
        "TLS established"
    );
}

/// Describes a failed handshake for the operator's log. The commonest cause, a peer speaking
/// plain DICOM to the TLS port, is named as such rather than as rustls's "corrupt message".
pub(crate) fn handshake_failure(e: std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            "the caller did not start TLS (plain DICOM sent to the TLS port?)".into()
        }
        _ => e.to_string(),
    }
}

fn open(path: &Path) -> Result<BufReader<File>, TlsSetupError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsSetupError::Read {
            path: path.into(),
            source,
        })
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::Invalid {
        path: path.into(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn warns_within_thirty_days_and_after_the_end() {
        let end = at("2027-03-01T00:00:00Z");
        assert_eq!(expiry(end, at("2027-01-01T00:00:00Z")), Expiry::Valid);
        assert_eq!(expiry(end, at("2027-01-30T00:00:00Z")), Expiry::Valid);
        assert_eq!(
            expiry(end, at("2027-01-30T00:00:01Z")),
            Expiry::Soon { days: 29 }
        );
        assert_eq!(
            expiry(end, at("2027-02-28T12:00:00Z")),
            Expiry::Soon { days: 0 }
        );
        assert_eq!(expiry(end, end), Expiry::Soon { days: 0 });
        assert_eq!(expiry(end, at("2027-03-01T00:00:01Z")), Expiry::Lapsed);
    }
}
