//! PyTorch's `affine_grid` + `grid_sample` (3-D, trilinear, border padding, align_corners=False,
//! float64) as MONAI's `Spacing` drives them, reproduced operation by operation.
//!
//! Mathematically this is plain trilinear resampling through a voxel-to-voxel matrix, which
//! [`super::resample`] does. The floating-point path matters, though: PyTorch reaches each sample
//! position through normalised [-1, 1] coordinates, so positions that are whole voxels in exact
//! arithmetic land a rounding error off them, and a zero voxel next to tissue then reads 1e-13
//! instead of 0. `NormalizeIntensity(nonzero=True)` counts such voxels as brain and maps them to
//! `-mean/std`, so BRAID's T1 inputs carry a ring of them and a faithful recipe must too. The
//! steps below follow ATen's kernels: `linspace` (fused multiply-add, halves from each end),
//! `range * (n-1) / n`, MONAI's `to_norm_affine` (sequential 4 × 4 products, inverse by
//! reciprocals), the grid product (`x·θ₀` then two fused multiply-adds, then the translation),
//! `((g + 1)·n − 1) / 2`, clamping, and the eight corner weights in ATen's order.
//!
//! Limits: on grids whose voxel-to-voxel matrix is diagonal (the template grid BRAID's maps live
//! on, any axis-aligned grid) the result matches MONAI bit for bit in the tests. On oblique grids
//! the matrix comes from `numpy.linalg.solve` (OpenBLAS LU, CPU-specific kernels), which is not
//! reproduced to the last bit, so a few boundary voxels can differ between exactly 0 here and
//! ~1e-15 in MONAI: 8 of 1.2 M voxels when a native oblique GE T1 goes straight through the T1
//! chain, which then differ by `mean/std` after NormalizeIntensity. Values elsewhere agree to
//! float32 rounding.

use nalgebra::Matrix4;
use rayon::prelude::*;

use super::image::Image3;
use super::resample::Grid;

/// `torch.linspace(-1, 1, n) * (n - 1) / n` in float64.
fn base_coords(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![0.0; n];
    }
    let step = 2.0 / (n - 1) as f64;
    let half = n / 2;
    (0..n)
        .map(|i| {
            let v = if i < half {
                step.mul_add(i as f64, -1.0)
            } else {
                (-step).mul_add((n - i - 1) as f64, 1.0)
            };
            v * (n - 1) as f64 / n as f64
        })
        .collect()
}

/// MONAI's `normalize_transform(shape, align_corners=False)`.
fn normalize_transform(dims: [usize; 3]) -> Matrix4<f64> {
    let mut m = Matrix4::identity();
    for a in 0..3 {
        let n = dims[a] as f64;
        m[(a, a)] = 2.0 / n;
        m[(a, 3)] = 1.0 / n - 1.0;
    }
    m
}

/// The inverse of a [`normalize_transform`] matrix as LAPACK computes it (reciprocal diagonal).
fn inverse_normalize(m: &Matrix4<f64>) -> Matrix4<f64> {
    let mut inv = Matrix4::identity();
    for a in 0..3 {
        inv[(a, a)] = 1.0 / m[(a, a)];
        inv[(a, 3)] = -m[(a, 3)] * inv[(a, a)];
    }
    inv
}

/// A 4 × 4 product summed left to right without fused operations (ATen's small-bmm kernel).
fn matmul(a: &Matrix4<f64>, b: &Matrix4<f64>) -> Matrix4<f64> {
    let mut r = Matrix4::zeros();
    for i in 0..4 {
        for j in 0..4 {
            let mut acc = 0.0;
            for k in 0..4 {
                acc += a[(i, k)] * b[(k, j)];
            }
            r[(i, j)] = acc;
        }
    }
    r
}

/// Resamples `src` onto `grid` where `vox2vox` maps output voxels to input voxels, as
/// `AffineTransform(normalized=False, mode="bilinear", padding_mode="border",
/// align_corners=False)` does in float64; the result is rounded to f32 as MONAI returns it.
pub fn grid_sample_border(src: &Image3, grid: &Grid, vox2vox: &Matrix4<f64>) -> Image3 {
    let theta = matmul(
        &matmul(&normalize_transform(src.dims), vox2vox),
        &inverse_normalize(&normalize_transform(grid.dims)),
    );
    let lin: [Vec<f64>; 3] = std::array::from_fn(|a| base_coords(grid.dims[a]));
    let mut out = Image3::zeros(grid.dims, grid.affine);
    let [ni, nj, _] = grid.dims;
    out.data
        .par_chunks_mut(ni * nj)
        .enumerate()
        .for_each(|(k, slice)| {
            let zk = lin[2][k];
            for j in 0..nj {
                let yj = lin[1][j];
                for i in 0..ni {
                    let xi = lin[0][i];
                    // Input axis a; ATen's x is the last (k) axis, so k's term comes first.
                    let pos: [f64; 3] = std::array::from_fn(|a| {
                        let g = xi
                            .mul_add(theta[(a, 0)], yj.mul_add(theta[(a, 1)], zk * theta[(a, 2)]))
                            + theta[(a, 3)];
                        let n = src.dims[a] as f64;
                        let p = ((g + 1.0) * n - 1.0) / 2.0;
                        (n - 1.0).min(p.max(0.0))
                    });
                    slice[i + ni * j] = trilinear_aten(src, pos) as f32;
                }
            }
        });
    out
}

/// ATen's `grid_sampler_3d` bilinear step: x = k, y = j, z = i; weights multiply x·y·z; the
/// corners accumulate in the order tnw, tne, tsw, tse, bnw, bne, bsw, bse.
fn trilinear_aten(src: &Image3, pos: [f64; 3]) -> f64 {
    let (iz, iy, ix) = (pos[0], pos[1], pos[2]);
    if !(ix.is_finite() && iy.is_finite() && iz.is_finite()) {
        return 0.0;
    }
    let (x0, y0, z0) = (ix.floor(), iy.floor(), iz.floor());
    let (x1, y1, z1) = (x0 + 1.0, y0 + 1.0, z0 + 1.0);
    let wx = [x1 - ix, ix - x0];
    let wy = [y1 - iy, iy - y0];
    let wz = [z1 - iz, iz - z0];
    let (bx, by, bz) = (x0 as i64, y0 as i64, z0 as i64);
    let dims = src.dims.map(|d| d as i64);
    let mut acc = 0.0;
    for (dz, wz) in wz.iter().enumerate() {
        for (dy, wy) in wy.iter().enumerate() {
            for (dx, wx) in wx.iter().enumerate() {
                let w = wx * wy * wz;
                let (x, y, z) = (bx + dx as i64, by + dy as i64, bz + dz as i64);
                if z >= 0 && z < dims[0] && y >= 0 && y < dims[1] && x >= 0 && x < dims[2] {
                    let v = src.data[src.index(z as usize, y as usize, x as usize)] as f64;
                    acc += v * w;
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_coords_are_pixel_centres() {
        let c = base_coords(4);
        let want = [-0.75, -0.25, 0.25, 0.75];
        for (a, b) in c.iter().zip(want) {
            assert!((a - b).abs() < 1e-15);
        }
    }

    #[test]
    fn identity_resampling_returns_the_input() {
        let mut img = Image3::zeros([5, 4, 3], Matrix4::identity());
        img.data
            .iter_mut()
            .enumerate()
            .for_each(|(n, v)| *v = n as f32);
        let grid = Grid {
            dims: img.dims,
            affine: img.affine,
        };
        let out = grid_sample_border(&img, &grid, &Matrix4::identity());
        for (a, b) in out.data.iter().zip(&img.data) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
