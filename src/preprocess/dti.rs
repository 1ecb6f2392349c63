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
use super::tensor_fit::{Fitter, LANES, Lanes, Scratch};
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

/// The voxels a fit needs, volume-major: volume `t` of the `j`-th voxel (flat grid index
/// `voxels[j]`) is at `data[j + voxels.len() * t]`, so four neighbouring voxels of one volume
/// are adjacent, as a vectorised fit loads them.
#[derive(Debug, Clone)]
pub struct VoxelSeries {
    pub dims: [usize; 3],
    pub affine: nalgebra::Matrix4<f64>,
    /// Flat indices (i fastest) of the voxels held, ascending.
    pub voxels: Vec<usize>,
    pub data: Vec<f32>,
    pub bvals: Vec<f64>,
    pub bvecs: Vec<[f64; 3]>,
}

impl DwiSeries {
    /// The voxels inside `mask` (all voxels when `None`) of every volume.
    pub fn voxels(&self, mask: Option<&Mask>) -> Result<VoxelSeries, DtiError> {
        let nvox = self.nvox();
        let voxels = voxels_inside(self.dims, mask)?;
        let mut data = Vec::with_capacity(voxels.len() * self.bvals.len());
        for volume in self.data.chunks_exact(nvox.max(1)) {
            data.extend(voxels.iter().map(|&v| volume[v]));
        }
        Ok(VoxelSeries {
            dims: self.dims,
            affine: self.affine,
            voxels,
            data,
            bvals: self.bvals.clone(),
            bvecs: self.bvecs.clone(),
        })
    }
}

