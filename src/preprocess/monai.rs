//! Reimplementations of the MONAI 1.4 transforms that BRAID's model inputs pass through.
//!
//! A model only gives valid ages on inputs made the way its training inputs were made, so each
//! function reproduces MONAI 1.4.0's arithmetic, including its quirks, rather than "the same idea":
//!
//! - `Orientation("RAS")`: nibabel's `io_orientation` (polar decomposition of the direction
//!   matrix, then the largest component per input axis, removing used output axes in order).
//! - `CenterSpatialCrop`: the crop starts at `max(n // 2 - m // 2, 0)`; an axis shorter than the
//!   ROI is kept whole.
//! - `Spacing(pixdim, mode="bilinear")` with its defaults (`padding_mode="border"`,
//!   `align_corners=False`, float64 compute, `diagonal=False`, `scale_extent=False`): a spacing
//!   already within 1e-3 mm of the target is kept; the new affine keeps the rotation from a
//!   Cholesky (QR) factorisation of the old one; the output shape is the rounded (half to even)
//!   extent of the input corners plus one; the origin is the input corner that is lowest along
//!   every output axis, or, when no corner is (oblique grids), MONAI's centre-alignment formula;
//!   when the new grid equals the old one within 1e-3 nothing is resampled.
//! - `NormalizeIntensity(nonzero=True)`: mean and population standard deviation over the nonzero
//!   voxels, those voxels replaced by `(v - mean) / std` (std 0 counts as 1), zeros left as they are.

use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};

use super::image::Image3;
use super::resample::{Grid, ResampleError};
use super::torch_grid::grid_sample_border;

/// MONAI's `AFFINE_TOL`: spacings and affines closer than this count as equal.
const AFFINE_TOL: f64 = 1e-3;

/// Why a MONAI transform cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum MonaiError {
    #[error("the image affine is not invertible")]
    Singular,
    #[error("the image affine has a zero-length axis, so it has no orientation")]
    Degenerate,
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// `Orientation(axcodes="RAS")`: flips and permutes axes (no interpolation) so that i, j, k run
/// closest to R, A and S.
pub fn orientation_ras(img: &Image3) -> Result<Image3, MonaiError> {
    let ornt = io_orientation(&img.affine)?;
    // Output axis ornt[a].0 is input axis a, reversed when ornt[a].1 is set.
    let mut out_dims = [0usize; 3];
    let mut out_affine = Matrix4::identity();
    let mut translation = img.affine.fixed_view::<3, 1>(0, 3).into_owned();
    for (a, &(p, flip)) in ornt.iter().enumerate() {
        out_dims[p] = img.dims[a];
        let col = img.affine.fixed_view::<3, 1>(0, a).into_owned();
        if flip {
            translation += col * (img.dims[a] as f64 - 1.0);
            out_affine.fixed_view_mut::<3, 1>(0, p).copy_from(&(-col));
        } else {
            out_affine.fixed_view_mut::<3, 1>(0, p).copy_from(&col);
        }
    }
    out_affine
        .fixed_view_mut::<3, 1>(0, 3)
        .copy_from(&translation);
    let mut out = Image3::zeros(out_dims, out_affine);
    let mut src = [0usize; 3];
    for k in 0..out_dims[2] {
        for j in 0..out_dims[1] {
            for i in 0..out_dims[0] {
                let o = [i, j, k];
                for (a, &(p, flip)) in ornt.iter().enumerate() {
                    src[a] = if flip { img.dims[a] - 1 - o[p] } else { o[p] };
                }
                let ix = out.index(i, j, k);
                out.data[ix] = img.data[img.index(src[0], src[1], src[2])];
            }
        }
    }
    Ok(out)
}

/// nibabel's `io_orientation`: for each input axis, the RAS axis it runs along and whether it
/// runs backwards.
fn io_orientation(affine: &Matrix4<f64>) -> Result<[(usize, bool); 3], MonaiError> {
    let rzs: Matrix3<f64> = affine.fixed_view::<3, 3>(0, 0).into_owned();
    let mut rs = rzs;
    for c in 0..3 {
        let norm = rzs.column(c).norm();
        let norm = if norm == 0.0 { 1.0 } else { norm };
        rs.set_column(c, &(rzs.column(c) / norm));
    }
    let svd = rs.svd(true, true);
    let (u, v_t) = match (svd.u, svd.v_t) {
        (Some(u), Some(v_t)) => (u, v_t),
        _ => return Err(MonaiError::Degenerate),
    };
    let tol = svd.singular_values.max() * 3.0 * f64::EPSILON;
    if svd.singular_values.iter().any(|&s| s <= tol) {
        return Err(MonaiError::Degenerate);
    }
    let mut r = u * v_t;
    let mut ornt = [(0usize, false); 3];
    for (in_ax, slot) in ornt.iter_mut().enumerate() {
        let col = r.column(in_ax).into_owned();
        // np.argmax: the first of equal maxima.
        let mut out_ax = 0;
        for row in 1..3 {
            if col[row].abs() > col[out_ax].abs() {
                out_ax = row;
            }
        }
        if col[out_ax] == 0.0 {
            return Err(MonaiError::Degenerate);
        }
        *slot = (out_ax, col[out_ax] < 0.0);
        r.row_mut(out_ax).fill(0.0);
    }
    Ok(ornt)
}

