//! Siemens classic (non-mosaic) images: diffusion from the private (0019,100C) B_value and
//! (0019,100E) DiffusionGradientDirection (patient frame), when the standard attributes are
//! absent (VB/VD software). Mosaics and their CSA headers are read elsewhere.

use dicom_core::Tag;

use super::attrs::{self, Object};
use super::classic::diffusion_of;
use super::frame::Diffusion;

const B_VALUE: Tag = Tag(0x0019, 0x100C);
const DIRECTION: Tag = Tag(0x0019, 0x100E);

/// Diffusion from the Siemens private attributes, or None when the image has none.
pub fn diffusion(obj: &Object) -> Option<Diffusion> {
    let bval = attrs::float(obj, B_VALUE)?;
    Some(diffusion_of(bval, attrs::array::<3>(obj, DIRECTION)))
}
