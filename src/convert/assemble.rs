//! Frames of one series → volumes: split where dcm2niix splits, sort slices along the normal,
//! order volumes, check the stack is complete and evenly spaced, stack pixels, build the affine
//! and the gradient table.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::classic::Vendor;
use super::frame::{Diffusion, Frame, PixelSource};
use super::geometry::{self, Orientation, dot};
use super::gradients;
use super::meta;
use super::pixels::{PixelCache, PixelError};
use super::stack::{self, Layout};
use crate::volume::{Volume, VoxelData};

/// Slice positions closer than this (mm) along the normal are the same slice.
const SAME_POSITION_MM: f64 = 0.01;
/// Orientation cosines closer than this are the same orientation.
const SAME_ORIENTATION: f64 = 1e-3;
/// Largest tolerated deviation of one slice gap from the mean gap, as a fraction of the mean.
const SPACING_TOLERANCE: f64 = 0.05;

/// Why a stack of frames could not become a volume.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("{count} images per slice position are not equal ({detail}): missing or extra images")]
    UnequalCounts { count: usize, detail: String },
    #[error(
        "slice gap of {gap:.3} mm between slices {at} and {next} where {expected:.3} mm is expected: \
         a slice is missing or spacing is not uniform"
    )]
    NonUniformSpacing {
        at: usize,
        next: usize,
        gap: f64,
        expected: f64,
    },
    #[error("pixel data: {0}")]
    Pixels(#[from] PixelError),
    #[error("no usable geometry: {0}")]
    Geometry(String),
}

/// One output volume and the file-name suffix that tells it apart from its siblings.
#[derive(Debug)]
pub struct Assembled {
    pub volume: Volume,
    pub suffix: String,
    /// Removed derived (trace/ADC) volumes, written in the `_ADC` sibling.
    pub derived: bool,
}

/// The attributes that split a series into separate volumes.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
struct SplitKey {
    echo: Option<i64>,
    image_type: Vec<String>,
    rows: u32,
    columns: u32,
    bits: (u16, u16),
    orientation: [i64; 6],
}

fn split_key(f: &Frame) -> SplitKey {
    SplitKey {
        echo: f.echo_number,
        image_type: f.image_type.clone(),
        rows: f.rows,
        columns: f.columns,
        bits: (f.bits_allocated, f.pixel_representation),
        orientation: f.orientation.map(|c| (c / SAME_ORIENTATION).round() as i64),
    }
}

/// Splits one series' frames into groups with their file-name suffixes.
pub fn split(frames: Vec<Frame>) -> Vec<(String, Vec<Frame>)> {
    let mut groups: Vec<(SplitKey, Vec<Frame>)> = Vec::new();
    for f in frames {
        let key = split_key(&f);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(f),
            None => groups.push((key, vec![f])),
        }
    }
    groups.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    let echoes_vary = groups.iter().any(|(k, _)| k.echo != groups[0].0.echo);
    let types_vary = groups
        .iter()
        .any(|(k, _)| k.image_type != groups[0].0.image_type);
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    groups
        .into_iter()
        .map(|(key, g)| {
            let mut suffix = String::new();
            if echoes_vary {
                suffix += &format!("_e{}", key.echo.unwrap_or(1));
            }
            if types_vary {
                suffix += complex_suffix(&key.image_type);
            }
            if key.image_type.iter().any(|t| t == "FIELDMAPHZ") {
                suffix += "_fieldmaphz";
            }
            let n = used.entry(suffix.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                suffix += &format!("_{}", char::from(b'a' + (*n as u8 - 2).min(25)));
            }
            (suffix, g)
        })
        .collect()
}

/// dcm2niix's suffixes for the parts of complex data; magnitude has none.
fn complex_suffix(image_type: &[String]) -> &'static str {
    let has = |v: &[&str]| image_type.iter().any(|t| v.contains(&t.as_str()));
    if has(&["P", "PHASE"]) {
        "_ph"
    } else if has(&["REAL"]) {
        "_real"
    } else if has(&["IMAGINARY"]) {
        "_imaginary"
    } else {
        ""
    }
}

/// Order of images at one slice position: the acquisition's volume index, then instance number,
/// then acquisition time.
fn volume_order(a: &Frame, b: &Frame) -> Ordering {
    a.volume_index
        .cmp(&b.volume_index)
        .then(a.instance_number.cmp(&b.instance_number))
        .then(a.acquisition_time.cmp(&b.acquisition_time))
        .then(a.sop_instance_uid.cmp(&b.sop_instance_uid))
}

