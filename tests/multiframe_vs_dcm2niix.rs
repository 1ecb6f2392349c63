//! Proves that the mosaic and enhanced multi-frame readers place every pixel where dcm2niix puts
//! it and report the diffusion encoding dcm2niix writes.
//!
//! For each multi-frame folder of the development set, dcm2niix (PyPI) converts it in a temporary
//! folder. Independently of any assembly code, every `Frame` our readers produce is then mapped
//! through its own geometry (position, orientation, spacing) and the inverse of dcm2niix's affine
//! into dcm2niix's voxel grid: every pixel must land on a voxel centre (≤1e-4 voxel, the float32
//! precision of dcm2niix's sform over 100 slices), have dcm2niix's
//! value there after our rescale (exact for integers, ≤1e-5 relative), and every slice of every
//! volume must be covered exactly once. For diffusion, each volume's b-value must equal dcm2niix's
//! and its patient-frame direction, rotated into dcm2niix's image frame with dcm2niix's sign
//! convention, must match dcm2niix's bvec within 1e-4.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use brainaged::convert::enhanced::{enhanced_frames, is_enhanced};
use brainaged::convert::frame::{Frame, PixelSource};
use brainaged::convert::mosaic::{is_mosaic, mosaic_frames};
use brainaged::nifti_io::read_volume_f32;
use brainaged::volume::VoxelData;
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};

const FOLDERS: &[&str] = &[
    "siemens-mosaic-orient-axasc35",
    "siemens-mosaic-orient-axdesc36",
    "siemens-mosaic-orient-corasc35",
    "siemens-mosaic-orient-cordesc36",
    "siemens-mosaic-orient-sagasc35",
    "siemens-mosaic-orient-sagdesc36",
    "siemens-mosaic-dwi-sag",
    "siemens-skyra-epi",
    "siemens-xa30-dwi",
    "siemens-xa30-t1",
    "siemens-xa30-fa-derived",
    "siemens-xa10-enhanced",
    "philips-enhanced",
];

fn shared_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn run_dcm2niix(input: &Path, output: &Path) {
    let status = Command::new("dcm2niix")
        .args(["-z", "y", "-f", "%s_%d", "-o"])
        .arg(output)
        .arg(input)
        .output()
        .unwrap_or_else(|e| panic!("dcm2niix is required (pip install dcm2niix): {e}"));
    assert!(
        status.status.success(),
        "dcm2niix failed on {}: {}",
        input.display(),
        String::from_utf8_lossy(&status.stderr)
    );
}

/// Frames of every mosaic or enhanced file under `dir`; other files are not ours and skipped.
fn read_frames(dir: &Path) -> Vec<Frame> {
    let mut frames = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(obj) = dicom_object::open_file(entry.path()) else {
            continue;
        };
        let series = Arc::new(Default::default());
        if is_mosaic(&obj) {
            frames.extend(mosaic_frames(entry.path(), &obj, series).unwrap());
        } else if is_enhanced(&obj) {
            frames.extend(enhanced_frames(entry.path(), &obj, series).unwrap());
        }
    }
    frames
}

/// Decodes stored values of every frame of a file once.
#[derive(Default)]
struct PixelCache(HashMap<PathBuf, Vec<Vec<f64>>>);

impl PixelCache {
    fn frame_values(&mut self, frame: &Frame) -> Vec<f64> {
        let (path, index) = match &frame.pixels {
            PixelSource::File { path, index } | PixelSource::MosaicTile { path, index, .. } => {
                (path, *index)
            }
        };
        let decoded = self.0.entry(path.clone()).or_insert_with(|| {
            let obj = dicom_object::open_file(path).unwrap();
            let pixels = obj.decode_pixel_data().unwrap();
            let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
            (0..pixels.number_of_frames())
                .map(|f| {
                    pixels
                        .to_vec_frame_with_options::<f64>(f, &options)
                        .unwrap()
                })
                .collect()
        });
        let values = &decoded[index as usize];
        match &frame.pixels {
            PixelSource::File { .. } => values.clone(),
            PixelSource::MosaicTile {
                tile,
                tiles_per_row,
                ..
            } => {
                // Tile t sits at grid row t / per_row, column t % per_row.
                let (rows, columns) = (frame.rows as usize, frame.columns as usize);
                let width = columns * *tiles_per_row as usize;
                let top = (*tile / tiles_per_row) as usize * rows;
                let left = (*tile % tiles_per_row) as usize * columns;
                (top..top + rows)
                    .flat_map(|r| values[r * width + left..r * width + left + columns].to_vec())
                    .collect()
            }
        }
    }
}

/// dcm2niix's intensity: DICOM rescale, or Philips' precise value when a scale slope is given;
/// with the magnitude of its terms, since dcm2niix stores the scaling as float32 scl_slope and
/// scl_inter and a large intercept limits the precision of values near zero.
fn scaled(frame: &Frame, stored: f64) -> (f64, f64) {
    let (slope, intercept) = frame.rescale;
    let divisor = frame.private_scale.map_or(1.0, |ss| slope * ss);
    (
        (stored * slope + intercept) / divisor,
        ((stored * slope).abs() + intercept.abs()) / divisor.abs(),
    )
}

