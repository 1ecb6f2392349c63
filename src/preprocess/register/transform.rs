//! Spatial transforms in physical (RAS+ millimetre) space and their application to images.
//!
//! Convention, as in ITK and ANTs: a transform maps a point of the *fixed* (output) space to the
//! point of the *moving* (input) space whose intensity it receives. Warping an image therefore
//! pulls values back: `warped(x) = moving(T(x))`. A [`Chain`] applies its steps first to last
//! to the fixed point; a registration result is `[field, affine]`, i.e. `moving = A(x + u(x))`.
//!
//! Files: an affine is JSON (`{"format": "brainaged-affine-v1", "convention": ..., "matrix":
//! [[4 numbers] × 4]}`, the homogeneous 4×4 fixed→moving matrix in RAS+ mm). A displacement
//! field is a float32 NIfTI of shape (i, j, k, 3) on its own grid whose three components are
//! the displacement in RAS+ mm (not ITK's LPS 5-D layout); the point x maps to x + u(x).

use std::path::Path;

use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::RegisterError;
use super::image::{Affine3x4, Grid, Image, trilinear_weights};
use crate::nifti_io;
use crate::volume::{Volume, VolumeMeta, VoxelData};

/// A linear transform: a homogeneous 4×4 matrix mapping fixed points to moving points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineTransform {
    /// Fixed RAS+ mm → moving RAS+ mm.
    pub matrix: Matrix4<f64>,
}

impl AffineTransform {
    /// The identity.
    pub fn identity() -> Self {
        Self {
            matrix: Matrix4::identity(),
        }
    }

    /// A translation by `t` mm.
    pub fn translation(t: Vector3<f64>) -> Self {
        let mut matrix = Matrix4::identity();
        matrix.fixed_view_mut::<3, 1>(0, 3).copy_from(&t);
        Self { matrix }
    }

    /// `x ↦ a (x − c) + c + t`: the centred parameterisation the optimiser works in.
    pub fn from_centred(a: &Matrix3<f64>, centre: &Vector3<f64>, t: &Vector3<f64>) -> Self {
        let mut matrix = Matrix4::identity();
        matrix.fixed_view_mut::<3, 3>(0, 0).copy_from(a);
        let offset = centre - a * centre + t;
        matrix.fixed_view_mut::<3, 1>(0, 3).copy_from(&offset);
        Self { matrix }
    }

    /// The 3×3 linear part.
    pub fn linear(&self) -> Matrix3<f64> {
        self.matrix.fixed_view::<3, 3>(0, 0).into_owned()
    }

    /// Maps one point.
    pub fn apply(&self, p: &Vector3<f64>) -> Vector3<f64> {
        let h = self.matrix * Vector4::new(p.x, p.y, p.z, 1.0);
        Vector3::new(h.x, h.y, h.z)
    }

    /// The inverse (moving → fixed).
    pub fn inverse(&self) -> Result<Self, RegisterError> {
        let matrix = self
            .matrix
            .try_inverse()
            .ok_or(RegisterError::SingularAffine("affine transform"))?;
        Ok(Self { matrix })
    }

    /// `self ∘ inner`: `inner` is applied first.
    pub fn after(&self, inner: &AffineTransform) -> Self {
        Self {
            matrix: self.matrix * inner.matrix,
        }
    }

    /// Writes the documented JSON form.
    pub fn write_json(&self, path: &Path) -> Result<(), RegisterError> {
        let rows: Vec<[f64; 4]> = (0..4)
            .map(|r| [0, 1, 2, 3].map(|c| self.matrix[(r, c)]))
            .collect();
        let file = AffineFile {
            format: AFFINE_FORMAT.to_string(),
            convention: AFFINE_CONVENTION.to_string(),
            matrix: rows,
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| RegisterError::BadFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|source| RegisterError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads the JSON form written by [`AffineTransform::write_json`].
    pub fn read_json(path: &Path) -> Result<Self, RegisterError> {
        let bad = |reason: String| RegisterError::BadFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| RegisterError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let file: AffineFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.format != AFFINE_FORMAT || file.matrix.len() != 4 {
            return Err(bad(format!("not a {AFFINE_FORMAT} file")));
        }
        let mut matrix = Matrix4::zeros();
        for (r, row) in file.matrix.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                matrix[(r, c)] = *v;
            }
        }
        Ok(Self { matrix })
    }
}

