//! Classic single-frame images (one slice per file: GE, Philips, Siemens non-mosaic, UIH, Canon)
//! → one [`Frame`] each.

use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::tags;

use super::attrs::{self, Object};
use super::frame::{Diffusion, Frame, PixelSource};
use super::read::ReadError;
use super::{ge, philips, siemens};
use crate::volume::VolumeMeta;

/// Which vendor conventions apply to private attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Ge,
    Philips,
    Siemens,
    Other,
}

impl Vendor {
    /// From the Manufacturer attribute.
    pub fn of(meta: &VolumeMeta) -> Vendor {
        let m = meta
            .manufacturer
            .as_deref()
            .unwrap_or("")
            .to_ascii_uppercase();
        if m.starts_with("GE") {
            Vendor::Ge
        } else if m.contains("PHILIPS") {
            Vendor::Philips
        } else if m.contains("SIEMENS") {
            Vendor::Siemens
        } else {
            Vendor::Other
        }
    }
}

/// One frame from a single-frame image.
pub fn frame(path: &Path, obj: &Object, series: Arc<VolumeMeta>) -> Result<Frame, ReadError> {
    let missing = |what| ReadError::Missing {
        path: path.to_path_buf(),
        what,
    };
    let rows = attrs::int(obj, tags::ROWS).ok_or_else(|| missing("Rows"))?;
    let columns = attrs::int(obj, tags::COLUMNS).ok_or_else(|| missing("Columns"))?;
    let position = attrs::array::<3>(obj, tags::IMAGE_POSITION_PATIENT)
        .ok_or_else(|| missing("ImagePositionPatient"))?;
    let orientation = attrs::array::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT)
        .ok_or_else(|| missing("ImageOrientationPatient"))?;
    let pixel_spacing =
        attrs::array::<2>(obj, tags::PIXEL_SPACING).ok_or_else(|| missing("PixelSpacing"))?;
    let bits_allocated =
        attrs::int(obj, tags::BITS_ALLOCATED).ok_or_else(|| missing("BitsAllocated"))?;
    if rows <= 0 || columns <= 0 || !matches!(bits_allocated, 8 | 16 | 32) {
        return Err(missing(
            "a supported image size (Rows, Columns, BitsAllocated)",
        ));
    }
    let vendor = Vendor::of(&series);
    let diffusion = match vendor {
        Vendor::Ge => ge::diffusion(obj, &orientation),
        Vendor::Philips => philips::diffusion(obj),
        Vendor::Siemens => standard_diffusion(obj).or_else(|| siemens::diffusion(obj)),
        Vendor::Other => None,
    }
    .or_else(|| standard_diffusion(obj));
    let mut image_type = series.image_type.clone();
    if let Some(part) = ge::complex_part(obj).filter(|_| vendor == Vendor::Ge)
        && !image_type.iter().any(|t| t == part)
    {
        image_type.push(part.to_string());
    }
    let rescale = (
        attrs::float(obj, tags::RESCALE_SLOPE)
            .filter(|s| *s != 0.0)
            .unwrap_or(1.0),
        attrs::float(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
    );
    let private_scale = match vendor {
        Vendor::Philips => philips::scale_slope(obj),
        _ => None,
    };
    Ok(Frame {
        series_instance_uid: attrs::text(obj, tags::SERIES_INSTANCE_UID)
            .ok_or_else(|| missing("SeriesInstanceUID"))?,
        sop_instance_uid: attrs::text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        instance_number: attrs::int(obj, tags::INSTANCE_NUMBER),
        rows: rows as u32,
        columns: columns as u32,
        position,
        orientation,
        pixel_spacing,
        slice_thickness: attrs::float(obj, tags::SLICE_THICKNESS),
        echo_number: attrs::int(obj, tags::ECHO_NUMBERS),
        echo_time: attrs::float(obj, tags::ECHO_TIME),
        image_type,
        acquisition_time: attrs::text(obj, tags::ACQUISITION_TIME),
        volume_index: attrs::int(obj, tags::TEMPORAL_POSITION_IDENTIFIER),
        diffusion,
        rescale,
        private_scale,
        bits_allocated: bits_allocated as u16,
        pixel_representation: attrs::int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) as u16,
        pixels: PixelSource::File {
            path: path.to_path_buf(),
            index: 0,
        },
        series,
    })
}

/// Diffusion from the standard attributes (0018,9087) and (0018,9089), top level or inside
/// an MR Diffusion Sequence item.
pub fn standard_diffusion(obj: &Object) -> Option<Diffusion> {
    let from = |o: &Object| {
        let bval = attrs::float(o, tags::DIFFUSION_B_VALUE)?;
        let vec = attrs::array::<3>(o, tags::DIFFUSION_GRADIENT_ORIENTATION).or_else(|| {
            attrs::first_item(o, tags::DIFFUSION_GRADIENT_DIRECTION_SEQUENCE)
                .and_then(|i| attrs::array::<3>(i, tags::DIFFUSION_GRADIENT_ORIENTATION))
        });
        Some(diffusion_of(bval, vec))
    };
    from(obj).or_else(|| attrs::first_item(obj, tags::MR_DIFFUSION_SEQUENCE).and_then(from))
}

/// A diffusion record; a zero or missing vector means no direction.
pub fn diffusion_of(bval: f64, vec: Option<[f64; 3]>) -> Diffusion {
    let bvec_patient = vec.filter(|v| v.iter().map(|x| x * x).sum::<f64>() > 1e-8);
    Diffusion {
        bval,
        bvec_patient,
        derived_isotropic: bval > 0.0 && bvec_patient.is_none(),
    }
}
