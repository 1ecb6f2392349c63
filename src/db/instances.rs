//! The `instances` index: one row per stored SOP instance.

use chrono::{DateTime, NaiveDate, Utc};

/// What the receiver knows about one stored instance; everything later stages query by.
///
/// Patient attributes are PHI: they go to the database, never to info-level logs.
#[derive(Debug, Clone, Default)]
pub struct InstanceRecord {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_instance_uid: String,
    pub study_instance_uid: String,
    /// Path of the part-10 file, relative to the spool root.
    pub spool_path: String,
    pub transfer_syntax: String,
    pub size_bytes: i64,
    pub calling_ae: String,
    pub received_at: DateTime<Utc>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<NaiveDate>,
    /// PatientAge as sent, e.g. "034Y".
    pub patient_age: Option<String>,
    pub study_date: Option<NaiveDate>,
    pub study_description: Option<String>,
    pub accession_number: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i32>,
    pub series_description: Option<String>,
    pub protocol_name: Option<String>,
    /// ImageType values joined with a backslash, as DICOM writes them.
    pub image_type: Option<String>,
    pub instance_number: Option<i32>,
}
