//! What the index records about an instance, read from its dataset.
//!
//! The receiver fills an [`InstanceRecord`] from the dataset it has just parsed; `reindex` does
//! the same from a spool file, so both paths share [`describe`].

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::{Spool, SpoolError};
use crate::db::instances::InstanceRecord;
use dicom_core::Tag;

/// Fills the UIDs and the descriptive attributes of `rec` from a dataset. Attributes that are
/// absent or unreadable stay `None`: later stages decide what they need.
pub fn describe(obj: &InMemDicomObject, rec: &mut InstanceRecord) {
    rec.sop_instance_uid = text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default();
    rec.sop_class_uid = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    rec.series_instance_uid = text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    rec.study_instance_uid = text(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default();
    rec.patient_id = text(obj, tags::PATIENT_ID);
    rec.patient_name = text(obj, tags::PATIENT_NAME);
    rec.patient_sex = text(obj, tags::PATIENT_SEX);
    rec.patient_birth_date = date(obj, tags::PATIENT_BIRTH_DATE);
    rec.patient_age = text(obj, tags::PATIENT_AGE);
    rec.study_date = date(obj, tags::STUDY_DATE);
    rec.study_description = text(obj, tags::STUDY_DESCRIPTION);
    rec.accession_number = text(obj, tags::ACCESSION_NUMBER);
    rec.modality = text(obj, tags::MODALITY);
    rec.series_number = int(obj, tags::SERIES_NUMBER);
    rec.series_description = text(obj, tags::SERIES_DESCRIPTION);
    rec.protocol_name = text(obj, tags::PROTOCOL_NAME);
    rec.image_type = text(obj, tags::IMAGE_TYPE);
    rec.instance_number = int(obj, tags::INSTANCE_NUMBER);
}

/// Reads a spool file back into the record the receiver wrote for it, for `brainaged reindex`.
/// The calling AE comes from the meta group and the received time from the file's mtime.
pub fn from_file(spool: &Spool, path: &Path) -> Result<InstanceRecord, SpoolError> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| SpoolError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let md = std::fs::metadata(path).map_err(|e| SpoolError::io(path, e))?;
    let mut rec = InstanceRecord::default();
    describe(&obj, &mut rec);
    let meta = obj.meta();
    if rec.sop_instance_uid.is_empty() {
        rec.sop_instance_uid = trim(meta.media_storage_sop_instance_uid());
    }
    if rec.sop_class_uid.is_empty() {
        rec.sop_class_uid = trim(meta.media_storage_sop_class_uid());
    }
    rec.transfer_syntax = trim(meta.transfer_syntax());
    rec.calling_ae = meta
        .source_application_entity_title()
        .map(trim)
        .unwrap_or_default();
    rec.size_bytes = md.len() as i64;
    rec.received_at = md
        .modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now());
    rec.spool_path = path
        .strip_prefix(spool.root())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string_lossy().into_owned());
    if rec.series_instance_uid.is_empty() || rec.study_instance_uid.is_empty() {
        return Err(SpoolError::Parse {
            path: path.to_path_buf(),
            reason: "no study or series instance UID".into(),
        });
    }
    Ok(rec)
}

fn trim(s: &str) -> String {
    s.trim_matches(['\0', ' ']).to_string()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.get(tag)?.to_str().ok()?;
    let value = value.trim_matches(['\0', ' ']);
    (!value.is_empty()).then(|| value.to_string())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i32> {
    text(obj, tag)?.split('\\').next()?.trim().parse().ok()
}

/// A DA value; old ACR-NEMA style `YYYY.MM.DD` is accepted too.
fn date(obj: &InMemDicomObject, tag: Tag) -> Option<NaiveDate> {
    let raw: String = text(obj, tag)?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    NaiveDate::parse_from_str(raw.get(..8)?, "%Y%m%d").ok()
}
