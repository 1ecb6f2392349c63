//! Presentation-context negotiation: which SOP classes and transfer syntaxes we accept.

use std::collections::HashSet;

use dicom_ul::pdu::{PresentationContextProposed, PresentationContextResultReason};

use crate::config::DicomConfig;

/// Verification SOP class (C-ECHO).
pub(crate) const VERIFICATION: &str = "1.2.840.10008.1.1";
/// MR storage classes, which are stored and scored.
pub const MR_STORAGE: [&str; 4] = [
    "1.2.840.10008.5.1.4.1.1.4",   // MR Image
    "1.2.840.10008.5.1.4.1.1.4.1", // Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3", // Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4", // Legacy Converted Enhanced MR Image
];
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Transfer syntaxes we store (and later stages can decode). JPEG extended 12-bit (.51) is
/// deliberately absent: our decoder cannot read it, so accepting it would store data no stage
/// could use.
pub const ACCEPTED_TRANSFER_SYNTAXES: [&str; 11] = [
    IMPLICIT_LE,
    EXPLICIT_LE,
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian
    "1.2.840.10008.1.2.4.50", // JPEG baseline 8-bit
    "1.2.840.10008.1.2.4.57", // JPEG lossless, non-hierarchical
    "1.2.840.10008.1.2.4.70", // JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80", // JPEG-LS lossless
    "1.2.840.10008.1.2.4.81", // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless only
    "1.2.840.10008.1.2.4.91", // JPEG 2000
    "1.2.840.10008.1.2.5",    // RLE lossless
];

/// One context as accepted or refused.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub id: u8,
    pub abstract_syntax: String,
    pub reason: PresentationContextResultReason,
    /// The chosen transfer syntax (meaningful only when accepted).
    pub transfer_syntax: String,
}

impl Negotiated {
    pub fn accepted(&self) -> bool {
        self.reason == PresentationContextResultReason::Acceptance
    }
}

/// The SOP classes we accept, built once from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Negotiator {
    storage: HashSet<String>,
}

impl Negotiator {
    pub fn new(cfg: &DicomConfig) -> Self {
        let storage = MR_STORAGE
            .iter()
            .map(|s| s.to_string())
            .chain(
                cfg.other_storage_classes
                    .iter()
                    .map(|s| trim_uid(s).to_string()),
            )
            .collect();
        Self { storage }
    }

    /// Whether `sop_class` is a storage class we keep.
    pub fn is_storage(&self, sop_class: &str) -> bool {
        self.storage.contains(trim_uid(sop_class))
    }

    /// Decides one proposed context.
    pub fn negotiate(&self, pc: &PresentationContextProposed) -> Negotiated {
        let abstract_syntax = trim_uid(&pc.abstract_syntax).to_string();
        let known = abstract_syntax == VERIFICATION || self.storage.contains(&abstract_syntax);
        let chosen = known
            .then(|| choose_transfer_syntax(&abstract_syntax, &pc.transfer_syntaxes))
            .flatten();
        let reason = match (known, &chosen) {
            (false, _) => PresentationContextResultReason::AbstractSyntaxNotSupported,
            (true, None) => PresentationContextResultReason::TransferSyntaxesNotSupported,
            (true, Some(_)) => PresentationContextResultReason::Acceptance,
        };
        Negotiated {
            id: pc.id,
            abstract_syntax,
            reason,
            transfer_syntax: chosen.unwrap_or_else(|| IMPLICIT_LE.to_string()),
        }
    }
}

/// Explicit VR LE when proposed (it keeps VRs and needs no decoding), otherwise the first
/// acceptable syntax in the proposer's order of preference. Verification carries no dataset,
/// so only the two uncompressed syntaxes make sense for it.
fn choose_transfer_syntax(abstract_syntax: &str, proposed: &[String]) -> Option<String> {
    let proposed: Vec<&str> = proposed.iter().map(|s| trim_uid(s)).collect();
    if proposed.contains(&EXPLICIT_LE) {
        return Some(EXPLICIT_LE.to_string());
    }
    let allowed: &[&str] = if abstract_syntax == VERIFICATION {
        &[IMPLICIT_LE, EXPLICIT_LE]
    } else {
        &ACCEPTED_TRANSFER_SYNTAXES
    };
    proposed
        .into_iter()
        .find(|ts| allowed.contains(ts))
        .map(str::to_string)
}

/// UIDs on the wire may carry a trailing NUL (padding) or spaces.
pub(crate) fn trim_uid(uid: &str) -> &str {
    uid.trim_matches(['\0', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(abs: &str, ts: &[&str]) -> PresentationContextProposed {
        PresentationContextProposed {
            id: 1,
            abstract_syntax: abs.into(),
            transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn explicit_le_is_preferred_when_proposed() {
        let n = Negotiator::new(&DicomConfig::default());
        let r = n.negotiate(&pc(
            MR_STORAGE[0],
            &[
                "1.2.840.10008.1.2.4.70",
                IMPLICIT_LE,
                "1.2.840.10008.1.2.1\0",
            ],
        ));
        assert!(r.accepted());
        assert_eq!(r.transfer_syntax, EXPLICIT_LE);
        let r = n.negotiate(&pc(MR_STORAGE[1], &["1.2.840.10008.1.2.4.90", IMPLICIT_LE]));
        assert_eq!(r.transfer_syntax, "1.2.840.10008.1.2.4.90");
    }

    #[test]
    fn twelve_bit_jpeg_alone_is_refused() {
        let n = Negotiator::new(&DicomConfig::default());
        let r = n.negotiate(&pc(MR_STORAGE[0], &["1.2.840.10008.1.2.4.51"]));
        assert_eq!(
            r.reason,
            PresentationContextResultReason::TransferSyntaxesNotSupported
        );
    }

    #[test]
    fn unknown_sop_class_is_refused_and_configured_ones_accepted() {
        let n = Negotiator::new(&DicomConfig::default());
        let r = n.negotiate(&pc("1.2.3.4", &[IMPLICIT_LE]));
        assert_eq!(
            r.reason,
            PresentationContextResultReason::AbstractSyntaxNotSupported
        );
        let r = n.negotiate(&pc("1.2.840.10008.5.1.4.1.1.7", &[IMPLICIT_LE]));
        assert!(r.accepted());
        let r = n.negotiate(&pc(VERIFICATION, &["1.2.840.10008.1.2.4.50", IMPLICIT_LE]));
        assert_eq!(r.transfer_syntax, IMPLICIT_LE);
    }
}
