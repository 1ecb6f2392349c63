//! Diffusion tensor fitting, FA and MD, as MRtrix 3.0.3 `dwi2tensor` and `tensor2metric` compute
//! them with their defaults, because BRAID's models were trained on those maps.
//!
//! Per voxel, with `y = ln S` and the design matrix rows `[1, -b gx², -b gy², -b gz², -2b gx gy,
//! -2b gx gz, -2b gy gz]`:
//! signals below `1e-6 × max(S)` are raised to that floor; the first solve is weighted least
//! squares with weights `w = S` (normal equations `AᵀW²A x = AᵀW²y`); then, as `-iter 2` does,
//! two more solves with weights `w = exp(A x)` from the previous solution. Gradient vectors are
//! normalised and b scaled by their squared norm (MRtrix's b-value scaling); a zero vector makes a
//! row that only carries the intercept. FA is `sqrt(3/2 · |D - tr(D)/3 I|² / |D|²)` and MD is
//! `tr(D)/3` in mm²/s, both rotation invariant, so the gradient frame (image axes here, scanner
//! axes in MRtrix) does not change them.
//!
//! Voxels whose signal is zero throughout, or whose fit is not finite, get FA = MD = 0 (MRtrix
//! writes NaN there); this only happens outside the brain.

use nalgebra::{Matrix3, SVector, SymmetricEigen};
use ndarray::ArrayD;
use rayon::prelude::*;

use super::image::Image3;
use super::mask::Mask;
use crate::volume::{GradientTable, Volume, VoxelData};

/// MRtrix's default number of reweightings after the initial weighted fit.
pub const DEFAULT_ITERATIONS: usize = 2;

/// b-values at or below this count as b=0 (MRtrix's `BZeroThreshold` default).
pub const B_ZERO_THRESHOLD: f64 = 10.0;

/// Why a diffusion series cannot be fitted.
#[derive(Debug, thiserror::Error)]
pub enum DtiError {
    #[error("diffusion series must be 4-D, got shape {0:?}")]
    NotFourD(Vec<usize>),
    #[error("{volumes} volumes but {entries} gradient entries")]
    GradientCount { volumes: usize, entries: usize },
    #[error("no b=0 volume (b ≤ {B_ZERO_THRESHOLD}) among the selected volumes")]
    NoBZero,
    #[error(
        "{0} diffusion-weighted volumes left after shell selection; a tensor needs at least 6 \
         plus a b=0"
    )]
    TooFewVolumes(usize),
    #[error("mask grid {mask:?} differs from the diffusion grid {dwi:?}")]
    MaskGrid { mask: [usize; 3], dwi: [usize; 3] },
}

/// The diffusion volumes kept for fitting, in a flat buffer: volume `t` of voxel `v` is at
/// `v + nvox * t`.
#[derive(Debug, Clone)]
pub struct DwiSeries {
    pub dims: [usize; 3],
    pub affine: nalgebra::Matrix4<f64>,
    pub data: Vec<f32>,
    pub bvals: Vec<f64>,
    pub bvecs: Vec<[f64; 3]>,
}

