//! Enhanced multi-frame MR (Enhanced MR Image Storage and vendor variants): one file, many frames.
//!
//! Siemens XA and Philips write each frame's geometry, timing, diffusion and scaling in the
//! per-frame functional groups (5200,9230), with what all frames share in (5200,9229). A functional
//! group present in the per-frame item overrides the shared one. Each frame becomes one [`Frame`]
//! with `PixelSource::File { index }`, so grouping, sorting and stacking stay vendor-neutral.
//!
//! Volume order within a file follows the dimension index values without the in-stack position
//! (as dcm2niix orders enhanced frames); a file that holds one volume (Siemens XA30 writes one file
//! per DWI volume) is ordered by its TemporalPositionIndex instead, so files sort among themselves.
//! Philips' private scale slope (2005,100E) is carried for dcm2niix's "precise" scaling, except for
//! frames whose real-world value mapping has physical units (a B0 map in Hz), which dcm2niix keeps
//! in display units.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::attrs::{array as fixed, first_item, float, floats, int, text};
use super::frame::{Diffusion, Frame, PixelSource};
use super::meta::{PHASE_DIRECTION, PHASE_POSITIVE};
use super::mosaic::norm;
use super::private::{private_tag, upper_texts};
use crate::volume::VolumeMeta;

/// Why an enhanced multi-frame file could not be read into frames.
#[derive(Debug, thiserror::Error)]
pub enum EnhancedError {
    #[error("{path}: no per-frame functional groups (5200,9230)")]
    NotEnhanced { path: PathBuf },
    #[error("{path}: NumberOfFrames is {declared} but there are {items} per-frame groups")]
    FrameCount {
        path: PathBuf,
        declared: i64,
        items: usize,
    },
    #[error("{path}: frame {index}: missing or malformed {attribute}")]
    Missing {
        path: PathBuf,
        index: usize,
        attribute: &'static str,
    },
}

/// True when `obj` carries per-frame functional groups.
pub fn is_enhanced(obj: &InMemDicomObject) -> bool {
    obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .is_some_and(|items| !items.is_empty())
}

/// The functional groups of one frame: its own item, then the shared one.
struct Groups<'a> {
    own: &'a InMemDicomObject,
    shared: Option<&'a InMemDicomObject>,
}

impl<'a> Groups<'a> {
    /// First item of the functional group macro `sequence`, per-frame first.
    fn group(&self, sequence: Tag) -> Option<&'a InMemDicomObject> {
        first_item(self.own, sequence).or_else(|| self.shared.and_then(|s| first_item(s, sequence)))
    }

    fn float(&self, sequence: Tag, tag: Tag) -> Option<f64> {
        self.group(sequence).and_then(|g| float(g, tag))
    }
}

/// Reads every frame of the enhanced file `obj` (read from `path`).
pub fn enhanced_frames(
    path: &Path,
    obj: &InMemDicomObject,
    series: Arc<VolumeMeta>,
) -> Result<Vec<Frame>, EnhancedError> {
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .filter(|items| !items.is_empty())
        .ok_or_else(|| EnhancedError::NotEnhanced {
            path: path.to_path_buf(),
        })?;
    if let Some(declared) = int(obj, tags::NUMBER_OF_FRAMES)
        && declared != per_frame.len() as i64
    {
        return Err(EnhancedError::FrameCount {
            path: path.to_path_buf(),
            declared,
            items: per_frame.len(),
        });
    }
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let volume_index = volume_indices(obj, per_frame, shared);
    let mut frames = Vec::with_capacity(per_frame.len());
    for (index, own) in per_frame.iter().enumerate() {
        let groups = Groups { own, shared };
        let volume_index = volume_index[index];
        frames.push(frame(
            path,
            obj,
            &groups,
            index,
            volume_index,
            series.clone(),
        )?);
    }
    number_echoes(&mut frames);
    Ok(frames)
}