struct Reference {
    name: String,
    data: ndarray::ArrayD<f32>,
    affine: Matrix4<f64>,
    bvals: Option<Vec<f64>>,
    bvecs: Option<Vec<[f64; 3]>>,
}

fn read_numbers(path: &Path) -> Option<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.split_whitespace()
                    .map(|v| v.parse::<f64>().unwrap())
                    .collect()
            })
            .collect(),
    )
}

fn references(dir: &Path) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".nii.gz"))
        .collect();
    names.sort();
    for nii in names {
        let stem = nii
            .to_string_lossy()
            .trim_end_matches(".nii.gz")
            .to_string();
        let volume = read_volume_f32(&nii).unwrap();
        let VoxelData::F32(data) = volume.data else {
            unreachable!()
        };
        let bvals = read_numbers(Path::new(&format!("{stem}.bval"))).map(|r| r[0].clone());
        let bvecs = read_numbers(Path::new(&format!("{stem}.bvec"))).map(|r| {
            (0..r[0].len())
                .map(|i| [r[0][i], r[1][i], r[2][i]])
                .collect()
        });
        out.push(Reference {
            name: nii.file_name().unwrap().to_string_lossy().to_string(),
            data,
            affine: volume.affine,
            bvals,
            bvecs,
        });
    }
    out
}

/// Voxel coordinates (in `inverse`'s grid) of pixel (row, column) of `frame`.
fn voxel_of(frame: &Frame, inverse: &Matrix4<f64>, row: f64, column: f64) -> Vector3<f64> {
    let o = frame.orientation;
    let ps = frame.pixel_spacing;
    let lps: [f64; 3] =
        [0, 1, 2].map(|i| frame.position[i] + column * ps[1] * o[i] + row * ps[0] * o[3 + i]);
    let v = inverse * Vector4::new(-lps[0], -lps[1], lps[2], 1.0);
    Vector3::new(v[0], v[1], v[2])
}

fn integral(v: &Vector3<f64>) -> Option<[i64; 3]> {
    let r = v.map(|x| x.round());
    ((v - r).abs().max() < 1e-4).then(|| [r[0] as i64, r[1] as i64, r[2] as i64])
}

/// Checks one group of frames (one would-be output) against one dcm2niix output.
fn check(frames: &[&Frame], reference: &Reference, cache: &mut PixelCache) -> Result<(), String> {
    let shape = reference.data.shape().to_vec();
    let (nx, ny, nz) = (shape[0], shape[1], shape[2]);
    let nt = shape.get(3).copied().unwrap_or(1);
    let pixels_per_frame = frames.first().map_or(1, |f| (f.rows * f.columns) as usize);
    if frames.len() * pixels_per_frame != nx * ny * nz * nt {
        return Err(format!(
            "{} frames of {pixels_per_frame} pixels for {nx}×{ny}×{nz}×{nt} voxels",
            frames.len()
        ));
    }
    let inverse = reference
        .affine
        .try_inverse()
        .ok_or("singular reference affine")?;
    // Volumes in the order our frames give them: volume index, then instance number.
    let mut volumes: BTreeMap<(i64, i64, String), Vec<&Frame>> = BTreeMap::new();
    for f in frames {
        let key = (
            f.volume_index.unwrap_or(i64::MIN),
            f.instance_number.unwrap_or(i64::MIN),
            f.sop_instance_uid.clone(),
        );
        volumes.entry(key).or_default().push(f);
    }
    if volumes.len() != nt {
        return Err(format!("{} volumes, dcm2niix has {nt}", volumes.len()));
    }
    // (slice axis, slice, volume) of every frame: with the pixel count equal to the voxel count,
    // no repeats means every voxel was filled.
    let mut covered = std::collections::HashSet::new();
    for (t, volume) in volumes.values().enumerate() {
        for frame in volume {
            let origin = voxel_of(frame, &inverse, 0.0, 0.0);
            let along_row = voxel_of(frame, &inverse, 0.0, 1.0) - origin;
            let down_column = voxel_of(frame, &inverse, 1.0, 0.0) - origin;
            let (Some(o), Some(dc), Some(dr)) = (
                integral(&origin),
                integral(&along_row),
                integral(&down_column),
            ) else {
                return Err(format!(
                    "frame off the voxel grid: origin {origin:?}, steps {along_row:?} {down_column:?}"
                ));
            };
            // The slice axis is the one neither in-plane step moves along.
            let axis = (0..3)
                .find(|&a| dc[a] == 0 && dr[a] == 0)
                .ok_or("oblique steps")?;
            let slice = o[axis];
            if slice < 0 || slice as usize >= [nx, ny, nz][axis] {
                return Err(format!("slice {slice} outside the volume"));
            }
            let values = cache.frame_values(frame);
            for r in 0..frame.rows as i64 {
                for c in 0..frame.columns as i64 {
                    let v = [0, 1, 2].map(|a| o[a] + c * dc[a] + r * dr[a]);
                    if (0..3).any(|a| v[a] < 0 || v[a] as usize >= shape[a]) {
                        return Err(format!("pixel ({r},{c}) maps outside to {v:?}"));
                    }
                    let mut index = vec![v[0] as usize, v[1] as usize, v[2] as usize];
                    if shape.len() == 4 {
                        index.push(t);
                    }
                    let want = reference.data[index.as_slice()] as f64;
                    let (ours, magnitude) =
                        scaled(frame, values[(r * frame.columns as i64 + c) as usize]);
                    if (ours - want).abs() > 1e-5 * magnitude.max(want.abs()) + 1e-4 {
                        return Err(format!(
                            "volume {t} voxel {v:?}: ours {ours}, dcm2niix {want}"
                        ));
                    }
                }
            }
            if !covered.insert((axis, slice, t)) {
                return Err(format!("slice {slice} of volume {t} filled twice"));
            }
        }
    }
    check_gradients(&volumes, reference)
}