/// True when slices sorted along row × column run against their stored order within one
/// multi-frame instance (mosaic tiles, or frames of an enhanced file). dcm2niix keeps the stored
/// order there: a mosaic's tiles follow the CSA SliceNormalVector, which can oppose row × column
/// (sagittal mosaics), and an enhanced file's frames anchor the volume at its first frame.
fn stored_order_descends(slices: &[Vec<&Frame>]) -> bool {
    let place = |s: &Vec<&Frame>| match s.first().map(|f| &f.pixels) {
        Some(PixelSource::MosaicTile {
            path, index, tile, ..
        }) => Some((path.clone(), *index, *tile)),
        Some(PixelSource::File { path, index }) => Some((path.clone(), *index, 0)),
        None => None,
    };
    match (
        slices.first().and_then(place),
        slices.last().and_then(place),
    ) {
        (Some((first_path, first_index, first_tile)), Some((last_path, last_index, last_tile))) => {
            first_path == last_path && (first_index, first_tile) > (last_index, last_tile)
        }
        _ => false,
    }
}

/// Which image of which instance a frame is: (SOP Instance UID, frame number, mosaic tile).
fn instance_frame(f: &Frame) -> (&str, u32, u32) {
    match &f.pixels {
        PixelSource::File { index, .. } => (&f.sop_instance_uid, *index, 0),
        PixelSource::MosaicTile { index, tile, .. } => (&f.sop_instance_uid, *index, *tile),
    }
}

