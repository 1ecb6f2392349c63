//! The working image of registration: one f32 scalar per voxel on a grid given by an affine.
//!
//! Registration touches every voxel many times per iteration, so it works on a flat `Vec<f32>` in
//! NIfTI order (i fastest) rather than on the general [`Volume`]; conversion happens once at the
//! edges. It holds the same voxels in the same order as `preprocess`'s [`Image3`], is moved to and
//! from it without copying, and becomes a [`Volume`] the same way. Sampling follows ITK's
//! conventions for outside points so that warps behave as ANTs' do: a point more than half a voxel
//! outside the grid reads as 0, a point inside the half-voxel rim reads the border voxel.

use nalgebra::{Matrix4, Vector3};
use rayon::prelude::*;

use super::RegisterError;
use crate::preprocess::image::{Image3, float_volume};
use crate::volume::Volume;

/// Size and placement of a voxel grid: what images and displacement fields share.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Voxels along i, j, k.
    pub dims: [usize; 3],
    /// Voxel (i, j, k) to RAS+ millimetres.
    pub affine: Matrix4<f64>,
}

impl Grid {
    /// A grid; the affine must be invertible (checked where it is inverted).
    pub fn new(dims: [usize; 3], affine: Matrix4<f64>) -> Self {
        Self { dims, affine }
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// True for a grid without voxels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Voxel sizes in millimetres.
    pub fn spacing(&self) -> [f64; 3] {
        let col = |c: usize| self.affine.fixed_view::<3, 1>(0, c).norm();
        [col(0), col(1), col(2)]
    }

    /// RAS+ millimetres to continuous voxel index.
    pub fn world_to_index(&self) -> Result<Matrix4<f64>, RegisterError> {
        self.affine
            .try_inverse()
            .ok_or(RegisterError::SingularAffine("image grid"))
    }

    /// Flat index of voxel (i, j, k).
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// World position of voxel (i, j, k).
    pub fn world(&self, i: usize, j: usize, k: usize) -> Vector3<f64> {
        let p = self.affine * nalgebra::Vector4::new(i as f64, j as f64, k as f64, 1.0);
        Vector3::new(p.x, p.y, p.z)
    }

    /// The eight corner voxels' world positions (for step-size estimates).
    pub fn corners(&self) -> Vec<Vector3<f64>> {
        let mut out = Vec::with_capacity(8);
        for c in 0..8 {
            let pick = |axis: usize| {
                if c >> axis & 1 == 1 {
                    self.dims[axis].saturating_sub(1)
                } else {
                    0
                }
            };
            out.push(self.world(pick(0), pick(1), pick(2)));
        }
        out
    }
}

/// A scalar image on a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Where the voxels are.
    pub grid: Grid,
    /// Intensities, i fastest.
    pub data: Vec<f32>,
}

impl Image {
    /// An image of zeros.
    pub fn zeros(grid: Grid) -> Self {
        let data = vec![0.0; grid.len()];
        Self { grid, data }
    }

    /// Takes a 3-D volume (or a 4-D one with a single volume) as float intensities.
    pub fn from_volume(volume: &Volume) -> Result<Self, RegisterError> {
        Image3::from_volume(volume)
            .map(Self::from)
            .map_err(|_| RegisterError::NotThreeD(volume.data.shape().to_vec()))
    }

    /// The image as a float [`Volume`] (for writing and for the rest of the pipeline).
    pub fn to_volume(&self) -> Volume {
        float_volume(self.grid.dims, self.data.clone(), self.grid.affine)
    }

    /// Trilinear value at continuous voxel index `p`; 0 beyond the half-voxel rim.
    #[inline]
    pub fn sample_linear(&self, p: [f32; 3]) -> f32 {
        sample_linear(&self.data, &self.grid.dims, p)
    }

    /// Nearest-neighbour value at continuous voxel index `p`; 0 outside the grid.
    #[inline]
    pub fn sample_nearest(&self, p: [f32; 3]) -> f32 {
        let d = self.grid.dims;
        let r = |v: f32, n: usize| {
            let r = v.round();
            if r < 0.0 || r > (n - 1) as f32 {
                None
            } else {
                Some(r as usize)
            }
        };
        match (r(p[0], d[0]), r(p[1], d[1]), r(p[2], d[2])) {
            (Some(i), Some(j), Some(k)) => self.data[self.grid.index(i, j, k)],
            _ => 0.0,
        }
    }

