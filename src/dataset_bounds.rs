//! A check of the lengths a DICOM dataset announces, made before dicom-rs parses it.
//!
//! dicom-rs allocates (and zero-fills) each value's announced length before it reads the value,
//! and learns only afterwards that the bytes are not there. One corrupt header can therefore
//! cost gigabytes: fuzzing the receiver found 300–800 KB datasets that made the parser allocate
//! up to 4.2 GB and take 0.1–7 s each, and a file given to `brainaged convert` did the same.
//! Reading the parser's own tokens first, and stopping at the first header whose length runs
//! past the end of the bytes at hand, bounds every later allocation by the size of the input.
//!
//! Both the receiver (a dataset from a peer) and the converter (a part-10 file from a folder,
//! or from the spool) call it, so it sits beside them rather than in either.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntax;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_parser::DataSetReader;
use dicom_parser::dataset::DataToken;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// A value, item or file meta element announcing more bytes than its input holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a value of {announced} bytes in a dataset of {total}")]
pub struct PastTheEnd {
    pub announced: u64,
    pub total: usize,
    /// The long value is the top-level Pixel Data (or one of its fragments), and every length
    /// before it fits: the header can be read up to the pixel data. A file cut short ends so.
    pub in_pixel_data: bool,
}

/// Checks a dataset in `ts`: `Err` for the first element or item whose length is larger than
/// the whole dataset. A dataset the parser cannot tokenise at all passes; the parse that follows
/// reports what is wrong with it.
pub fn check_dataset(dataset: &[u8], ts: &TransferSyntax) -> Result<(), PastTheEnd> {
    // The parser's own reader with the parser's own options: values are read exactly as the
    // parse will read them. (Reading them raw is cheaper but not the same: an odd length of a
    // 16-bit VR is read one byte short when decoded, and the two readers then part ways.)
    let Ok(tokens) = DataSetReader::new_with_ts(dataset, ts) else {
        return Ok(());
    };
    // One entry per open sequence: whether it is the top-level encapsulated Pixel Data.
    let mut open: Vec<bool> = Vec::new();
    for token in tokens {
        // Each header's length is looked at before the next step reads its value.
        let (len, in_pixel_data) = match token {
            Ok(DataToken::ElementHeader(header)) => (
                header.len,
                open.is_empty() && header.tag == tags::PIXEL_DATA,
            ),
            Ok(DataToken::ItemStart { len }) => (len, open == [true]),
            Ok(DataToken::SequenceStart { .. }) => {
                open.push(false);
                continue;
            }
            Ok(DataToken::PixelSequenceStart) => {
                open.push(open.is_empty());
                continue;
            }
            Ok(DataToken::SequenceEnd) => {
                open.pop();
                continue;
            }
            Ok(_) => continue,
            Err(_) => return Ok(()),
        };
        if let Some(n) = len.get().filter(|&n| n as usize > dataset.len()) {
            return Err(PastTheEnd {
                announced: n.into(),
                total: dataset.len(),
                in_pixel_data,
            });
        }
    }
    Ok(())
}

/// Checks a part-10 file's bytes (preamble, "DICM", file meta group, dataset): every meta
/// element must fit in the file, and the dataset must pass [`check_dataset`] in the transfer
/// syntax the meta group names.
///
/// Where the check cannot tell (no preamble, an unknown transfer syntax, a deflated dataset,
/// whose inflated size the file does not bound) it passes, and the reader reports what it finds.
pub fn check_file(bytes: &[u8]) -> Result<(), PastTheEnd> {
    if bytes.get(128..132) != Some(b"DICM".as_slice()) {
        return Ok(());
    }
    let (start, ts_uid) = meta_group(bytes)?;
    let Some(ts) = ts_uid.and_then(|uid| TransferSyntaxRegistry.get(&uid)) else {
        return Ok(());
    };
    if matches!(ts.codec(), Codec::Dataset(_)) {
        return Ok(()); // deflated
    }
    check_dataset(&bytes[start..], ts)
}

