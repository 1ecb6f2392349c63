//! Lenient attribute access for the multi-frame readers (mosaic, enhanced).
//!
//! Real scanner files omit, pad or mistype almost anything, and a missing optional attribute must
//! never abort a conversion; so every accessor returns `Option` and treats an unparsable value as
//! absent. Callers decide which attributes are required and name them in their own errors.

use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// Trimmed text of `tag`, None when absent or empty.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.get(tag)?.to_str().ok()?;
    let value = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!value.is_empty()).then(|| value.to_string())
}

/// Values of a multi-valued text attribute (backslash separated), upper case, trimmed.
pub fn upper_texts(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    text(obj, tag)
        .map(|v| {
            v.split('\\')
                .map(|s| s.trim().to_ascii_uppercase())
                .collect()
        })
        .unwrap_or_default()
}

/// Numbers of `tag` (DS, FD, FL, IS, US, …), None when absent or unparsable.
pub fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let values = obj.get(tag)?.to_multi_float64().ok()?;
    (!values.is_empty() && values.iter().all(|v| v.is_finite())).then_some(values)
}

/// First number of `tag`.
pub fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag)?.first().copied()
}

/// First number of `tag` as an integer (IS, UL, US, …).
pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let value = float(obj, tag)?;
    (value.fract() == 0.0).then_some(value as i64)
}

/// Exactly `N` numbers, for positions, orientations and spacings.
pub fn fixed<const N: usize>(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; N]> {
    floats(obj, tag)?.try_into().ok()
}

/// First item of the sequence `tag`.
pub fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Raw bytes of `tag` (private OB/UN elements such as the CSA headers).
pub fn bytes(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<u8>> {
    Some(obj.get(tag)?.to_bytes().ok()?.into_owned())
}

/// The tag of private element `element` (low byte) of `group` in the block that `creator`
/// reserved, e.g. ("SIEMENS CSA HEADER", 0x0029, 0x10) → (0029,1010) in the usual block.
/// Scanners and anonymisers move private blocks, so the creator, not the tag, is the key.
pub fn private_tag(obj: &InMemDicomObject, group: u16, creator: &str, element: u8) -> Option<Tag> {
    (0x10u16..=0xFF).find_map(|block| {
        let found = text(obj, Tag(group, block))?;
        found
            .eq_ignore_ascii_case(creator)
            .then_some(Tag(group, (block << 8) | element as u16))
    })
}
