//! Image registration: rigid, affine (Mattes MI) and SyN (local CC), multi-resolution, in
//! physical space, composable and applicable to any image.
//!
//! This reproduces the T1 → MNI step of the BRAID chain, ANTs' `antsRegistrationSyN.sh -t s`:
//! winsorised intensities [0.005, 0.995], centre-of-mass initialisation, a rigid then an affine
//! stage (MI, 32 bins, 25 % regular sampling, step 0.1, 1000×500×250×100 iterations, shrink
//! 8×4×2×1, smoothing 3×2×1×0 voxels) and SyN[0.1,3,0] with CC radius 4 and 100×70×50×20
//! iterations on the same pyramid. The optimiser and the field bookkeeping are our own and differ
//! from ANTs where that is faster at equal accuracy; each module says where.
//!
//! Transforms map fixed points to moving points (see [`transform`]); a [`Registration`] gives
//! the chain for warping the moving image onto the fixed grid and the inverse chain for the
//! other way (e.g. a template mask into subject space).
//!
//! Limits: 3-D single-channel images; fields on the fixed grid (memory ≈ 6 × 12 bytes per fixed
//! voxel at the finest SyN level, ≈ 0.6 GB for a 1 mm MNI grid); no masks in the metric.

pub mod image;
pub mod linear;
pub mod metric;
pub mod pyramid;
pub mod syn;
pub mod transform;

use std::path::Path;

use image::Image;
use linear::{LinearKind, LinearParams, centre_of_mass_init, register_linear};
use pyramid::Schedule;
use syn::{SynParams, SynResult, register_syn};
use transform::{AffineTransform, Chain, Interpolation, Step, warp};

use crate::nifti_io::NiftiError;
use crate::volume::Volume;

/// Why a registration could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Registration works on one 3-D volume.
    #[error("expected a 3-D image, got shape {0:?}")]
    NotThreeD(Vec<usize>),
    /// An affine (of an image grid or a transform) could not be inverted.
    #[error("the {0} affine is singular")]
    SingularAffine(&'static str),
    /// The images do not overlap under the current transform.
    #[error("the moving image does not overlap the fixed image under the current transform")]
    NoOverlap,
    /// A parameter is out of range.
    #[error("bad registration parameter: {0}")]
    BadParameter(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A transform file is not in the documented form.
    #[error("{path}: {reason}")]
    BadFile { path: String, reason: String },
    /// NIfTI input/output failed.
    #[error(transparent)]
    Nifti(#[from] NiftiError),
}

/// What a registration estimates, cumulatively (as `antsRegistrationSyN.sh -t r|a|s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformKind {
    /// Centre of mass, then rigid.
    Rigid,
    /// Centre of mass, rigid, then affine.
    Affine,
    /// Centre of mass, rigid, affine, then SyN.
    Syn,
}

/// All settings of a registration.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationParams {
    /// Rigid and affine stages.
    pub linear: LinearParams,
    /// The SyN stage.
    pub syn: SynParams,
    /// Quantiles the intensities are clamped to (and rescaled to [0, 1]) before registration.
    pub winsorise: Option<(f64, f64)>,
}

impl RegistrationParams {
    /// The reference chain's `antsRegistrationSyN.sh` settings.
    pub fn ants_syn_defaults() -> Self {
        Self {
            linear: LinearParams::ants_syn_defaults(),
            syn: SynParams::ants_syn_defaults(),
            winsorise: Some((0.005, 0.995)),
        }
    }
}

/// The result: the affine and, for SyN, the fields. Fixed→moving: `A(x + u(x))`.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Fixed→moving affine (the last linear stage).
    pub affine: AffineTransform,
    /// The deformable part, present after SyN.
    pub syn: Option<SynResult>,
}

impl Registration {
    /// Fixed point → moving point: use it to warp the moving image onto the fixed grid.
    pub fn forward_chain(&self) -> Chain {
        let mut steps = Vec::with_capacity(2);
        if let Some(s) = &self.syn {
            steps.push(Step::Field(s.forward.clone()));
        }
        steps.push(Step::Affine(self.affine));
        Chain { steps }
    }