const AFFINE_FORMAT: &str = "brainaged-affine-v1";
const AFFINE_CONVENTION: &str =
    "homogeneous 4x4 matrix, rows; maps fixed RAS+ mm to moving RAS+ mm (warped(x) = moving(Mx))";

#[derive(Serialize, Deserialize)]
struct AffineFile {
    format: String,
    convention: String,
    matrix: Vec<[f64; 4]>,
}

/// A dense displacement field on a grid: the point x maps to x + u(x), u in RAS+ mm, linearly
/// interpolated between voxels and continued from the border outside the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct DisplacementField {
    /// Where the vectors are.
    pub grid: Grid,
    /// The three world components as separate planes, so that smoothing and sampling run on
    /// contiguous f32 runs.
    pub u: [Vec<f32>; 3],
}

impl DisplacementField {
    /// The zero field on `grid`.
    pub fn zeros(grid: Grid) -> Self {
        let n = grid.len();
        Self {
            grid,
            u: [vec![0.0; n], vec![0.0; n], vec![0.0; n]],
        }
    }

    /// The displacement at world point `p`. Outside the grid the border vector is continued
    /// (nearest-neighbour extrapolation, as ITK composes fields): a zero there would make a
    /// jump, and a composed or inverted field would fold along the grid's edge.
    #[inline]
    pub fn displacement_at(&self, to_index: &Affine3x4, p: [f32; 3]) -> [f32; 3] {
        let q = to_index.apply(p);
        let d = &self.grid.dims;
        let q = [
            q[0].clamp(0.0, (d[0] - 1) as f32),
            q[1].clamp(0.0, (d[1] - 1) as f32),
            q[2].clamp(0.0, (d[2] - 1) as f32),
        ];
        match trilinear_weights(&self.grid.dims, q) {
            Some((idx, w)) => {
                let mut out = [0f32; 3];
                for (c, plane) in self.u.iter().enumerate() {
                    let mut s = 0.0;
                    for n in 0..8 {
                        s += w[n] * plane[idx[n]];
                    }
                    out[c] = s;
                }
                out
            }
            None => [0.0; 3],
        }
    }

    /// The field resampled (linearly) onto another grid: how a level's field is carried to the
    /// next, finer level.
    pub fn resampled(&self, grid: &Grid) -> Result<Self, RegisterError> {
        let to_index = Affine3x4::from_matrix(&self.grid.world_to_index()?);
        let from = Affine3x4::from_matrix(&grid.affine);
        let mut out = Self::zeros(grid.clone());
        let d = grid.dims;
        for_each_voxel(&mut out.u, &d, |i, j, k| {
            let p = from.apply([i as f32, j as f32, k as f32]);
            self.displacement_at(&to_index, p)
        });
        Ok(out)
    }

    /// `outer ∘ self` on this field's grid: `x ↦ x + u(x) + outer_u(x + u(x))`.
    pub fn then(&self, outer: &DisplacementField) -> Result<Self, RegisterError> {
        let outer_index = Affine3x4::from_matrix(&outer.grid.world_to_index()?);
        let from = Affine3x4::from_matrix(&self.grid.affine);
        let d = self.grid.dims;
        let mut out = Self::zeros(self.grid.clone());
        for_each_voxel(&mut out.u, &d, |i, j, k| {
            let at = self.grid.index(i, j, k);
            let inner = [self.u[0][at], self.u[1][at], self.u[2][at]];
            let p = from.apply([i as f32, j as f32, k as f32]);
            let q = [p[0] + inner[0], p[1] + inner[1], p[2] + inner[2]];
            let o = outer.displacement_at(&outer_index, q);
            [inner[0] + o[0], inner[1] + o[1], inner[2] + o[2]]
        });
        Ok(out)
    }

