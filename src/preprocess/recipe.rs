//! Model-input recipes: the named chains of steps that turn a subject's images into the exact
//! tensor a model was trained on. A model package names its recipe; `brainaged prepare` runs it.
//!
//! - `braid-dti-affine` / `braid-dti-nonrigid`: keep b < 1500, fit tensors inside the T1 brain mask
//!   (moved to b0 space, dilated by one voxel, FA/MD multiplied by the undilated mask), warp FA and
//!   MD to MNI space (affine, or affine + SyN) with linear interpolation, then MONAI
//!   Orientation(RAS) → CenterSpatialCrop(192, 228, 192) → Spacing(1.5 mm, bilinear) →
//!   float32 [1, 2, 128, 152, 128] with channels [FA, MD] and no intensity normalisation.
//! - `braid-t1-affine`: the skull-stripped T1 after affine registration to MNI, the same crop and
//!   spacing, then NormalizeIntensity over nonzero voxels → [1, 1, 128, 152, 128].
//! - `resample`: Orientation(RAS) → Spacing(spacing) → optional centred crop/pad to a shape →
//!   optional NormalizeIntensity(nonzero), for models such as SFCN (1 mm, 160 × 192 × 160).
//!
//! Registration is a step the recipes call through [`TemplateRegistration`]; its implementation
//! lives in `preprocess::register`. A caller without one gets [`RecipeError::NeedsRegistration`]
//! unless its inputs are already in template space.

use std::str::FromStr;

use rayon::prelude::*;

use super::dti::{DEFAULT_ITERATIONS, DtiError, DwiSeries, fit_masked};
use super::image::Image3;
use super::mask::Mask;
use super::monai::{
    MonaiError, center_spatial_crop, normalize_intensity_nonzero, orientation_ras,
    resize_with_pad_or_crop, spacing,
};
use super::npy::NpyArray;
use super::resample::{Grid, ResampleError};
use crate::volume::{GradientTable, Volume};

/// BRAID's MONAI crop, in RAS voxels of the 1 mm MNI grid.
pub const BRAID_CROP: [usize; 3] = [192, 228, 192];
/// BRAID's MONAI output spacing in millimetres.
pub const BRAID_SPACING: [f64; 3] = [1.5, 1.5, 1.5];
/// BRAID keeps diffusion volumes with b below this (s/mm²).
pub const BRAID_SHELL_MAX: f64 = 1500.0;

/// Boxed error from a registration implementation.
pub type RegistrationError = Box<dyn std::error::Error + Send + Sync>;

/// Why a recipe could not produce its tensor.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error(
        "unknown recipe {0:?} (known: braid-dti-nonrigid, braid-dti-affine, braid-t1-affine, resample)"
    )]
    Unknown(String),
    #[error("recipe {recipe} needs {what}")]
    MissingInput {
        recipe: &'static str,
        what: &'static str,
    },
    #[error(
        "recipe {0} needs registration to the template, which this build cannot do yet; \
         pass inputs already in template space instead"
    )]
    NeedsRegistration(&'static str),
    #[error("registration failed: {0}")]
    Registration(RegistrationError),
    #[error(transparent)]
    Dti(#[from] DtiError),
    #[error(transparent)]
    Monai(#[from] MonaiError),
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("channels differ in grid: {0:?} vs {1:?}")]
    ChannelGrids([usize; 3], [usize; 3]),
}

/// Parameters of the generic `resample` recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct ResampleSpec {
    /// Output voxel size in millimetres.
    pub spacing: [f64; 3],
    /// Final shape after a centred crop/pad; `None` keeps Spacing's shape.
    pub shape: Option<[usize; 3]>,
    /// NormalizeIntensity over nonzero voxels.
    pub normalize: bool,
}

/// A recipe by name.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe {
    BraidDtiNonrigid,
    BraidDtiAffine,
    BraidT1Affine,
    Resample(ResampleSpec),
}

impl Recipe {
    /// The name a model package uses.
    pub fn name(&self) -> &'static str {
        match self {
            Recipe::BraidDtiNonrigid => "braid-dti-nonrigid",
            Recipe::BraidDtiAffine => "braid-dti-affine",
            Recipe::BraidT1Affine => "braid-t1-affine",
            Recipe::Resample(_) => "resample",
        }
    }
}