/// Gives frames that share an echo number but differ in echo time their own echo numbers, in
/// order of first appearance, as dcm2niix does (a Philips magnitude at TE 1.52 ms and its B0 map
/// at TE 0 are both "echo 1" in the header and become `_e1` and `_e2`).
fn number_echoes(frames: &mut [Frame]) {
    let mut times: Vec<(Option<i64>, u64)> = Vec::new();
    for f in frames.iter() {
        let key = (f.echo_number, f.echo_time.unwrap_or(f64::NAN).to_bits());
        if !times.contains(&key) {
            times.push(key);
        }
    }
    let shared_number = times
        .iter()
        .any(|(n, t)| times.iter().any(|(m, u)| m == n && u != t));
    if !shared_number {
        return;
    }
    for f in frames.iter_mut() {
        let key = (f.echo_number, f.echo_time.unwrap_or(f64::NAN).to_bits());
        f.echo_number = times.iter().position(|k| *k == key).map(|i| i as i64 + 1);
    }
}

/// One frame's [`Frame`].
fn frame(
    path: &Path,
    obj: &InMemDicomObject,
    groups: &Groups<'_>,
    index: usize,
    volume_index: Option<i64>,
    series: Arc<VolumeMeta>,
) -> Result<Frame, EnhancedError> {
    let missing = |attribute| EnhancedError::Missing {
        path: path.to_path_buf(),
        index,
        attribute,
    };
    let position: [f64; 3] = groups
        .group(tags::PLANE_POSITION_SEQUENCE)
        .and_then(|g| fixed(g, tags::IMAGE_POSITION_PATIENT))
        .or_else(|| fixed(obj, tags::IMAGE_POSITION_PATIENT))
        .ok_or_else(|| missing("ImagePositionPatient"))?;
    let orientation: [f64; 6] = groups
        .group(tags::PLANE_ORIENTATION_SEQUENCE)
        .and_then(|g| fixed(g, tags::IMAGE_ORIENTATION_PATIENT))
        .or_else(|| fixed(obj, tags::IMAGE_ORIENTATION_PATIENT))
        .ok_or_else(|| missing("ImageOrientationPatient"))?;
    let measures = groups.group(tags::PIXEL_MEASURES_SEQUENCE);
    let pixel_spacing: [f64; 2] = measures
        .and_then(|g| fixed(g, tags::PIXEL_SPACING))
        .or_else(|| fixed(obj, tags::PIXEL_SPACING))
        .ok_or_else(|| missing("PixelSpacing"))?;
    let slice_thickness = measures
        .and_then(|g| float(g, tags::SLICE_THICKNESS))
        .or_else(|| float(obj, tags::SLICE_THICKNESS));
    let rows = int(obj, tags::ROWS).ok_or_else(|| missing("Rows"))? as u32;
    let columns = int(obj, tags::COLUMNS).ok_or_else(|| missing("Columns"))? as u32;

    let transform = groups.group(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE);
    let rescale = (
        transform
            .and_then(|g| float(g, tags::RESCALE_SLOPE))
            .or_else(|| float(obj, tags::RESCALE_SLOPE))
            .filter(|s| *s != 0.0)
            .unwrap_or(1.0),
        transform
            .and_then(|g| float(g, tags::RESCALE_INTERCEPT))
            .or_else(|| float(obj, tags::RESCALE_INTERCEPT))
            .unwrap_or(0.0),
    );
    let mut frame_type = groups
        .group(tags::MR_IMAGE_FRAME_TYPE_SEQUENCE)
        .map(|g| upper_texts(g, tags::FRAME_TYPE))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| upper_texts(obj, tags::IMAGE_TYPE));
    // A field map in Hz (Philips B0 map): dcm2niix marks it FIELDMAPHZ and names it so.
    if units(groups).is_some_and(|code| code.eq_ignore_ascii_case("Hz")) {
        frame_type.push("FIELDMAPHZ".to_string());
    }
    let acquisition_time = groups
        .group(tags::FRAME_CONTENT_SEQUENCE)
        .and_then(|g| text(g, tags::FRAME_ACQUISITION_DATE_TIME))
        .and_then(|dt| dt.get(8..).map(str::to_string))
        .or_else(|| text(obj, tags::ACQUISITION_TIME));

    Ok(Frame {
        series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        rows,
        columns,
        position,
        orientation,
        pixel_spacing,
        slice_thickness,
        echo_number: philips_frame_item(groups)
            .and_then(|p| int(p, tags::ECHO_NUMBERS))
            .or_else(|| int(obj, tags::ECHO_NUMBERS)),
        echo_time: groups
            .float(tags::MR_ECHO_SEQUENCE, tags::EFFECTIVE_ECHO_TIME)
            .or_else(|| float(obj, tags::ECHO_TIME)),
        image_type: frame_type,
        acquisition_time,
        volume_index,
        diffusion: diffusion(groups),
        rescale,
        private_scale: philips_scale(groups),
        bits_allocated: int(obj, tags::BITS_ALLOCATED).unwrap_or(16) as u16,
        pixel_representation: int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) as u16,
        pixels: PixelSource::File {
            path: path.to_path_buf(),
            index: index as u32,
        },
        series,
    })
}