fn check_gradients(
    volumes: &BTreeMap<(i64, i64, String), Vec<&Frame>>,
    reference: &Reference,
) -> Result<(), String> {
    let Some(bvals) = &reference.bvals else {
        return Ok(());
    };
    let bvecs = reference.bvecs.as_ref().ok_or("bval without bvec")?;
    let columns = reference.affine.fixed_view::<3, 3>(0, 0).into_owned();
    let rotation: Matrix3<f64> = Matrix3::from_columns(&[
        columns.column(0).normalize(),
        columns.column(1).normalize(),
        columns.column(2).normalize(),
    ]);
    // FSL's convention: a direction in voxel axes, x negated when the affine is right-handed.
    // dcm2niix writes the opposite (equivalent) sign of that whole vector for right-handed
    // affines, e.g. the sagittal mosaic whose SliceNormalVector opposes row × column, where it
    // warns "matrix had a negative determinant".
    let right_handed = rotation.determinant() > 0.0;
    for (t, volume) in volumes.values().enumerate() {
        let diffusion = volume[0]
            .diffusion
            .as_ref()
            .ok_or_else(|| format!("volume {t} has no diffusion encoding"))?;
        if (diffusion.bval - bvals[t]).abs() > 1e-3 {
            return Err(format!(
                "volume {t}: b = {}, dcm2niix {}",
                diffusion.bval, bvals[t]
            ));
        }
        if bvals[t] == 0.0 {
            continue;
        }
        let g = diffusion
            .bvec_patient
            .ok_or_else(|| format!("volume {t}: b > 0 without a direction"))?;
        let ras = Vector3::new(-g[0], -g[1], g[2]);
        let mut image = rotation.transpose() * ras;
        if right_handed {
            image[0] = -image[0];
            image = -image;
        }
        let want = Vector3::from(bvecs[t]);
        if (image - want).abs().max() > 1e-4 {
            return Err(format!(
                "volume {t}: bvec {:?}, dcm2niix {:?}",
                image.as_slice(),
                want.as_slice()
            ));
        }
    }
    Ok(())
}

#[test]
fn multiframe_readers_match_dcm2niix() {
    let shared = shared_dir().join("dicom");
    assert!(
        shared.is_dir(),
        "test data missing: {} (set BRAINAGED_SHARED)",
        shared.display()
    );
    let mut failures = Vec::new();
    println!("{:<32} {:<40} result", "folder", "dcm2niix output");
    for folder in FOLDERS {
        let input = shared.join(folder);
        let out = tempfile::tempdir().unwrap();
        run_dcm2niix(&input, out.path());
        let frames = read_frames(&input);
        let mut groups: BTreeMap<(String, String, u64), Vec<&Frame>> = BTreeMap::new();
        for f in &frames {
            let key = (
                f.series_instance_uid.clone(),
                f.image_type.join("\\"),
                f.echo_time.unwrap_or(-1.0).to_bits(),
            );
            groups.entry(key).or_default().push(f);
        }
        let mut cache = PixelCache::default();
        let refs = references(out.path());
        if refs.is_empty() {
            failures.push(format!("{folder}: dcm2niix wrote nothing"));
        }
        for reference in &refs {
            let mut reasons = Vec::new();
            let matched = groups
                .values()
                .any(|group| match check(group, reference, &mut cache) {
                    Ok(()) => true,
                    Err(e) => {
                        reasons.push(e);
                        false
                    }
                });
            let result = if matched {
                "pass".to_string()
            } else {
                format!("FAIL: {}", reasons.join(" | "))
            };
            println!("{folder:<32} {:<40} {result}", reference.name);
            if !matched {
                failures.push(format!("{folder}/{}: {result}", reference.name));
            }
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
