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
//! Native-space inputs are registered through [`TemplateRegistration`] (implemented by
//! `preprocess::template_registration`), following BRAID v1.0: the b0 (mean of the b=0 volumes)
//! is aligned rigidly to the T1, the skull-stripped T1 to the template (affine, plus SyN for
//! `-nonrigid`); the T1 brain mask (given, or propagated from the template) is moved into b0
//! space by nearest neighbour for the fit, and FA/MD go to the template grid through b0 → T1 →
//! template in one linear resampling. Template-space images land on [`braid_template_grid`].
//! A caller without a registration gets [`RecipeError::NeedsRegistration`] unless its inputs
//! are already in template space.

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
use super::resample::{Grid, Interp, ResampleError};
use crate::volume::{GradientTable, Volume};
use nalgebra::Matrix4;

/// BRAID's MONAI crop, in RAS voxels of the 1 mm MNI grid.
pub const BRAID_CROP: [usize; 3] = [192, 228, 192];
/// BRAID's MONAI output spacing in millimetres.
pub const BRAID_SPACING: [f64; 3] = [1.5, 1.5, 1.5];
/// Size of BRAID's 1 mm MNI grid: the MNI152 2009c grid (193 × 229 × 193, origin at
/// (−96, −132, −78) mm). BRAID's crop (192, 228, 192) and 1.5 mm spacing give its 128 × 152 × 128
/// input only from this grid, so template-space images are resampled onto it whatever template
/// file the registration used (all are in MNI coordinates).
pub const BRAID_GRID_DIMS: [usize; 3] = [193, 229, 193];
/// World position (mm) of voxel (0, 0, 0) of BRAID's MNI grid (1 mm, RAS axes).
pub const BRAID_GRID_ORIGIN: [f64; 3] = [-96.0, -132.0, -78.0];

/// BRAID's 1 mm MNI grid ([`BRAID_GRID_DIMS`], [`BRAID_GRID_ORIGIN`]).
pub fn braid_template_grid() -> Grid {
    let mut affine = Matrix4::identity();
    for (a, o) in BRAID_GRID_ORIGIN.iter().enumerate() {
        affine[(a, 3)] = *o;
    }
    Grid {
        dims: BRAID_GRID_DIMS,
        affine,
    }
}

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

/// The registration steps the BRAID recipes need (implemented by
/// `preprocess::template_registration::TemplateRegistrar`).
pub trait TemplateRegistration {
    /// The grid template-space images are resampled onto (BRAID's 1 mm MNI grid).
    fn template_grid(&self) -> Grid;
    /// A brain mask (0/1) of the whole-head `t1` on its own grid.
    fn t1_brain_mask(&self, t1: &Image3) -> Result<Image3, RegistrationError>;
    /// Rigid b0 → T1: the matrix mapping b0 world points (mm) to T1 world points.
    fn b0_to_t1(&self, b0: &Image3, t1_brain: &Image3) -> Result<Matrix4<f64>, RegistrationError>;
    /// Registers the skull-stripped `t1_brain` to the template: affine, plus SyN when
    /// `nonrigid`. The result resamples images onto [`TemplateRegistration::template_grid`].
    fn register_t1(
        &self,
        t1_brain: &Image3,
        nonrigid: bool,
    ) -> Result<Box<dyn TemplateWarp>, RegistrationError>;
}

/// A subject T1's registration to the template, applied to images.
pub trait TemplateWarp {
    /// `img` resampled onto the template grid. `img` lies in T1 world space, or, when `from_t1`
    /// is given, in a space that `from_t1` maps T1 world points into (e.g. b0 space); the
    /// whole chain is applied in one resampling.
    fn warp(
        &self,
        img: &Image3,
        from_t1: Option<&Matrix4<f64>>,
        interp: Interp,
    ) -> Result<Image3, RegistrationError>;
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
    /// Keep diffusion volumes with b below this; `None` is BRAID's [`BRAID_SHELL_MAX`]. Only for
    /// series without such a shell: the model never saw tensors fitted at higher b.
    pub shell_max: Option<f64>,
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
    /// Intermediate images worth a look (brain masks in subject, b0 and template space), by
    /// name; empty when nothing was registered.
    pub qa_images: Vec<(&'static str, Image3)>,
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
        qa_images: Vec::new(),
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
        qa_images: Vec::new(),
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
        qa_images: Vec::new(),
    })
}

/// The diffusion volumes BRAID fits (b below `shell_max`, else [`BRAID_SHELL_MAX`]).
fn braid_series(recipe: &'static str, inputs: &RecipeInputs) -> Result<DwiSeries, RecipeError> {
    let dwi = inputs.dwi.as_ref().ok_or(RecipeError::MissingInput {
        recipe,
        what: "a diffusion series (--dwi with --bval/--bvec)",
    })?;
    let shell_max = inputs.shell_max.unwrap_or(BRAID_SHELL_MAX);
    Ok(DwiSeries::select(
        &dwi.volume,
        &dwi.gradients,
        Some(shell_max),
    )?)
}