impl FromStr for Recipe {
    type Err = RecipeError;

    /// Parses a recipe name; `resample` gets SFCN's parameters (1 mm, 160 × 192 × 160, no
    /// normalisation) until the caller overrides them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "braid-dti-nonrigid" => Ok(Recipe::BraidDtiNonrigid),
            "braid-dti-affine" => Ok(Recipe::BraidDtiAffine),
            "braid-t1-affine" => Ok(Recipe::BraidT1Affine),
            "resample" => Ok(Recipe::Resample(ResampleSpec {
                spacing: [1.0; 3],
                shape: Some([160, 192, 160]),
                normalize: false,
            })),
            other => Err(RecipeError::Unknown(other.to_string())),
        }
    }
}

/// The registration steps the BRAID recipes need (implemented in `preprocess::register`).
pub trait TemplateRegistration {
    /// The template's voxel grid (the 1 mm MNI grid for BRAID).
    fn template_grid(&self) -> Grid;
    /// A brain mask of `t1` on its own grid (template mask propagated, refined by intensity).
    fn t1_brain_mask(&self, t1: &Image3) -> Result<Image3, RegistrationError>;
    /// Aligns `b0` rigidly to `t1`, `t1` to the template (affine, plus SyN when `nonrigid`), and
    /// returns each of `maps` (on the b0 grid) warped onto the template grid with linear
    /// interpolation through the composed transform.
    fn dwi_maps_to_template(
        &self,
        b0: &Image3,
        t1: &Image3,
        maps: &[&Image3],
        nonrigid: bool,
    ) -> Result<Vec<Image3>, RegistrationError>;
    /// `t1_brain` affinely registered to the template, resampled linearly onto its grid.
    fn t1_to_template(&self, t1_brain: &Image3) -> Result<Image3, RegistrationError>;
}

/// A diffusion series with its gradient table.
#[derive(Debug, Clone)]
pub struct DwiInput {
    pub volume: Volume,
    pub gradients: GradientTable,
}

/// What a subject brings to a recipe. Which fields a recipe needs depends on the recipe and on
/// whether the inputs are already in template space.
#[derive(Debug, Clone, Default)]
pub struct RecipeInputs {
    /// T1-weighted image (whole head, or skull-stripped when `in_template_space`).
    pub t1: Option<Image3>,
    /// Raw diffusion series.
    pub dwi: Option<DwiInput>,
    /// Brain mask on any grid (moved by nearest neighbour where needed).
    pub mask: Option<Image3>,
    /// Precomputed FA (skips the tensor fit).
    pub fa: Option<Image3>,
    /// Precomputed MD in mm²/s.
    pub md: Option<Image3>,
    /// The single image of the `resample` recipe.
    pub image: Option<Image3>,
    /// Inputs are already on the template grid: registration is skipped.
    pub in_template_space: bool,
}

/// A model-input tensor and the channels it was made of (for the QA picture).
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// float32 [1, C, X, Y, Z], C order, RAS axes.
    pub tensor: NpyArray,
    /// The C channels on their final grid.
    pub channels: Vec<Image3>,
    /// Channel names, e.g. ["fa", "md"].
    pub names: Vec<&'static str>,
}

/// BRAID's MONAI chain for one channel: Orientation(RAS) → CenterSpatialCrop → Spacing.
pub fn braid_monai_chain(img: &Image3) -> Result<Image3, MonaiError> {
    let ras = orientation_ras(img)?;
    let cropped = center_spatial_crop(&ras, BRAID_CROP);
    spacing(&cropped, BRAID_SPACING)
}

/// Stacks channels (all on one grid) into a [1, C, X, Y, Z] C-order tensor.
pub fn stack_channels(channels: &[Image3]) -> Result<NpyArray, RecipeError> {
    let dims = channels.first().map(|c| c.dims).unwrap_or([0; 3]);
    if let Some(other) = channels.iter().find(|c| c.dims != dims) {
        return Err(RecipeError::ChannelGrids(dims, other.dims));
    }
    let [ni, nj, nk] = dims;
    let mut data = vec![0.0f32; channels.len() * ni * nj * nk];
    // One C-order (k fastest) plane per (channel, i), filled in parallel.
    data.par_chunks_mut(nj * nk)
        .enumerate()
        .for_each(|(ci, plane)| {
            let (c, i) = (&channels[ci / ni], ci % ni);
            for j in 0..nj {
                for k in 0..nk {
                    plane[j * nk + k] = c.data[c.index(i, j, k)];
                }
            }
        });
    Ok(NpyArray {
        shape: vec![1, channels.len(), ni, nj, nk],
        data,
    })
}

