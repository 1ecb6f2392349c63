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

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::Tag;
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
    pub total: u64,
    /// The long value is the top-level Pixel Data (or one of its fragments), and every length
    /// before it fits: the header can be read up to the pixel data. A file cut short ends so.
    pub in_pixel_data: bool,
}

/// Why a file's dataset is not handed to the parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    PastTheEnd(#[from] PastTheEnd),
    /// The dataset, as stored or once inflated, is larger than the caller's limit: the parser
    /// would hold all of it. A few megabytes of deflate can stand for gigabytes of dataset.
    #[error("a dataset of more than {limit} bytes{}", if *.inflated { " once inflated" } else { "" })]
    TooLarge { limit: u64, inflated: bool },
}

impl Refused {
    /// Whether the header before the pixel data can still be read safely (a file cut short in
    /// its pixel data, say).
    pub fn in_pixel_data(&self) -> bool {
        matches!(self, Refused::PastTheEnd(p) if p.in_pixel_data)
    }
}

/// Checks a dataset in `ts`: `Err` for the first element or item whose length is larger than
/// the whole dataset. A dataset the parser cannot tokenise at all passes; the parse that follows
/// reports what is wrong with it.
pub fn check_dataset(dataset: &[u8], ts: &TransferSyntax) -> Result<(), PastTheEnd> {
    check_tokens(dataset, dataset.len() as u64, ts, Reach::Whole)
}

/// How much of a dataset a check reads: the parse that follows reads as much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Whole,
    /// Up to the top-level Pixel Data element, as `OpenFileOptions::read_until` reads.
    BeforePixelData,
}

/// The check itself, over any reader of the `total` bytes of a dataset in `ts`.
fn check_tokens<R: Read>(
    source: R,
    total: u64,
    ts: &TransferSyntax,
    reach: Reach,
) -> Result<(), PastTheEnd> {
    // The parser's own reader with the parser's own options: values are read exactly as the
    // parse will read them. (Reading them raw is cheaper but not the same: an odd length of a
    // 16-bit VR is read one byte short when decoded, and the two readers then part ways.)
    let Ok(tokens) = DataSetReader::new_with_ts(source, ts) else {
        return Ok(());
    };
    // One entry per open sequence: whether it is the top-level encapsulated Pixel Data.
    let mut open: Vec<bool> = Vec::new();
    for token in tokens {
        let Ok(token) = token else {
            return Ok(());
        };
        let top = open.is_empty();
        if reach == Reach::BeforePixelData && top && opened_tag(&token) >= Some(tags::PIXEL_DATA) {
            return Ok(()); // where the parse stops
        }
        // Each header's length is looked at before the next step reads its value.
        let (len, in_pixel_data) = match token {
            DataToken::ElementHeader(header) => (header.len, top && header.tag == tags::PIXEL_DATA),
            DataToken::ItemStart { len } => (len, open == [true]),
            DataToken::SequenceStart { .. } => {
                open.push(false);
                continue;
            }
            DataToken::PixelSequenceStart => {
                open.push(top);
                continue;
            }
            DataToken::SequenceEnd => {
                open.pop();
                continue;
            }
            _ => continue,
        };
        if let Some(n) = len.get().filter(|&n| u64::from(n) > total) {
            return Err(PastTheEnd {
                announced: n.into(),
                total,
                in_pixel_data,
            });
        }
    }
    Ok(())
}

/// The tag of the element a token opens, if it opens one.
fn opened_tag(token: &DataToken) -> Option<Tag> {
    match token {
        DataToken::ElementHeader(header) => Some(header.tag),
        DataToken::SequenceStart { tag, .. } => Some(*tag),
        DataToken::PixelSequenceStart => Some(tags::PIXEL_DATA),
        _ => None,
    }
}

