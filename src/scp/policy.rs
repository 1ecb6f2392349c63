//! Who may associate: our called AE title and the calling-AE allowlist (with optional host).

use std::net::IpAddr;

use dicom_ul::pdu::AssociationRJServiceUserReason;

use crate::config::DicomConfig;

/// The association acceptance policy, built once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct AePolicy {
    /// Our AE title; a request calling any other is refused.
    ae_title: String,
    /// When true, any calling AE is accepted.
    accept_any: bool,
    /// Allowed calling AEs and, when set, the only address each may connect from.
    callers: Vec<(String, Option<IpAddr>)>,
}

impl AePolicy {
    pub fn new(cfg: &DicomConfig) -> Self {
        Self {
            ae_title: cfg.ae_title.trim().to_string(),
            accept_any: cfg.accept_any_caller,
            callers: cfg
                .callers
                .iter()
                .map(|c| {
                    (
                        c.ae_title.trim().to_string(),
                        c.host.map(|h| h.to_canonical()),
                    )
                })
                .collect(),
        }
    }

    /// Accepts or names the reason for an A-ASSOCIATE-RJ (PS3.8 §9.3.4, source "service user").
    pub fn check(
        &self,
        called: &str,
        calling: &str,
        peer: IpAddr,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called.trim() != self.ae_title {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if self.accept_any {
            return Ok(());
        }
        let calling = calling.trim();
        let peer = peer.to_canonical();
        let allowed = self
            .callers
            .iter()
            .any(|(ae, host)| ae == calling && host.is_none_or(|h| h == peer));
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
                },
                CallerConfig {
                    ae_title: "PACS".into(),
                    host: None,
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
        assert!(p.check("BRAINAGED", "SCANNER1", here).is_ok());
        assert!(p.check("BRAINAGED", "SCANNER1", mapped).is_ok());
        assert_eq!(
            p.check("BRAINAGED", "SCANNER1", elsewhere),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert!(p.check("BRAINAGED ", "PACS", elsewhere).is_ok());
    }

    #[test]
    fn wrong_called_ae_and_unknown_caller_are_refused() {
        let p = policy();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            p.check("OTHER", "PACS", ip),
            Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        assert_eq!(
            p.check("BRAINAGED", "NOBODY", ip),
            Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
    }
}