/// FA and MD already on the template grid → the BRAID dMRI model input.
pub fn braid_dti_input(fa: &Image3, md: &Image3) -> Result<ModelInput, RecipeError> {
    let channels = vec![braid_monai_chain(fa)?, braid_monai_chain(md)?];
    Ok(ModelInput {
        tensor: stack_channels(&channels)?,
        channels,
        names: vec!["fa", "md"],
    })
}

/// A skull-stripped T1 already on the template grid → the BRAID T1w model input.
pub fn braid_t1_input(t1_brain: &Image3) -> Result<ModelInput, RecipeError> {
    let mut img = braid_monai_chain(t1_brain)?;
    normalize_intensity_nonzero(&mut img.data);
    let channels = vec![img];
    Ok(ModelInput {
        tensor: stack_channels(&channels)?,
        channels,
        names: vec!["t1"],
    })
}

/// The generic `resample` recipe on one image.
pub fn resample_input(img: &Image3, spec: &ResampleSpec) -> Result<ModelInput, RecipeError> {
    let ras = orientation_ras(img)?;
    let mut out = spacing(&ras, spec.spacing)?;
    if let Some(shape) = spec.shape {
        out = resize_with_pad_or_crop(&out, shape);
    }
    if spec.normalize {
        normalize_intensity_nonzero(&mut out.data);
    }
    let channels = vec![out];
    Ok(ModelInput {
        tensor: stack_channels(&channels)?,
        channels,
        names: vec!["image"],
    })
}

/// FA and MD on the diffusion grid, fitted as BRAID fits them (b < 1500, dilated mask), unless
/// the caller brought them.
fn native_dti_maps(
    recipe: &'static str,
    inputs: &RecipeInputs,
    registration: Option<&dyn TemplateRegistration>,
) -> Result<(Image3, Image3, Option<Image3>), RecipeError> {
    if let (Some(fa), Some(md)) = (&inputs.fa, &inputs.md) {
        return Ok((fa.clone(), md.clone(), None));
    }
    let dwi = inputs.dwi.as_ref().ok_or(RecipeError::MissingInput {
        recipe,
        what: "a diffusion series (--dwi with --bval/--bvec) or --fa and --md",
    })?;
    let series = DwiSeries::select(&dwi.volume, &dwi.gradients, Some(BRAID_SHELL_MAX))?;
    let b0 = series.b0_mean()?;
    let grid = Grid {
        dims: series.dims,
        affine: series.affine,
    };
    let mask_img = match (&inputs.mask, registration, &inputs.t1) {
        (Some(m), _, _) => m.clone(),
        (None, Some(reg), Some(t1)) => reg.t1_brain_mask(t1).map_err(RecipeError::Registration)?,
        (None, None, _) => return Err(RecipeError::NeedsRegistration(recipe)),
        (None, Some(_), None) => {
            return Err(RecipeError::MissingInput {
                recipe,
                what: "a T1 (for the brain mask) or --mask",
            });
        }
    };
    let mask = Mask::onto_grid(&mask_img, &grid)?;
    let maps = fit_masked(&series, Some(&mask), DEFAULT_ITERATIONS)?;
    Ok((maps.fa, maps.md, Some(b0)))
}

