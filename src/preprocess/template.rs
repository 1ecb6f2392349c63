//! The MNI template and the subject brain mask derived from it.
//!
//! The default template is ICBM152 2009a (nonlinear symmetric, 1 mm, 197×233×189, skull-stripped
//! T1 plus GM and WM probability maps) as the PyPI wheel `nilearn==0.14.1` ships it.
//! `scripts/setup.d/45-template.sh` unpacks its `mni_icbm152_*` files into
//! `${BRAINAGED_DATA:-$HOME/.cache/brainaged}/templates/icbm152_2009a/`; nothing is committed.
//!
//! Another template (e.g. a site's whole-head MNI152, which suits whole-head subject T1s
//! better): set `BRAINAGED_TEMPLATE_DIR` to a folder holding `t1.nii.gz` and optionally
//! `brain_mask.nii.gz`, `gm.nii.gz`, `wm.nii.gz` (any 3-D NIfTI in MNI space), or call
//! [`Template::from_files`]. Without a mask file the brain mask is the T1 above 20 % of its
//! maximum, which is right for a skull-stripped template only.
//!
//! Subject brain mask: the template mask is carried onto the subject grid through the inverse
//! of the subject→template registration (linear interpolation, kept where ≥ 0.5), then refined
//! by intensity: inside a band of `band_voxels` voxels along the propagated boundary, voxels
//! darker than `dark_fraction` of the median intensity of the mask's core (the mask eroded by the
//! band) are removed; they are air, bone or vessels' flow voids that the propagated boundary
//! overlaps. Limits: the refinement only removes voxels, never more than the band deep, so a
//! registration that is off by more than the band is not repaired; CSF (dark on T1) at the
//! brain's surface is kept only while it is brighter than the threshold. An externally supplied
//! mask (e.g. from SynthStrip) should be used instead where one exists.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use crate::nifti_io::{self, NiftiError};
use crate::preprocess::register::image::Image;
use crate::preprocess::register::transform::{Interpolation, warp};
use crate::preprocess::register::{
    RegisterError, Registration, RegistrationParams, TransformKind, register, register_from,
};
use crate::volume::{Volume, VolumeMeta, VoxelData};

/// Why a template or a subject mask could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template files are not where they should be.
    #[error(
        "template file {0} is missing: run scripts/setup.d/45-template.sh or set BRAINAGED_TEMPLATE_DIR"
    )]
    Missing(String),
    /// A template file could not be read.
    #[error(transparent)]
    Nifti(#[from] NiftiError),
    /// Carrying the mask through the transform failed.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// Two images that must share a grid do not.
    #[error("{0}")]
    Mismatch(String),
}

/// File names of ICBM152 2009a inside the nilearn wheel.
const ICBM_T1: &str = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz";
const ICBM_GM: &str = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz";
const ICBM_WM: &str = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz";

/// Fraction of the T1 maximum above which a skull-stripped template voxel is brain.
const MASK_FRACTION: f32 = 0.2;

/// A template: the image subjects are registered to, its brain mask and tissue maps.
#[derive(Debug, Clone)]
pub struct Template {
    /// The T1-weighted template (float).
    pub t1: Volume,
    /// Brain mask on the same grid, 0/1 as u8.
    pub brain_mask: Volume,
    /// Grey-matter probability (0..1) if the template has one.
    pub gm: Option<Volume>,
    /// White-matter probability (0..1) if the template has one.
    pub wm: Option<Volume>,
}

impl Template {
    /// The folder of the default template: `BRAINAGED_TEMPLATE_DIR`, else
    /// `${BRAINAGED_DATA:-$HOME/.cache/brainaged}/templates/icbm152_2009a`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("BRAINAGED_TEMPLATE_DIR") {
            return PathBuf::from(dir);
        }
        let data = std::env::var_os("BRAINAGED_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                PathBuf::from(home).join(".cache/brainaged")
            });
        data.join("templates/icbm152_2009a")
    }

    /// Loads the template in `dir`: the ICBM152 2009a file names if present, else the generic
    /// `t1.nii.gz` [+ `brain_mask.nii.gz`, `gm.nii.gz`, `wm.nii.gz`].
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        if dir.join(ICBM_T1).exists() {
            let mut t = Self::from_files(&dir.join(ICBM_T1), None)?;
            // The nilearn maps are stored as 0..255 bytes.
            t.gm = Some(scaled(&dir.join(ICBM_GM), 1.0 / 255.0)?);
            t.wm = Some(scaled(&dir.join(ICBM_WM), 1.0 / 255.0)?);
            return Ok(t);
        }
        let t1 = dir.join("t1.nii.gz");
        let mask = dir.join("brain_mask.nii.gz");
        let mut t = Self::from_files(&t1, mask.exists().then_some(mask.as_path()))?;
        for (slot, name) in [(&mut t.gm, "gm.nii.gz"), (&mut t.wm, "wm.nii.gz")] {
            let p = dir.join(name);
            if p.exists() {
                *slot = Some(nifti_io::read_volume_f32(&p)?);
            }
        }
        Ok(t)
    }

    /// The default template ([`Template::default_dir`]).
    pub fn load_default() -> Result<Self, TemplateError> {
        Self::load(&Self::default_dir())
    }

    /// A template from a T1 file and an optional mask file (else T1 > 20 % of its maximum).
    pub fn from_files(t1: &Path, mask: Option<&Path>) -> Result<Self, TemplateError> {
        if !t1.exists() {
            return Err(TemplateError::Missing(t1.display().to_string()));
        }
        let t1 = nifti_io::read_volume_f32(t1)?;
        let brain_mask = match mask {
            Some(m) => {
                let v = nifti_io::read_volume_f32(m)?;
                if v.data.shape() != t1.data.shape() {
                    return Err(TemplateError::Mismatch(format!(
                        "mask shape {:?} differs from the template's {:?}",
                        v.data.shape(),
                        t1.data.shape()
                    )));
                }
                binarise(&v, 0.5)
            }
            None => {
                let max = t1.data.to_f32().iter().cloned().fold(0.0f32, f32::max);
                binarise(&t1, MASK_FRACTION * max)
            }
        };
        Ok(Self {
            t1,
            brain_mask,
            gm: None,
            wm: None,
        })
    }
}

