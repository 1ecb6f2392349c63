//! The part-10 preamble and file meta information group (PS3.10 §7.1) that precede the received
//! dataset bytes in a spool file.
//!
//! It is encoded here directly, in explicit VR little endian as the standard requires, because it
//! is a handful of fixed elements and the received dataset must follow it byte for byte.

/// Identifies files written by brainaged (a UUID-derived UID, PS3.5 §B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.312515877985531590333084050650036238908";
/// Our implementation version name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("BRAINAGED_", env!("CARGO_PKG_VERSION"));

/// What the meta group says about one instance.
pub(crate) struct MetaFields<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax: &'a str,
    /// The calling AE of the association that delivered the instance.
    pub source_ae: &'a str,
}

/// Preamble, `DICM` and the meta group, ready to be followed by the dataset.
pub(crate) fn encode(fields: &MetaFields<'_>) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    short(&mut group, 0x0001, b"OB", &[0, 1]);
    short(&mut group, 0x0002, b"UI", &uid(fields.sop_class_uid));
    short(&mut group, 0x0003, b"UI", &uid(fields.sop_instance_uid));
    short(&mut group, 0x0010, b"UI", &uid(fields.transfer_syntax));
    short(&mut group, 0x0012, b"UI", &uid(IMPLEMENTATION_CLASS_UID));
    short(
        &mut group,
        0x0013,
        b"SH",
        &text(IMPLEMENTATION_VERSION_NAME, 16),
    );
    let ae = fields.source_ae.trim();
    if !ae.is_empty() {
        short(&mut group, 0x0016, b"AE", &text(ae, 16));
    }
    let mut out = Vec::with_capacity(132 + 12 + group.len());
    out.extend_from_slice(&[0u8; 128]);
    out.extend_from_slice(b"DICM");
    short(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

/// One group-0002 element. OB has a 4-byte length after two reserved bytes; the others a
/// 2-byte length.
fn short(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&0x0002u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if vr == b"OB" {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// A UID value: trailing NULs and spaces from the wire removed, padded to even length with NUL.
fn uid(value: &str) -> Vec<u8> {
    let mut v = value
        .trim_end_matches(['\0', ' '])
        .as_bytes()
        .iter()
        .take(64)
        .copied()
        .collect::<Vec<u8>>();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// A short text value, capped and padded to even length with a space.
fn text(value: &str, max: usize) -> Vec<u8> {
    let mut v: Vec<u8> = value
        .bytes()
        .filter(|b| b.is_ascii_graphic() || *b == b' ')
        .take(max)
        .collect();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::meta::FileMetaTable;

    #[test]
    fn meta_group_reads_back_with_dicom_object() {
        let bytes = encode(&MetaFields {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.4",
            sop_instance_uid: "1.2.3.4.5",
            transfer_syntax: "1.2.840.10008.1.2.1\0",
            source_ae: "STORESCU",
        });
        // FileMetaTable::from_reader expects the stream positioned at "DICM".
        let meta = FileMetaTable::from_reader(&bytes[128..]).unwrap();
        assert_eq!(
            meta.media_storage_sop_class_uid(),
            "1.2.840.10008.5.1.4.1.1.4"
        );
        assert_eq!(meta.media_storage_sop_instance_uid(), "1.2.3.4.5");
        assert_eq!(meta.transfer_syntax(), "1.2.840.10008.1.2.1");
        assert_eq!(meta.implementation_class_uid(), IMPLEMENTATION_CLASS_UID);
        assert_eq!(meta.source_application_entity_title(), Some("STORESCU"));
        assert_eq!(
            meta.information_group_length as usize,
            bytes.len() - 128 - 4 - 12
        );
    }
}