/// Flat indices (ascending) of the voxels inside `mask`, or of every voxel when `None`.
pub fn voxels_inside(dims: [usize; 3], mask: Option<&Mask>) -> Result<Vec<usize>, DtiError> {
    let nvox = dims[0] * dims[1] * dims[2];
    match mask {
        Some(m) if m.dims != dims => Err(DtiError::MaskGrid {
            mask: m.dims,
            dwi: dims,
        }),
        Some(m) => Ok((0..nvox).filter(|&v| m.inside[v]).collect()),
        None => Ok((0..nvox).collect()),
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

pub(crate) type Design = Vec<SVector<f64, 7>>;

/// MRtrix's `grad2bmatrix`, negated: one row per volume.
pub(crate) fn design_matrix(bvals: &[f64], bvecs: &[[f64; 3]]) -> Design {
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

/// Fits one voxel (tests and single voxels; [`fit_voxels`] shares one [`Fitter`]).
pub fn fit_voxel(
    design: &[SVector<f64, 7>],
    signal: &[f64],
    iterations: usize,
) -> Option<(f64, Tensor6)> {
    let fitter = Fitter::new(rows(design), iterations);
    let lanes: Vec<Lanes> = signal.iter().map(|&s| [s, 0.0, 0.0, 0.0]).collect();
    let [first, ..] = fitter.fit(&lanes, &mut Scratch::default());
    first
}

/// The design as plain rows, as [`Fitter`] takes them.
pub(crate) fn rows(design: &[SVector<f64, 7>]) -> Vec<[f64; 7]> {
    design
        .iter()
        .map(|r| std::array::from_fn(|c| r[c]))
        .collect()
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
    fit_voxels(&series.voxels(fit_mask)?, iterations)
}

/// Voxels per parallel task: large enough to amortise scheduling, small enough to balance.
const BLOCK: usize = 512;

/// Fits every voxel of `series` and returns FA and MD (zero at voxels not held).
pub fn fit_voxels(series: &VoxelSeries, iterations: usize) -> Result<DtiMaps, DtiError> {
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
    let fitter = Fitter::new(
        rows(&design_matrix(&series.bvals, &series.bvecs)),
        iterations,
    );
    let n = series.voxels.len();
    let nvol = series.bvals.len();
    let mut fa_values = vec![0.0f32; n];
    let mut md_values = vec![0.0f32; n];
    fa_values
        .par_chunks_mut(BLOCK)
        .zip(md_values.par_chunks_mut(BLOCK))
        .enumerate()
        .for_each(|(block, (fa, md))| {
            let mut signal = vec![[0.0f64; LANES]; nvol];
            let mut scratch = Scratch::default();
            for (g, (fa, md)) in fa.chunks_mut(LANES).zip(md.chunks_mut(LANES)).enumerate() {
                let first = block * BLOCK + g * LANES;
                // Lanes past the last voxel stay zero, which the fitter skips.
                for (t, s) in signal.iter_mut().enumerate() {
                    let volume = &series.data[n * t..n * (t + 1)];
                    for (l, v) in volume[first..first + fa.len()].iter().enumerate() {
                        s[l] = f64::from(*v);
                    }
                }
                let fits = fitter.fit(&signal, &mut scratch);
                for ((fit, fa), md) in fits.iter().zip(fa.iter_mut()).zip(md.iter_mut()) {
                    if let Some((_, d)) = fit {
                        *fa = fractional_anisotropy(d) as f32;
                        *md = mean_diffusivity(d) as f32;
                    }
                }
            }
        });
    let mut maps = DtiMaps {
        fa: Image3::zeros(series.dims, series.affine),
        md: Image3::zeros(series.dims, series.affine),
    };
    for ((&v, &fa), &md) in series.voxels.iter().zip(&fa_values).zip(&md_values) {
        maps.fa.data[v] = fa;
        maps.md.data[v] = md;
    }
    Ok(maps)
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
    let maps = fit(series, Some(&mask.dilated()), iterations)?;
    Ok(maps.within(mask))
}

impl DtiMaps {
    /// The maps zeroed outside `mask`.
    pub fn within(mut self, mask: &Mask) -> Self {
        mask.apply(&mut self.fa);
        mask.apply(&mut self.md);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A b=0 and seven b=1000 directions: six non-collinear, enough for a tensor.
    fn seven_directions() -> (Vec<f64>, Vec<[f64; 3]>) {
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
        let mut bvals = vec![1000.0; 8];
        bvals[0] = 0.0;
        (bvals, bvecs)
    }

    /// Signals from a known tensor on a b0 + 7-direction scheme are fitted back exactly.
    #[test]
    fn recovers_a_known_tensor() {
        let (bvals, bvecs) = seven_directions();
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

    /// Four voxels fitted together give what each gives alone, and a lane without signal does
    /// not disturb the others.
    #[test]
    fn lanes_are_independent() {
        let (bvals, bvecs) = seven_directions();
        let design = design_matrix(&bvals, &bvecs);
        // Noisy signals, so that the reweighting changes the solution.
        let voxel = |seed: f64| -> Vec<f64> {
            (0..8)
                .map(|t| {
                    let decay = if t == 0 {
                        1.0
                    } else {
                        (-0.7 - 0.1 * seed).exp()
                    };
                    800.0 * decay * (1.0 + 0.05 * (seed * 7.3 + t as f64 * 2.1).sin())
                })
                .collect()
        };
        let signals = [voxel(1.0), vec![0.0; 8], voxel(2.0), voxel(3.0)];
        let fitter = Fitter::new(rows(&design), DEFAULT_ITERATIONS);
        let lanes: Vec<Lanes> = (0..8)
            .map(|t| std::array::from_fn(|l| signals[l][t]))
            .collect();
        let together = fitter.fit(&lanes, &mut Scratch::default());
        assert!(together[1].is_none());
        for (l, signal) in signals.iter().enumerate() {
            assert_eq!(together[l], fit_voxel(&design, signal, DEFAULT_ITERATIONS));
        }
        assert!(together[0] != together[2] && together[2].is_some());
    }

    #[test]
    fn zero_signal_is_not_fitted() {
        let design = design_matrix(&[0.0, 1000.0], &[[0.0; 3], [1.0, 0.0, 0.0]]);
        assert!(fit_voxel(&design, &[0.0, 0.0], 2).is_none());
    }
}
