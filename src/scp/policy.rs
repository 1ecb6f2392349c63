//! Who may associate: our called AE title and the calling-AE allowlist (with optional host,
//! and optionally the name the caller's TLS certificate must carry).

use std::net::IpAddr;

use dicom_ul::pdu::AssociationRJServiceUserReason;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::config::DicomConfig;

/// The association acceptance policy, built once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct AePolicy {
    /// Our AE title; a request calling any other is refused.
    ae_title: String,
    /// When true, any calling AE is accepted.
    accept_any: bool,
    /// Allowed calling AEs.
    callers: Vec<Caller>,
}

/// One allowed calling AE and what else it must show.
#[derive(Debug, Clone)]
struct Caller {
    ae_title: String,
    /// The only address it may connect from.
    host: Option<IpAddr>,
    /// The DNS name or IP address its verified TLS client certificate must be valid for.
    tls_name: Option<String>,
}

impl Caller {
    fn admits(&self, calling: &str, peer: IpAddr, cert: Option<&CertificateDer>) -> bool {
        self.ae_title == calling
            && self.host.is_none_or(|h| h == peer)
            && self
                .tls_name
                .as_deref()
                .is_none_or(|name| cert.is_some_and(|c| certified_as(c, name)))
    }
}

/// Whether `cert` (already verified against the client CAs) is valid for `name`, a DNS name
/// or an IP address, as one of its subjectAltNames.
fn certified_as(cert: &CertificateDer, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|end_entity| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
}

impl AePolicy {
    pub fn new(cfg: &DicomConfig) -> Self {
        Self {
            ae_title: cfg.ae_title.trim().to_string(),
            accept_any: cfg.accept_any_caller,
            callers: cfg
                .callers
                .iter()
                .map(|c| Caller {
                    ae_title: c.ae_title.trim().to_string(),
                    host: c.host.map(|h| h.to_canonical()),
                    tls_name: c.tls_name.clone(),
                })
                .collect(),
        }
    }

    /// Accepts or names the reason for an A-ASSOCIATE-RJ (PS3.8 §9.3.4, source "service user").
    /// `cert` is the caller's verified TLS client certificate, if it showed one.
    pub fn check(
        &self,
        called: &str,
        calling: &str,
        peer: IpAddr,
        cert: Option<&CertificateDer>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called.trim() != self.ae_title {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if self.accept_any {
            return Ok(());
        }
        let calling = calling.trim();
        let peer = peer.to_canonical();
        let allowed = self.callers.iter().any(|c| c.admits(calling, peer, cert));
        if allowed {
            Ok(())
        } else {
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CallerConfig;

    fn policy() -> AePolicy {
        AePolicy::new(&DicomConfig {
            ae_title: "BRAINAGED".into(),
            callers: vec![
                CallerConfig {
                    ae_title: "SCANNER1".into(),
                    host: Some("10.1.2.3".parse().unwrap()),
                    tls_name: None,
                },
                CallerConfig {
                    ae_title: "PACS".into(),
                    host: None,
                    tls_name: None,
                },
            ],
            ..DicomConfig::default()
        })
    }

    #[test]
    fn caller_with_host_must_come_from_that_host() {
        let p = policy();
        let here: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let elsewhere: IpAddr = "10.9.9.9".parse().unwrap();
        assert!(p.check("BRAINAGED", "SCANNER1", here, None).is_ok());
        assert!(p.check("BRAINAGED", "SCANNER1", mapped, None).is_ok());
        assert_eq!(
            p.check("BRAINAGED", "SCANNER1", elsewhere, None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert!(p.check("BRAINAGED ", "PACS", elsewhere, None).is_ok());
    }

    #[test]
    fn wrong_called_ae_and_unknown_caller_are_refused() {
        let p = policy();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            p.check("OTHER", "PACS", ip, None),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        assert_eq!(
            p.check("BRAINAGED", "NOBODY", ip, None),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }
}