    /// Moving point → fixed point: use it to bring fixed-space images (a template mask) onto
    /// the moving image's grid.
    pub fn inverse_chain(&self) -> Result<Chain, RegisterError> {
        let mut steps = vec![Step::Affine(self.affine.inverse()?)];
        if let Some(s) = &self.syn {
            steps.push(Step::Field(s.inverse.clone()));
        }
        Ok(Chain { steps })
    }

    /// Writes `affine.json` and, after SyN, `warp.nii.gz` (forward field) and
    /// `inverse_warp.nii.gz` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), RegisterError> {
        self.affine.write_json(&dir.join("affine.json"))?;
        if let Some(s) = &self.syn {
            s.forward.write_nifti(&dir.join("warp.nii.gz"))?;
            s.inverse.write_nifti(&dir.join("inverse_warp.nii.gz"))?;
        }
        Ok(())
    }
}

/// Registers `moving` to `fixed`, starting from the centres of mass.
pub fn register(
    fixed: &Image,
    moving: &Image,
    kind: TransformKind,
    params: &RegistrationParams,
) -> Result<Registration, RegisterError> {
    register_from(fixed, moving, kind, params, None)
}

/// Registers `moving` to `fixed`, starting from `init` (fixed→moving) when given, else from
/// the centres of mass.
pub fn register_from(
    fixed: &Image,
    moving: &Image,
    kind: TransformKind,
    params: &RegistrationParams,
    init: Option<AffineTransform>,
) -> Result<Registration, RegisterError> {
    let (fixed, moving) = match params.winsorise {
        Some((lo, hi)) => {
            let mut f = fixed.clone();
            let mut m = moving.clone();
            f.winsorise(lo, hi);
            m.winsorise(lo, hi);
            (f, m)
        }
        None => (fixed.clone(), moving.clone()),
    };
    let init = init.unwrap_or_else(|| centre_of_mass_init(&fixed, &moving));
    let t0 = std::time::Instant::now();
    let rigid = register_linear(&fixed, &moving, LinearKind::Rigid, &init, &params.linear)?;
    if kind == TransformKind::Rigid {
        return Ok(Registration {
            affine: rigid,
            syn: None,
        });
    }
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "rigid stage done");
    let affine = register_linear(&fixed, &moving, LinearKind::Affine, &rigid, &params.linear)?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "affine stage done");
    let syn = match kind {
        TransformKind::Syn => Some(register_syn(&fixed, &moving, &affine, &params.syn)?),
        _ => None,
    };
    Ok(Registration { affine, syn })
}

/// Registers two volumes and returns the result with the moving volume warped onto the fixed
/// grid (linear interpolation).
pub fn register_volumes(
    fixed: &Volume,
    moving: &Volume,
    kind: TransformKind,
    params: &RegistrationParams,
) -> Result<(Registration, Volume), RegisterError> {
    let f = Image::from_volume(fixed)?;
    let m = Image::from_volume(moving)?;
    let registration = register(&f, &m, kind, params)?;
    let warped = warp(
        &m,
        &f.grid,
        &registration.forward_chain(),
        Interpolation::Linear,
    )?;
    Ok((registration, warped.to_volume()))
}

/// b0 → T1 rigid registration by MI (the role of FSL's `epi_reg` in the BRAID chain, without
/// its boundary-based cost). Returns the transform mapping b0 points to T1 points, so that a
/// T1-space image (the brain mask) is warped onto the b0 grid with it directly, and its
/// inverse carries diffusion maps into T1 space. The pyramid is 4×2×1 (σ 2×1×0 voxels):
/// a 2 mm EPI has too few voxels for a shrink of 8.
pub fn rigid_b0_to_t1(b0: &Volume, t1: &Volume) -> Result<AffineTransform, RegisterError> {
    let fixed = Image::from_volume(b0)?;
    let moving = Image::from_volume(t1)?;
    let mut params = RegistrationParams::ants_syn_defaults();
    params.linear.schedule = Schedule {
        shrink: vec![4, 2, 1],
        sigma_vox: vec![2.0, 1.0, 0.0],
    };
    params.linear.iterations = vec![1000, 500, 250];
    Ok(register(&fixed, &moving, TransformKind::Rigid, &params)?.affine)
}
