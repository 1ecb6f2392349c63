//! Symmetric diffeomorphic normalisation (SyN, Avants et al., Med Image Anal 2008) with
//! Gaussian-regularised displacement fields and a local-CC metric: ANTs' `SyN[0.1,3,0]` with
//! `CC[F,M,1,4]`.
//!
//! Both images are pulled into a middle (virtual) space on the fixed grid: the fixed one through
//! `φf`, the moving one through `φm` after the affine. Each iteration computes the CC gradient
//! for both sides, smooths each update with a Gaussian of variance `update_variance` voxels²
//! (ANTs' second SyN parameter is a variance, so σ = √3 voxels for "3"), then scales it so its
//! largest vector is `gradient_step` voxels, composes it into its field and, if
//! `total_variance > 0`, smooths the total field. Small smooth updates composed keep each field a
//! diffeomorphism. The order matters: smoothing after scaling (as this module once did) shrinks
//! the step several-fold, and SyN then gains far less per iteration than ANTs does.
//!
//! One safeguard ANTs lacks: an update that would take either field's displacement gradient past
//! [`MAX_FIELD_GRADIENT`] (measured on the level's grid) ends the level. Below it a field cannot
//! fold and its fixed-point inverse converges; without it, a whole-head subject against the
//! brain-only template is compressed without bound and the composed transform folds.
//!
//! Unlike ANTs, the fields are not inverted at every iteration: warping only needs `φf` and `φm`,
//! so inverses are computed once at the end, which removes most of the cost. The result is the
//! fixed→moving field `u = φm ∘ φf⁻¹` and its inverse `φf ∘ φm⁻¹`, both on the fixed grid.

use rayon::prelude::*;

use super::RegisterError;
use super::image::{Affine3x4, Grid, Image};
use super::linear::window_converged;
use super::metric::local_cc;
use super::pyramid::{Schedule, gaussian, shrink_grid, smooth_image};
use super::transform::{AffineTransform, DisplacementField, fill_voxels, for_each_voxel};

/// Settings of the SyN stage; [`SynParams::ants_syn_defaults`] is the reference chain's.
#[derive(Debug, Clone, PartialEq)]
pub struct SynParams {
    /// Largest update per iteration, in voxels of the level grid.
    pub gradient_step: f64,
    /// Variance (voxels²) of the Gaussian applied to each update.
    pub update_variance: f64,
    /// Variance (voxels²) of the Gaussian applied to the total field (0 = none).
    pub total_variance: f64,
    /// Radius of the local CC window (voxels).
    pub cc_radius: usize,
    /// Iteration budget per level, coarse first.
    pub iterations: Vec<usize>,
    /// Shrink factors and smoothing per level.
    pub schedule: Schedule,
    /// Convergence: relative slope of the CC window below which a level stops.
    pub convergence_threshold: f64,
    /// Convergence: number of recent CC values the slope is fitted to.
    pub convergence_window: usize,
    /// Iterations of the fixed-point field inversion.
    pub inverse_iterations: usize,
}

impl SynParams {
    /// `antsRegistrationSyN.sh -t s`: SyN[0.1,3,0], CC radius 4, 100×70×50×20 iterations,
    /// shrink 8×4×2×1, smoothing 3×2×1×0 voxels, convergence 1e-6 over 10 iterations.
    pub fn ants_syn_defaults() -> Self {
        Self {
            gradient_step: 0.1,
            update_variance: 3.0,
            total_variance: 0.0,
            cc_radius: 4,
            iterations: vec![100, 70, 50, 20],
            schedule: Schedule::ants_default(),
            convergence_threshold: 1e-6,
            convergence_window: 10,
            inverse_iterations: 20,
        }
    }
}

/// The deformable part of a registration, on the fixed grid.
#[derive(Debug, Clone)]
pub struct SynResult {
    /// Fixed point x → pre-affine moving point x + u(x); the moving point is `A(x + u(x))`.
    pub forward: DisplacementField,
    /// Pre-affine moving point y → fixed point y + v(y).
    pub inverse: DisplacementField,
}