    /// The inverse field on the same grid by fixed-point iteration `v(y) = −u(y + v(y))`
    /// (ITK's InvertDisplacementFieldImageFilter idea), stopping after `iterations` or when the
    /// largest residual is below `tolerance_mm`. `start` seeds the iteration (a previous
    /// inverse), which makes repeated inversions cheap.
    pub fn inverse(
        &self,
        iterations: usize,
        tolerance_mm: f32,
        start: Option<&DisplacementField>,
    ) -> Result<Self, RegisterError> {
        let to_index = Affine3x4::from_matrix(&self.grid.world_to_index()?);
        let from = Affine3x4::from_matrix(&self.grid.affine);
        let d = self.grid.dims;
        let mut v = match start {
            Some(s) if s.grid == self.grid => s.clone(),
            _ => Self::zeros(self.grid.clone()),
        };
        for _ in 0..iterations {
            let mut next = Self::zeros(self.grid.clone());
            for_each_voxel(&mut next.u, &d, |i, j, k| {
                let at = self.grid.index(i, j, k);
                let y = from.apply([i as f32, j as f32, k as f32]);
                let q = [y[0] + v.u[0][at], y[1] + v.u[1][at], y[2] + v.u[2][at]];
                let u = self.displacement_at(&to_index, q);
                [-u[0], -u[1], -u[2]]
            });
            let change = max_difference(&next, &v);
            v = next;
            if change < tolerance_mm {
                break;
            }
        }
        Ok(v)
    }

    /// Jacobian determinant of `x ↦ x + u(x)` at every voxel (central differences, one-sided at
    /// the border). Positive everywhere means the map folds nowhere.
    pub fn jacobian_determinant(&self) -> Result<Vec<f32>, RegisterError> {
        let minv = self.index_to_world_derivative()?;
        let d = self.grid.dims;
        let mut out = vec![0f32; self.grid.len()];
        fill_voxels(&mut out, &d, |i, j, k| {
            (Matrix3::identity() + self.gradient_at([i, j, k], &minv)).determinant() as f32
        });
        Ok(out)
    }

    /// The largest Frobenius norm of the displacement gradient `∂u/∂x` over the grid. Below 1,
    /// `x ↦ x + u(x)` cannot fold (`I + ∂u/∂x` is invertible) and the fixed-point inversion of
    /// [`DisplacementField::inverse`] is a contraction, so it converges.
    pub fn max_gradient_norm(&self) -> Result<f32, RegisterError> {
        let minv = self.index_to_world_derivative()?;
        let d = self.grid.dims;
        let max = (0..d[2])
            .into_par_iter()
            .map(|k| {
                let mut max = 0f64;
                for j in 0..d[1] {
                    for i in 0..d[0] {
                        max = max.max(self.gradient_at([i, j, k], &minv).norm());
                    }
                }
                max
            })
            .reduce(|| 0.0, f64::max);
        Ok(max as f32)
    }

    /// The inverse of the grid's index→world linear part: index derivatives times it give
    /// world derivatives.
    fn index_to_world_derivative(&self) -> Result<Matrix3<f64>, RegisterError> {
        let m = self.grid.affine.fixed_view::<3, 3>(0, 0).into_owned();
        m.try_inverse()
            .ok_or(RegisterError::SingularAffine("field grid"))
    }

    /// `∂u_c/∂x_a` (world) at a voxel: central differences, one-sided at the border.
    fn gradient_at(&self, at: [usize; 3], minv: &Matrix3<f64>) -> Matrix3<f64> {
        let d = self.grid.dims;
        let mut di = Matrix3::<f64>::zeros();
        for a in 0..3 {
            let (lo, hi, span) = neighbours(a, at, &d);
            if span <= 0.0 {
                continue;
            }
            for c in 0..3 {
                let g = (self.u[c][self.grid.index(hi[0], hi[1], hi[2])]
                    - self.u[c][self.grid.index(lo[0], lo[1], lo[2])])
                    as f64;
                di[(c, a)] = g / span;
            }
        }
        di * minv
    }

