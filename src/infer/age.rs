//! Chronological age at the scan, which bias correction needs: from PatientAge (0010,1010) when
//! present, else from PatientBirthDate and StudyDate.

use chrono::NaiveDate;

/// Age in years from a DICOM AS value: "nnnD", "nnnW", "nnnM" or "nnnY".
pub fn from_age_string(value: &str) -> Option<f64> {
    let v = value.trim();
    if v.len() < 2 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: f64 = digits.trim().parse().ok()?;
    let years = match unit.to_ascii_uppercase().as_str() {
        "Y" => n,
        "M" => n / 12.0,
        "W" => n * 7.0 / 365.25,
        "D" => n / 365.25,
        _ => return None,
    };
    Some(years)
}

/// Age in years between a DICOM DA birth date and study date ("YYYYMMDD").
pub fn from_dates(birth: &str, study: &str) -> Option<f64> {
    let parse = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y%m%d").ok();
    let (b, s) = (parse(birth)?, parse(study)?);
    if s < b {
        return None;
    }
    Some((s - b).num_days() as f64 / 365.25)
}

/// PatientAge wins; otherwise the dates; otherwise unknown.
pub fn chronological_age(
    patient_age: Option<&str>,
    birth_date: Option<&str>,
    study_date: Option<&str>,
) -> Option<f64> {
    patient_age
        .and_then(from_age_string)
        .or_else(|| match (birth_date, study_date) {
            (Some(b), Some(s)) => from_dates(b, s),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_strings_and_dates() {
        assert_eq!(from_age_string("065Y"), Some(65.0));
        assert_eq!(from_age_string("018M"), Some(1.5));
        assert_eq!(from_age_string("Y"), None);
        let a = from_dates("19500615", "20200615").unwrap();
        assert!((a - 70.0).abs() < 0.01);
        assert_eq!(
            chronological_age(None, Some("20200101"), Some("20100101")),
            None
        );
        assert_eq!(
            chronological_age(Some("070Y"), Some("19000101"), Some("20200101")),
            Some(70.0)
        );
    }
}