/// Runs SyN between `fixed` and `moving`, with `affine` (fixed→moving) already found.
pub fn register_syn(
    fixed: &Image,
    moving: &Image,
    affine: &AffineTransform,
    params: &SynParams,
) -> Result<SynResult, RegisterError> {
    let mut phi_f: Option<DisplacementField> = None;
    let mut phi_m: Option<DisplacementField> = None;
    for level in 0..params.schedule.levels() {
        let shrink = params.schedule.shrink[level];
        let sigma = params.schedule.sigma_vox[level];
        let iterations = params.iterations.get(level).copied().unwrap_or(0);
        let (grid, _) = shrink_grid(&fixed.grid, shrink);
        let mut f = match phi_f.take() {
            Some(p) => p.resampled(&grid)?,
            None => DisplacementField::zeros(grid.clone()),
        };
        let mut m = match phi_m.take() {
            Some(p) => p.resampled(&grid)?,
            None => DisplacementField::zeros(grid.clone()),
        };
        let t0 = std::time::Instant::now();
        if iterations > 0 {
            let fixed_s = smooth_image(fixed, sigma);
            let moving_s = smooth_image(moving, sigma);
            let mut history = Vec::with_capacity(iterations);
            for _ in 0..iterations {
                let Some(value) = iterate(&fixed_s, &moving_s, affine, &mut f, &mut m, params)?
                else {
                    tracing::debug!(level, "SyN level stopped at the regularity limit");
                    break;
                };
                history.push(value);
                if window_converged(
                    &history,
                    params.convergence_window,
                    params.convergence_threshold,
                ) {
                    break;
                }
            }
        }
        tracing::debug!(
            level,
            seconds = t0.elapsed().as_secs_f64(),
            "SyN level done"
        );
        phi_f = Some(f);
        phi_m = Some(m);
    }
    let (full, _) = shrink_grid(&fixed.grid, 1);
    let phi_f = match phi_f {
        Some(p) if p.grid == full => p,
        Some(p) => p.resampled(&full)?,
        None => DisplacementField::zeros(full.clone()),
    };
    let phi_m = match phi_m {
        Some(p) if p.grid == full => p,
        Some(p) => p.resampled(&full)?,
        None => DisplacementField::zeros(full.clone()),
    };
    let tolerance = 0.01 * full.spacing().iter().cloned().fold(f64::MAX, f64::min) as f32;
    let t0 = std::time::Instant::now();
    let phi_f_inv = phi_f.inverse(params.inverse_iterations, tolerance, None)?;
    let forward = phi_f_inv.then(&phi_m)?;
    drop(phi_f_inv);
    let phi_m_inv = phi_m.inverse(params.inverse_iterations, tolerance, None)?;
    let inverse = phi_m_inv.then(&phi_f)?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "SyN fields inverted");
    Ok(SynResult { forward, inverse })
}

/// Largest displacement gradient (Frobenius norm) either field may reach; see
/// [`DisplacementField::max_gradient_norm`]. An update that would take a field past it is
/// dropped and the level ends. Registrations of like images stay far below it (the synthetic
/// benchmark pair peaks near 0.5); a mismatched pair (a whole head against a brain-only
/// template) is where the CC update keeps compressing the background until the fields could no
/// longer be inverted, and the composed transform would fold.
const MAX_FIELD_GRADIENT: f32 = 0.95;