/// `CenterSpatialCrop(roi)`: keeps `roi` voxels around `n // 2` on each axis, or the whole axis
/// when it is shorter than the ROI.
pub fn center_spatial_crop(img: &Image3, roi: [usize; 3]) -> Image3 {
    let mut start = [0usize; 3];
    let mut dims = [0usize; 3];
    for a in 0..3 {
        let n = img.dims[a];
        start[a] = (n / 2).saturating_sub(roi[a] / 2);
        dims[a] = (start[a] + roi[a]).min(n) - start[a];
    }
    let mut translate = Matrix4::identity();
    for a in 0..3 {
        translate[(a, 3)] = start[a] as f64;
    }
    let mut out = Image3::zeros(dims, img.affine * translate);
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            let from = img.index(start[0], start[1] + j, start[2] + k);
            let to = out.index(0, j, k);
            out.data[to..to + dims[0]].copy_from_slice(&img.data[from..from + dims[0]]);
        }
    }
    out
}

/// `SpatialPad(size, method="symmetric")` followed by `CenterSpatialCrop(size)`, i.e. MONAI's
/// `ResizeWithPadOrCrop` with zero padding.
pub fn resize_with_pad_or_crop(img: &Image3, size: [usize; 3]) -> Image3 {
    super::resample::crop_or_pad(img, size)
}

/// The grid `Spacing(pixdim)` resamples onto, and whether it resamples at all.
#[derive(Debug, Clone, PartialEq)]
pub struct SpacingPlan {
    /// Output grid (shape and affine).
    pub grid: Grid,
    /// Output voxel to input voxel.
    pub vox2vox: Matrix4<f64>,
    /// True when MONAI returns the input unchanged (same grid within `AFFINE_TOL`).
    pub unchanged: bool,
}

/// Computes the output grid of `Spacing(pixdim)` for an input of `dims` placed by `affine`.
pub fn spacing_plan(
    dims: [usize; 3],
    affine: &Matrix4<f64>,
    pixdim: [f64; 3],
) -> Result<SpacingPlan, MonaiError> {
    let mut out_d = pixdim;
    for (a, d) in out_d.iter_mut().enumerate() {
        let orig = affine.fixed_view::<3, 1>(0, a).norm();
        if (*d - AFFINE_TOL) <= orig && orig <= (*d + AFFINE_TOL) {
            *d = orig;
        }
    }
    let mut new_affine = zoom_affine(affine, out_d)?;
    let (shape, offset) = compute_shape_offset(dims, affine, &new_affine)?;
    new_affine.fixed_view_mut::<3, 1>(0, 3).copy_from(&offset);
    // numpy.linalg.solve(src, dst): an LU solve, not an explicit inverse.
    let vox2vox = affine.lu().solve(&new_affine).ok_or(MonaiError::Singular)?;
    let same_shape = shape == dims;
    let unchanged =
        same_shape && (all_close(affine, &new_affine) || all_close(&vox2vox, &Matrix4::identity()));
    Ok(SpacingPlan {
        grid: Grid {
            dims: shape,
            affine: new_affine,
        },
        vox2vox,
        unchanged,
    })
}

/// `Spacing(pixdim, mode="bilinear")` with MONAI's defaults (border padding, align_corners False).
pub fn spacing(img: &Image3, pixdim: [f64; 3]) -> Result<Image3, MonaiError> {
    let plan = spacing_plan(img.dims, &img.affine, pixdim)?;
    if plan.unchanged {
        return Ok(img.clone());
    }
    Ok(grid_sample_border(img, &plan.grid, &plan.vox2vox))
}

/// torch/numpy `allclose(a, b, rtol=1e-5, atol=AFFINE_TOL)`.
fn all_close(a: &Matrix4<f64>, b: &Matrix4<f64>) -> bool {
    a.iter()
        .zip(b.iter())
        .all(|(x, y)| (x - y).abs() <= AFFINE_TOL + 1e-5 * y.abs())
}

/// MONAI's `zoom_affine(affine, scale, diagonal=False)`: the rotation part of the affine (from the
/// Cholesky factor of `RZSᵀ RZS`) times the new voxel sizes, with a zero translation.
fn zoom_affine(affine: &Matrix4<f64>, scale: [f64; 3]) -> Result<Matrix4<f64>, MonaiError> {
    let rzs: Matrix3<f64> = affine.fixed_view::<3, 3>(0, 0).into_owned();
    let chol = (rzs.transpose() * rzs)
        .cholesky()
        .ok_or(MonaiError::Singular)?;
    let zs = chol.l().transpose();
    let zs_inv = zs.try_inverse().ok_or(MonaiError::Singular)?;
    let rotation = rzs * zs_inv;
    let s = Vector3::from_fn(|a, _| zs[(a, a)].signum() * scale[a].abs());
    let mut out = Matrix4::identity();
    out.fixed_view_mut::<3, 3>(0, 0)
        .copy_from(&(rotation * Matrix3::from_diagonal(&s)));
    Ok(out)
}