impl DwiSeries {
    /// Keeps the volumes of `volume` whose b-value is below `b_max` (all when `None`): BRAID fits
    /// b < 1500 only, so that the tensor model's Gaussian assumption holds.
    pub fn select(
        volume: &Volume,
        gradients: &GradientTable,
        b_max: Option<f64>,
    ) -> Result<Self, DtiError> {
        let shape = volume.data.shape().to_vec();
        if shape.len() != 4 {
            return Err(DtiError::NotFourD(shape));
        }
        if shape[3] != gradients.len() {
            return Err(DtiError::GradientCount {
                volumes: shape[3],
                entries: gradients.len(),
            });
        }
        let keep: Vec<usize> = (0..shape[3])
            .filter(|&t| b_max.is_none_or(|b| gradients.bvals[t] < b))
            .collect();
        let dims = [shape[0], shape[1], shape[2]];
        let nvox = dims[0] * dims[1] * dims[2];
        let mut data = vec![0.0f32; nvox * keep.len()];
        // Convert volume by volume from the stored type: a float copy of the whole series first
        // would double the peak memory of a large acquisition.
        match &volume.data {
            VoxelData::U8(a) => copy_volumes(a, &keep, &mut data),
            VoxelData::I16(a) => copy_volumes(a, &keep, &mut data),
            VoxelData::U16(a) => copy_volumes(a, &keep, &mut data),
            VoxelData::I32(a) => copy_volumes(a, &keep, &mut data),
            VoxelData::U32(a) => copy_volumes(a, &keep, &mut data),
            VoxelData::F32(a) => copy_volumes(a, &keep, &mut data),
            VoxelData::F64(a) => copy_volumes(a, &keep, &mut data),
        }
        Ok(DwiSeries {
            dims,
            affine: volume.affine,
            data,
            bvals: keep.iter().map(|&t| gradients.bvals[t]).collect(),
            bvecs: keep.iter().map(|&t| gradients.bvecs[t]).collect(),
        })
    }