/// Checks a part-10 file's bytes (preamble, "DICM", file meta group, dataset): every meta
/// element must fit in the file, the dataset must be at most `max_dataset` bytes, and it must
/// pass [`check_dataset`] in the transfer syntax the meta group names. A deflated dataset is
/// inflated for the check, twice (once to learn its size, once to read its lengths), without
/// keeping it: its lengths are bounded by what it inflates to, which the file's size does not
/// bound, and that size by `max_dataset`.
///
/// Where the check cannot tell (no preamble, an unknown transfer syntax) it passes, and the
/// reader reports what it finds.
pub fn check_file(bytes: &[u8], max_dataset: u64) -> Result<(), Refused> {
    let (start, ts_uid) = meta_group(bytes)?;
    let body = || Ok(&bytes[start..]);
    let len = (bytes.len() - start) as u64;
    check_body(body, len, ts_uid, Reach::Whole, max_dataset).unwrap_or(Ok(()))
}

/// Checks a part-10 file on disk as [`check_file`] checks its bytes, but only up to its
/// top-level Pixel Data, reading it as a stream, and with no limit on the dataset's size: for a
/// reader of headers (`brainaged reindex`), which should neither hold a large file in memory
/// nor read its pixels, nor refuse a spool file the receiver once accepted. `Err` only for a
/// file that cannot be read.
pub fn check_file_header(path: &Path) -> io::Result<Result<(), Refused>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let (start, ts_uid) = match meta_group_of(&mut file, len)? {
        Ok(found) => found,
        Err(past) => return Ok(Err(past.into())),
    };
    let body = || {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(start as u64))?;
        Ok(BufReader::new(f))
    };
    check_body(
        body,
        len - start as u64,
        ts_uid,
        Reach::BeforePixelData,
        u64::MAX,
    )
}

/// Checks the dataset of a part-10 file, `len` bytes in the transfer syntax `ts_uid`, as much
/// of it as `reach` says; `body` opens a reader of it. A dataset codec (deflate) is applied as
/// dicom-object applies it, and bounds the lengths by the size it decodes to. A dataset (as
/// stored, or decoded) of more than `max_dataset` bytes is refused before its lengths are read.
fn check_body<R: Read>(
    body: impl Fn() -> io::Result<R>,
    len: u64,
    ts_uid: Option<String>,
    reach: Reach,
    max_dataset: u64,
) -> io::Result<Result<(), Refused>> {
    let too_large = |inflated| {
        Ok(Err(Refused::TooLarge {
            limit: max_dataset,
            inflated,
        }))
    };
    if len > max_dataset {
        return too_large(false);
    }
    let Some(ts) = ts_uid.and_then(|uid| TransferSyntaxRegistry.get(&uid)) else {
        return Ok(Ok(()));
    };
    let checked = match ts.codec() {
        Codec::Dataset(Some(adapter)) => {
            let stream = adapter.adapt_reader(Box::new(body()?));
            let decoded = decoded_len(stream.take(max_dataset.saturating_add(1)));
            if decoded > max_dataset {
                return too_large(true);
            }
            let source = adapter.adapt_reader(Box::new(body()?));
            check_tokens(source, decoded, ts, reach)
        }
        Codec::Dataset(None) => Ok(()), // the reader refuses it
        _ => check_tokens(body()?, len, ts, reach),
    };
    Ok(checked.map_err(Refused::from))
}

/// How many bytes `source` gives before it ends or fails: a corrupt deflate stream is parsed up
/// to where it breaks, so that is what bounds the lengths before it.
fn decoded_len(mut source: impl Read) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    while let Ok(n @ 1..) = source.read(&mut buf) {
        total += n as u64;
    }
    total
}

