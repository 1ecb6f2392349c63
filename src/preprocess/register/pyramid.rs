//! The multi-resolution schedule: Gaussian smoothing then shrinking, coarse to fine.
//!
//! antsRegistration's `--shrink-factors 8x4x2x1 --smoothing-sigmas 3x2x1x0vox` means: at each
//! level smooth the full-resolution image with σ given in its voxels, then take every n-th voxel
//! (centred on the grid) as the level's grid. Coarse levels find the large motions cheaply, fine
//! levels only refine.

use nalgebra::Matrix4;
use rayon::prelude::*;

use super::image::{Grid, Image};
use super::transform::fill_voxels;

/// Shrink factors and smoothing σ (full-resolution voxels), one pair per level, coarse first.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Integer shrink factor per level.
    pub shrink: Vec<usize>,
    /// Gaussian σ in voxels of the full-resolution image per level (0 = none).
    pub sigma_vox: Vec<f64>,
}

impl Schedule {
    /// The schedule of `antsRegistrationSyN.sh`: 8×4×2×1, σ 3×2×1×0 voxels.
    pub fn ants_default() -> Self {
        Self {
            shrink: vec![8, 4, 2, 1],
            sigma_vox: vec![3.0, 2.0, 1.0, 0.0],
        }
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.shrink.len().min(self.sigma_vox.len())
    }
}

/// Smoothing then shrinking of `image` for one level.
pub fn level_image(image: &Image, shrink: usize, sigma_vox: f64) -> Image {
    let smoothed = smooth_image(image, sigma_vox);
    if shrink <= 1 {
        smoothed
    } else {
        shrink_image(&smoothed, shrink)
    }
}

/// Gaussian smoothing with the same σ (in voxels) along every axis.
pub fn smooth_image(image: &Image, sigma_vox: f64) -> Image {
    if sigma_vox <= 0.0 {
        return image.clone();
    }
    Image {
        grid: image.grid.clone(),
        data: gaussian(&image.data, &image.grid.dims, [sigma_vox; 3]),
    }
}

/// The grid of a level: every `factor`-th voxel, centred so that the shrunk grid covers the same
/// physical extent symmetrically.
pub fn shrink_grid(grid: &Grid, factor: usize) -> (Grid, [f64; 3]) {
    let mut dims = [0usize; 3];
    let mut offset = [0f64; 3];
    for a in 0..3 {
        let n = grid.dims[a];
        let m = (n / factor).max(1);
        dims[a] = m;
        offset[a] = (n as f64 - 1.0 - (factor * (m - 1)) as f64) / 2.0;
    }
    let mut scale = Matrix4::identity();
    for a in 0..3 {
        scale[(a, a)] = factor as f64;
        scale[(a, 3)] = offset[a];
    }
    (Grid::new(dims, grid.affine * scale), offset)
}

/// Takes every `factor`-th voxel (linear interpolation where the centring falls between voxels).
pub fn shrink_image(image: &Image, factor: usize) -> Image {
    let (grid, offset) = shrink_grid(&image.grid, factor);
    let d = grid.dims;
    let f = factor as f32;
    let mut out = Image::zeros(grid);
    fill_voxels(&mut out.data, &d, |i, j, k| {
        image.sample_linear([
            i as f32 * f + offset[0] as f32,
            j as f32 * f + offset[1] as f32,
            k as f32 * f + offset[2] as f32,
        ])
    });
    out
}

/// Separable Gaussian filter of a plane on `dims`, σ per axis in voxels, kernel cut at 3σ,
/// borders replicated (ITK's zero-flux Neumann condition).
pub fn gaussian(data: &[f32], dims: &[usize; 3], sigma: [f64; 3]) -> Vec<f32> {
    let mut a = data.to_vec();
    let mut b = vec![0f32; data.len()];
    for axis in 0..3 {
        if sigma[axis] <= 0.0 || dims[axis] < 2 {
            continue;
        }
        let w = kernel(sigma[axis]);
        pass(&a, &mut b, dims, axis, &w);
        std::mem::swap(&mut a, &mut b);
    }
    a
}

fn kernel(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let w: Vec<f64> = (-r..=r)
        .map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|v| (v / s) as f32).collect()
}

/// One 1-D convolution along `axis`. Along j and k whole rows/slabs are combined, which keeps
/// memory access sequential.
fn pass(src: &[f32], dst: &mut [f32], dims: &[usize; 3], axis: usize, w: &[f32]) {
    let (nx, ny, nz) = (dims[0], dims[1], dims[2]);
    let r = (w.len() / 2) as isize;
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    match axis {
        0 => dst
            .par_chunks_mut(nx)
            .zip(src.par_chunks(nx))
            .for_each(|(out, row)| {
                let ru = r as usize;
                let edge = |i: usize| {
                    let mut s = 0.0;
                    for (t, wt) in w.iter().enumerate() {
                        s += wt * row[clamp(i as isize + t as isize - r, nx)];
                    }
                    s
                };
                if nx <= 2 * ru {
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = edge(i);
                    }
                    return;
                }
                // Interior: one shifted multiply-add per tap over the whole run (vectorises).
                let inner = &mut out[ru..nx - ru];
                inner.fill(0.0);
                for (t, wt) in w.iter().enumerate() {
                    for (o, v) in inner.iter_mut().zip(&row[t..t + nx - 2 * ru]) {
                        *o += wt * v;
                    }
                }
                for i in (0..ru).chain(nx - ru..nx) {
                    out[i] = edge(i);
                }
            }),
        1 => dst
            .par_chunks_mut(nx * ny)
            .zip(src.par_chunks(nx * ny))
            .for_each(|(out, slab)| {
                for j in 0..ny {
                    let o = &mut out[j * nx..(j + 1) * nx];
                    o.fill(0.0);
                    for (t, wt) in w.iter().enumerate() {
                        let jj = clamp(j as isize + t as isize - r, ny);
                        let row = &slab[jj * nx..(jj + 1) * nx];
                        for (a, b) in o.iter_mut().zip(row) {
                            *a += wt * b;
                        }
                    }
                }
            }),
        _ => {
            let slab = nx * ny;
            dst.par_chunks_mut(slab).enumerate().for_each(|(k, out)| {
                out.fill(0.0);
                for (t, wt) in w.iter().enumerate() {
                    let kk = clamp(k as isize + t as isize - r, nz);
                    let plane = &src[kk * slab..(kk + 1) * slab];
                    for (a, b) in out.iter_mut().zip(plane) {
                        *a += wt * b;
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_matches_brute_force_with_replicated_borders() {
        let dims = [17, 5, 4];
        let src: Vec<f32> = (0..17 * 5 * 4).map(|v| ((v * 29) % 13) as f32).collect();
        let got = gaussian(&src, &dims, [1.5, 0.8, 0.0]);
        let wx = kernel(1.5);
        let wy = kernel(0.8);
        let (rx, ry) = ((wx.len() / 2) as isize, (wy.len() / 2) as isize);
        let c = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
        for k in 0..4 {
            for j in 0..5isize {
                for i in 0..17isize {
                    let mut s = 0.0f32;
                    for (b, wb) in wy.iter().enumerate() {
                        for (a, wa) in wx.iter().enumerate() {
                            let ii = c(i + a as isize - rx, 17);
                            let jj = c(j + b as isize - ry, 5);
                            s += wa * wb * src[ii + 17 * (jj + 5 * k)];
                        }
                    }
                    let at = i as usize + 17 * (j as usize + 5 * k);
                    assert!((got[at] - s).abs() < 1e-4, "{i} {j} {k}");
                }
            }
        }
    }
}