fn scaled(path: &Path, factor: f32) -> Result<Volume, TemplateError> {
    if !path.exists() {
        return Err(TemplateError::Missing(path.display().to_string()));
    }
    let mut v = nifti_io::read_volume_f32(path)?;
    v.data = VoxelData::F32(v.data.to_f32().mapv(|x| x * factor));
    Ok(v)
}

/// 0/1 u8 volume of `volume > threshold`.
fn binarise(volume: &Volume, threshold: f32) -> Volume {
    Volume {
        data: VoxelData::U8(volume.data.to_f32().mapv(|v| u8::from(v > threshold))),
        affine: volume.affine,
        meta: VolumeMeta::default(),
        gradients: None,
    }
}

/// How a whole-head subject is registered to a skull-stripped template.
///
/// MI between a whole-head T1 and a brain-only template is maximised by stretching the template
/// brain out towards the scalp (the next bright edge), which overscales the affine. So after a
/// first affine pass the template brain mask, dilated by `margin_mm`, is carried into subject
/// space, the subject is masked with it, and the affine is estimated again from there, `passes`
/// times; SyN then runs on the masked subject. This only partly helps: on siemens-xa30-t1 at
/// 2 mm the propagated mask shrinks from 2.61 L to 2.34 L, against 1.88 L for the template's
/// own mask. The real fix is a whole-head template ([`Template::load`] with a site's
/// whole-head MNI152, `passes` 0) or a skull-stripped subject (an external mask).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubjectRegistration {
    /// Number of mask-and-re-register passes after the first affine.
    pub passes: usize,
    /// Dilation of the template mask before it is carried into subject space (mm).
    pub margin_mm: f64,
}

impl Default for SubjectRegistration {
    fn default() -> Self {
        Self {
            passes: 1,
            margin_mm: 4.0,
        }
    }
}

/// Registers a subject T1 (`moving`, whole head or skull-stripped) to the template T1
/// (`fixed`) as [`SubjectRegistration`] describes; the result maps template points to subject
/// points and applies to the unmasked subject.
pub fn register_subject(
    fixed: &Image,
    fixed_mask: &Image,
    moving: &Image,
    kind: TransformKind,
    params: &RegistrationParams,
    how: &SubjectRegistration,
) -> Result<Registration, TemplateError> {
    let first = if kind == TransformKind::Rigid {
        TransformKind::Rigid
    } else {
        TransformKind::Affine
    };
    let mut reg = register(fixed, moving, first, params)?;
    if how.passes == 0 {
        if kind == TransformKind::Syn {
            reg = register_from(fixed, moving, kind, params, Some(reg.affine))?;
        }
        return Ok(reg);
    }
    let spacing = fixed_mask
        .grid
        .spacing()
        .iter()
        .cloned()
        .fold(f64::MAX, f64::min);
    let steps = (how.margin_mm / spacing).round().max(0.0) as usize;
    let mut dilated: Vec<u8> = fixed_mask.data.iter().map(|v| u8::from(*v > 0.5)).collect();
    for _ in 0..steps {
        dilated = dilate(&dilated, &fixed_mask.grid.dims);
    }
    let dilated = Image {
        grid: fixed_mask.grid.clone(),
        data: dilated.iter().map(|v| *v as f32).collect(),
    };
    let mut masked = moving.clone();
    for pass in 0..how.passes {
        let carried = warp(
            &dilated,
            &moving.grid,
            &reg.inverse_chain()?,
            Interpolation::Linear,
        )?;
        masked = moving.clone();
        for (v, m) in masked.data.iter_mut().zip(&carried.data) {
            if *m < 0.5 {
                *v = 0.0;
            }
        }
        let stage = if pass + 1 == how.passes { kind } else { first };
        reg = register_from(fixed, &masked, stage, params, Some(reg.affine))?;
    }
    drop(masked);
    Ok(reg)
}