/// Runs `recipe` on `inputs`. `registration` is `None` until a registration implementation is
/// available; recipes that need it then fail with [`RecipeError::NeedsRegistration`].
pub fn run(
    recipe: &Recipe,
    inputs: &RecipeInputs,
    registration: Option<&dyn TemplateRegistration>,
) -> Result<ModelInput, RecipeError> {
    let name = recipe.name();
    match recipe {
        Recipe::BraidDtiAffine | Recipe::BraidDtiNonrigid => {
            let nonrigid = *recipe == Recipe::BraidDtiNonrigid;
            let (fa, md, b0) = native_dti_maps(name, inputs, registration)?;
            if inputs.in_template_space {
                return braid_dti_input(&fa, &md);
            }
            let reg = registration.ok_or(RecipeError::NeedsRegistration(name))?;
            let t1 = inputs.t1.as_ref().ok_or(RecipeError::MissingInput {
                recipe: name,
                what: "a T1 (--t1) to register through",
            })?;
            let b0 = match (b0, &inputs.dwi) {
                (Some(b0), _) => b0,
                (None, Some(dwi)) => {
                    DwiSeries::select(&dwi.volume, &dwi.gradients, Some(BRAID_SHELL_MAX))?
                        .b0_mean()?
                }
                (None, None) => {
                    return Err(RecipeError::MissingInput {
                        recipe: name,
                        what: "the diffusion series (for its b0) to register FA/MD",
                    });
                }
            };
            let warped = reg
                .dwi_maps_to_template(&b0, t1, &[&fa, &md], nonrigid)
                .map_err(RecipeError::Registration)?;
            match warped.as_slice() {
                [fa, md] => braid_dti_input(fa, md),
                _ => Err(RecipeError::Registration(
                    "registration returned the wrong number of maps".into(),
                )),
            }
        }
        Recipe::BraidT1Affine => {
            let t1 = inputs.t1.as_ref().ok_or(RecipeError::MissingInput {
                recipe: name,
                what: "a T1 (--t1)",
            })?;
            if inputs.in_template_space {
                // A mask given with a template-space T1 skull-strips it there.
                let Some(mask_img) = &inputs.mask else {
                    return braid_t1_input(t1);
                };
                let grid = Grid {
                    dims: t1.dims,
                    affine: t1.affine,
                };
                let mut brain = t1.clone();
                Mask::onto_grid(mask_img, &grid)?.apply(&mut brain);
                return braid_t1_input(&brain);
            }
            let reg = registration.ok_or(RecipeError::NeedsRegistration(name))?;
            let mask_img = match &inputs.mask {
                Some(m) => m.clone(),
                None => reg.t1_brain_mask(t1).map_err(RecipeError::Registration)?,
            };
            let grid = Grid {
                dims: t1.dims,
                affine: t1.affine,
            };
            let mut brain = t1.clone();
            Mask::onto_grid(&mask_img, &grid)?.apply(&mut brain);
            let registered = reg
                .t1_to_template(&brain)
                .map_err(RecipeError::Registration)?;
            braid_t1_input(&registered)
        }
        Recipe::Resample(spec) => {
            let img =
                inputs
                    .image
                    .as_ref()
                    .or(inputs.t1.as_ref())
                    .ok_or(RecipeError::MissingInput {
                        recipe: name,
                        what: "an image (--input or --t1)",
                    })?;
            resample_input(img, spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Matrix4;

    fn mni_like() -> Image3 {
        let mut affine = Matrix4::identity();
        affine[(0, 3)] = -96.0;
        affine[(1, 3)] = -132.0;
        affine[(2, 3)] = -78.0;
        let mut img = Image3::zeros([193, 229, 193], affine);
        img.data
            .iter_mut()
            .enumerate()
            .for_each(|(n, v)| *v = (n % 7) as f32);
        img
    }

    #[test]
    fn braid_grid_gives_the_model_shape() {
        let img = mni_like();
        let input = braid_dti_input(&img, &img).unwrap();
        assert_eq!(input.tensor.shape, vec![1, 2, 128, 152, 128]);
        let t1 = braid_t1_input(&img).unwrap();
        assert_eq!(t1.tensor.shape, vec![1, 1, 128, 152, 128]);
    }

    #[test]
    fn registration_recipes_say_what_is_missing() {
        let inputs = RecipeInputs {
            t1: Some(mni_like()),
            ..Default::default()
        };
        let err = run(&Recipe::BraidT1Affine, &inputs, None).unwrap_err();
        assert!(matches!(
            err,
            RecipeError::NeedsRegistration("braid-t1-affine")
        ));
        assert!("nonsense".parse::<Recipe>().is_err());
    }
}
