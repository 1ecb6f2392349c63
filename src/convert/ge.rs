//! GE private conventions for classic images.
//!
//! GE writes the b-value in (0043,1039) (first value, sometimes offset by 10^9) and the
//! gradient in (0019,10BB/BC/BD) in the logical frame (frequency, phase, slice), which does not
//! turn with the slice angulation. dcm2niix maps it to `.bvec` by fixed sign flips that depend
//! on the slice plane and the phase-encoding direction; we compute that vector and express it
//! in the patient frame, so that the one rotation every vendor shares gives it back exactly.

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
    let length = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
    if bval <= f64::from(f32::EPSILON) || length <= f64::from(f32::EPSILON) {
        return Some(diffusion_of(bval, None));
    }
    let row = [orientation[0], orientation[1], orientation[2]];
    let col = [orientation[3], orientation[4], orientation[5]];
    let normal = cross(row, col);
    let head_first_supine = attrs::text(obj, PATIENT_POSITION).is_none_or(|p| p == "HFS");
    let phase_in_columns =
        attrs::text(obj, IN_PLANE_PHASE_ENCODING).is_none_or(|d| !d.eq_ignore_ascii_case("ROW"));
    let (bval, image) = if head_first_supine {
        image_frame(bval, g, length, phase_in_columns, &normal)
    } else {
        // dcm2niix leaves the logical-frame vector untouched for other patient positions.
        (bval, g)
    };
    // Express the image-frame vector in the patient frame so that the common rotation
    // (row·g, −col·g, normal·g) gives it back unchanged.
    let patient =
        std::array::from_fn(|a| image[0] * row[a] - image[1] * col[a] + image[2] * normal[a]);
    Some(diffusion_of(bval, Some(patient)))
}

const PATIENT_POSITION: Tag = Tag(0x0018, 0x5100);
const IN_PLANE_PHASE_ENCODING: Tag = Tag(0x0018, 0x1312);

/// GE's logical-frame gradient → the `.bvec` vector dcm2niix writes, following the published
/// GE convention: a gradient shorter than unit scales the b-value by its squared length
/// (rounded to 5 s/mm²) and becomes unit; each slice plane reverses its own pair of axes
/// (axial: z; coronal: y, z; sagittal: x, y); the phase axis is reversed because rows are
/// stored bottom-up; ROW phase encoding then swaps the in-plane pair (negating the new first);
/// and dcm2niix writes the opposite (equivalent) sign of the whole vector.
fn image_frame(
    bval: f64,
    g: [f64; 3],
    length: f64,
    phase_in_columns: bool,
    normal: &[f64; 3],
) -> (f64, [f64; 3]) {
    let (mut bval, mut v) = (bval, g);
    if length > 0.03 && length < 0.97 {
        let scaled = bval * length * length;
        let rounded = if scaled > 0.0 && scaled < 5.0 {
            5.0
        } else {
            ((scaled + 2.5) / 5.0).floor() * 5.0
        };
        let factor = if rounded == 0.0 {
            0.0
        } else {
            (bval / rounded).sqrt()
        };
        v = v.map(|c| c * factor);
        bval = rounded;
    }
    let dominant = (0..3)
        .max_by(|&a, &b| normal[a].abs().total_cmp(&normal[b].abs()))
        .unwrap_or(2);
    let flip = match dominant {
        0 => [true, true, false],
        1 => [false, true, true],
        _ => [false, false, true],
    };
    for axis in 0..3 {
        if flip[axis] {
            v[axis] = -v[axis];
        }
    }
    v[1] = -v[1];
    if !phase_in_columns {
        v = [-v[1], v[0], v[2]];
    }
    (bval, v.map(|c| -c))
}

/// Right-handed cross product.
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