/// 6-neighbour dilation.
fn dilate(mask: &[u8], d: &[usize; 3]) -> Vec<u8> {
    let mut out = mask.to_vec();
    for k in 0..d[2] {
        for j in 0..d[1] {
            for i in 0..d[0] {
                let at = i + d[0] * (j + d[1] * k);
                if mask[at] == 1 {
                    continue;
                }
                let near = (i > 0 && mask[at - 1] == 1)
                    || (i + 1 < d[0] && mask[at + 1] == 1)
                    || (j > 0 && mask[at - d[0]] == 1)
                    || (j + 1 < d[1] && mask[at + d[0]] == 1)
                    || (k > 0 && mask[at - d[0] * d[1]] == 1)
                    || (k + 1 < d[2] && mask[at + d[0] * d[1]] == 1);
                out[at] = u8::from(near);
            }
        }
    }
    out
}

/// How the propagated mask is refined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskRefinement {
    /// Depth (voxels) of the band along the boundary in which voxels may be removed.
    pub band_voxels: usize,
    /// Voxels in the band darker than this fraction of the core's median are removed.
    pub dark_fraction: f32,
}

impl Default for MaskRefinement {
    fn default() -> Self {
        Self {
            band_voxels: 2,
            dark_fraction: 0.2,
        }
    }
}

/// The subject-space masks: as propagated, and after refinement.
#[derive(Debug, Clone)]
pub struct SubjectMask {
    /// The template mask through the inverse transform (0/1 u8, subject grid).
    pub propagated: Volume,
    /// After intensity refinement (0/1 u8, subject grid).
    pub refined: Volume,
}

/// The subject's brain mask from a registration whose fixed image is the template and whose
/// moving image is `subject`.
pub fn subject_brain_mask(
    subject: &Volume,
    template: &Template,
    registration: &Registration,
    refinement: &MaskRefinement,
) -> Result<SubjectMask, TemplateError> {
    let subject_img = Image::from_volume(subject)?;
    let mask_img = Image::from_volume(&template.brain_mask)?;
    let carried = warp(
        &mask_img,
        &subject_img.grid,
        &registration.inverse_chain()?,
        Interpolation::Linear,
    )?;
    let propagated: Vec<u8> = carried.data.iter().map(|v| u8::from(*v >= 0.5)).collect();
    let refined = refine(&propagated, &subject_img, refinement);
    let to_volume = |data: Vec<u8>| {
        let dims = subject_img.grid.dims;
        let array = ArrayD::from_shape_vec(IxDyn(&dims).f(), data)
            .unwrap_or_else(|_| ArrayD::zeros(IxDyn(&dims)));
        Volume {
            data: VoxelData::U8(array),
            affine: subject.affine,
            meta: VolumeMeta::default(),
            gradients: None,
        }
    };
    Ok(SubjectMask {
        propagated: to_volume(propagated),
        refined: to_volume(refined),
    })
}

fn refine(mask: &[u8], subject: &Image, r: &MaskRefinement) -> Vec<u8> {
    let mut core = mask.to_vec();
    for _ in 0..r.band_voxels {
        core = erode(&core, &subject.grid.dims);
    }
    let mut inside: Vec<f32> = core
        .iter()
        .zip(&subject.data)
        .filter(|(c, _)| **c == 1)
        .map(|(_, v)| *v)
        .collect();
    if inside.is_empty() {
        return mask.to_vec();
    }
    let mid = inside.len() / 2;
    let (_, median, _) = inside.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    let threshold = r.dark_fraction * *median;
    mask.iter()
        .zip(&core)
        .zip(&subject.data)
        .map(|((m, c), v)| u8::from(*m == 1 && (*c == 1 || *v >= threshold)))
        .collect()
}

/// 6-neighbour erosion; voxels on the grid's border count as outside.
fn erode(mask: &[u8], d: &[usize; 3]) -> Vec<u8> {
    let at = |i: usize, j: usize, k: usize| mask[i + d[0] * (j + d[1] * k)];
    let mut out = vec![0u8; mask.len()];
    for k in 1..d[2].saturating_sub(1) {
        for j in 1..d[1].saturating_sub(1) {
            for i in 1..d[0].saturating_sub(1) {
                let keep = at(i, j, k) == 1
                    && at(i - 1, j, k) == 1
                    && at(i + 1, j, k) == 1
                    && at(i, j - 1, k) == 1
                    && at(i, j + 1, k) == 1
                    && at(i, j, k - 1) == 1
                    && at(i, j, k + 1) == 1;
                out[i + d[0] * (j + d[1] * k)] = u8::from(keep);
            }
        }
    }
    out
}

/// Dice overlap 2|A∩B| / (|A| + |B|) of two masks given as values > 0.5 (1 when both empty).
pub fn dice(a: &[f32], b: &[f32]) -> f64 {
    let mut both = 0usize;
    let mut total = 0usize;
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x > 0.5, *y > 0.5);
        both += usize::from(x && y);
        total += usize::from(x) + usize::from(y);
    }
    if total == 0 {
        1.0
    } else {
        2.0 * both as f64 / total as f64
    }
}
