//! Slice geometry: sorting positions along the slice normal, the voxel-to-RAS affine as dcm2niix
//! writes it, and the lossless reorientation dcm2niix applies to 3D acquisitions.
//!
//! dcm2niix's layout: columns of the DICOM image run along NIfTI i, rows along j but stored
//! bottom-up (the first DICOM row becomes the last j), slices along k in ascending order of
//! their projection on row × column. The affine is LPS → RAS (x and y negated).

use nalgebra::{Matrix4, Vector3};

use super::ge::cross;

/// Direction cosines of one stack.
#[derive(Debug, Clone, Copy)]
pub struct Orientation {
    pub row: [f64; 3],
    pub col: [f64; 3],
    pub normal: [f64; 3],
}

impl Orientation {
    /// From ImageOrientationPatient.
    pub fn from_iop(iop: &[f64; 6]) -> Orientation {
        let row = unit([iop[0], iop[1], iop[2]]);
        let col = unit([iop[3], iop[4], iop[5]]);
        Orientation {
            row,
            col,
            normal: unit(cross(row, col)),
        }
    }
}

/// Why an ImageOrientationPatient cannot orient a stack, if it cannot: a row or column
/// direction that is zero or not finite, or the two far from perpendicular. DICOM requires unit
/// vectors at right angles; scanners write them to a few decimals, so only a clear departure
/// (more than about half a degree) is refused. A degenerate orientation would make a singular
/// affine, which no NIfTI writer or registration can use.
pub fn orientation_problem(iop: &[f64; 6]) -> Option<String> {
    let row = [iop[0], iop[1], iop[2]];
    let col = [iop[3], iop[4], iop[5]];
    let usable = |v: [f64; 3]| v.iter().all(|x| x.is_finite()) && dot(v, v) > 1e-12;
    if !usable(row) || !usable(col) {
        return Some(format!(
            "ImageOrientationPatient {iop:?} has a zero or non-finite direction"
        ));
    }
    let cosine = dot(unit(row), unit(col));
    (cosine.abs() > 0.01)
        .then(|| format!("ImageOrientationPatient {iop:?}: row and column are not perpendicular"))
}

/// Why an affine cannot map voxels to space, if it cannot: a value that is not finite (from a
/// position or spacing of "NaN" or "inf", which DS parsing accepts), or a voxel of no volume
/// (a pixel spacing or slice step of zero).
pub fn affine_problem(affine: &Matrix4<f64>) -> Option<String> {
    if !affine.iter().all(|x| x.is_finite()) {
        return Some("the position, orientation or spacing is not finite".into());
    }
    let det = affine.fixed_view::<3, 3>(0, 0).determinant();
    (det.abs() < 1e-9)
        .then(|| "a pixel spacing or the slice step is zero: the voxels have no volume".to_string())
}

/// `v` scaled to unit length (unchanged when zero).
pub fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = dot(v, v).sqrt();
    if n > 0.0 { v.map(|x| x / n) } else { v }
}

/// Dot product.
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The NIfTI affine (RAS, rows flipped) of a stack whose first slice is at `first` (LPS).
///
/// `pixel_spacing` is DICOM's (between rows, between columns); `slice_step` the signed distance
/// between consecutive slices along the normal.
pub fn affine(
    o: &Orientation,
    pixel_spacing: [f64; 2],
    slice_step: f64,
    first: [f64; 3],
    rows: usize,
) -> Matrix4<f64> {
    let i_step = o.row.map(|x| x * pixel_spacing[1]);
    let j_step = o.col.map(|x| x * pixel_spacing[0]);
    let k_step = o.normal.map(|x| x * slice_step);
    // The first stored row is DICOM's last row.
    let origin: [f64; 3] = std::array::from_fn(|a| first[a] + j_step[a] * (rows as f64 - 1.0));
    let lps_to_ras = [-1.0, -1.0, 1.0];
    let mut m = Matrix4::identity();
    for a in 0..3 {
        m[(a, 0)] = lps_to_ras[a] * i_step[a];
        m[(a, 1)] = -lps_to_ras[a] * j_step[a];
        m[(a, 2)] = lps_to_ras[a] * k_step[a];
        m[(a, 3)] = lps_to_ras[a] * origin[a];
    }
    m
}

/// How a 3D volume's axes map to the reoriented ones: new axis `a` is old axis `perm[a]`,
/// reversed when `flip[a]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reorientation {
    pub perm: [usize; 3],
    pub flip: [bool; 3],
}

