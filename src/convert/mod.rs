//! DICOM series → [`crate::volume::Volume`]s and gradient tables, as dcm2niix converts them.
//!
//! The pipeline: [`read`] skips non-images and reduces every encoding to [`frame::Frame`]s
//! (classic files here, mosaics and enhanced multi-frame in their own readers); [`assemble`]
//! groups frames by SeriesInstanceUID, splits where dcm2niix splits, sorts slices along the
//! normal, checks completeness and spacing, stacks pixels and builds the affine and gradient
//! table; [`classify`] names the class; [`output`] writes NIfTI, sidecar and bval/bvec.
//!
//! A bad file or series never stops the others: each series yields its own `Result`.

pub mod assemble;
pub mod attrs;
pub mod classic;
pub mod classify;
pub mod csa;
mod decode_guard;
pub mod enhanced;
pub mod frame;
pub mod ge;
pub mod geometry;
pub mod gradients;
pub mod meta;
pub mod mosaic;
pub mod output;
pub mod philips;
pub mod pixels;
pub mod private;
pub mod read;
pub mod siemens;
pub mod stack;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;

use classify::{ClassifyRules, SeriesClass};
use frame::Frame;
use read::{FileOutcome, ReadError};

use crate::volume::Volume;

/// One output volume of a series.
#[derive(Debug)]
pub struct ConvertedVolume {
    pub volume: Volume,
    pub class: SeriesClass,
    /// Appended to `<SeriesNumber>_<SeriesDescription>`: "" or e.g. "_e2", "_ph", "_ADC".
    pub suffix: String,
    /// The `_ADC` sibling (every volume, derived ones included): image only, like dcm2niix.
    pub image_only: bool,
}

/// A series that produced at least one volume.
#[derive(Debug)]
pub struct ConvertedSeries {
    pub series_instance_uid: String,
    pub volumes: Vec<ConvertedVolume>,
    /// Parts of the series that failed (unreadable files, a split group that could not be
    /// assembled) while others converted.
    pub problems: Vec<String>,
}

/// Why a series (or a file whose series is unknown) produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("{0}")]
    Unreadable(ReadError),
    #[error("series {series_instance_uid}: {}", problems.join("; "))]
    Failed {
        series_instance_uid: String,
        series_number: Option<i64>,
        problems: Vec<String>,
    },
}

/// Conversion settings. Serialisable, because the daemon hands them to the converter child
/// (`tracker::convert_job`) with each request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConvertOptions {
    pub rules: ClassifyRules,
    /// The largest dataset a file may hold, as stored or once inflated (`dicom.max_dataset_bytes`,
    /// the receiver's limit): a file is read whole, so a larger one is refused before it is.
    pub max_dataset_bytes: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            rules: ClassifyRules::default(),
            max_dataset_bytes: crate::config::default_max_dataset(),
        }
    }
}

/// Frames and file errors of one series.
#[derive(Default)]
struct SeriesInput {
    frames: Vec<Frame>,
    problems: Vec<String>,
    pixels: pixels::PixelCache,
}

/// Reads `paths` (files of any kind; non-images are skipped) and converts every series found.
/// Runs on the current rayon pool. Results are ordered by SeriesInstanceUID.
pub fn convert_paths(
    paths: &[PathBuf],
    options: &ConvertOptions,
) -> Vec<Result<ConvertedSeries, SeriesError>> {
    let out = std::sync::Mutex::new(Vec::new());
    for_each_series(paths, options, |r| {
        if let Ok(mut v) = out.lock() {
            v.push(r);
        }
    });
    let mut out = out.into_inner().unwrap_or_default();
    out.sort_by_key(series_key);
    out
}

fn series_key(r: &Result<ConvertedSeries, SeriesError>) -> String {
    match r {
        Ok(s) => s.series_instance_uid.clone(),
        Err(SeriesError::Failed {
            series_instance_uid,
            ..
        }) => series_instance_uid.clone(),
        Err(SeriesError::Unreadable(_)) => String::new(),
    }
}

/// As [`convert_paths`], handing each series' result to `sink` (from several threads at once)
/// as soon as it is ready, so that callers can write and drop volumes without holding a whole
/// study in memory. Returns the number of series found.
pub fn for_each_series(
    paths: &[PathBuf],
    options: &ConvertOptions,
    sink: impl Fn(Result<ConvertedSeries, SeriesError>) + Sync,
) -> usize {
    let (inputs, unreadable) = group_files(read::read_files(paths, options.max_dataset_bytes));
    let found = inputs.len();
    for e in unreadable {
        sink(Err(SeriesError::Unreadable(e)));
    }
    inputs
        .into_par_iter()
        .for_each(|(uid, input)| sink(convert_series(uid, input, options)));
    found
}

/// Groups frames by series; errors of files without a known series come back separately.
fn group_files(
    outcomes: Vec<(PathBuf, FileOutcome)>,
) -> (BTreeMap<String, SeriesInput>, Vec<ReadError>) {
    let mut series: BTreeMap<String, SeriesInput> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (path, outcome) in outcomes {
        match outcome {
            FileOutcome::Skipped => {}
            FileOutcome::Frames { frames, pixels } => {
                if let Some(f) = frames.first() {
                    series
                        .entry(f.series_instance_uid.clone())
                        .or_default()
                        .pixels
                        .insert(path.clone(), pixels);
                }
                for f in frames {
                    series
                        .entry(f.series_instance_uid.clone())
                        .or_default()
                        .frames
                        .push(f);
                }
            }
            FileOutcome::Failed {
                series: Some(uid),
                error,
            } => series
                .entry(uid)
                .or_default()
                .problems
                .push(error.to_string()),
            FileOutcome::Failed {
                series: None,
                error,
            } => unreadable.push(error),
        }
    }
    (series, unreadable)
}

/// Keeps an error list readable when every file of a series fails the same way.
fn summarise(mut problems: Vec<String>) -> Vec<String> {
    const SHOWN: usize = 3;
    if problems.len() > SHOWN {
        let more = problems.len() - SHOWN;
        problems.truncate(SHOWN);
        problems.push(format!("and {more} more files"));
    }
    problems
}

/// One series: split, assemble every group, classify.
fn convert_series(
    uid: String,
    input: SeriesInput,
    options: &ConvertOptions,
) -> Result<ConvertedSeries, SeriesError> {
    let series_number = input.frames.first().and_then(|f| f.series.series_number);
    let mut problems = summarise(input.problems);
    let mut volumes = Vec::new();
    let groups = assemble::split(input.frames);
    let input = SeriesInput {
        pixels: input.pixels,
        ..Default::default()
    };
    let many = groups.len() > 1;
    for (suffix, frames) in groups {
        let n = frames.len();
        match assemble::assemble(frames, &suffix, &input.pixels) {
            Ok(parts) => {
                for a in parts {
                    let class = classify::classify(&a.volume, &options.rules);
                    volumes.push(ConvertedVolume {
                        volume: a.volume,
                        class,
                        suffix: a.suffix,
                        image_only: a.derived,
                    });
                }
            }
            Err(e) if many => problems.push(format!("group{suffix} ({n} images): {e}")),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if volumes.is_empty() {
        return Err(SeriesError::Failed {
            series_instance_uid: uid,
            series_number,
            problems,
        });
    }
    Ok(ConvertedSeries {
        series_instance_uid: uid,
        volumes,
        problems,
    })
}
