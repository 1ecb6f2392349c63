//! Helpers shared by the unit tests of the multi-frame readers.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;

/// `rel` under the development set: `$BRAINAGED_SHARED/dicom`, else `../shared/dicom`.
pub fn shared_dicom(rel: &str) -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("dicom")
        .join(rel)
}

/// A text element with backslash-separated values, as a parser would have built it.
pub fn text_element(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    let values = value.split('\\').map(str::to_string).collect();
    DataElement::new(tag, vr, PrimitiveValue::Strs(values))
}
