//! Demographic covariates as models expect them.
//!
//! BRAID concatenates a 6-vector to its image features: `[sex_F, sex_M, white, asian, black,
//! AIAN]`, one-hot, with an unknown sex as 0.5/0.5 and an unknown race as 0.25 in each race slot,
//! so that a missing value is the average of the possible ones rather than a false certainty.

/// The BRAID encoding's name in manifests.
pub const BRAID_DEMOGRAPHICS: &str = "braid-demographics";

/// Sex as DICOM PatientSex records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Sex {
    Female,
    Male,
    /// "O", empty or absent.
    Unknown,
}

impl Sex {
    /// From PatientSex (0010,0040): "F", "M", "O" or empty.
    pub fn from_dicom(value: Option<&str>) -> Self {
        match value.map(|s| s.trim().to_ascii_uppercase()).as_deref() {
            Some("F") => Sex::Female,
            Some("M") => Sex::Male,
            _ => Sex::Unknown,
        }
    }

    /// "F", "M" or "unknown".
    pub fn code(self) -> &'static str {
        match self {
            Sex::Female => "F",
            Sex::Male => "M",
            Sex::Unknown => "unknown",
        }
    }
}

/// Race in BRAID's four categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    White,
    Asian,
    Black,
    /// American Indian or Alaska Native.
    Aian,
    Unknown,
}

impl Race {
    /// From EthnicGroup (0010,2160) or a site's demographic field; anything not recognised is unknown.
    pub fn parse(value: Option<&str>) -> Self {
        let Some(v) = value else { return Race::Unknown };
        let v = v.trim().to_ascii_lowercase();
        if v.contains("white") || v.contains("caucasian") {
            Race::White
        } else if v.contains("asian") {
            Race::Asian
        } else if v.contains("black") || v.contains("african") {
            Race::Black
        } else if v.contains("indian") || v.contains("alaska") || v == "aian" {
            Race::Aian
        } else {
            Race::Unknown
        }
    }
}

/// Number of values an encoding produces, or None when the encoding is unknown.
pub fn encoding_width(name: &str) -> Option<usize> {
    match name {
        BRAID_DEMOGRAPHICS => Some(6),
        _ => None,
    }
}

/// The BRAID 6-vector.
pub fn braid_demographics(sex: Sex, race: Race) -> [f32; 6] {
    let (f, m) = match sex {
        Sex::Female => (1.0, 0.0),
        Sex::Male => (0.0, 1.0),
        Sex::Unknown => (0.5, 0.5),
    };
    let r = match race {
        Race::White => [1.0, 0.0, 0.0, 0.0],
        Race::Asian => [0.0, 1.0, 0.0, 0.0],
        Race::Black => [0.0, 0.0, 1.0, 0.0],
        Race::Aian => [0.0, 0.0, 0.0, 1.0],
        Race::Unknown => [0.25; 4],
    };
    [f, m, r[0], r[1], r[2], r[3]]
}

/// The covariates input for a batch of subjects, [N, 6], in the BRAID encoding.
pub fn braid_batch(subjects: &[(Sex, Race)]) -> ndarray::ArrayD<f32> {
    let values: Vec<f32> = subjects
        .iter()
        .flat_map(|&(sex, race)| braid_demographics(sex, race))
        .collect();
    ndarray::Array2::from_shape_vec((subjects.len(), 6), values)
        .map(|a| a.into_dyn())
        .unwrap_or_else(|_| ndarray::ArrayD::zeros(ndarray::IxDyn(&[0, 6])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknowns_are_uniform() {
        assert_eq!(
            braid_demographics(Sex::Unknown, Race::Unknown),
            [0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
        );
        assert_eq!(
            braid_demographics(Sex::Male, Race::Black),
            [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(Sex::from_dicom(Some("O")), Sex::Unknown);
        let batch = braid_batch(&[(Sex::Female, Race::Unknown), (Sex::Male, Race::White)]);
        assert_eq!(batch.shape(), [2, 6]);
        assert_eq!(batch[[1, 2]], 1.0);
        assert_eq!(Sex::from_dicom(Some("f ")), Sex::Female);
    }
}