/// FA and MD fitted as BRAID fits them (inside `mask` on the series grid, dilated), unless the
/// caller brought them.
fn dti_maps(
    inputs: &RecipeInputs,
    series: Option<&DwiSeries>,
    mask: Option<&Mask>,
    recipe: &'static str,
) -> Result<(Image3, Image3), RecipeError> {
    if let (Some(fa), Some(md)) = (&inputs.fa, &inputs.md) {
        return Ok((fa.clone(), md.clone()));
    }
    let series = series.ok_or(RecipeError::MissingInput {
        recipe,
        what: "a diffusion series (--dwi with --bval/--bvec) or --fa and --md",
    })?;
    let maps = fit_masked(series, mask, DEFAULT_ITERATIONS)?;
    Ok((maps.fa, maps.md))
}

/// The BRAID dMRI recipe on template-space inputs: fit (or take) FA/MD, no registration.
fn braid_dti_in_template_space(
    recipe: &'static str,
    inputs: &RecipeInputs,
) -> Result<ModelInput, RecipeError> {
    if let (Some(fa), Some(md)) = (&inputs.fa, &inputs.md) {
        return braid_dti_input(fa, md);
    }
    let series = braid_series(recipe, inputs)?;
    let grid = Grid {
        dims: series.dims,
        affine: series.affine,
    };
    // Without registration there is no propagated mask, and a fit over the whole field of view
    // would put noise around the brain.
    let mask_img = inputs.mask.as_ref().ok_or(RecipeError::MissingInput {
        recipe,
        what: "a brain mask (--mask) for a diffusion series already in template space",
    })?;
    let mask = Mask::onto_grid(mask_img, &grid)?;
    let (fa, md) = dti_maps(inputs, Some(&series), Some(&mask), recipe)?;
    braid_dti_input(&fa, &md)
}

/// The subject's T1 brain mask on the T1 grid: the caller's (moved by nearest neighbour) or the
/// registration's.
fn t1_mask(
    t1: &Image3,
    inputs: &RecipeInputs,
    reg: &dyn TemplateRegistration,
) -> Result<Image3, RecipeError> {
    match &inputs.mask {
        Some(m) => {
            let grid = Grid {
                dims: t1.dims,
                affine: t1.affine,
            };
            Ok(Mask::onto_grid(m, &grid)?.to_image(t1.affine))
        }
        None => reg.t1_brain_mask(t1).map_err(RecipeError::Registration),
    }
}

/// `t1` with everything outside `mask` (same grid) set to zero.
fn skull_strip(t1: &Image3, mask: &Image3) -> Image3 {
    let mut brain = t1.clone();
    Mask::from_image(mask).apply(&mut brain);
    brain
}

/// The T1 mask moved into b0 space by nearest neighbour through the rigid b0 → T1 transform.
///
/// Re-placing the mask at `b0_to_t1⁻¹ · A` (A its own affine) puts its voxels where the
/// transform says they lie in b0 world space, so the ordinary grid-to-grid resampling applies.
fn mask_to_b0(
    t1_mask: &Image3,
    b0_to_t1: &Matrix4<f64>,
    b0_grid: &Grid,
) -> Result<Mask, RecipeError> {
    let to_b0 = b0_to_t1.try_inverse().ok_or(RecipeError::Registration(
        "the b0 → T1 transform is singular".into(),
    ))?;
    let placed = Image3 {
        affine: to_b0 * t1_mask.affine,
        ..t1_mask.clone()
    };
    Ok(Mask::onto_grid(&placed, b0_grid)?)
}