/// MONAI's `compute_shape_offset(shape, in_affine, out_affine, scale_extent=False)`.
fn compute_shape_offset(
    dims: [usize; 3],
    in_affine: &Matrix4<f64>,
    out_affine: &Matrix4<f64>,
) -> Result<([usize; 3], Vector3<f64>), MonaiError> {
    let out_inv = out_affine.try_inverse().ok_or(MonaiError::Singular)?;
    let to_out = out_inv * in_affine;
    // np.meshgrid(indexing="ij") over (0, n-1) per axis, flattened: the last axis varies fastest.
    let mut corners = Vec::with_capacity(8);
    for a in [0.0, dims[0] as f64 - 1.0] {
        for b in [0.0, dims[1] as f64 - 1.0] {
            for c in [0.0, dims[2] as f64 - 1.0] {
                corners.push(Vector4::new(a, b, c, 1.0));
            }
        }
    }
    let out: Vec<Vector4<f64>> = corners.iter().map(|c| to_out * c).collect();
    let world: Vec<Vector4<f64>> = corners.iter().map(|c| in_affine * c).collect();
    let mut shape = [0usize; 3];
    for (a, s) in shape.iter_mut().enumerate() {
        let lo = out
            .iter()
            .map(|p| p[a] / p[3])
            .fold(f64::INFINITY, f64::min);
        let hi = out
            .iter()
            .map(|p| p[a] / p[3])
            .fold(f64::NEG_INFINITY, f64::max);
        *s = (hi - lo + 1.0).round_ties_even().max(0.0) as usize;
    }
    for i in 0..out.len() {
        let lowest_everywhere = (0..3).all(|a| {
            let min = out
                .iter()
                .map(|p| p[a] - out[i][a])
                .fold(f64::INFINITY, f64::min);
            min.abs() <= 1e-8
        });
        if lowest_everywhere {
            return Ok((shape, world[i].xyz()));
        }
    }
    let rzs_in = in_affine.fixed_view::<3, 3>(0, 0);
    let rzs_out = out_affine.fixed_view::<3, 3>(0, 0);
    let half_in = Vector3::from_fn(|a, _| dims[a] as f64 / 2.0);
    let half_out = Vector3::from_fn(|a, _| shape[a] as f64 / 2.0);
    let offset = rzs_in * half_in + in_affine.fixed_view::<3, 1>(0, 3) - rzs_out * half_out;
    Ok((shape, offset))
}

/// `NormalizeIntensity(nonzero=True)` in place over all of `values` (one channel).
pub fn normalize_intensity_nonzero(values: &mut [f32]) {
    let nonzero: Vec<f64> = values
        .iter()
        .filter(|&&v| v != 0.0)
        .map(|&v| v as f64)
        .collect();
    if nonzero.is_empty() {
        return;
    }
    let n = nonzero.len() as f64;
    let mean = nonzero.iter().sum::<f64>() / n;
    let var = nonzero.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    let div = if std == 0.0 { 1.0 } else { std };
    for v in values.iter_mut().filter(|v| **v != 0.0) {
        *v = ((*v as f64 - mean) / div) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn las_image_is_flipped_along_i() {
        let mut affine = Matrix4::identity();
        affine[(0, 0)] = -2.0;
        affine[(0, 3)] = 10.0;
        let mut img = Image3::zeros([3, 1, 1], affine);
        img.data.copy_from_slice(&[1.0, 2.0, 3.0]);
        let out = orientation_ras(&img).unwrap();
        assert_eq!(out.data, vec![3.0, 2.0, 1.0]);
        assert_eq!(out.affine[(0, 0)], 2.0);
        assert_eq!(out.affine[(0, 3)], 6.0);
    }

    #[test]
    fn spacing_of_a_two_mm_grid_to_one_mm_doubles_minus_one() {
        let mut affine = Matrix4::identity() * 2.0;
        affine[(3, 3)] = 1.0;
        let plan = spacing_plan([10, 10, 10], &affine, [1.0, 1.0, 1.0]).unwrap();
        assert_eq!(plan.grid.dims, [19, 19, 19]);
        assert!(!plan.unchanged);
        let same = spacing_plan([10, 10, 10], &affine, [2.0005, 2.0, 2.0]).unwrap();
        assert!(same.unchanged);
    }

    #[test]
    fn normalize_ignores_zeros() {
        let mut v = [0.0, 1.0, 3.0, 0.0];
        normalize_intensity_nonzero(&mut v);
        assert_eq!(v, [0.0, -1.0, 1.0, 0.0]);
    }
}