    fn nvox(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Mean of the b=0 volumes: the reference image for registration and masking.
    pub fn b0_mean(&self) -> Result<Image3, DtiError> {
        let zeros: Vec<usize> = (0..self.bvals.len())
            .filter(|&t| self.bvals[t] <= B_ZERO_THRESHOLD)
            .collect();
        if zeros.is_empty() {
            return Err(DtiError::NoBZero);
        }
        let nvox = self.nvox();
        let mut out = Image3::zeros(self.dims, self.affine);
        for &t in &zeros {
            for (o, v) in out
                .data
                .iter_mut()
                .zip(&self.data[t * nvox..(t + 1) * nvox])
            {
                *o += *v;
            }
        }
        let n = zeros.len() as f32;
        out.data.iter_mut().for_each(|v| *v /= n);
        Ok(out)
    }
}

/// Copies volumes `keep` of a 4-D array into `out` (one flat i-fastest block per volume).
fn copy_volumes<T: Copy + IntoF32>(array: &ArrayD<T>, keep: &[usize], out: &mut [f32]) {
    let nvox = out.len() / keep.len().max(1);
    for (slot, &t) in keep.iter().enumerate() {
        let vol = array.index_axis(ndarray::Axis(3), t);
        let dst = &mut out[slot * nvox..(slot + 1) * nvox];
        // Reversed axes iterate with i fastest, the flat layout used here.
        let view = vol.t();
        match view.as_slice() {
            Some(src) => dst.iter_mut().zip(src).for_each(|(o, v)| *o = v.into_f32()),
            None => dst
                .iter_mut()
                .zip(view.iter())
                .for_each(|(o, v)| *o = v.into_f32()),
        }
    }
}

/// Lossless-enough conversion of stored voxel types to f32.
trait IntoF32 {
    fn into_f32(self) -> f32;
}

macro_rules! into_f32 {
    ($($t:ty),*) => {$(#[allow(clippy::unnecessary_cast)] impl IntoF32 for $t { #[inline] fn into_f32(self) -> f32 { self as f32 } })*};
}
into_f32!(u8, i16, u16, i32, u32, f32, f64);

/// FA and MD maps on the diffusion grid.
#[derive(Debug, Clone)]
pub struct DtiMaps {
    pub fa: Image3,
    /// Mean diffusivity in mm²/s.
    pub md: Image3,
}

/// The six unique tensor elements in MRtrix order: D11, D22, D33, D12, D13, D23.
pub type Tensor6 = [f64; 6];

type Design = Vec<SVector<f64, 7>>;

/// MRtrix's `grad2bmatrix`, negated: one row per volume.
fn design_matrix(bvals: &[f64], bvecs: &[[f64; 3]]) -> Design {
    bvals
        .iter()
        .zip(bvecs)
        .map(|(&b, g)| {
            let norm = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
            let (b, g) = if norm > 0.0 {
                (b * norm * norm, [g[0] / norm, g[1] / norm, g[2] / norm])
            } else {
                (0.0, [0.0; 3])
            };
            SVector::<f64, 7>::from([
                1.0,
                -b * g[0] * g[0],
                -b * g[1] * g[1],
                -b * g[2] * g[2],
                -2.0 * b * g[0] * g[1],
                -2.0 * b * g[0] * g[2],
                -2.0 * b * g[1] * g[2],
            ])
        })
        .collect()
}

/// Index of element (r, c), r ≥ c, in a packed lower triangle of a 7 × 7 matrix.
const fn packed(r: usize, c: usize) -> usize {
    r * (r + 1) / 2 + c
}

/// The per-voxel solver with what all voxels share precomputed: design rows and their outer
/// products (the normal matrix is Σ wᵢ² aᵢaᵢᵀ, so each voxel only scales and sums them).
pub struct Fitter {
    rows: Vec<[f64; 7]>,
    outer: Vec<[f64; 28]>,
    iterations: usize,
}

impl Fitter {
    /// A fitter for one gradient table and MRtrix's `-iter` count.
    pub fn new(design: &[SVector<f64, 7>], iterations: usize) -> Self {
        let rows: Vec<[f64; 7]> = design
            .iter()
            .map(|r| std::array::from_fn(|c| r[c]))
            .collect();
        let outer = rows
            .iter()
            .map(|row| {
                let mut o = [0.0; 28];
                for r in 0..7 {
                    for c in 0..=r {
                        o[packed(r, c)] = row[r] * row[c];
                    }
                }
                o
            })
            .collect();
        Fitter {
            rows,
            outer,
            iterations,
        }
    }

    /// Fits one voxel: (ln S0, tensor), or `None` when the signal is all zero or the normal
    /// equations are singular. `w` and `y` are scratch space reused across voxels.
    pub fn fit(
        &self,
        signal: &[f64],
        w: &mut Vec<f64>,
        y: &mut Vec<f64>,
    ) -> Option<(f64, Tensor6)> {
        let max = signal.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if max.is_nan() || max <= 0.0 {
            return None;
        }
        let small = 1.0e-6 * max;
        w.clear();
        y.clear();
        for &s in signal {
            let s = if !s.is_finite() || s < small {
                small
            } else {
                s
            };
            w.push(s);
            y.push(s.ln());
        }
        let mut x = [0.0; 7];
        for it in 0..=self.iterations {
            let (mut ata, aty) = self.normal_equations(w, y);
            x = cholesky_solve(&mut ata, aty)?;
            // MRtrix reweights only when -iter > 1, and the weights after the last solve are
            // never used, so they are not computed.
            if self.iterations > 1 && it < self.iterations {
                for (wi, row) in w.iter_mut().zip(&self.rows) {
                    let pred: f64 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
                    *wi = pred.exp();
                }
            }
        }
        if !x.iter().all(|v| v.is_finite()) {
            return None;
        }
        Some((x[0], [x[1], x[2], x[3], x[4], x[5], x[6]]))
    }
}

impl Fitter {
    /// Σ wᵢ² aᵢaᵢᵀ (packed) and Σ wᵢ² yᵢ aᵢ: the hot loop, vectorised where the CPU allows.
    fn normal_equations(&self, w: &[f64], y: &[f64]) -> ([f64; 28], [f64; 7]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { normal_equations_avx2(&self.rows, &self.outer, w, y) };
        }
        normal_equations_generic(&self.rows, &self.outer, w, y)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn normal_equations_avx2(
    rows: &[[f64; 7]],
    outer: &[[f64; 28]],
    w: &[f64],
    y: &[f64],
) -> ([f64; 28], [f64; 7]) {
    normal_equations_generic(rows, outer, w, y)
}

#[inline(always)]
fn normal_equations_generic(
    rows: &[[f64; 7]],
    outer: &[[f64; 28]],
    w: &[f64],
    y: &[f64],
) -> ([f64; 28], [f64; 7]) {
    let mut ata = [0.0; 28];
    let mut aty = [0.0; 7];
    for (((row, outer), &wi), &yi) in rows.iter().zip(outer).zip(w).zip(y) {
        let w2 = wi * wi;
        for (a, o) in ata.iter_mut().zip(outer) {
            *a += w2 * o;
        }
        let wy = w2 * yi;
        for (a, r) in aty.iter_mut().zip(row) {
            *a += wy * r;
        }
    }
    (ata, aty)
}

/// Solves `A x = b` for a symmetric positive definite 7 × 7 `A` given as a packed lower
/// triangle (overwritten by its Cholesky factor); `None` when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64; 28], mut b: [f64; 7]) -> Option<[f64; 7]> {
    for j in 0..7 {
        let mut d = a[packed(j, j)];
        for k in 0..j {
            d -= a[packed(j, k)] * a[packed(j, k)];
        }
        if d.is_nan() || d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[packed(j, j)] = d;
        for i in j + 1..7 {
            let mut v = a[packed(i, j)];
            for k in 0..j {
                v -= a[packed(i, k)] * a[packed(j, k)];
            }
            a[packed(i, j)] = v / d;
        }
    }
    for i in 0..7 {
        for k in 0..i {
            b[i] -= a[packed(i, k)] * b[k];
        }
        b[i] /= a[packed(i, i)];
    }
    for i in (0..7).rev() {
        for k in i + 1..7 {
            b[i] -= a[packed(k, i)] * b[k];
        }
        b[i] /= a[packed(i, i)];
    }
    Some(b)
}

/// Fits one voxel with a one-off [`Fitter`] (tests and single voxels; [`fit`] shares one).
pub fn fit_voxel(
    design: &[SVector<f64, 7>],
    signal: &[f64],
    iterations: usize,
) -> Option<(f64, Tensor6)> {
    Fitter::new(design, iterations).fit(signal, &mut Vec::new(), &mut Vec::new())
}

/// `tensor2metric -adc`: the mean of the eigenvalues, i.e. trace / 3.
pub fn mean_diffusivity(d: &Tensor6) -> f64 {
    (d[0] + d[1] + d[2]) / 3.0
}

/// `tensor2metric -fa`, computed from the tensor elements (equal to the eigenvalue formula).
pub fn fractional_anisotropy(d: &Tensor6) -> f64 {
    let md = mean_diffusivity(d);
    let off = d[3] * d[3] + d[4] * d[4] + d[5] * d[5];
    let norm = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 2.0 * off;
    if norm == 0.0 {
        return 0.0;
    }
    let dev = (d[0] - md).powi(2) + (d[1] - md).powi(2) + (d[2] - md).powi(2) + 2.0 * off;
    (1.5 * dev / norm).sqrt()
}

/// Eigenvalues (descending) and unit eigenvectors (matching columns) of the tensor.
pub fn eigen(d: &Tensor6) -> ([f64; 3], Matrix3<f64>) {
    let m = Matrix3::new(d[0], d[3], d[4], d[3], d[1], d[5], d[4], d[5], d[2]);
    let e = SymmetricEigen::new(m);
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| e.eigenvalues[b].total_cmp(&e.eigenvalues[a]));
    let values = order.map(|i| e.eigenvalues[i]);
    let vectors = Matrix3::from_columns(&order.map(|i| e.eigenvectors.column(i).into_owned()));
    (values, vectors)
}

/// Fits every voxel inside `fit_mask` (all voxels when `None`) and returns FA and MD.
pub fn fit(
    series: &DwiSeries,
    fit_mask: Option<&Mask>,
    iterations: usize,
) -> Result<DtiMaps, DtiError> {
    if let Some(m) = fit_mask
        && m.dims != series.dims
    {
        return Err(DtiError::MaskGrid {
            mask: m.dims,
            dwi: series.dims,
        });
    }
    let nb0 = series
        .bvals
        .iter()
        .filter(|&&b| b <= B_ZERO_THRESHOLD)
        .count();
    if nb0 == 0 {
        return Err(DtiError::NoBZero);
    }
    let ndw = series.bvals.len() - nb0;
    if ndw < 6 {
        return Err(DtiError::TooFewVolumes(ndw));
    }
    let fitter = Fitter::new(&design_matrix(&series.bvals, &series.bvecs), iterations);
    let nvox = series.nvox();
    let nvol = series.bvals.len();
    let slice = series.dims[0] * series.dims[1];
    let mut fa = Image3::zeros(series.dims, series.affine);
    let mut md = Image3::zeros(series.dims, series.affine);
    fa.data
        .par_chunks_mut(slice)
        .zip(md.data.par_chunks_mut(slice))
        .enumerate()
        .for_each(|(k, (fa_slice, md_slice))| {
            let mut signal = vec![0.0f64; nvol];
            let (mut w, mut y) = (Vec::with_capacity(nvol), Vec::with_capacity(nvol));
            for p in 0..slice {
                let v = k * slice + p;
                if fit_mask.is_some_and(|m| !m.inside[v]) {
                    continue;
                }
                for (t, s) in signal.iter_mut().enumerate() {
                    *s = series.data[v + nvox * t] as f64;
                }
                if let Some((_, d)) = fitter.fit(&signal, &mut w, &mut y) {
                    fa_slice[p] = fractional_anisotropy(&d) as f32;
                    md_slice[p] = mean_diffusivity(&d) as f32;
                }
            }
        });
    Ok(DtiMaps { fa, md })
}

/// BRAID's fit: inside `mask` dilated by one voxel, FA and MD then multiplied by the undilated
/// mask. Without a mask every voxel is fitted.
pub fn fit_masked(
    series: &DwiSeries,
    mask: Option<&Mask>,
    iterations: usize,
) -> Result<DtiMaps, DtiError> {
    let Some(mask) = mask else {
        return fit(series, None, iterations);
    };
    let mut maps = fit(series, Some(&mask.dilated()), iterations)?;
    mask.apply(&mut maps.fa);
    mask.apply(&mut maps.md);
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals from a known tensor on a 6-direction + b0 scheme are fitted back exactly.
    #[test]
    fn recovers_a_known_tensor() {
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let bvecs = vec![
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [s, s, 0.0],
            [s, 0.0, s],
            [0.0, s, s],
            [s, -s, 0.0],
        ];
        let bvals = vec![0.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0, 1000.0];
        let d: Tensor6 = [1.7e-3, 0.4e-3, 0.3e-3, 0.1e-3, 0.05e-3, 0.02e-3];
        let design = design_matrix(&bvals, &bvecs);
        let signal: Vec<f64> = design
            .iter()
            .map(|r| {
                let x = SVector::<f64, 7>::from([1000f64.ln(), d[0], d[1], d[2], d[3], d[4], d[5]]);
                r.dot(&x).exp()
            })
            .collect();
        let (ln_s0, fit) = fit_voxel(&design, &signal, DEFAULT_ITERATIONS).unwrap();
        assert!((ln_s0 - 1000f64.ln()).abs() < 1e-9);
        for (a, b) in fit.iter().zip(&d) {
            assert!((a - b).abs() < 1e-12, "{fit:?} vs {d:?}");
        }
        let (l, _) = eigen(&d);
        let mean = (l[0] + l[1] + l[2]) / 3.0;
        let fa_eig = (1.5
            * ((l[0] - mean).powi(2) + (l[1] - mean).powi(2) + (l[2] - mean).powi(2))
            / (l[0] * l[0] + l[1] * l[1] + l[2] * l[2]))
            .sqrt();
        assert!((fa_eig - fractional_anisotropy(&d)).abs() < 1e-12);
        assert!((mean - mean_diffusivity(&d)).abs() < 1e-15);
        assert!(l[0] >= l[1] && l[1] >= l[2]);
    }

    #[test]
    fn zero_signal_is_not_fitted() {
        let design = design_matrix(&[0.0, 1000.0], &[[0.0; 3], [1.0, 0.0, 0.0]]);
        assert!(fit_voxel(&design, &[0.0, 0.0], 2).is_none());
    }
}