/// The axis permutation and flips that bring `affine` closest to the identity orientation, as
/// dcm2niix does for 3D acquisitions; None when already there or when ambiguous (an axis at
/// 45° to two world axes).
pub fn canonical_reorientation(affine: &Matrix4<f64>) -> Option<Reorientation> {
    let mut perm = [usize::MAX; 3];
    let mut flip = [false; 3];
    for voxel_axis in 0..3 {
        let c = Vector3::new(
            affine[(0, voxel_axis)],
            affine[(1, voxel_axis)],
            affine[(2, voxel_axis)],
        );
        let world = c.iamax();
        if perm[world] != usize::MAX {
            return None;
        }
        perm[world] = voxel_axis;
        flip[world] = c[world] < 0.0;
    }
    let r = Reorientation { perm, flip };
    (r != Reorientation {
        perm: [0, 1, 2],
        flip: [false; 3],
    })
    .then_some(r)
}

/// The affine after applying `r` to a volume of old shape `dims`.
pub fn reoriented_affine(
    affine: &Matrix4<f64>,
    r: &Reorientation,
    dims: [usize; 3],
) -> Matrix4<f64> {
    let mut out = Matrix4::identity();
    let mut origin = Vector3::new(affine[(0, 3)], affine[(1, 3)], affine[(2, 3)]);
    for new_axis in 0..3 {
        let old = r.perm[new_axis];
        let col = Vector3::new(affine[(0, old)], affine[(1, old)], affine[(2, old)]);
        if r.flip[new_axis] {
            origin += col * (dims[old] as f64 - 1.0);
            for a in 0..3 {
                out[(a, new_axis)] = -col[a];
            }
        } else {
            for a in 0..3 {
                out[(a, new_axis)] = col[a];
            }
        }
    }
    for a in 0..3 {
        out[(a, 3)] = origin[a];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axial_affine_flips_rows_and_converts_to_ras() {
        let o = Orientation::from_iop(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let m = affine(&o, [2.0, 3.0], 4.0, [10.0, 20.0, 30.0], 5);
        // i: +x in LPS → −x in RAS, 3 mm; j: DICOM column direction reversed → +y in RAS.
        assert_eq!(m[(0, 0)], -3.0);
        assert_eq!(m[(1, 1)], 2.0);
        assert_eq!(m[(2, 2)], 4.0);
        // Voxel (0, 0, 0) is DICOM pixel (row 4, col 0) = LPS (10, 20 + 8, 30).
        assert_eq!([m[(0, 3)], m[(1, 3)], m[(2, 3)]], [-10.0, -28.0, 30.0]);
    }

    #[test]
    fn reorientation_brings_flipped_axes_to_identity_and_keeps_world_points() {
        let mut m = Matrix4::identity();
        m[(0, 0)] = -1.0;
        m[(0, 3)] = 50.0;
        let r = canonical_reorientation(&m).unwrap();
        assert_eq!(r.perm, [0, 1, 2]);
        assert_eq!(r.flip, [true, false, false]);
        let n = reoriented_affine(&m, &r, [11, 5, 5]);
        assert_eq!(n[(0, 0)], 1.0);
        // New voxel 0 is old voxel 10: x = 50 − 10.
        assert_eq!(n[(0, 3)], 40.0);
    }

    #[test]
    fn degenerate_orientations_and_affines_are_named() {
        assert_eq!(orientation_problem(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), None);
        // Written to six decimals, as scanners do: accepted.
        assert_eq!(
            orientation_problem(&[0.999998, 0.001745, 0.0, -0.001745, 0.999998, 0.0]),
            None
        );
        for bad in [
            [0.0, 0.0, 0.0, 0.0, 1.0, 2.5e-19],
            [1.0, 0.0, 0.0, f64::NAN, 1.0, 0.0],
            [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.5, 1.0, 0.0],
        ] {
            assert!(orientation_problem(&bad).is_some(), "{bad:?}");
        }
        let o = Orientation::from_iop(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(
            affine_problem(&affine(&o, [1.0, 1.0], 2.0, [0.0; 3], 4)),
            None
        );
        assert!(affine_problem(&affine(&o, [1.0, 0.0], 2.0, [0.0; 3], 4)).is_some());
        assert!(affine_problem(&affine(&o, [1.0, 1.0], 0.0, [0.0; 3], 4)).is_some());
        assert!(affine_problem(&affine(&o, [1.0, 1.0], 2.0, [f64::NAN, 0.0, 0.0], 4)).is_some());
    }
}
