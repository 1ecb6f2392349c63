//! Sex QA: a sex model's prediction checked against DICOM PatientSex. A confident contradiction
//! usually means a mislabelled study (wrong patient, wrong header), which must be looked at before
//! any brain age from that study is trusted.

use serde::Serialize;

use super::covariates::Sex;

/// Probability above which a contradiction is flagged when the package does not say.
pub const DEFAULT_THRESHOLD: f64 = 0.9;

/// The outcome of the check for one subject.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SexCheck {
    /// The model's probability that the subject is male.
    pub probability_male: f64,
    /// The more probable sex.
    pub predicted: Sex,
    /// The probability of the predicted sex.
    pub probability: f64,
    /// PatientSex from DICOM.
    pub dicom: Sex,
    /// True when DICOM names the other sex and the model is more sure than `threshold`.
    pub contradicts_dicom: bool,
    pub threshold: f64,
}

impl SexCheck {
    /// Assesses one prediction.
    pub fn assess(probability_male: f64, dicom: Sex, threshold: f64) -> Self {
        let (predicted, probability) = if probability_male >= 0.5 {
            (Sex::Male, probability_male)
        } else {
            (Sex::Female, 1.0 - probability_male)
        };
        let contradicts_dicom =
            dicom != Sex::Unknown && dicom != predicted && probability > threshold;
        Self {
            probability_male,
            predicted,
            probability,
            dicom,
            contradicts_dicom,
            threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_only_confident_contradictions() {
        assert!(SexCheck::assess(0.97, Sex::Female, 0.9).contradicts_dicom);
        assert!(!SexCheck::assess(0.85, Sex::Female, 0.9).contradicts_dicom);
        assert!(!SexCheck::assess(0.97, Sex::Male, 0.9).contradicts_dicom);
        assert!(!SexCheck::assess(0.02, Sex::Unknown, 0.9).contradicts_dicom);
        assert_eq!(
            SexCheck::assess(0.02, Sex::Male, 0.9).predicted,
            Sex::Female
        );
    }
}
