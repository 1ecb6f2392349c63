//! Private attributes found by their creator, as vendors and anonymisers move private blocks.

use dicom_core::Tag;

use super::attrs::{self, Object};

/// The tag of private element `element` (low byte) of `group` in the block that `creator`
/// reserved, e.g. ("SIEMENS CSA HEADER", 0x0029, 0x10) → (0029,1010) in the usual block.
pub fn private_tag(obj: &Object, group: u16, creator: &str, element: u8) -> Option<Tag> {
    (0x10u16..=0xFF).find_map(|block| {
        let found = attrs::text(obj, Tag(group, block))?;
        found
            .eq_ignore_ascii_case(creator)
            .then_some(Tag(group, (block << 8) | element as u16))
    })
}

/// Raw bytes of `tag` (private OB/UN elements such as the CSA headers).
pub fn bytes(obj: &Object, tag: Tag) -> Option<Vec<u8>> {
    Some(obj.get(tag)?.to_bytes().ok()?.into_owned())
}

/// Values of a multi-valued code string, upper case (ImageType, FrameType).
pub fn upper_texts(obj: &Object, tag: Tag) -> Vec<String> {
    attrs::texts(obj, tag)
        .into_iter()
        .map(|v| v.to_ascii_uppercase())
        .collect()
}