/// Walks the file meta group of a part-10 file's bytes (explicit VR little endian, from byte
/// 132, after the preamble and "DICM") as dicom-object reads it: a group length element, then
/// elements of any group until that many bytes are read. Returns where the dataset starts and
/// the transfer syntax UID when the group names one (none without the preamble and "DICM").
/// Every element must fit in the file.
///
/// The group length, not the group number, ends the walk because it ends dicom-object's: a
/// fuzzed file whose second element was of group 1 had the rest of its meta group, and a
/// dataset of another transfer syntax, read by the parser past where a walk by group stopped.
pub fn meta_group(bytes: &[u8]) -> Result<(usize, Option<String>), PastTheEnd> {
    let past = |announced: u64| PastTheEnd {
        announced,
        total: bytes.len() as u64,
        in_pixel_data: false,
    };
    if bytes.get(128..132) != Some(b"DICM".as_slice()) {
        return Ok((0, None));
    }
    // The meta reader asks of the first element only its tag and a length of 4, whatever its VR.
    let Some((0x0002, 0x0000, header, 4)) = explicit_header(bytes, 132) else {
        return Ok((132, None)); // the meta reader refuses it before reading a value
    };
    let Some(&[a, b, c, d]) = bytes.get(132 + header..136 + header) else {
        return Ok((132, None));
    };
    let group_length = u32::from_le_bytes([a, b, c, d]);
    let (mut at, mut read, mut ts) = (136 + header, 0u32, None);
    while read < group_length {
        let Some((group, element, header, len)) = explicit_header(bytes, at) else {
            return Ok((at, ts)); // the meta reader fails here too
        };
        let value = bytes
            .get(at + header..)
            .and_then(|rest| rest.get(..len as usize))
            .ok_or_else(|| past(len.into()))?;
        if (group, element) == (0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(value);
            ts = Some(uid.trim_end_matches(['\0', ' ']).to_string());
        }
        at += header + len as usize;
        read = read.saturating_add(header as u32).saturating_add(len);
    }
    Ok((at, ts))
}

/// [`meta_group`] of a file on disk, walked in a prefix of it that grows until the walk ends
/// well inside it (a meta group is rarely more than a few hundred bytes).
fn meta_group_of(
    file: &mut File,
    len: u64,
) -> io::Result<Result<(usize, Option<String>), PastTheEnd>> {
    let mut want = 4096u64;
    loop {
        let n = want.min(len);
        let mut prefix = vec![0u8; n as usize];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut prefix)?;
        let found = meta_group(&prefix);
        // The walk stops at an element it cannot read whole: in a prefix, perhaps only because
        // the prefix ends there.
        let cut_short = match &found {
            Ok((at, _)) => *at as u64 + 12 > n,
            Err(_) => true,
        };
        if !cut_short || n == len {
            return Ok(found);
        }
        want = want.saturating_mul(16);
    }
}

/// An explicit VR little endian element header at `at`, as dicom-rs decodes it: (group,
/// element, header length, value length). Items and delimiters have no VR; a VR it does not
/// know is read as UN, with a 4-byte length.
fn explicit_header(bytes: &[u8], at: usize) -> Option<(u16, u16, usize, u32)> {
    let b = bytes.get(at..at + 8)?;
    let group = u16::from_le_bytes([b[0], b[1]]);
    let element = u16::from_le_bytes([b[2], b[3]]);
    if group == 0xFFFE {
        let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        return Some((group, element, 8, len));
    }
    if has_short_length(&[b[4], b[5]]) {
        return Some((group, element, 8, u16::from_le_bytes([b[6], b[7]]).into()));
    }
    let l = bytes.get(at + 8..at + 12)?;
    Some((
        group,
        element,
        12,
        u32::from_le_bytes([l[0], l[1], l[2], l[3]]),
    ))
}