/// One group of frames (same split key) → its output volumes (the main one, and the `_ADC`
/// sibling with every volume when derived trace volumes were removed from a diffusion series).
pub fn assemble(
    mut frames: Vec<Frame>,
    suffix: &str,
    cache: &PixelCache,
) -> Result<Vec<Assembled>, AssembleError> {
    // The same image sent twice is one image; the frames and tiles of one multi-frame instance
    // share its SOP Instance UID and are not duplicates.
    frames.sort_by(|a, b| instance_frame(a).cmp(&instance_frame(b)));
    frames
        .dedup_by(|a, b| !a.sop_instance_uid.is_empty() && instance_frame(a) == instance_frame(b));
    if let Some(problem) = geometry::orientation_problem(&frames[0].orientation) {
        return Err(AssembleError::Geometry(problem));
    }
    let o = Orientation::from_iop(&frames[0].orientation);
    let depth = |f: &Frame| dot(f.position, o.normal);
    frames.sort_by(|a, b| depth(a).total_cmp(&depth(b)));
    // Cluster into slice positions.
    let mut slices: Vec<Vec<&Frame>> = Vec::new();
    for f in &frames {
        match slices.last_mut() {
            Some(s) if (depth(f) - depth(s[0])).abs() < SAME_POSITION_MM => s.push(f),
            _ => slices.push(vec![f]),
        }
    }
    if stored_order_descends(&slices) {
        slices.reverse();
    }
    let per_slice = slices[0].len();
    if slices.iter().any(|s| s.len() != per_slice) {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for s in &slices {
            *counts.entry(s.len()).or_default() += 1;
        }
        let detail = counts
            .iter()
            .map(|(n, k)| format!("{k} positions with {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(AssembleError::UnequalCounts {
            count: slices.len(),
            detail,
        });
    }
    for s in &mut slices {
        s.sort_by(|a, b| volume_order(a, b));
    }
    let depths: Vec<f64> = slices.iter().map(|s| depth(s[0])).collect();
    let mut step = slice_step(
        &depths,
        frames[0].series.as_ref(),
        frames[0].slice_thickness,
    )?;
    if slices.len() > 1 && separate_files(slices[0][0], slices[1][0]) {
        step = single_precision_step(slices[0][0].position, slices[1][0].position, &o);
    }
    let step = multi_frame_step(&slices, step, frames[0].series.as_ref());
    let first = &slices[0][0];
    let (nx, ny, nz, nt) = (
        first.columns as usize,
        first.rows as usize,
        slices.len(),
        per_slice,
    );
    let affine = geometry::affine(&o, first.pixel_spacing, step, first.position, ny);
    if let Some(problem) = geometry::affine_problem(&affine) {
        return Err(AssembleError::Geometry(problem));
    }
    let per_volume: Vec<Option<Diffusion>> =
        (0..nt).map(|t| slices[0][t].diffusion.clone()).collect();
    let derived: Vec<bool> = per_volume
        .iter()
        .map(|d| d.as_ref().is_some_and(|d| d.derived_isotropic))
        .collect();
    let some_derived = derived.iter().any(|&d| d) && !derived.iter().all(|&d| d);
    // Stack every volume once; the main output and the `_ADC` sibling are selections of it.
    let mut ordered = Vec::with_capacity(nz * nt);
    for t in 0..nt {
        for s in &slices {
            ordered.push(s[t]);
        }
    }
    let shape = if nt > 1 {
        vec![nx, ny, nz, nt]
    } else {
        vec![nx, ny, nz]
    };
    let (all_data, scaling) = stack::stack(
        &Layout {
            frames: ordered,
            shape,
        },
        cache,
    )?;
    let make = |keep: &[usize],
                data: VoxelData,
                suffix: String,
                with_gradients: bool|
     -> Result<Assembled, AssembleError> {
        let mut meta = (*first.series).clone();
        meta.intensity_scaling = scaling;
        // Siemens' first volume can report slice times of a shorter acquisition (dcm2niix issue
        // 870): like dcm2niix, take the second volume's when they span longer.
        let timing = |t: usize| slices[0][t].series.extra.get("SliceTiming").cloned();
        let span = |v: &Option<Value>| {
            v.as_ref()
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).fold(0.0, f64::max))
        };
        if let (Some(&t0), Some(&t1)) = (keep.first(), keep.get(1)) {
            let (first_times, second_times) = (timing(t0), timing(t1));
            if let (Some(a), Some(b), Some(times)) =
                (span(&first_times), span(&second_times), second_times)
                && b > a + 1e-4
            {
                meta.extra.insert("SliceTiming".into(), times);
            }
        }
        let gradients = if with_gradients {
            let kept: Vec<Option<Diffusion>> =
                keep.iter().map(|&t| per_volume[t].clone()).collect();
            let normalise = Vendor::of(&first.series) != Vendor::Ge;
            gradients::table(&kept, &o, step, &affine, normalise)
        } else {
            None
        };
        let mut volume = Volume {
            data,
            affine,
            meta,
            gradients,
        };
        let phase_axis = volume
            .meta
            .extra
            .get(meta::PHASE_DIRECTION)
            .and_then(Value::as_str)
            .map(|d| if d == "ROW" { 0 } else { 1 });
        let positive = volume
            .meta
            .extra
            .remove(meta::PHASE_POSITIVE)
            .and_then(|v| v.as_i64());
        let mut axis = phase_axis;
        let mut reoriented = false;
        if keep.len() == 1 && nz > 1 && meta::is_3d(&volume.meta) {
            axis = reorient_3d(&mut volume, axis);
            reoriented = true;
        }
        match (axis, positive) {
            // Rows are stored bottom-up, so a positive column (j) direction reads as j-.
            (Some(a @ (0 | 1)), Some(p)) if !reoriented => {
                let negative = (p == 0) == (a == 0);
                let sign = if negative { "-" } else { "" };
                volume.meta.phase_encoding_direction = Some(format!("{}{sign}", ["i", "j"][a]));
            }
            (Some(a), _) => {
                volume.meta.extra.insert(
                    "PhaseEncodingAxis".into(),
                    Value::String(["i", "j", "k"][a].into()),
                );
            }
            _ => {}
        }
        Ok(Assembled {
            volume,
            suffix,
            derived: false,
        })
    };
    let all: Vec<usize> = (0..nt).collect();
    if !some_derived {
        return Ok(vec![make(&all, all_data, suffix.to_string(), true)?]);
    }
    let kept: Vec<usize> = (0..nt).filter(|&t| !derived[t]).collect();
    let main = make(
        &kept,
        stack::select_volumes(&all_data, &kept),
        suffix.to_string(),
        true,
    )?;
    let mut full = make(&all, all_data, format!("{suffix}_ADC"), false)?;
    full.derived = true;
    Ok(vec![main, full])
}

/// Mean signed distance between consecutive slices, checking that every gap agrees with it.
fn slice_step(
    depths: &[f64],
    series: &crate::volume::VolumeMeta,
    thickness: Option<f64>,
) -> Result<f64, AssembleError> {
    if depths.len() < 2 {
        let between = series
            .extra
            .get("SpacingBetweenSlices")
            .and_then(Value::as_f64);
        return Ok(between.or(thickness).filter(|v| *v > 0.0).unwrap_or(1.0));
    }
    let n = depths.len();
    let expected = (depths[n - 1] - depths[0]) / (n - 1) as f64;
    for k in 0..n - 1 {
        let gap = depths[k + 1] - depths[k];
        if (gap - expected).abs() > SPACING_TOLERANCE * expected.abs() {
            return Err(AssembleError::NonUniformSpacing {
                at: k,
                next: k + 1,
                gap,
                expected,
            });
        }
    }
    Ok(expected)
}