    /// Writes the field as a float32 NIfTI (i, j, k, 3), components in RAS+ mm.
    pub fn write_nifti(&self, path: &Path) -> Result<(), RegisterError> {
        let d = self.grid.dims;
        let mut flat = Vec::with_capacity(self.grid.len() * 3);
        for plane in &self.u {
            flat.extend_from_slice(plane);
        }
        let shape = [d[0], d[1], d[2], 3];
        let array = ArrayD::from_shape_vec(IxDyn(&shape).f(), flat).map_err(|e| {
            RegisterError::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let volume = Volume {
            data: VoxelData::F32(array),
            affine: self.grid.affine,
            meta: VolumeMeta::default(),
            gradients: None,
        };
        nifti_io::write_volume(path, &volume)?;
        Ok(())
    }

    /// Reads a field written by [`DisplacementField::write_nifti`].
    pub fn read_nifti(path: &Path) -> Result<Self, RegisterError> {
        let volume = nifti_io::read_volume_f32(path)?;
        let shape = volume.data.shape().to_vec();
        let dims = match shape.as_slice() {
            [x, y, z, 3] => [*x, *y, *z],
            [x, y, z, 1, 3] => [*x, *y, *z],
            _ => {
                return Err(RegisterError::BadFile {
                    path: path.display().to_string(),
                    reason: format!("a displacement field has shape (i, j, k, 3), not {shape:?}"),
                });
            }
        };
        let array = volume.data.to_f32();
        let grid = Grid::new(dims, volume.affine);
        let n = grid.len();
        let flat: Vec<f32> = array.t().iter().copied().collect();
        if flat.len() != 3 * n {
            return Err(RegisterError::BadFile {
                path: path.display().to_string(),
                reason: "voxel count does not match the shape".into(),
            });
        }
        Ok(Self {
            grid,
            u: [
                flat[..n].to_vec(),
                flat[n..2 * n].to_vec(),
                flat[2 * n..].to_vec(),
            ],
        })
    }
}

fn neighbours(axis: usize, at: [usize; 3], d: &[usize; 3]) -> ([usize; 3], [usize; 3], f64) {
    let n = d[axis];
    let c = at[axis];
    let (lo, hi) = if n < 2 {
        (c, c)
    } else if c == 0 {
        (0, 1)
    } else if c == n - 1 {
        (n - 2, n - 1)
    } else {
        (c - 1, c + 1)
    };
    let mut a = at;
    let mut b = at;
    a[axis] = lo;
    b[axis] = hi;
    (a, b, (hi - lo) as f64)
}

fn max_difference(a: &DisplacementField, b: &DisplacementField) -> f32 {
    (0..a.grid.len())
        .into_par_iter()
        .map(|n| {
            let d0 = a.u[0][n] - b.u[0][n];
            let d1 = a.u[1][n] - b.u[1][n];
            let d2 = a.u[2][n] - b.u[2][n];
            (d0 * d0 + d1 * d1 + d2 * d2).sqrt()
        })
        .reduce(|| 0.0, f32::max)
}

/// Fills a scalar image, i fastest, with `f(i, j, k)`, one k-slab per rayon task: the loop
/// every resampling of this module shares (the three-plane twin is [`for_each_voxel`]).
pub(crate) fn fill_voxels<F>(out: &mut [f32], dims: &[usize; 3], f: F)
where
    F: Fn(usize, usize, usize) -> f32 + Sync,
{
    let slab = (dims[0] * dims[1]).max(1);
    out.par_chunks_mut(slab).enumerate().for_each(|(k, s)| {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                s[i + dims[0] * j] = f(i, j, k);
            }
        }
    });
}

/// Fills three planes on `dims` in parallel over k-slabs with `f(i, j, k)`.
pub(crate) fn for_each_voxel<F>(planes: &mut [Vec<f32>; 3], dims: &[usize; 3], f: F)
where
    F: Fn(usize, usize, usize) -> [f32; 3] + Sync,
{
    let slab = dims[0] * dims[1];
    let [p0, p1, p2] = planes;
    p0.par_chunks_mut(slab)
        .zip(p1.par_chunks_mut(slab))
        .zip(p2.par_chunks_mut(slab))
        .enumerate()
        .for_each(|(k, ((s0, s1), s2))| {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let v = f(i, j, k);
                    let o = i + dims[0] * j;
                    s0[o] = v[0];
                    s1[o] = v[1];
                    s2[o] = v[2];
                }
            }
        });
}