/// Diffusion encoding from the MR Diffusion macro; None when the frame has no b-value.
fn diffusion(groups: &Groups<'_>) -> Option<Diffusion> {
    let item = groups.group(tags::MR_DIFFUSION_SEQUENCE)?;
    let bval = float(item, tags::DIFFUSION_B_VALUE)?;
    let directionality = text(item, tags::DIFFUSION_DIRECTIONALITY)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let direction = first_item(item, tags::DIFFUSION_GRADIENT_DIRECTION_SEQUENCE)
        .and_then(|g| fixed::<3>(g, tags::DIFFUSION_GRADIENT_ORIENTATION))
        .filter(|v| norm(*v) > 0.5)
        .map(|v| v.map(|x| x / norm(v)));
    Some(Diffusion {
        bval,
        bvec_patient: if bval > 0.0 && directionality != "ISOTROPIC" {
            direction
        } else {
            None
        },
        derived_isotropic: bval > 0.0 && directionality == "ISOTROPIC",
    })
}

/// Philips' per-frame private item (2005,140F), which repeats classic attributes per frame.
fn philips_frame_item<'a>(groups: &Groups<'a>) -> Option<&'a InMemDicomObject> {
    let tag = private_tag(groups.own, 0x2005, "Philips MR Imaging DD 005", 0x0F)?;
    first_item(groups.own, tag)
}

/// Philips scale slope (2005,100E) for dcm2niix's precise scaling, when it applies.
fn philips_scale(groups: &Groups<'_>) -> Option<f64> {
    let item = philips_frame_item(groups)?;
    let tag = private_tag(item, 0x2005, "Philips MR Imaging DD 001", 0x0E)?;
    let scale = float(item, tag).filter(|s| *s != 0.0)?;
    (!has_physical_units(groups)).then_some(scale)
}

/// True when the frame's real-world value mapping names units other than "no units".
fn has_physical_units(groups: &Groups<'_>) -> bool {
    units(groups).is_some_and(|code| code != "1")
}

/// The UCUM code of the frame's real-world value mapping units ("1" means none).
fn units(groups: &Groups<'_>) -> Option<String> {
    let mapping = groups.group(tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE)?;
    first_item(mapping, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
        .and_then(|units| text(units, tags::CODE_VALUE))
}

/// Per frame, the key that orders its volume. The TemporalPositionIndex (or the file's
/// TemporalPositionIdentifier) when it tells this file's volumes apart, because it also orders
/// volumes across the files of a series; otherwise the rank of the frame's dimension index values
/// without the in-stack position, which tells apart volumes that differ in something other than
/// time (a Philips magnitude and its B0 map, the b-values of a single-file DWI).
fn volume_indices(
    obj: &InMemDicomObject,
    per_frame: &[InMemDicomObject],
    shared: Option<&InMemDicomObject>,
) -> Vec<Option<i64>> {
    let temporal: Vec<Option<i64>> = per_frame
        .iter()
        .map(|own| {
            Groups { own, shared }
                .group(tags::FRAME_CONTENT_SEQUENCE)
                .and_then(|g| int(g, tags::TEMPORAL_POSITION_INDEX))
                .or_else(|| int(obj, tags::TEMPORAL_POSITION_IDENTIFIER))
        })
        .collect();
    let keys = volume_keys(obj, per_frame);
    let distinct_keys: BTreeSet<&Vec<i64>> = keys.iter().collect();
    let distinct_times: BTreeSet<Option<i64>> = temporal.iter().copied().collect();
    if distinct_keys.len() <= 1 || distinct_times.len() >= distinct_keys.len() {
        return temporal;
    }
    let ranked: Vec<&Vec<i64>> = distinct_keys.into_iter().collect();
    keys.iter()
        .map(|k| ranked.iter().position(|r| *r == k).map(|rank| rank as i64))
        .collect()
}

/// Per frame, the dimension index values without the in-stack position: frames of one volume
/// share a key. Files without a dimension index give every frame the same (empty) key.
fn volume_keys(obj: &InMemDicomObject, per_frame: &[InMemDicomObject]) -> Vec<Vec<i64>> {
    let pointers: Vec<Option<Tag>> = obj
        .get(tags::DIMENSION_INDEX_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or(&[])
        .iter()
        .map(|item| {
            item.get(tags::DIMENSION_INDEX_POINTER)
                .and_then(|e| e.value().to_tag().ok())
        })
        .collect();
    per_frame
        .iter()
        .map(|own| {
            let values = first_item(own, tags::FRAME_CONTENT_SEQUENCE)
                .map(|g| floats(g, tags::DIMENSION_INDEX_VALUES))
                .unwrap_or_default();
            values
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    pointers.get(*i).copied().flatten() != Some(tags::IN_STACK_POSITION_NUMBER)
                })
                .map(|(_, v)| *v as i64)
                .collect()
        })
        .collect()
}