/// The slice step of a volume whose slices all sit in one multi-frame file: dcm2niix measures
/// spacing between files, so within one file it takes the reported SpacingBetweenSlices (else
/// the SliceThickness) when that agrees with the measured step. Positions written with a few
/// decimals (XA30 T1: 2.000001 mm measured over 96 slices) would otherwise drift the far end.
fn multi_frame_step(
    slices: &[Vec<&Frame>],
    measured: f64,
    series: &crate::volume::VolumeMeta,
) -> f64 {
    let file = |f: &Frame| match &f.pixels {
        PixelSource::File { path, .. } => Some(path.clone()),
        PixelSource::MosaicTile { .. } => None,
    };
    let first = slices.first().and_then(|s| s.first()).copied();
    let Some(path) = first.and_then(file) else {
        return measured;
    };
    if slices.len() < 2 || slices.iter().any(|s| file(s[0]).as_ref() != Some(&path)) {
        return measured;
    }
    let reported = series
        .extra
        .get("SpacingBetweenSlices")
        .and_then(Value::as_f64)
        .or(first.and_then(|f| f.slice_thickness))
        .filter(|v| *v > 0.0);
    match reported {
        Some(r) if (r - measured.abs()).abs() <= SPACING_TOLERANCE * measured.abs() => {
            r * measured.signum()
        }
        _ => measured,
    }
}

/// True when two frames are classic single-frame files (not frames or tiles of one instance,
/// whose spacing the multi-frame readers take from the file itself).
fn separate_files(a: &Frame, b: &Frame) -> bool {
    match (&a.pixels, &b.pixels) {
        (PixelSource::File { path: pa, .. }, PixelSource::File { path: pb, .. }) => pa != pb,
        _ => false,
    }
}

/// The step between the first two slices along the normal, computed from positions held in
/// single precision, as dcm2niix measures it. The mean gap can differ in the fifth decimal,
/// and a reoriented volume's origin multiplies that by the number of slices.
fn single_precision_step(first: [f64; 3], second: [f64; 3], o: &Orientation) -> f64 {
    let diff: [f64; 3] = std::array::from_fn(|a| f64::from(second[a] as f32 - first[a] as f32));
    dot(diff, o.normal)
}

/// Applies dcm2niix's 3D reorientation to `volume`; returns where the phase axis went.
fn reorient_3d(volume: &mut Volume, phase_axis: Option<usize>) -> Option<usize> {
    let Some(r) = geometry::canonical_reorientation(&volume.affine) else {
        return phase_axis;
    };
    let shape = volume.data.shape();
    if shape.len() != 3 {
        return phase_axis;
    }
    let dims = [shape[0], shape[1], shape[2]];
    volume.affine = geometry::reoriented_affine(&volume.affine, &r, dims);
    volume.data = permute(&volume.data, &r);
    phase_axis.and_then(|old| r.perm.iter().position(|&p| p == old))
}

fn permute(data: &VoxelData, r: &geometry::Reorientation) -> VoxelData {
    fn one<T: Clone>(a: &ndarray::ArrayD<T>, r: &geometry::Reorientation) -> ndarray::ArrayD<T> {
        let old = [a.shape()[0], a.shape()[1], a.shape()[2]];
        let src = match a.as_slice_memory_order() {
            Some(s) if a.t().is_standard_layout() => s,
            _ => return a.clone(),
        };
        // Old linear index = i + d0·j + d0·d1·k (i fastest); walk the new axes in order.
        let old_stride = [1isize, old[0] as isize, (old[0] * old[1]) as isize];
        let new: [usize; 3] = std::array::from_fn(|ax| old[r.perm[ax]]);
        let (mut start, mut step) = (0isize, [0isize; 3]);
        for ax in 0..3 {
            let stride = old_stride[r.perm[ax]];
            if r.flip[ax] {
                start += (new[ax] as isize - 1) * stride;
                step[ax] = -stride;
            } else {
                step[ax] = stride;
            }
        }
        let mut out = Vec::with_capacity(src.len());
        for k in 0..new[2] as isize {
            for j in 0..new[1] as isize {
                let row = start + j * step[1] + k * step[2];
                for i in 0..new[0] as isize {
                    out.push(src[(row + i * step[0]) as usize].clone());
                }
            }
        }
        ndarray::ArrayD::from_shape_vec(ndarray::ShapeBuilder::f(ndarray::IxDyn(&new)), out)
            .unwrap_or_else(|_| a.clone())
    }
    match data {
        VoxelData::U8(a) => VoxelData::U8(one(a, r)),
        VoxelData::I16(a) => VoxelData::I16(one(a, r)),
        VoxelData::U16(a) => VoxelData::U16(one(a, r)),
        VoxelData::I32(a) => VoxelData::I32(one(a, r)),
        VoxelData::U32(a) => VoxelData::U32(one(a, r)),
        VoxelData::F32(a) => VoxelData::F32(one(a, r)),
        VoxelData::F64(a) => VoxelData::F64(one(a, r)),
    }
}
