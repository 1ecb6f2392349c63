//! What the index records about an instance, read from its dataset.
//!
//! The receiver fills an [`InstanceRecord`] from the values its scan of the dataset found
//! ([`super::scan`]), or from the parsed object when the scan could not read it; `reindex` does
//! the same from a spool file. All of them share [`describe`], which reads through
//! [`Attributes`], so the two sources cannot drift apart.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use super::{Spool, SpoolError};
use crate::dataset_bounds;
use crate::db::instances::InstanceRecord;
use dicom_core::Tag;
use dicom_encoding::text::{DefaultCharacterSetCodec, SpecificCharacterSet, TextCodec};

use super::scan::Scanned;

/// The top-level attributes [`describe`] reads, for a scan to collect.
pub const DESCRIBED: [Tag; 19] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_INSTANCE_UID,
    tags::SOP_CLASS_UID,
    tags::SERIES_INSTANCE_UID,
    tags::STUDY_INSTANCE_UID,
    tags::PATIENT_ID,
    tags::PATIENT_NAME,
    tags::PATIENT_SEX,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_AGE,
    tags::STUDY_DATE,
    tags::STUDY_DESCRIPTION,
    tags::ACCESSION_NUMBER,
    tags::MODALITY,
    tags::SERIES_NUMBER,
    tags::SERIES_DESCRIPTION,
    tags::PROTOCOL_NAME,
    tags::IMAGE_TYPE,
    tags::INSTANCE_NUMBER,
];

/// A source of attribute values as text: multiple values joined by a backslash, each without
/// its trailing padding.
pub trait Attributes {
    /// The value of `tag` as text, or `None` when absent or not decodable.
    fn raw_text(&self, tag: Tag) -> Option<String>;
}

impl Attributes for InMemDicomObject {
    fn raw_text(&self, tag: Tag) -> Option<String> {
        Some(self.get(tag)?.to_str().ok()?.into_owned())
    }
}

/// A scan's raw values, decoded the way the parser decodes them: the character set of the
/// first value of (0008,0005) for text, the default repertoire for AE, AS, CS and UR.
pub struct ScannedText<'a> {
    scanned: &'a Scanned<'a>,
    charset: SpecificCharacterSet,
}

impl<'a> ScannedText<'a> {
    /// `None` when the dataset declares a character set that only the full parser handles
    /// (ISO 2022 code extensions, which switch sets within a value), or sends an attribute we
    /// read with a VR that is not text (ImageType as SS, say), which the parser decodes as
    /// numbers: either way the full parser reads the dataset, so that the index does not
    /// depend on which reader it came from.
    pub fn new(scanned: &'a Scanned<'a>) -> Option<Self> {
        if scanned
            .values
            .iter()
            .any(|v| v.vr.is_some_and(|vr| !is_text(&vr)))
        {
            return None;
        }
        let declared = scanned
            .get(tags::SPECIFIC_CHARACTER_SET)
            .map(|raw| String::from_utf8_lossy(raw).into_owned())
            .unwrap_or_default();
        if declared.contains("2022") {
            return None;
        }
        let first = declared.split('\\').next().unwrap_or("");
        let charset =
            SpecificCharacterSet::from_code(first.trim_matches(['\0', ' '])).unwrap_or_default();
        Some(Self { scanned, charset })
    }
}

/// The VRs whose values the parser keeps as text.
fn is_text(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"ST"
            | b"TM"
            | b"UC"
            | b"UI"
            | b"UR"
            | b"UT"
    )
}

impl Attributes for ScannedText<'_> {
    fn raw_text(&self, tag: Tag) -> Option<String> {
        let value = self.scanned.value(tag)?;
        // The VRs whose text the parser decodes in the default repertoire whatever the declared
        // character set; in implicit VR, those of the attributes we read.
        let plain = matches!(
            value.vr.as_ref().map(|v| &v[..]),
            Some(b"AE" | b"AS" | b"CS" | b"UR")
        ) || (value.vr.is_none()
            && matches!(
                tag,
                tags::PATIENT_SEX
                    | tags::MODALITY
                    | tags::IMAGE_TYPE
                    | tags::PATIENT_AGE
                    | tags::SPECIFIC_CHARACTER_SET
            ));
        let values: Option<Vec<String>> = value
            .bytes
            .split(|b| *b == b'\\')
            .map(|part| match plain {
                true => DefaultCharacterSetCodec.decode(part).ok(),
                false => self.charset.decode(part).ok(),
            })
            .map(|v| v.map(|s| s.trim_end_matches([' ', '\0']).to_string()))
            .collect();
        Some(values?.join("\\"))
    }
}

/// Fills the UIDs and the descriptive attributes of `rec` from a dataset. Attributes that are
/// absent or unreadable stay `None`: later stages decide what they need.
pub fn describe<A: Attributes + ?Sized>(obj: &A, rec: &mut InstanceRecord) {
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
///
/// The file's lengths are checked first ([`dataset_bounds::check_file_header`]): the files here
/// are ones the receiver checked, but one damaged on disk since could otherwise make the parser
/// allocate up to 4 GiB before it fails.
pub fn from_file(spool: &Spool, path: &Path) -> Result<InstanceRecord, SpoolError> {
    let parse_error = |reason: String| SpoolError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    dataset_bounds::check_file_header(path)
        .map_err(|e| SpoolError::io(path, e))?
        .map_err(|refused| parse_error(refused.to_string()))?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always) // as the spool writes them, and as checked
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| parse_error(e.to_string()))?;
    let md = std::fs::metadata(path).map_err(|e| SpoolError::io(path, e))?;
    let mut rec = InstanceRecord::default();
    describe(&*obj, &mut rec);
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
        return Err(parse_error("no study or series instance UID".into()));
    }
    Ok(rec)
}

/// A value without its padding and without NUL characters anywhere: PostgreSQL text cannot
/// hold a NUL, and a row it refuses would answer the C-STORE "out of resources", which a sender
/// retries for ever. DICOM text has no use for NUL except as padding, so nothing is lost from
/// the index; the spool file keeps the value as sent. A UID with a NUL inside then no longer
/// equals the command's, and the instance is refused as not matching (A900), as it should be.
fn trim(s: &str) -> String {
    s.trim_matches(['\0', ' ']).replace('\0', "")
}

fn text<A: Attributes + ?Sized>(obj: &A, tag: Tag) -> Option<String> {
    let value = trim(&obj.raw_text(tag)?);
    (!value.is_empty()).then_some(value)
}

fn int<A: Attributes + ?Sized>(obj: &A, tag: Tag) -> Option<i32> {
    text(obj, tag)?.split('\\').next()?.trim().parse().ok()
}

/// A DA value; old ACR-NEMA style `YYYY.MM.DD` is accepted too.
fn date<A: Attributes + ?Sized>(obj: &A, tag: Tag) -> Option<NaiveDate> {
    let raw: String = text(obj, tag)?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    NaiveDate::parse_from_str(raw.get(..8)?, "%Y%m%d").ok()
}