/// One SyN iteration on a level; returns the mean local CC before the update, or `None`
/// (fields unchanged) when the update would take a field past [`MAX_FIELD_GRADIENT`].
fn iterate(
    fixed: &Image,
    moving: &Image,
    affine: &AffineTransform,
    phi_f: &mut DisplacementField,
    phi_m: &mut DisplacementField,
    params: &SynParams,
) -> Result<Option<f64>, RegisterError> {
    let grid = phi_f.grid.clone();
    let fixed_w = warp_through(fixed, phi_f, None)?;
    let moving_w = warp_through(moving, phi_m, Some(affine))?;
    let cc = local_cc(&fixed_w.data, &moving_w.data, &grid.dims, params.cc_radius);
    let mut update_f = update_field(&fixed_w, &cc.d_fixed)?;
    drop(fixed_w);
    let mut update_m = update_field(&moving_w, &cc.d_moving)?;
    drop(moving_w);
    let spacing = grid.spacing();
    let sigma = params.update_variance.max(0.0).sqrt();
    for update in [&mut update_f, &mut update_m] {
        smooth_field(update, sigma);
        scale_to_step(update, &spacing, params.gradient_step as f32);
    }
    let mut next_f = update_f.then(phi_f)?;
    let mut next_m = update_m.then(phi_m)?;
    if params.total_variance > 0.0 {
        let sigma = params.total_variance.sqrt();
        smooth_field(&mut next_f, sigma);
        smooth_field(&mut next_m, sigma);
    }
    if next_f.max_gradient_norm()? > MAX_FIELD_GRADIENT
        || next_m.max_gradient_norm()? > MAX_FIELD_GRADIENT
    {
        return Ok(None);
    }
    *phi_f = next_f;
    *phi_m = next_m;
    Ok(Some(cc.value))
}

/// `out(x) = image(A(x + φ(x)))` on φ's grid (A omitted: identity).
fn warp_through(
    image: &Image,
    phi: &DisplacementField,
    affine: Option<&AffineTransform>,
) -> Result<Image, RegisterError> {
    let grid: &Grid = &phi.grid;
    let from = Affine3x4::from_matrix(&grid.affine);
    let to_index = match affine {
        Some(a) => image.grid.world_to_index()? * a.matrix,
        None => image.grid.world_to_index()?,
    };
    let to_index = Affine3x4::from_matrix(&to_index);
    let mut out = Image::zeros(grid.clone());
    fill_voxels(&mut out.data, &grid.dims, |i, j, k| {
        let at = grid.index(i, j, k);
        let p = from.apply([i as f32, j as f32, k as f32]);
        let q = [
            p[0] + phi.u[0][at],
            p[1] + phi.u[1][at],
            p[2] + phi.u[2][at],
        ];
        image.sample_linear(to_index.apply(q))
    });
    Ok(out)
}

/// The ascent direction for one side: ∂CC/∂I(x) · ∇I(x), world mm.
fn update_field(warped: &Image, d_cc: &[f32]) -> Result<DisplacementField, RegisterError> {
    let g = warped.gradient_world()?;
    let mut field = DisplacementField::zeros(warped.grid.clone());
    let d = warped.grid.dims;
    for_each_voxel(&mut field.u, &d, |i, j, k| {
        let at = warped.grid.index(i, j, k);
        let c = d_cc[at];
        [c * g[0][at], c * g[1][at], c * g[2][at]]
    });
    Ok(field)
}

/// Scales `field` so that its largest vector, measured in voxels, is `step` (ANTs' rule).
fn scale_to_step(field: &mut DisplacementField, spacing: &[f64; 3], step: f32) {
    let inv = spacing.map(|s| (1.0 / s) as f32);
    let max = (0..field.grid.len())
        .into_par_iter()
        .map(|n| {
            let a = field.u[0][n] * inv[0];
            let b = field.u[1][n] * inv[1];
            let c = field.u[2][n] * inv[2];
            (a * a + b * b + c * c).sqrt()
        })
        .reduce(|| 0.0, f32::max);
    if max > 0.0 && max.is_finite() {
        let scale = step / max;
        for plane in field.u.iter_mut() {
            plane.par_iter_mut().for_each(|v| *v *= scale);
        }
    }
}

/// Gaussian smoothing of each component (σ in voxels of the field's grid).
fn smooth_field(field: &mut DisplacementField, sigma: f64) {
    if sigma <= 0.0 {
        return;
    }
    let d = field.grid.dims;
    for plane in field.u.iter_mut() {
        *plane = gaussian(plane, &d, [sigma; 3]);
    }
}