/// Whether an explicit VR header of this VR carries a 2-byte length (PS3.5 §7.1.2); the other
/// VRs have two reserved bytes and a 4-byte length.
pub fn has_short_length(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
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

    /// Preamble, "DICM", the group length of `meta`, `meta`, `dataset`.
    fn file(meta: &[u8], dataset: &[u8]) -> Vec<u8> {
        let length = short(0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes());
        [&[0u8; 128][..], b"DICM", &length, meta, dataset].concat()
    }

    const EXPLICIT_LE: &[u8] = b"1.2.840.10008.1.2.1\0";

    /// [`check_file`] with no limit on the dataset's size, so that only lengths are refused.
    fn file_checked(bytes: &[u8]) -> Result<(), PastTheEnd> {
        check_file(bytes, u64::MAX).map_err(length_only)
    }

    /// The length that a check with no size limit refused.
    fn length_only(refused: Refused) -> PastTheEnd {
        match refused {
            Refused::PastTheEnd(past) => past,
            other => panic!("{other}"),
        }
    }

    /// `dataset` checked alone and as the dataset of a part-10 file, in explicit VR little
    /// endian.
    fn checked_both_ways(dataset: &[u8]) -> [Result<(), PastTheEnd>; 2] {
        let ts = TransferSyntaxRegistry.get("1.2.840.10008.1.2.1").unwrap();
        let meta = short(0x0002, 0x0010, b"UI", EXPLICIT_LE);
        [
            check_dataset(dataset, ts),
            file_checked(&file(&meta, dataset)),
        ]
    }

    /// A short element, then `header` and `value`.
    fn mr_then(header: Vec<u8>, value: &[u8]) -> Vec<u8> {
        [short(0x0008, 0x0060, b"CS", b"MR"), header, value.to_vec()].concat()
    }

    /// A dataset with a value that announces 4 GiB and brings 8 bytes.
    fn hostile() -> Vec<u8> {
        mr_then(long(0x0008, 0x4100, b"UT", 0xFFFF_FFF0), b"12345678")
    }

    #[test]
    fn lengths_that_fit_pass() {
        let dataset = mr_then(long(0x0009, 0x1010, b"OB", 4), b"abcd");
        assert_eq!(checked_both_ways(&dataset), [Ok(()), Ok(())]);
    }

    #[test]
    fn a_value_past_the_end_is_found_in_dataset_and_file() {
        let dataset = hostile();
        let past = PastTheEnd {
            announced: 0xFFFF_FFF0,
            total: dataset.len() as u64,
            in_pixel_data: false,
        };
        assert_eq!(checked_both_ways(&dataset), [Err(past.clone()), Err(past)]);
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
        let err = file_checked(&bytes).unwrap_err();
        assert_eq!(err.announced, 0x7FFF_0000);
    }

    /// dicom-object reads the meta group by its length, whatever the groups of its elements.
    #[test]
    fn the_meta_group_ends_where_its_length_says() {
        let hostile = hostile();
        let meta = [
            long(0x0001, 0x0001, b"OB", 2),
            vec![0, 1],
            short(0x0002, 0x0010, b"UI", EXPLICIT_LE),
        ]
        .concat();
        let bytes = file(&meta, &hostile);
        let (start, ts) = meta_group(&bytes).unwrap();
        assert_eq!(start, bytes.len() - hostile.len());
        assert_eq!(ts.as_deref(), Some("1.2.840.10008.1.2.1"));
        assert_eq!(file_checked(&bytes).unwrap_err().announced, 0xFFFF_FFF0);
    }

    /// The group length element is known by its tag and length alone, as dicom-object knows it.
    #[test]
    fn a_group_length_of_another_vr_is_followed() {
        let hostile = hostile();
        let meta = short(0x0002, 0x0010, b"UI", EXPLICIT_LE);
        let length = [
            long(0x0002, 0x0000, b"OB", 4),
            (meta.len() as u32).to_le_bytes().to_vec(),
        ];
        let bytes = [&[0u8; 128][..], b"DICM", &length.concat(), &meta, &hostile].concat();
        assert_eq!(file_checked(&bytes).unwrap_err().announced, 0xFFFF_FFF0);
    }

    fn deflated(plain: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(plain).unwrap();
        encoder.finish().unwrap()
    }

    const DEFLATED_LE: &[u8] = b"1.2.840.10008.1.2.1.99";

    /// The lengths of a deflated dataset are bounded by what it inflates to, not by the file.
    #[test]
    fn a_deflated_dataset_is_checked_as_it_inflates() {
        let meta = short(0x0002, 0x0010, b"UI", DEFLATED_LE);
        let fine = mr_then(long(0x0009, 0x1010, b"OB", 4), b"abcd");
        assert_eq!(file_checked(&file(&meta, &deflated(&fine))), Ok(()));
        // 64 KiB of zeros deflate to a few hundred bytes: a value of 60,000 fits the dataset
        // though not the file.
        let zeros = mr_then(long(0x0009, 0x1010, b"OB", 60_000), &[0; 60_000]);
        let bytes = file(&meta, &deflated(&zeros));
        assert!(bytes.len() < 60_000);
        assert_eq!(file_checked(&bytes), Ok(()));
        let err = file_checked(&file(&meta, &deflated(&hostile()))).unwrap_err();
        assert_eq!(
            (err.announced, err.total),
            (0xFFFF_FFF0, hostile().len() as u64)
        );
    }

    /// A dataset larger than the limit is refused, as stored or once inflated; the files on
    /// disk that reindex reads have no limit.
    #[test]
    fn a_dataset_past_the_limit_is_refused() {
        let zeros = mr_then(long(0x0009, 0x1010, b"OB", 60_000), &[0; 60_000]);
        let plain_meta = short(0x0002, 0x0010, b"UI", EXPLICIT_LE);
        let plain = file(&plain_meta, &zeros);
        let deflated_meta = short(0x0002, 0x0010, b"UI", DEFLATED_LE);
        let small = file(&deflated_meta, &deflated(&zeros));
        let size = zeros.len() as u64;
        for (bytes, inflated) in [(&plain, false), (&small, true)] {
            assert_eq!(check_file(bytes, size), Ok(()));
            let refused = check_file(bytes, size - 1).unwrap_err();
            assert_eq!(
                refused,
                Refused::TooLarge {
                    limit: size - 1,
                    inflated
                }
            );
            assert!(!refused.in_pixel_data());
        }
        assert!(small.len() < 1_000, "{} bytes", small.len());
        assert_eq!(header_checked(&small), Ok(()));
    }

    /// `bytes` written to a file of its own; the check of the file on disk.
    fn header_checked(bytes: &[u8]) -> Result<(), PastTheEnd> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.dcm");
        std::fs::write(&path, bytes).unwrap();
        check_file_header(&path).unwrap().map_err(length_only)
    }

    #[test]
    fn a_file_on_disk_is_checked_up_to_its_pixel_data() {
        let meta = short(0x0002, 0x0010, b"UI", EXPLICIT_LE);
        let err = header_checked(&file(&meta, &hostile())).unwrap_err();
        assert_eq!(err.announced, 0xFFFF_FFF0);
        let deflated_meta = short(0x0002, 0x0010, b"UI", DEFLATED_LE);
        let err = header_checked(&file(&deflated_meta, &deflated(&hostile()))).unwrap_err();
        assert_eq!(err.announced, 0xFFFF_FFF0);
        // A file cut short in its pixel data has a header that reads.
        let cut = mr_then(long(0x7FE0, 0x0010, b"OW", 0xFFFF_FFF0), b"12345678");
        assert!(file_checked(&file(&meta, &cut)).unwrap_err().in_pixel_data);
        assert_eq!(header_checked(&file(&meta, &cut)), Ok(()));
        assert_eq!(header_checked(&file(&meta, b"")), Ok(()));
    }

    /// The file is read in a prefix that grows until the meta group fits in it.
    #[test]
    fn a_long_meta_group_on_disk_is_read_whole() {
        let meta = [
            short(0x0002, 0x0010, b"UI", EXPLICIT_LE),
            long(0x0002, 0x0102, b"OB", 20_000),
            vec![7; 20_000],
        ]
        .concat();
        let err = header_checked(&file(&meta, &hostile())).unwrap_err();
        assert_eq!(err.announced, 0xFFFF_FFF0);
        let err = header_checked(&file(&meta, b"")[..10_000]).unwrap_err();
        assert_eq!((err.announced, err.total), (20_000, 10_000));
    }

    #[test]
    fn what_it_cannot_judge_passes() {
        let hostile = hostile();
        // No preamble and magic.
        assert_eq!(file_checked(&hostile), Ok(()));
        // A transfer syntax nobody knows.
        let meta = short(0x0002, 0x0010, b"UI", b"1.2.3.4\0");
        assert_eq!(file_checked(&file(&meta, &hostile)), Ok(()));
    }
}
