//! From a folder or a list of paths to [`Frame`]s: skip what is not an image, read headers
//! (never pixel data) and hand each file to the reader for its encoding.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_core::header::Header;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use rayon::prelude::*;

use super::attrs::{self, Object};
use super::frame::Frame;
use super::pixels::Kept;
use super::{classic, enhanced, meta, mosaic};
use crate::dataset_bounds;

/// Why one file could not be turned into frames.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: not readable as DICOM: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {what} is missing or malformed")]
    Missing { path: PathBuf, what: &'static str },
    #[error(transparent)]
    Mosaic(#[from] mosaic::MosaicError),
    #[error(transparent)]
    Enhanced(#[from] enhanced::EnhancedError),
}

/// What became of one input file.
#[derive(Debug)]
pub enum FileOutcome {
    /// An image: its frames (several for multi-frame encodings) and what was kept of the file
    /// for its pixels, so that they are decoded from the bytes checked here and the file is
    /// never read again.
    Frames { frames: Vec<Frame>, pixels: Kept },
    /// Not something to convert (not DICOM, DICOMDIR, presentation state, other non-image).
    Skipped,
    /// A DICOM image we could not read; `series` is its SeriesInstanceUID when the header said.
    Failed {
        series: Option<String>,
        error: ReadError,
    },
}

/// Every regular file under `dir`, recursively, in a stable order.
pub fn scan_folder(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every file's header in parallel; a file whose dataset is larger than `max_dataset`
/// bytes (as stored or once inflated) fails.
pub fn read_files(paths: &[PathBuf], max_dataset: u64) -> Vec<(PathBuf, FileOutcome)> {
    paths
        .par_iter()
        .map(|p| (p.clone(), read_file(p, max_dataset)))
        .collect()
}

/// SOP classes that are never volumes even though they are DICOM: directories, presentation
/// states, reports, documents, and vendors' private (non-standard) classes such as Philips'
/// private raw-data objects, which carry Rows/Columns but no image geometry.
fn is_non_image_class(uid: &str) -> bool {
    if !uid.is_empty() && !uid.starts_with("1.2.840.10008.") {
        return true;
    }
    const PREFIXES: [&str; 5] = [
        "1.2.840.10008.1.3.10",         // Media Storage Directory (DICOMDIR)
        "1.2.840.10008.5.1.4.1.1.11.",  // presentation states
        "1.2.840.10008.5.1.4.1.1.88.",  // structured reports
        "1.2.840.10008.5.1.4.1.1.104.", // encapsulated documents
        "1.2.840.10008.5.1.4.1.1.66",   // raw data, spatial registration
    ];
    PREFIXES.iter().any(|p| uid.starts_with(p))
}

/// One file: skipped, frames, or a clear error. The file is opened and read once.
pub fn read_file(path: &Path, max_dataset: u64) -> FileOutcome {
    let parse_error = |reason: String| ReadError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match part10_bytes(path, max_dataset) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return FileOutcome::Skipped,
        Err(reason) => {
            return FileOutcome::Failed {
                series: None,
                error: parse_error(reason),
            };
        }
    };
    let file = match parsed(&bytes, max_dataset) {
        Ok(f) => f,
        Err((reason, header_readable)) => {
            return FileOutcome::Failed {
                series: header_readable.then(|| series_of_damaged(&bytes)).flatten(),
                error: parse_error(reason),
            };
        }
    };
    drop(bytes);
    image_outcome(path, file)
}

/// Frames and kept pixels of a parsed file, or why it is skipped or failed.
fn image_outcome(path: &Path, file: DefaultDicomObject) -> FileOutcome {
    let class = file
        .meta()
        .media_storage_sop_class_uid
        .trim_end_matches('\0');
    if is_non_image_class(class) {
        return FileOutcome::Skipped;
    }
    let obj: &Object = &file;
    if attrs::int(obj, tags::ROWS).is_none() || attrs::int(obj, tags::COLUMNS).is_none() {
        return FileOutcome::Skipped;
    }
    match frames_of(path, obj) {
        Ok(frames) => FileOutcome::Frames {
            frames,
            pixels: kept_pixels(file),
        },
        Err(error) => FileOutcome::Failed {
            series: attrs::text(obj, tags::SERIES_INSTANCE_UID),
            error,
        },
    }
}

/// The stored bytes of a native little-endian file, or for any other encoding the object cut
/// down to what decoding its pixel data reads (the image pixel module, group 0028, and the
/// pixel data), decoded when it is stacked. The rest of the header is dropped either way: a
/// vendor's private header can be larger in memory than the compressed pixels.
fn kept_pixels(mut file: DefaultDicomObject) -> Kept {
    if NATIVE_LITTLE_ENDIAN.contains(&file.meta().transfer_syntax()) {
        let bytes = file.get(tags::PIXEL_DATA).and_then(|e| e.to_bytes().ok());
        if let Some(bytes) = bytes {
            return Kept::Native(bytes.into_owned());
        }
    }
    file.retain(|e| e.tag().group() == 0x0028 || e.tag() == tags::PIXEL_DATA);
    Kept::Object(Box::new(file))
}

/// The whole of a DICOM Part 10 file (preamble and magic included), read through one open
/// file handle; `None` when it is not one (no magic, shorter than the preamble, or not
/// readable at all), so that other files in a folder are skipped without being read. A file
/// larger than `max_dataset` plus the meta group's allowance is refused before it is read,
/// and one that grows past it while being read is refused too.
fn part10_bytes(path: &Path, max_dataset: u64) -> Result<Option<Vec<u8>>, String> {
    let Ok(mut file) = File::open(path) else {
        return Ok(None);
    };
    let mut head = [0u8; 132];
    if file.read_exact(&mut head).is_err() || &head[128..132] != b"DICM" {
        return Ok(None);
    }
    let limit = max_dataset.saturating_add(META_GROUP_ALLOWANCE);
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size > limit {
        return Err(format!(
            "a file of {size} bytes, larger than the dataset limit"
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    bytes.extend_from_slice(&head);
    let read = (&mut file)
        .take(limit - head.len() as u64 + 1)
        .read_to_end(&mut bytes);
    read.map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err("a file that grew past the dataset limit while it was read".into());
    }
    Ok(Some(bytes))
}

/// Parses a whole file once its lengths are known to fit in it ([`dataset_bounds::check_file`]:
/// a corrupt length would otherwise make the parser allocate up to 4 GiB before it fails) and
/// its dataset to be at most `max_dataset` bytes. On failure, also whether the header before
/// the pixel data can still be read safely, to name the series that failed.
fn parsed(bytes: &[u8], max_dataset: u64) -> Result<DefaultDicomObject, (String, bool)> {
    dataset_bounds::check_file(bytes, max_dataset)
        .map_err(|refused| (refused.to_string(), refused.in_pixel_data()))?;
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(bytes.get(128..).unwrap_or_default())
        .map_err(|e| (e.to_string(), true))
}

/// What a file may hold beyond its dataset: preamble, magic and file meta group (a few hundred
/// bytes in practice).
const META_GROUP_ALLOWANCE: u64 = 1 << 20;

/// The SeriesInstanceUID of a file whose pixel data is damaged (truncated, say) but whose
/// header, already checked, still reads, so that the failure is reported with its series.
fn series_of_damaged(bytes: &[u8]) -> Option<String> {
    let header = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(bytes.get(128..).unwrap_or_default())
        .ok()?;
    attrs::text(&header, tags::SERIES_INSTANCE_UID)
}

/// Transfer syntaxes whose PixelData bytes are the stored little-endian samples.
const NATIVE_LITTLE_ENDIAN: [&str; 2] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"];

/// Dispatches on the encoding: enhanced multi-frame, Siemens mosaic, or classic.
fn frames_of(path: &Path, obj: &Object) -> Result<Vec<Frame>, ReadError> {
    let mut meta = meta::volume_meta(obj);
    if enhanced::is_enhanced(obj) {
        enhanced::fill_series_meta(obj, &mut meta);
        return Ok(enhanced::enhanced_frames(path, obj, Arc::new(meta))?);
    }
    if mosaic::is_mosaic(obj) {
        mosaic::fill_series_meta(obj, &mut meta);
        return Ok(mosaic::mosaic_frames(path, obj, Arc::new(meta))?);
    }
    classic::frame(path, obj, Arc::new(meta)).map(|f| vec![f])
}
