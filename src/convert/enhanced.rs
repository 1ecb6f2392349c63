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

use super::dicom_value::{first_item, fixed, float, floats, int, private_tag, text, upper_texts};
use super::frame::{Diffusion, Frame, PixelSource};
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

    /// Numbers of `tag` inside `sequence`.
    fn floats(&self, sequence: Tag, tag: Tag) -> Option<Vec<f64>> {
        self.group(sequence).and_then(|g| floats(g, tag))
    }

    fn float(&self, sequence: Tag, tag: Tag) -> Option<f64> {
        self.floats(sequence, tag)?.first().copied()
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
    let volume_keys = volume_keys(obj, per_frame);
    let distinct: Vec<&Vec<i64>> = volume_keys
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut frames = Vec::with_capacity(per_frame.len());
    for (index, own) in per_frame.iter().enumerate() {
        let groups = Groups { own, shared };
        let volume_index = if distinct.len() > 1 {
            distinct
                .iter()
                .position(|k| **k == volume_keys[index])
                .map(|rank| rank as i64)
        } else {
            groups
                .group(tags::FRAME_CONTENT_SEQUENCE)
                .and_then(|g| int(g, tags::TEMPORAL_POSITION_INDEX))
                .or_else(|| int(obj, tags::TEMPORAL_POSITION_IDENTIFIER))
        };
        frames.push(frame(
            path,
            obj,
            &groups,
            index,
            volume_index,
            series.clone(),
        )?);
    }
    Ok(frames)
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
            .unwrap_or(1.0),
        transform
            .and_then(|g| float(g, tags::RESCALE_INTERCEPT))
            .or_else(|| float(obj, tags::RESCALE_INTERCEPT))
            .unwrap_or(0.0),
    );
    let frame_type = groups
        .group(tags::MR_IMAGE_FRAME_TYPE_SEQUENCE)
        .map(|g| upper_texts(g, tags::FRAME_TYPE))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| upper_texts(obj, tags::IMAGE_TYPE));
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
    let Some(mapping) = groups.group(tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE) else {
        return false;
    };
    first_item(mapping, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)
        .and_then(|units| text(units, tags::CODE_VALUE))
        .is_some_and(|code| code != "1")
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
                .and_then(|g| floats(g, tags::DIMENSION_INDEX_VALUES))
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
/// than at the top level (TR, TE, TI, flip angle), leaving values already set alone.
pub fn fill_series_meta(obj: &InMemDicomObject, meta: &mut VolumeMeta) {
    let Some(own) = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.first())
    else {
        return;
    };
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
    if meta.image_type.is_empty() {
        meta.image_type = upper_texts(obj, tags::IMAGE_TYPE);
    }
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}
