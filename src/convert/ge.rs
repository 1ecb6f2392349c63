//! GE private conventions for classic images.
//!
//! GE writes the b-value in (0043,1039) (first value, sometimes offset by 10^9) and the
//! gradient in (0019,10BB/BC/BD) in the logical image frame (frequency, phase, slice), with the
//! first two axes in the opposite sense to DICOM's row and column directions. dcm2niix's
//! `.bvec` for GE therefore equals (−x, y, z) of those values; we express the same gradient in
//! the patient frame so that one rotation serves every vendor.

use dicom_core::Tag;

use super::attrs::{self, Object};
use super::classic::diffusion_of;
use super::frame::Diffusion;

const B_VALUE_AND_MORE: Tag = Tag(0x0043, 0x1039);
const GRADIENT: [Tag; 3] = [
    Tag(0x0019, 0x10BB),
    Tag(0x0019, 0x10BC),
    Tag(0x0019, 0x10BD),
];

/// GE's complex-image part (0043,102F): 0 magnitude, 1 phase, 2 real, 3 imaginary.
const COMPLEX_PART: Tag = Tag(0x0043, 0x102F);

/// The ImageType value that marks a GE phase, real or imaginary image (None for magnitude), so
/// that such images split into their own volume as dcm2niix splits them.
pub fn complex_part(obj: &Object) -> Option<&'static str> {
    match attrs::int(obj, COMPLEX_PART)? {
        1 => Some("P"),
        2 => Some("REAL"),
        3 => Some("IMAGINARY"),
        _ => None,
    }
}

/// Diffusion of a GE image, or None when it carries no GE diffusion attributes.
pub fn diffusion(obj: &Object, orientation: &[f64; 6]) -> Option<Diffusion> {
    let raw_b = attrs::float(obj, B_VALUE_AND_MORE)?;
    // Values above 10^9 carry a flag in the highest digit.
    let bval = if raw_b >= 1e9 { raw_b % 1e9 } else { raw_b };
    let Some(g) = attrs::triple(obj, GRADIENT) else {
        return Some(diffusion_of(bval, None));
    };
    let row = [orientation[0], orientation[1], orientation[2]];
    let col = [orientation[3], orientation[4], orientation[5]];
    let normal = cross(row, col);
    let patient = std::array::from_fn(|a| -g[0] * row[a] - g[1] * col[a] + g[2] * normal[a]);
    Some(diffusion_of(bval, Some(patient)))
}

/// Right-handed cross product.
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
