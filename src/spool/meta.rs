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
///
/// A value that is not a UID (characters other than digits and dots, or longer than 64) is
/// replaced by a UID derived from it, `2.25.` and 128 bits of its SHA-256: the parser that
/// reads spool files back (`brainaged reindex`, the converter) refuses a meta group with such a
/// value, and an acknowledged instance whose file cannot be read back is as good as lost. The
/// dataset after the meta group keeps the value as sent, and the index records that one.
fn uid(value: &str) -> Vec<u8> {
    let trimmed = value.trim_end_matches(['\0', ' ']);
    let valid = trimmed.len() <= 64 && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let mut v = match valid {
        true => trimmed.as_bytes().to_vec(),
        false => derived_uid(trimmed).into_bytes(),
    };
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

/// A UID under the `2.25` arc (PS3.5 §B.2) that stands for `text`: the same text always gives
/// the same UID, so a resent instance gets the same meta group.
fn derived_uid(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(first))
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
    fn a_value_that_is_no_uid_still_reads_back() {
        let encode_with = |sop_instance_uid: &str| {
            let bytes = encode(&MetaFields {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.4",
                sop_instance_uid,
                transfer_syntax: "1.2.840.10008.1.2.1",
                source_ae: "STORESCU",
            });
            let meta = FileMetaTable::from_reader(&bytes[128..]).unwrap();
            meta.media_storage_sop_instance_uid().to_string()
        };
        let odd = encode_with("1.3.12.2.1107.5.2.43.6\u{ff}\u{1a}4100");
        assert!(odd.starts_with("2.25.") && odd.len() <= 64, "{odd}");
        assert!(odd[5..].bytes().all(|b| b.is_ascii_digit()), "{odd}");
        assert_eq!(odd, encode_with("1.3.12.2.1107.5.2.43.6\u{ff}\u{1a}4100"));
        assert_ne!(odd, encode_with("1.3.12.2.1107.5.2.43.6\u{ff}\u{1a}4101"));
        let long = "1.2.".repeat(20) + "1";
        assert!(encode_with(&long).starts_with("2.25."));
        assert_eq!(encode_with("1.2.3.4"), "1.2.3.4");
    }

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