/// Fills the acquisition fields of `meta` that enhanced files keep in functional groups rather
/// than at the top level (TR, TE, TI, flip angle, slice thickness, phase encoding, slice times),
/// leaving values already set alone.
pub fn fill_series_meta(obj: &InMemDicomObject, meta: &mut VolumeMeta) {
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or_default();
    let Some(own) = per_frame.first() else {
        return;
    };
    if let Some(times) = slice_timing(obj, per_frame) {
        meta.extra
            .insert("SliceTiming".into(), serde_json::json!(times));
    }
    let groups = Groups {
        own,
        shared: first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE),
    };
    let timing = tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE;
    let ms = |v: f64| v / 1000.0;
    meta.repetition_time = meta
        .repetition_time
        .or_else(|| groups.float(timing, tags::REPETITION_TIME).map(ms));
    meta.flip_angle = meta
        .flip_angle
        .or_else(|| groups.float(timing, tags::FLIP_ANGLE));
    meta.echo_time = meta.echo_time.or_else(|| {
        groups
            .float(tags::MR_ECHO_SEQUENCE, tags::EFFECTIVE_ECHO_TIME)
            .map(ms)
    });
    meta.inversion_time = meta.inversion_time.or_else(|| {
        groups
            .float(tags::MR_MODIFIER_SEQUENCE, tags::INVERSION_TIMES)
            .map(ms)
    });
    meta.slice_thickness = meta
        .slice_thickness
        .or_else(|| groups.float(tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS));
    if meta.image_type.is_empty() {
        meta.image_type = upper_texts(obj, tags::IMAGE_TYPE);
    }
    let fov = groups.group(tags::MRFOV_GEOMETRY_SEQUENCE);
    if let Some(direction) = fov.and_then(|g| text(g, tags::IN_PLANE_PHASE_ENCODING_DIRECTION)) {
        // Enhanced files spell it COLUMN; classic ones (and assembly) use COL.
        let direction = if direction.eq_ignore_ascii_case("COLUMN") {
            "COL".to_string()
        } else {
            direction
        };
        meta.extra
            .entry(PHASE_DIRECTION.to_string())
            .or_insert(serde_json::Value::from(direction));
    }
    if let Some(positive) = siemens_phase_positive(&groups) {
        meta.extra
            .insert(PHASE_POSITIVE.into(), serde_json::Value::from(positive));
    }
}

/// Slice times (s, from the earliest) of the file's first volume, in frame order, from each
/// frame's FrameAcquisitionDateTime. None for a single slice, when any frame lacks a time, or
/// when all slices share one time (3D acquisitions). This matches dcm2niix on Siemens XA10; on
/// XA30 dcm2niix's times differ by up to 2.5 ms (it appears to use another source).
fn slice_timing(obj: &InMemDicomObject, per_frame: &[InMemDicomObject]) -> Option<Vec<f64>> {
    let keys = volume_keys(obj, per_frame);
    let first_key = keys.first()?;
    let times: Vec<f64> = per_frame
        .iter()
        .zip(&keys)
        .filter(|(_, k)| *k == first_key)
        .map(|(own, _)| {
            let content = first_item(own, tags::FRAME_CONTENT_SEQUENCE)?;
            seconds_of_day(&text(content, tags::FRAME_ACQUISITION_DATE_TIME)?)
        })
        .collect::<Option<_>>()?;
    let spread = times
        .iter()
        .fold(0.0f64, |m, t| m.max((t - times[0]).abs()));
    if times.len() < 2 || spread == 0.0 {
        return None;
    }
    let start = times.iter().copied().fold(f64::INFINITY, f64::min);
    // Rounded to the microsecond the DICOM time carries, to hide float noise.
    Some(
        times
            .iter()
            .map(|t| ((t - start) * 1e6).round() / 1e6)
            .collect(),
    )
}

