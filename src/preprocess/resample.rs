//! Resampling between voxel grids that are given by affines.
//!
//! Every resampler here pulls: for each output voxel it finds the input position through a
//! voxel-to-voxel matrix and interpolates there. Interpolation follows PyTorch's `grid_sample`
//! (which MONAI uses) so that one implementation serves both general resampling and the MONAI
//! reimplementations: trilinear weights from the floor of the position, corners outside the grid
//! contribute nothing, and `Border` clamps the position into the grid first. Nearest rounds half to
//! even, as `grid_sample` does. Work is split over k-slices with rayon.

use nalgebra::{Matrix4, Vector4};
use rayon::prelude::*;

use super::image::Image3;

/// Why a resampling could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("the {0} affine is not invertible")]
    Singular(&'static str),
    #[error("output grid {0:?} is empty")]
    EmptyGrid([usize; 3]),
}

/// How values between voxel centres are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    /// The closest voxel (ties to even), for labels and masks.
    Nearest,
    /// Trilinear interpolation ("bilinear" in PyTorch and MONAI).
    Linear,
}

/// What a position outside the input grid reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Corners outside the grid count as zero.
    Zeros,
    /// The position is clamped into the grid (MONAI's default for `Spacing`).
    Border,
}

/// An output grid: its size and its voxel-to-RAS affine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub dims: [usize; 3],
    pub affine: Matrix4<f64>,
}

/// Resamples `src` onto `grid` through world coordinates (both affines map to the same RAS space).
pub fn resample_to_grid(
    src: &Image3,
    grid: &Grid,
    interp: Interp,
    padding: Padding,
) -> Result<Image3, ResampleError> {
    let inv = src
        .affine
        .try_inverse()
        .ok_or(ResampleError::Singular("input"))?;
    resample_vox(src, grid, &(inv * grid.affine), interp, padding)
}

/// Resamples `src` onto `grid`, where `vox2vox` maps an output voxel (i, j, k, 1) to an input voxel.
pub fn resample_vox(
    src: &Image3,
    grid: &Grid,
    vox2vox: &Matrix4<f64>,
    interp: Interp,
    padding: Padding,
) -> Result<Image3, ResampleError> {
    if grid.dims.contains(&0) {
        return Err(ResampleError::EmptyGrid(grid.dims));
    }
    let mut out = Image3::zeros(grid.dims, grid.affine);
    let [ni, nj, _] = grid.dims;
    let m = *vox2vox;
    out.data
        .par_chunks_mut(ni * nj)
        .enumerate()
        .for_each(|(k, slice)| {
            for j in 0..nj {
                let row = m * Vector4::new(0.0, j as f64, k as f64, 1.0);
                for i in 0..ni {
                    let fi = i as f64;
                    let p = [
                        row[0] + m[(0, 0)] * fi,
                        row[1] + m[(1, 0)] * fi,
                        row[2] + m[(2, 0)] * fi,
                    ];
                    slice[i + ni * j] = sample(src, p, interp, padding) as f32;
                }
            }
        });
    Ok(out)
}

/// The value of `src` at continuous voxel position `p`.
#[inline]
pub fn sample(src: &Image3, p: [f64; 3], interp: Interp, padding: Padding) -> f64 {
    let mut p = p;
    if padding == Padding::Border {
        for (c, n) in p.iter_mut().zip(src.dims) {
            *c = c.clamp(0.0, (n - 1) as f64);
        }
    }
    match interp {
        Interp::Nearest => nearest(src, p),
        Interp::Linear => trilinear(src, p),
    }
}

fn nearest(src: &Image3, p: [f64; 3]) -> f64 {
    let mut idx = [0usize; 3];
    for a in 0..3 {
        let r = p[a].round_ties_even();
        if !(r >= 0.0 && r < src.dims[a] as f64) {
            return 0.0;
        }
        idx[a] = r as usize;
    }
    src.data[src.index(idx[0], idx[1], idx[2])] as f64
}

fn trilinear(src: &Image3, p: [f64; 3]) -> f64 {
    if !(p[0].is_finite() && p[1].is_finite() && p[2].is_finite()) {
        return 0.0;
    }
    let f = [p[0].floor(), p[1].floor(), p[2].floor()];
    let t = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
    let base = [f[0] as i64, f[1] as i64, f[2] as i64];
    let dims = src.dims.map(|d| d as i64);
    let mut acc = 0.0;
    for dk in 0..2i64 {
        let k = base[2] + dk;
        if k < 0 || k >= dims[2] {
            continue;
        }
        let wk = if dk == 0 { 1.0 - t[2] } else { t[2] };
        for dj in 0..2i64 {
            let j = base[1] + dj;
            if j < 0 || j >= dims[1] {
                continue;
            }
            let wj = if dj == 0 { 1.0 - t[1] } else { t[1] };
            for di in 0..2i64 {
                let i = base[0] + di;
                if i < 0 || i >= dims[0] {
                    continue;
                }
                let wi = if di == 0 { 1.0 - t[0] } else { t[0] };
                let v = src.data[src.index(i as usize, j as usize, k as usize)] as f64;
                acc += wi * wj * wk * v;
            }
        }
    }
    acc
}

