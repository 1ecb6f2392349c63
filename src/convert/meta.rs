//! Series-level acquisition facts for the sidecar and the classifier, read once per file.
//!
//! Units follow BIDS (seconds, degrees). Nothing that identifies the patient is copied.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use serde_json::Value;

use super::attrs::{self, Object};
use crate::volume::VolumeMeta;

/// Key in [`VolumeMeta::extra`] holding MRAcquisitionType ("2D"/"3D"), which decides whether
/// a volume is reoriented to the closest canonical axes, as dcm2niix does for 3D acquisitions.
pub const MR_ACQUISITION_TYPE: &str = "MRAcquisitionType";
/// Extra key for the DICOM in-plane phase-encoding direction ("ROW" or "COL").
pub const PHASE_DIRECTION: &str = "InPlanePhaseEncodingDirectionDICOM";
/// Extra key, consumed by assembly and not written out: Siemens' PhaseEncodingDirectionPositive
/// (1 or 0), which turns the phase axis into a signed BIDS PhaseEncodingDirection.
pub const PHASE_POSITIVE: &str = "PhaseEncodingDirectionPositive";

/// Milliseconds in DICOM, seconds in BIDS (rounded to the microsecond, so that 123.6 ms reads
/// 0.1236 and not 0.12359999999999999).
fn seconds(obj: &Object, tag: Tag) -> Option<f64> {
    attrs::float(obj, tag).map(|ms| (ms * 1000.0).round() / 1e6)
}

/// A JSON number, integral when the value is.
fn number(v: f64) -> Option<Value> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Some(Value::from(v as i64))
    } else {
        serde_json::Number::from_f64(v).map(Value::Number)
    }
}

/// Reads the series-level metadata shared by every frame of `obj`. Enhanced readers may call
/// it on the top-level data set and then fill what their functional groups hold instead.
pub fn volume_meta(obj: &Object) -> VolumeMeta {
    let mut meta = VolumeMeta {
        series_instance_uid: attrs::text(obj, tags::SERIES_INSTANCE_UID),
        series_number: attrs::int(obj, tags::SERIES_NUMBER),
        series_description: attrs::text(obj, tags::SERIES_DESCRIPTION),
        protocol_name: attrs::text(obj, tags::PROTOCOL_NAME),
        manufacturer: attrs::text(obj, tags::MANUFACTURER),
        manufacturers_model_name: attrs::text(obj, tags::MANUFACTURER_MODEL_NAME),
        magnetic_field_strength: attrs::float(obj, tags::MAGNETIC_FIELD_STRENGTH),
        image_type: attrs::texts(obj, tags::IMAGE_TYPE)
            .into_iter()
            .map(|t| t.to_ascii_uppercase())
            .collect(),
        repetition_time: seconds(obj, tags::REPETITION_TIME),
        echo_time: seconds(obj, tags::ECHO_TIME),
        inversion_time: seconds(obj, tags::INVERSION_TIME),
        flip_angle: attrs::float(obj, tags::FLIP_ANGLE),
        slice_thickness: attrs::float(obj, tags::SLICE_THICKNESS),
        phase_encoding_direction: None,
        extra: Default::default(),
        intensity_scaling: None,
    };
    let texts: [(&str, Tag); 10] = [
        ("Modality", tags::MODALITY),
        (MR_ACQUISITION_TYPE, tags::MR_ACQUISITION_TYPE),
        ("ScanningSequence", tags::SCANNING_SEQUENCE),
        ("SequenceVariant", tags::SEQUENCE_VARIANT),
        ("ScanOptions", tags::SCAN_OPTIONS),
        ("SequenceName", tags::SEQUENCE_NAME),
        ("PatientPosition", tags::PATIENT_POSITION),
        ("SoftwareVersions", tags::SOFTWARE_VERSIONS),
        ("BodyPartExamined", tags::BODY_PART_EXAMINED),
        (PHASE_DIRECTION, tags::IN_PLANE_PHASE_ENCODING_DIRECTION),
    ];
    for (key, tag) in texts {
        if let Some(v) = attrs::text(obj, tag) {
            meta.extra.insert(key.into(), Value::String(v));
        }
    }
    let numbers: [(&str, Tag); 4] = [
        ("ImagingFrequency", tags::IMAGING_FREQUENCY),
        ("SpacingBetweenSlices", tags::SPACING_BETWEEN_SLICES),
        ("PixelBandwidth", tags::PIXEL_BANDWIDTH),
        ("AcquisitionNumber", tags::ACQUISITION_NUMBER),
    ];
    for (key, tag) in numbers {
        if let Some(v) = attrs::float(obj, tag).and_then(number) {
            meta.extra.insert(key.into(), v);
        }
    }
    if let Some(t) = attrs::text(obj, tags::ACQUISITION_TIME) {
        meta.extra
            .insert("AcquisitionTime".into(), Value::String(bids_time(&t)));
    }
    meta
}

/// DICOM TM (HHMMSS.frac) as BIDS hh:mm:ss.frac; left unchanged when it does not look like TM.
fn bids_time(tm: &str) -> String {
    let digits = tm.split('.').next().unwrap_or("");
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return tm.to_string();
    }
    let frac = tm.split_once('.').map(|(_, f)| f).unwrap_or("0");
    format!(
        "{}:{}:{}.{}",
        &digits[0..2],
        &digits[2..4],
        &digits[4..6],
        frac
    )
}

/// True when the series was acquired as a 3D volume.
pub fn is_3d(meta: &VolumeMeta) -> bool {
    meta.extra
        .get(MR_ACQUISITION_TYPE)
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("3D"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bids_time_formats_dicom_tm() {
        assert_eq!(super::bids_time("153511.42"), "15:35:11.42");
        assert_eq!(super::bids_time("bad"), "bad");
    }
}