/// The BRAID dMRI recipe on native-space inputs (BRAID v1.0's chain): T1 brain mask; b0 → T1
/// rigid; mask into b0 space; FA/MD fitted there; T1 brain → template (affine[+SyN]); FA/MD
/// warped to the template through b0 → T1 → template in one linear resampling.
fn braid_dti_native(
    recipe: &'static str,
    inputs: &RecipeInputs,
    reg: &dyn TemplateRegistration,
    nonrigid: bool,
) -> Result<ModelInput, RecipeError> {
    let t1 = inputs.t1.as_ref().ok_or(RecipeError::MissingInput {
        recipe,
        what: "a T1 (--t1) to register through",
    })?;
    let series = braid_series(recipe, inputs)?;
    let b0 = series.b0_mean()?;
    let mask = t1_mask(t1, inputs, reg)?;
    let brain = skull_strip(t1, &mask);
    let b0_to_t1 = reg
        .b0_to_t1(&b0, &brain)
        .map_err(RecipeError::Registration)?;
    let b0_grid = Grid {
        dims: series.dims,
        affine: series.affine,
    };
    let b0_mask = mask_to_b0(&mask, &b0_to_t1, &b0_grid)?;
    let (fa, md) = dti_maps(inputs, Some(&series), Some(&b0_mask), recipe)?;
    drop(series);
    let warp = reg
        .register_t1(&brain, nonrigid)
        .map_err(RecipeError::Registration)?;
    let t1_to_b0 = b0_to_t1.try_inverse().ok_or(RecipeError::Registration(
        "the b0 → T1 transform is singular".into(),
    ))?;
    let to_template = |img: &Image3, interp| {
        warp.warp(img, Some(&t1_to_b0), interp)
            .map_err(RecipeError::Registration)
    };
    let fa = to_template(&fa, Interp::Linear)?;
    let md = to_template(&md, Interp::Linear)?;
    let mut made = braid_dti_input(&fa, &md)?;
    let mask_template = warp
        .warp(&mask, None, Interp::Nearest)
        .map_err(RecipeError::Registration)?;
    made.qa_images = vec![
        ("t1_brain_mask", mask),
        ("b0_brain_mask", b0_mask.to_image(b0_grid.affine)),
        ("t1_brain_mask_template", mask_template),
    ];
    Ok(made)
}

/// The BRAID T1w recipe: the T1 skull-stripped (given or registration's mask), affinely
/// registered to the template.
fn braid_t1_native(
    t1: &Image3,
    inputs: &RecipeInputs,
    reg: &dyn TemplateRegistration,
) -> Result<ModelInput, RecipeError> {
    let mask = t1_mask(t1, inputs, reg)?;
    let brain = skull_strip(t1, &mask);
    let warp = reg
        .register_t1(&brain, false)
        .map_err(RecipeError::Registration)?;
    let registered = warp
        .warp(&brain, None, Interp::Linear)
        .map_err(RecipeError::Registration)?;
    let mask_template = warp
        .warp(&mask, None, Interp::Nearest)
        .map_err(RecipeError::Registration)?;
    let mut made = braid_t1_input(&registered)?;
    made.qa_images = vec![
        ("t1_brain_mask", mask),
        ("t1_brain_mask_template", mask_template),
    ];
    Ok(made)
}

/// Runs `recipe` on `inputs`. Without `registration`, recipes that need it fail with
/// [`RecipeError::NeedsRegistration`] unless the inputs are in template space.
pub fn run(
    recipe: &Recipe,
    inputs: &RecipeInputs,
    registration: Option<&dyn TemplateRegistration>,
) -> Result<ModelInput, RecipeError> {
    let name = recipe.name();
    match recipe {
        Recipe::BraidDtiAffine | Recipe::BraidDtiNonrigid => {
            if inputs.in_template_space {
                return braid_dti_in_template_space(name, inputs);
            }
            let reg = registration.ok_or(RecipeError::NeedsRegistration(name))?;
            braid_dti_native(name, inputs, reg, *recipe == Recipe::BraidDtiNonrigid)
        }
        Recipe::BraidT1Affine => {
            let t1 = inputs.t1.as_ref().ok_or(RecipeError::MissingInput {
                recipe: name,
                what: "a T1 (--t1)",
            })?;
            if !inputs.in_template_space {
                let reg = registration.ok_or(RecipeError::NeedsRegistration(name))?;
                return braid_t1_native(t1, inputs, reg);
            }
            // A mask given with a template-space T1 skull-strips it there.
            match &inputs.mask {
                None => braid_t1_input(t1),
                Some(m) => {
                    let grid = Grid {
                        dims: t1.dims,
                        affine: t1.affine,
                    };
                    let mut brain = t1.clone();
                    Mask::onto_grid(m, &grid)?.apply(&mut brain);
                    braid_t1_input(&brain)
                }
            }
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

    /// A b0 → T1 transform that shifts by +4 mm along x: a T1 mask voxel at x lands in b0
    /// space at x − 4 mm, i.e. two 2 mm voxels lower along i.
    #[test]
    fn mask_moves_into_b0_space_through_the_rigid_transform() {
        let mut affine = Matrix4::identity();
        for a in 0..3 {
            affine[(a, a)] = 2.0;
        }
        let mut t1_mask = Image3::zeros([12, 12, 12], affine);
        let at = t1_mask.index(6, 5, 5);
        t1_mask.data[at] = 1.0;
        let mut b0_to_t1 = Matrix4::identity();
        b0_to_t1[(0, 3)] = 4.0;
        let grid = Grid {
            dims: [12, 12, 12],
            affine,
        };
        let moved = mask_to_b0(&t1_mask, &b0_to_t1, &grid).unwrap();
        assert_eq!(moved.count(), 1);
        assert!(moved.inside[t1_mask.index(4, 5, 5)]);
    }
}