/// Crops or zero-pads `src` to `dims`, centred as MONAI's `ResizeWithPadOrCrop` centres it: an
/// axis longer than wanted keeps `[n/2 - m/2, n/2 - m/2 + m)`, a shorter one gets `(m - n)/2`
/// zeros before it. The affine is shifted so that every kept voxel stays where it was in space.
pub fn crop_or_pad(src: &Image3, dims: [usize; 3]) -> Image3 {
    // Output voxel o reads input voxel o + shift (negative shift = padding before).
    let shift: [i64; 3] = std::array::from_fn(|a| {
        let (n, m) = (src.dims[a] as i64, dims[a] as i64);
        if n >= m {
            n / 2 - m / 2
        } else {
            -((m - n) / 2)
        }
    });
    let mut translate = Matrix4::identity();
    for a in 0..3 {
        translate[(a, 3)] = shift[a] as f64;
    }
    let mut out = Image3::zeros(dims, src.affine * translate);
    let [ni, nj, _] = dims;
    out.data
        .par_chunks_mut(ni * nj)
        .enumerate()
        .for_each(|(k, slice)| {
            let sk = k as i64 + shift[2];
            if sk < 0 || sk >= src.dims[2] as i64 {
                return;
            }
            for j in 0..nj {
                let sj = j as i64 + shift[1];
                if sj < 0 || sj >= src.dims[1] as i64 {
                    continue;
                }
                for i in 0..ni {
                    let si = i as i64 + shift[0];
                    if si < 0 || si >= src.dims[0] as i64 {
                        continue;
                    }
                    slice[i + ni * j] = src.data[src.index(si as usize, sj as usize, sk as usize)];
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Image3 {
        let mut img = Image3::zeros([4, 5, 6], Matrix4::identity());
        for k in 0..6 {
            for j in 0..5 {
                for i in 0..4 {
                    let ix = img.index(i, j, k);
                    img.data[ix] = (i + 2 * j + 3 * k) as f32;
                }
            }
        }
        img
    }

    #[test]
    fn trilinear_reproduces_a_linear_field_inside_the_grid() {
        let img = ramp();
        let v = sample(&img, [1.25, 2.5, 3.75], Interp::Linear, Padding::Zeros);
        assert!((v - (1.25 + 5.0 + 11.25)).abs() < 1e-9);
    }

    #[test]
    fn border_clamps_and_zeros_fades() {
        let img = ramp();
        let b = sample(&img, [-3.0, 0.0, 0.0], Interp::Linear, Padding::Border);
        assert_eq!(b, 0.0);
        let b = sample(&img, [3.5, 4.0, 5.0], Interp::Linear, Padding::Border);
        assert!((b - (3.0 + 8.0 + 15.0)).abs() < 1e-9);
        let z = sample(&img, [3.5, 4.0, 5.0], Interp::Linear, Padding::Zeros);
        assert!((z - 0.5 * (3.0 + 8.0 + 15.0)).abs() < 1e-9);
    }

    #[test]
    fn identity_grid_returns_the_input() {
        let img = ramp();
        let grid = Grid {
            dims: img.dims,
            affine: img.affine,
        };
        let out = resample_to_grid(&img, &grid, Interp::Nearest, Padding::Zeros).unwrap();
        assert_eq!(out.data, img.data);
    }

    #[test]
    fn crop_then_pad_keeps_world_positions() {
        let img = ramp();
        let out = crop_or_pad(&img, [2, 7, 6]);
        // Axis 0 cropped from 4 to 2: keeps i = 1, 2. Axis 1 padded from 5 to 7: one zero first.
        assert_eq!(out.data[out.index(0, 1, 0)], img.data[img.index(1, 0, 0)]);
        assert_eq!(out.data[out.index(0, 0, 0)], 0.0);
        let world_out = out.affine * Vector4::new(0.0, 1.0, 0.0, 1.0);
        let world_in = img.affine * Vector4::new(1.0, 0.0, 0.0, 1.0);
        assert!((world_out - world_in).norm() < 1e-12);
    }
}