/// Walks the file meta group of a part-10 file's bytes (always explicit VR little endian, from
/// byte 132, after the preamble and "DICM"): where the dataset starts, and the transfer syntax
/// UID when the group names one. Every meta element must fit in the file.
pub fn meta_group(bytes: &[u8]) -> Result<(usize, Option<String>), PastTheEnd> {
    let mut at = 132;
    let mut ts = None;
    while let Some(head) = bytes.get(at..at + 8) {
        if u16::from_le_bytes([head[0], head[1]]) != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([head[2], head[3]]);
        let (header, len) = match &head[4..6] {
            b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"OV" | b"SQ" | b"UT" | b"UN" | b"UC"
            | b"UR" | b"SV" | b"UV" => match bytes.get(at + 8..at + 12) {
                Some(l) => (12, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize),
                None => break,
            },
            _ => (8, usize::from(u16::from_le_bytes([head[6], head[7]]))),
        };
        let end = at + header + len;
        let Some(value) = bytes.get(at + header..end) else {
            return Err(PastTheEnd {
                announced: len as u64,
                total: bytes.len(),
                in_pixel_data: false,
            });
        };
        if element == 0x0010 {
            let uid = String::from_utf8_lossy(value);
            ts = Some(uid.trim_end_matches(['\0', ' ']).to_string());
        }
        at = end;
    }
    Ok((at, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An explicit VR little endian element with a 2-byte length.
    fn short(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = [group.to_le_bytes(), element.to_le_bytes()].concat();
        out.extend_from_slice(vr);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    /// An explicit VR little endian element header with a 4-byte length.
    fn long(group: u16, element: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
        let mut out = [group.to_le_bytes(), element.to_le_bytes()].concat();
        out.extend_from_slice(vr);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
        out
    }

    fn file(meta: &[u8], dataset: &[u8]) -> Vec<u8> {
        [&[0u8; 128][..], b"DICM", meta, dataset].concat()
    }

    const EXPLICIT_LE: &[u8] = b"1.2.840.10008.1.2.1\0";

    #[test]
    fn lengths_that_fit_pass() {
        let dataset = [
            short(0x0008, 0x0060, b"CS", b"MR"),
            long(0x0009, 0x1010, b"OB", 4),
            b"abcd".to_vec(),
        ]
        .concat();
        let ts = TransferSyntaxRegistry.get("1.2.840.10008.1.2.1").unwrap();
        assert_eq!(check_dataset(&dataset, ts), Ok(()));
        let meta = short(0x0002, 0x0010, b"UI", EXPLICIT_LE);
        assert_eq!(check_file(&file(&meta, &dataset)), Ok(()));
    }

    #[test]
    fn a_value_past_the_end_is_found_in_dataset_and_file() {
        let dataset = [
            short(0x0008, 0x0060, b"CS", b"MR"),
            long(0x0008, 0x4100, b"UT", 0xFFFF_FFF0),
            b"12345678".to_vec(),
        ]
        .concat();
        let ts = TransferSyntaxRegistry.get("1.2.840.10008.1.2.1").unwrap();
        let past = PastTheEnd {
            announced: 0xFFFF_FFF0,
            total: dataset.len(),
            in_pixel_data: false,
        };
        assert_eq!(check_dataset(&dataset, ts), Err(past.clone()));
        let meta = short(0x0002, 0x0010, b"UI", EXPLICIT_LE);
        assert_eq!(check_file(&file(&meta, &dataset)), Err(past));
    }

    /// A 16-bit value of odd length is read one byte short when decoded, so the bytes after it
    /// are read from one byte earlier than a raw read of the same value would: here a header
    /// announcing 4 GiB for the decoding reader, an item and then garbage for a raw one.
    #[test]
    fn values_are_read_as_the_parser_reads_them() {
        let dataset = [
            short(0x0008, 0x0060, b"CS", b"MR"),
            short(0x0019, 0x1001, b"US", &[0x01, 0x00, 0xFF]),
            vec![
                0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0xF0,
            ],
            b"12345678".to_vec(),
        ]
        .concat();
        let ts = TransferSyntaxRegistry.get("1.2.840.10008.1.2.1").unwrap();
        let err = check_dataset(&dataset, ts).unwrap_err();
        assert_eq!(err.announced, 0xF000_00FF);
    }

    #[test]
    fn a_meta_element_past_the_end_is_found() {
        let meta = [
            short(0x0002, 0x0010, b"UI", EXPLICIT_LE),
            long(0x0002, 0x0102, b"OB", 0x7FFF_0000),
        ]
        .concat();
        let bytes = file(&meta, b"");
        let err = check_file(&bytes).unwrap_err();
        assert_eq!(err.announced, 0x7FFF_0000);
    }

    #[test]
    fn what_it_cannot_judge_passes() {
        let hostile = long(0x0008, 0x4100, b"UT", 0xFFFF_FFF0);
        // No preamble and magic.
        assert_eq!(check_file(&hostile), Ok(()));
        // A transfer syntax nobody knows.
        let meta = short(0x0002, 0x0010, b"UI", b"1.2.3.4\0");
        assert_eq!(check_file(&file(&meta, &hostile)), Ok(()));
    }
}