    /// Intensity gradient in world coordinates (mm⁻¹), by central differences in index space
    /// (one-sided at the borders), one vector field as three planes.
    pub fn gradient_world(&self) -> Result<[Vec<f32>; 3], RegisterError> {
        let d = self.grid.dims;
        let n = self.grid.len();
        // d(intensity)/d(world) = J^-T d/d(index), J the affine's 3×3 part.
        let j = self.grid.affine.fixed_view::<3, 3>(0, 0).into_owned();
        let jit = j
            .try_inverse()
            .ok_or(RegisterError::SingularAffine("image grid"))?
            .transpose();
        let m: [[f32; 3]; 3] = [
            [jit[(0, 0)] as f32, jit[(0, 1)] as f32, jit[(0, 2)] as f32],
            [jit[(1, 0)] as f32, jit[(1, 1)] as f32, jit[(1, 2)] as f32],
            [jit[(2, 0)] as f32, jit[(2, 1)] as f32, jit[(2, 2)] as f32],
        ];
        let mut gx = vec![0.0f32; n];
        let mut gy = vec![0.0f32; n];
        let mut gz = vec![0.0f32; n];
        let slab = d[0] * d[1];
        gx.par_chunks_mut(slab)
            .zip(gy.par_chunks_mut(slab))
            .zip(gz.par_chunks_mut(slab))
            .enumerate()
            .for_each(|(k, ((sx, sy), sz))| {
                for jj in 0..d[1] {
                    for i in 0..d[0] {
                        let g = index_gradient(&self.data, &d, i, jj, k);
                        let o = i + d[0] * jj;
                        sx[o] = m[0][0] * g[0] + m[0][1] * g[1] + m[0][2] * g[2];
                        sy[o] = m[1][0] * g[0] + m[1][1] * g[1] + m[1][2] * g[2];
                        sz[o] = m[2][0] * g[0] + m[2][1] * g[1] + m[2][2] * g[2];
                    }
                }
            });
        Ok([gx, gy, gz])
    }

    /// Clamps intensities to the `lower` and `upper` quantiles and rescales them to [0, 1], as
    /// antsRegistration's `--winsorize-image-intensities` does before any metric is computed.
    pub fn winsorise(&mut self, lower: f64, upper: f64) {
        if self.data.is_empty() {
            return;
        }
        let mut sorted: Vec<f32> = self
            .data
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if sorted.is_empty() {
            return;
        }
        let q = |f: f64, s: &mut Vec<f32>| {
            let at = ((s.len() - 1) as f64 * f).round() as usize;
            let (_, v, _) = s.select_nth_unstable_by(at, |a, b| a.total_cmp(b));
            *v
        };
        let lo = q(lower, &mut sorted);
        let hi = q(upper, &mut sorted);
        let range = if hi > lo { hi - lo } else { 1.0 };
        self.data.par_iter_mut().for_each(|v| {
            let c = if v.is_finite() { v.clamp(lo, hi) } else { lo };
            *v = (c - lo) / range;
        });
    }
}

/// Central-difference gradient in index units at voxel (i, j, k).
#[inline]
fn index_gradient(data: &[f32], d: &[usize; 3], i: usize, j: usize, k: usize) -> [f32; 3] {
    let at = |i: usize, j: usize, k: usize| data[i + d[0] * (j + d[1] * k)];
    let diff = |lo: f32, hi: f32, span: f32| (hi - lo) / span;
    let along = |c: usize, n: usize, get: &dyn Fn(usize) -> f32| {
        if n < 2 {
            0.0
        } else if c == 0 {
            diff(get(0), get(1), 1.0)
        } else if c == n - 1 {
            diff(get(n - 2), get(n - 1), 1.0)
        } else {
            diff(get(c - 1), get(c + 1), 2.0)
        }
    };
    [
        along(i, d[0], &|x| at(x, j, k)),
        along(j, d[1], &|y| at(i, y, k)),
        along(k, d[2], &|z| at(i, j, z)),
    ]
}

/// The registration view of a `preprocess` image: the same voxels in the same order, moved.
impl From<Image3> for Image {
    fn from(img: Image3) -> Self {
        Self {
            grid: Grid::new(img.dims, img.affine),
            data: img.data,
        }
    }
}

impl From<Image> for Image3 {
    fn from(img: Image) -> Self {
        Self {
            dims: img.grid.dims,
            data: img.data,
            affine: img.grid.affine,
        }
    }
}