/// Seconds since midnight of a DICOM DT value (YYYYMMDDHHMMSS.FFFFFF).
fn seconds_of_day(datetime: &str) -> Option<f64> {
    let time = datetime.get(8..)?;
    let hours: f64 = time.get(0..2)?.parse().ok()?;
    let minutes: f64 = time.get(2..4)?.parse().ok()?;
    let seconds: f64 = time.get(4..)?.split(['+', '-']).next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Siemens XA's PhaseEncodingDirectionPositive: (0021,xx1C) of the per-frame group.
fn siemens_phase_positive(groups: &Groups<'_>) -> Option<i64> {
    siemens_frame_value(groups.own, 0x1C).map(|v| v as i64)
}

/// Number `element` of the "SIEMENS MR SDI 02" block inside Siemens XA's per-frame private
/// functional group (0021,xxFE).
fn siemens_frame_value(own: &InMemDicomObject, element: u8) -> Option<f64> {
    const CREATOR: &str = "SIEMENS MR SDI 02";
    let group = private_tag(own, 0x0021, CREATOR, 0xFE).and_then(|tag| first_item(own, tag))?;
    private_tag(group, 0x0021, CREATOR, element).and_then(|tag| float(group, tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, VR};

    use crate::convert::test_support::{shared_dicom as shared, text_element as ds};

    fn only_file(dir: &str) -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(shared(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.remove(0)
    }

    fn frames_of(path: &Path) -> Vec<Frame> {
        let obj = dicom_object::open_file(path).unwrap();
        assert!(is_enhanced(&obj));
        enhanced_frames(path, &obj, Arc::default()).unwrap()
    }

    #[test]
    fn xa30_dwi_b0_and_diffusion_volumes() {
        let b0 = frames_of(&only_file("siemens-xa30-dwi"));
        assert_eq!(b0.len(), 39);
        let d = b0[0].diffusion.as_ref().unwrap();
        assert_eq!((d.bval, d.bvec_patient), (0.0, None));
        assert_eq!(b0[0].volume_index, Some(1));
        let mut files: Vec<PathBuf> = std::fs::read_dir(shared("siemens-xa30-dwi"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let dw = frames_of(&files[1]);
        let d = dw[5].diffusion.as_ref().unwrap();
        assert_eq!(d.bval, 2500.0);
        let g = d.bvec_patient.unwrap();
        assert!(
            (g[0] - 0.99999872).abs() < 1e-6 && g[1].abs() < 1e-9 && (g[2] - 0.0016).abs() < 1e-6
        );
        assert!(!d.derived_isotropic);
        assert_eq!(dw[5].volume_index, Some(2));
        // One frame per item, each pointing at its own frame of the pixel data, slices 3 mm apart.
        for (i, f) in dw.iter().enumerate() {
            assert!(matches!(f.pixels, PixelSource::File { index, .. } if index as usize == i));
        }
        assert!((dw[1].position[2] - dw[0].position[2] - 3.0).abs() < 1e-6);
        assert_eq!(dw[0].echo_time, Some(68.0));
    }

    #[test]
    fn fa_map_is_derived_without_diffusion() {
        let frames = frames_of(&only_file("siemens-xa30-fa-derived"));
        assert_eq!(frames.len(), 39);
        for f in &frames {
            assert_eq!(f.image_type, ["DERIVED", "PRIMARY", "DIFFUSION", "FA"]);
            assert!(f.diffusion.is_none());
        }
    }

    #[test]
    fn philips_magnitude_and_b0_map_scale_and_split() {
        let frames = frames_of(&only_file("philips-enhanced"));
        assert_eq!(frames.len(), 64);
        let (magnitude, field_map) = frames.split_at(32);
        for f in magnitude {
            assert_eq!(f.private_scale, Some(8.448640073766e-06));
            assert_eq!(f.image_type[3], "M");
            assert_eq!(f.echo_time, Some(1.52));
            assert_eq!(f.volume_index, Some(0));
            assert_eq!(f.echo_number, Some(1));
        }
        for f in field_map {
            // The B0 map is in Hz: dcm2niix keeps display scaling, no private scale.
            assert_eq!(f.private_scale, None);
            assert_eq!(f.rescale, (0.24420024420024, -500.0));
            assert_eq!(f.image_type[3], "FIELD_MAP");
            assert_eq!(f.image_type.last().map(String::as_str), Some("FIELDMAPHZ"));
            assert_eq!(f.volume_index, Some(1));
            // Same header echo number, other echo time: dcm2niix's second echo.
            assert_eq!(f.echo_number, Some(2));
        }
        let mut meta = VolumeMeta::default();
        let obj = dicom_object::open_file(only_file("philips-enhanced")).unwrap();
        fill_series_meta(&obj, &mut meta);
        assert!((meta.repetition_time.unwrap() - 0.0038045001).abs() < 1e-9);
        assert_eq!(meta.flip_angle, Some(12.0));
    }

    fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    }

    /// A two-frame enhanced object; `with_position` false drops frame 1's plane position.
    fn synthetic(with_position: bool, declared_frames: &str) -> InMemDicomObject {
        let frame = |z: &str, keep: bool| {
            let mut groups = vec![seq(
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![InMemDicomObject::from_element_iter([ds(
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    "1\\0\\0\\0\\1\\0",
                )])],
            )];
            if keep {
                groups.push(seq(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([ds(
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        &format!("0\\0\\{z}"),
                    )])],
                ));
            }
            InMemDicomObject::from_element_iter(groups)
        };
        InMemDicomObject::from_element_iter([
            ds(tags::ROWS, VR::US, "4"),
            ds(tags::COLUMNS, VR::US, "4"),
            ds(tags::NUMBER_OF_FRAMES, VR::IS, declared_frames),
            seq(
                tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
                vec![InMemDicomObject::from_element_iter([seq(
                    tags::PIXEL_MEASURES_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([ds(
                        tags::PIXEL_SPACING,
                        VR::DS,
                        "2\\2",
                    )])],
                )])],
            ),
            seq(
                tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
                vec![frame("0", true), frame("3", with_position)],
            ),
        ])
    }

    #[test]
    fn shared_groups_apply_and_bad_input_is_a_clear_error() {
        let path = Path::new("synthetic.dcm");
        let frames = enhanced_frames(path, &synthetic(true, "2"), Arc::default()).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].position, [0.0, 0.0, 3.0]);
        assert_eq!(frames[1].pixel_spacing, [2.0, 2.0]);
        assert_eq!(frames[1].rescale, (1.0, 0.0));

        let err = enhanced_frames(path, &synthetic(false, "2"), Arc::default()).unwrap_err();
        assert!(
            matches!(
                err,
                EnhancedError::Missing {
                    index: 1,
                    attribute: "ImagePositionPatient",
                    ..
                }
            ),
            "{err}"
        );
        let err = enhanced_frames(path, &synthetic(true, "3"), Arc::default()).unwrap_err();
        assert!(
            matches!(
                err,
                EnhancedError::FrameCount {
                    declared: 3,
                    items: 2,
                    ..
                }
            ),
            "{err}"
        );
        let empty = InMemDicomObject::new_empty();
        assert!(!is_enhanced(&empty));
        assert!(matches!(
            enhanced_frames(path, &empty, Arc::default()),
            Err(EnhancedError::NotEnhanced { .. })
        ));
    }

    #[test]
    fn truncated_enhanced_file_fails_cleanly() {
        let source = std::fs::read(only_file("siemens-xa10-enhanced/XA10")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for fraction in [4, 2] {
            let path = dir.path().join(format!("cut{fraction}.dcm"));
            std::fs::write(&path, &source[..source.len() / fraction]).unwrap();
            // Either the header cannot be read, or the frames it yields are complete ones.
            if let Ok(obj) = dicom_object::open_file(&path) {
                let _ = enhanced_frames(&path, &obj, Arc::default());
            }
        }
    }
}