/// One step of a [`Chain`].
#[derive(Debug, Clone)]
pub enum Step {
    /// A linear map.
    Affine(AffineTransform),
    /// A dense displacement field.
    Field(DisplacementField),
}

/// Transforms applied first to last to a fixed-space point.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// In application order.
    pub steps: Vec<Step>,
}

/// How to read the moving image between voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Trilinear: intensities.
    Linear,
    /// Nearest neighbour: labels and masks.
    Nearest,
}

/// A step prepared for the inner loop: matrices in f32, the field's world→index map cached.
enum Prepared<'a> {
    Affine(Affine3x4),
    Field(&'a DisplacementField, Affine3x4),
}

impl Chain {
    /// A chain of one affine.
    pub fn affine(a: AffineTransform) -> Self {
        Self {
            steps: vec![Step::Affine(a)],
        }
    }

    /// Maps one fixed point to the moving space.
    pub fn apply(&self, p: &Vector3<f64>) -> Result<Vector3<f64>, RegisterError> {
        let prepared = self.prepare()?;
        let q = apply_prepared(&prepared, [p.x as f32, p.y as f32, p.z as f32]);
        Ok(Vector3::new(q[0] as f64, q[1] as f64, q[2] as f64))
    }

    fn prepare(&self) -> Result<Vec<Prepared<'_>>, RegisterError> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Affine(a) => Ok(Prepared::Affine(Affine3x4::from_matrix(&a.matrix))),
                Step::Field(f) => Ok(Prepared::Field(
                    f,
                    Affine3x4::from_matrix(&f.grid.world_to_index()?),
                )),
            })
            .collect()
    }
}

