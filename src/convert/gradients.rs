//! Gradient table in the image frame with dcm2niix's (and FSL's) sign conventions.
//!
//! A patient-frame (LPS) direction g becomes (row·g, −col·g, slice·g): the minus because rows
//! are stored bottom-up, `slice` being the direction in which k increases. FSL's bvecs are
//! defined for a radiological (negative-determinant) voxel order, so when the affine's
//! determinant is positive FSL negates the first component; dcm2niix then writes the opposite
//! (equivalent) sign of that whole vector, i.e. it negates the second and third components
//! instead. Only volumes whose slices run against row × column (Siemens mosaics whose
//! SliceNormalVector opposes it) get such an affine; dcm2niix warns "matrix had a negative
//! determinant" for them, and siemens-mosaic-dwi-sag pins the convention down.

use nalgebra::Matrix4;

use super::frame::Diffusion;
use super::geometry::{Orientation, dot};
use crate::volume::GradientTable;

/// The table for volumes with diffusion `per_volume`, or None when no volume is diffusion
/// weighted (b > 0).
///
/// `normalise`: scale directions to unit length, as dcm2niix does for directions it rotates
/// from the patient frame; GE's directions are given in the image frame and kept as they are.
pub fn table(
    per_volume: &[Option<Diffusion>],
    o: &Orientation,
    slice_step: f64,
    affine: &Matrix4<f64>,
    normalise: bool,
) -> Option<GradientTable> {
    if !per_volume
        .iter()
        .any(|d| d.as_ref().is_some_and(|d| d.bval > 0.0))
    {
        return None;
    }
    let right_handed = affine.fixed_view::<3, 3>(0, 0).determinant() > 0.0;
    let slice_sign = if slice_step < 0.0 { -1.0 } else { 1.0 };
    let mut bvals = Vec::with_capacity(per_volume.len());
    let mut bvecs = Vec::with_capacity(per_volume.len());
    for d in per_volume {
        let bval = d.as_ref().map_or(0.0, |d| d.bval);
        let vec = match d.as_ref().and_then(|d| d.bvec_patient) {
            Some(g) if bval > 0.0 => {
                let x = dot(o.row, g);
                let y = -dot(o.col, g);
                let z = slice_sign * dot(o.normal, g);
                let norm = (x * x + y * y + z * z).sqrt();
                let v = if right_handed { [x, -y, -z] } else { [x, y, z] };
                if normalise && norm > 0.0 {
                    v.map(|c| c / norm)
                } else {
                    v
                }
            }
            _ => [0.0; 3],
        };
        bvals.push(bval);
        bvecs.push(vec);
    }
    Some(GradientTable { bvals, bvecs })
}