/// Trilinear interpolation of a plane of values on `dims` at continuous index `p`, with ITK's
/// outside rule (0 beyond half a voxel, border value within it).
#[inline]
pub fn sample_linear(data: &[f32], dims: &[usize; 3], p: [f32; 3]) -> f32 {
    let mut base = [0usize; 3];
    let mut next = [0usize; 3];
    let mut frac = [0f32; 3];
    for a in 0..3 {
        let n = dims[a];
        let v = p[a];
        if !(v >= -0.5 && v <= n as f32 - 0.5) {
            return 0.0;
        }
        // v ≥ −0.5 here, so truncation is floor except on (−0.5, 0); avoids a libm call.
        let b = v as isize - isize::from(v < 0.0);
        let t = v - b as f32;
        let lo = b.clamp(0, n as isize - 1) as usize;
        let hi = (b + 1).clamp(0, n as isize - 1) as usize;
        base[a] = lo;
        next[a] = hi;
        frac[a] = t;
    }
    let nx = dims[0];
    let nxy = dims[0] * dims[1];
    let (x0, x1) = (base[0], next[0]);
    let (y0, y1) = (base[1] * nx, next[1] * nx);
    let (z0, z1) = (base[2] * nxy, next[2] * nxy);
    let [tx, ty, tz] = frac;
    let c00 = data[x0 + y0 + z0] + tx * (data[x1 + y0 + z0] - data[x0 + y0 + z0]);
    let c10 = data[x0 + y1 + z0] + tx * (data[x1 + y1 + z0] - data[x0 + y1 + z0]);
    let c01 = data[x0 + y0 + z1] + tx * (data[x1 + y0 + z1] - data[x0 + y0 + z1]);
    let c11 = data[x0 + y1 + z1] + tx * (data[x1 + y1 + z1] - data[x0 + y1 + z1]);
    let c0 = c00 + ty * (c10 - c00);
    let c1 = c01 + ty * (c11 - c01);
    c0 + tz * (c1 - c0)
}

/// The eight neighbours and weights of trilinear interpolation at continuous index `p`, with
/// the same outside rule as [`sample_linear`]; `None` outside. Lets a vector field (three planes)
/// be read with one weight computation.
#[inline]
pub fn trilinear_weights(dims: &[usize; 3], p: [f32; 3]) -> Option<([usize; 8], [f32; 8])> {
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    let mut t = [0f32; 3];
    for a in 0..3 {
        let n = dims[a];
        let v = p[a];
        if !(v >= -0.5 && v <= n as f32 - 0.5) {
            return None;
        }
        let b = v as isize - isize::from(v < 0.0);
        t[a] = v - b as f32;
        lo[a] = b.clamp(0, n as isize - 1) as usize;
        hi[a] = (b + 1).clamp(0, n as isize - 1) as usize;
    }
    let nx = dims[0];
    let nxy = dims[0] * dims[1];
    let xs = [lo[0], hi[0]];
    let ys = [lo[1] * nx, hi[1] * nx];
    let zs = [lo[2] * nxy, hi[2] * nxy];
    let wx = [1.0 - t[0], t[0]];
    let wy = [1.0 - t[1], t[1]];
    let wz = [1.0 - t[2], t[2]];
    let mut idx = [0usize; 8];
    let mut w = [0f32; 8];
    for c in 0..8 {
        let (a, b, z) = (c & 1, c >> 1 & 1, c >> 2 & 1);
        idx[c] = xs[a] + ys[b] + zs[z];
        w[c] = wx[a] * wy[b] * wz[z];
    }
    Some((idx, w))
}

/// A 3×4 matrix in f32 for the per-voxel inner loops (world↔index maps).
#[derive(Debug, Clone, Copy)]
pub struct Affine3x4(pub [[f32; 4]; 3]);

impl Affine3x4 {
    /// Top three rows of a homogeneous matrix.
    pub fn from_matrix(m: &Matrix4<f64>) -> Self {
        let mut a = [[0f32; 4]; 3];
        for (r, row) in a.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = m[(r, c)] as f32;
            }
        }
        Self(a)
    }

    /// Maps a point.
    #[inline]
    pub fn apply(&self, p: [f32; 3]) -> [f32; 3] {
        let a = &self.0;
        [
            a[0][0] * p[0] + a[0][1] * p[1] + a[0][2] * p[2] + a[0][3],
            a[1][0] * p[0] + a[1][1] * p[1] + a[1][2] * p[2] + a[1][3],
            a[2][0] * p[0] + a[2][1] * p[1] + a[2][2] * p[2] + a[2][3],
        ]
    }

    /// Maps a vector (no translation).
    #[inline]
    pub fn apply_vector(&self, v: [f32; 3]) -> [f32; 3] {
        let a = &self.0;
        [
            a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
            a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
            a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
        ]
    }
}