#[inline]
fn apply_prepared(steps: &[Prepared<'_>], mut p: [f32; 3]) -> [f32; 3] {
    for s in steps {
        p = match s {
            Prepared::Affine(a) => a.apply(p),
            Prepared::Field(f, to_index) => {
                let u = f.displacement_at(to_index, p);
                [p[0] + u[0], p[1] + u[1], p[2] + u[2]]
            }
        };
    }
    p
}

/// Resamples `moving` onto `onto` through `chain`: `out(x) = moving(chain(x))`, 0 outside.
pub fn warp(
    moving: &Image,
    onto: &Grid,
    chain: &Chain,
    interpolation: Interpolation,
) -> Result<Image, RegisterError> {
    let prepared = chain.prepare()?;
    let to_moving = moving.grid.world_to_index()?;
    let from = Affine3x4::from_matrix(&onto.affine);
    let to_index = Affine3x4::from_matrix(&to_moving);
    // A purely affine chain folds into one voxel→voxel matrix.
    let folded = if chain.steps.iter().all(|s| matches!(s, Step::Affine(_))) {
        let mut m = to_moving;
        for s in chain.steps.iter().rev() {
            if let Step::Affine(a) = s {
                m *= a.matrix;
            }
        }
        Some(Affine3x4::from_matrix(&(m * onto.affine)))
    } else {
        None
    };
    let mut out = Image::zeros(onto.clone());
    fill_voxels(&mut out.data, &onto.dims, |i, j, k| {
        let v = [i as f32, j as f32, k as f32];
        let idx = match &folded {
            Some(m) => m.apply(v),
            None => to_index.apply(apply_prepared(&prepared, from.apply(v))),
        };
        match interpolation {
            Interpolation::Linear => moving.sample_linear(idx),
            Interpolation::Nearest => moving.sample_nearest(idx),
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Grid {
        let mut a = Matrix4::identity();
        a[(0, 0)] = 1.0;
        a[(1, 1)] = 1.0;
        a[(2, 2)] = 1.25;
        a[(0, 3)] = -20.0;
        a[(1, 3)] = -22.0;
        a[(2, 3)] = -18.0;
        Grid::new([41, 45, 29], a)
    }

    /// A smooth field with gradients well below 1, so it is invertible.
    fn smooth_field(g: &Grid) -> DisplacementField {
        let mut f = DisplacementField::zeros(g.clone());
        let d = g.dims;
        for k in 0..d[2] {
            for j in 0..d[1] {
                for i in 0..d[0] {
                    let p = g.world(i, j, k);
                    let r2 = p.norm_squared();
                    let e = (-r2 / (2.0 * 8.0 * 8.0)).exp() as f32;
                    let at = g.index(i, j, k);
                    f.u[0][at] = 2.5 * e;
                    f.u[1][at] = -1.5 * e;
                    f.u[2][at] = 1.0 * e;
                }
            }
        }
        f
    }

    #[test]
    fn max_gradient_norm_of_a_linear_field_is_its_matrix_norm() {
        // u(x) = G x has ∂u/∂x = G everywhere, and differences of a linear function are exact,
        // on an anisotropic grid and at the border alike.
        let g = grid();
        let m = Matrix3::new(0.1, -0.2, 0.05, 0.3, 0.0, -0.1, 0.02, 0.15, -0.25);
        let mut f = DisplacementField::zeros(g.clone());
        let d = g.dims;
        for_each_voxel(&mut f.u, &d, |i, j, k| {
            let v = m * g.world(i, j, k);
            [v.x as f32, v.y as f32, v.z as f32]
        });
        let got = f.max_gradient_norm().unwrap() as f64;
        assert!((got - m.norm()).abs() < 1e-4, "{got} vs {}", m.norm());
        let det = (Matrix3::identity() + m).determinant();
        let jac = f.jacobian_determinant().unwrap();
        assert!(jac.iter().all(|j| (*j as f64 - det).abs() < 1e-4));
    }

    #[test]
    fn inverse_field_undoes_the_field_inside_the_grid() {
        let g = grid();
        let f = smooth_field(&g);
        let inv = f.inverse(30, 1e-4, None).unwrap();
        let both = f.then(&inv).unwrap();
        let d = g.dims;
        let mut worst = 0.0f32;
        for k in 2..d[2] - 2 {
            for j in 2..d[1] - 2 {
                for i in 2..d[0] - 2 {
                    let n = g.index(i, j, k);
                    let e =
                        (both.u[0][n].powi(2) + both.u[1][n].powi(2) + both.u[2][n].powi(2)).sqrt();
                    worst = worst.max(e);
                }
            }
        }
        // Linear interpolation of a bump of σ 8 mm on a 1 mm grid: ≈ 0.04 mm, halving the spacing
        // quarters it (second order), so this is discretisation, not a wrong inverse.
        assert!(worst < 0.06, "x + u + v(x + u) is off by {worst} mm");
        let jac = f.jacobian_determinant().unwrap();
        assert!(jac.iter().all(|j| *j > 0.0));
    }

    #[test]
    fn affine_json_and_field_nifti_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Matrix4::identity();
        m[(0, 1)] = 0.1;
        m[(2, 3)] = -4.25;
        let a = AffineTransform { matrix: m };
        let path = dir.path().join("affine.json");
        a.write_json(&path).unwrap();
        assert_eq!(AffineTransform::read_json(&path).unwrap(), a);
        let f = smooth_field(&grid());
        let path = dir.path().join("warp.nii.gz");
        f.write_nifti(&path).unwrap();
        let back = DisplacementField::read_nifti(&path).unwrap();
        assert_eq!(back.grid.dims, f.grid.dims);
        assert!((back.grid.affine - f.grid.affine).abs().max() < 1e-5);
        assert_eq!(back.u, f.u);
    }

    #[test]
    fn affine_warp_matches_pointwise_chain() {
        let g = grid();
        let mut img = Image::zeros(g.clone());
        for (n, v) in img.data.iter_mut().enumerate() {
            *v = (n % 97) as f32;
        }
        let mut m = Matrix4::identity();
        m[(0, 3)] = 1.0; // one voxel along i
        let warped = warp(
            &img,
            &g,
            &Chain::affine(AffineTransform { matrix: m }),
            Interpolation::Linear,
        )
        .unwrap();
        for k in 0..g.dims[2] {
            for j in 0..g.dims[1] {
                for i in 0..g.dims[0] - 1 {
                    assert_eq!(
                        warped.data[g.index(i, j, k)],
                        img.data[g.index(i + 1, j, k)]
                    );
                }
            }
        }
    }
}
