//! Decoding pixel data for frames, in the source's stored form (no rescale, no type change),
//! with every transfer syntax dicom-pixeldata supports. Pixels come only from what the scan
//! kept of each file ([`Kept`]): the file is never opened again, so what is decoded is what was
//! checked, however the file changes meanwhile. Each object is decoded once per stack, however
//! many frames or mosaic tiles it contributes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dicom_object::DefaultDicomObject;
use rayon::prelude::*;

use super::decode_guard::decoded;
use super::frame::{Frame, PixelSource};

/// Why pixel data could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("{path}: cannot read pixel data: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: frame {index} is outside the {frames} frames of the pixel data")]
    FrameOutOfRange {
        path: PathBuf,
        index: u32,
        frames: u32,
    },
    #[error("{path}: pixel data has {got} bytes per frame, the header promises {want}")]
    Size {
        path: PathBuf,
        got: usize,
        want: usize,
    },
    #[error("{path}: {samples} samples per pixel (colour) is not an MR magnitude image")]
    Colour { path: PathBuf, samples: u16 },
}

/// What the scan kept of one file for its pixels.
#[derive(Debug)]
pub enum Kept {
    /// The stored bytes of an uncompressed little-endian file: the frames as they are.
    Native(Vec<u8>),
    /// The parsed object of any other encoding (compressed, deflated, big endian), cut down to
    /// its image pixel module and pixel data, to be decoded when its stack is assembled.
    /// Compressed data is smaller than what it decodes to, so keeping it costs less than
    /// keeping the decoded frames would.
    Object(Box<DefaultDicomObject>),
}

/// What the scan kept of each file, by path.
pub type PixelCache = HashMap<PathBuf, Kept>;

/// Where a frame's pixels live: file, frame index and optional mosaic tile.
fn location(frame: &Frame) -> (&Path, u32, Option<(u32, u32)>) {
    match &frame.pixels {
        PixelSource::File { path, index } => (path, *index, None),
        PixelSource::MosaicTile {
            path,
            index,
            tile,
            tiles_per_row,
        } => (path, *index, Some((*tile, *tiles_per_row))),
    }
}

/// Decodes `frames` (all of one stack, same size and bit depth) into stored little-endian
/// bytes, one buffer per frame in the order given, rows top to bottom as in DICOM.
pub fn decode_frames(frames: &[&Frame], cache: &PixelCache) -> Result<Vec<Vec<u8>>, PixelError> {
    let mut out = vec![Vec::new(); frames.len()];
    let mut by_object: HashMap<&Path, (&DefaultDicomObject, Vec<usize>)> = HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        let (path, index, tile) = location(f);
        match cache.get(path) {
            Some(Kept::Native(bytes)) => out[i] = cached_frame(path, bytes, f, index, tile)?,
            Some(Kept::Object(obj)) => by_object.entry(path).or_insert((obj, vec![])).1.push(i),
            None => {
                return Err(PixelError::Read {
                    path: path.to_path_buf(),
                    reason: "the file was not read with its series".into(),
                });
            }
        }
    }
    let objects: Vec<(&Path, (&DefaultDicomObject, Vec<usize>))> = by_object.into_iter().collect();
    let decoded: Vec<Vec<(usize, Vec<u8>)>> = objects
        .par_iter()
        .map(|(path, (obj, wanted))| decode_object(path, obj, wanted, frames))
        .collect::<Result<_, _>>()?;
    for (i, bytes) in decoded.into_iter().flatten() {
        out[i] = bytes;
    }
    Ok(out)
}

/// Frame `index` (or one tile of it) of the native pixel bytes read during the scan, checked
/// against the header's size. A mosaic frame is `tiles_per_row` tiles wide and high.
fn cached_frame(
    path: &Path,
    bytes: &[u8],
    f: &Frame,
    index: u32,
    tile: Option<(u32, u32)>,
) -> Result<Vec<u8>, PixelError> {
    let bytes_per = usize::from(f.bits_allocated.div_ceil(8));
    let (rows, cols) = (f.rows as usize, f.columns as usize);
    let grid = tile.map_or(1, |(_, per_row)| per_row.max(1) as usize);
    let frame_bytes = rows * cols * grid * grid * bytes_per;
    let start = index as usize * frame_bytes;
    let size_err = || PixelError::Size {
        path: path.to_path_buf(),
        got: bytes.len().saturating_sub(start),
        want: frame_bytes,
    };
    let whole = bytes.get(start..start + frame_bytes).ok_or_else(size_err)?;
    match tile {
        None => Ok(whole.to_vec()),
        Some((tile, per_row)) => {
            cut_tile(whole, cols * grid, bytes_per, rows, cols, tile, per_row).ok_or_else(size_err)
        }
    }
}

/// Decodes the pixel data of one file's object and cuts out the frames (or tiles) at
/// positions `wanted` of `frames`.
fn decode_object(
    path: &Path,
    obj: &DefaultDicomObject,
    wanted: &[usize],
    frames: &[&Frame],
) -> Result<Vec<(usize, Vec<u8>)>, PixelError> {
    let read_err = |reason: String| PixelError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let px = decoded(obj).map_err(read_err)?;
    if px.samples_per_pixel() != 1 {
        return Err(PixelError::Colour {
            path: path.to_path_buf(),
            samples: px.samples_per_pixel(),
        });
    }
    let bytes_per = usize::from(px.bits_allocated().div_ceil(8));
    let (rows, cols) = (px.rows() as usize, px.columns() as usize);
    let frame_bytes = rows * cols * bytes_per;
    let n_frames = px.number_of_frames();
    let data = px.data();
    let mut out = Vec::with_capacity(wanted.len());
    for &i in wanted {
        let frame = frames[i];
        let (_, index, tile) = location(frame);
        if index >= n_frames {
            return Err(PixelError::FrameOutOfRange {
                path: path.to_path_buf(),
                index,
                frames: n_frames,
            });
        }
        let start = index as usize * frame_bytes;
        let Some(whole) = data.get(start..start + frame_bytes) else {
            return Err(PixelError::Size {
                path: path.to_path_buf(),
                got: data.len().saturating_sub(start),
                want: frame_bytes,
            });
        };
        let (fr, fc) = (frame.rows as usize, frame.columns as usize);
        let bytes = match tile {
            None if fr == rows && fc == cols => whole.to_vec(),
            None => {
                return Err(PixelError::Size {
                    path: path.to_path_buf(),
                    got: frame_bytes,
                    want: fr * fc * bytes_per,
                });
            }
            Some((tile, per_row)) => cut_tile(whole, cols, bytes_per, fr, fc, tile, per_row)
                .ok_or_else(|| PixelError::Size {
                    path: path.to_path_buf(),
                    got: frame_bytes,
                    want: fr * fc * bytes_per * (tile as usize + 1),
                })?,
        };
        out.push((i, bytes));
    }
    Ok(out)
}

/// One `rows` × `cols` tile of a mosaic whose full width is `mosaic_cols` pixels.
fn cut_tile(
    mosaic: &[u8],
    mosaic_cols: usize,
    bytes_per: usize,
    rows: usize,
    cols: usize,
    tile: u32,
    per_row: u32,
) -> Option<Vec<u8>> {
    let per_row = per_row.max(1) as usize;
    let (tr, tc) = (tile as usize / per_row, tile as usize % per_row);
    let mut out = Vec::with_capacity(rows * cols * bytes_per);
    for r in 0..rows {
        let start = ((tr * rows + r) * mosaic_cols + tc * cols) * bytes_per;
        out.extend_from_slice(mosaic.get(start..start + cols * bytes_per)?);
    }
    Some(out)
}
