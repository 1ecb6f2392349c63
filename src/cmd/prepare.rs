//! `brainaged prepare`: run a named model-input recipe and write the tensor as `.npy` plus a QA
//! picture of its mid-slices.
//!
//! Native-space inputs of the BRAID recipes are registered to a template: `--template DIR`
//! (a site's own, see `preprocess::template` for the folder layout), else the ICBM152 2009a
//! installed by `scripts/setup.d/45-template.sh`. The brain masks the registration made are
//! written beside the tensor under `qa/` for a person (or a test) to check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use brainaged::nifti_io::{read_volume, read_volume_f32, write_volume};
use brainaged::preprocess::fsl_grad::read_fsl_gradients;
use brainaged::preprocess::image::Image3;
use brainaged::preprocess::npy::write_npy;
use brainaged::preprocess::qa::write_qa_png;
use brainaged::preprocess::recipe::{
    self, DwiInput, Recipe, RecipeInputs, TemplateRegistration, braid_template_grid,
};
use brainaged::preprocess::template::Template;
use brainaged::preprocess::template_registration::{RegistrarOptions, TemplateRegistrar};

#[derive(clap::Args)]
pub struct Args {
    /// Recipe name: braid-dti-nonrigid, braid-dti-affine, braid-t1-affine or resample.
    #[arg(long)]
    recipe: String,
    /// T1-weighted image.
    #[arg(long)]
    t1: Option<PathBuf>,
    /// 4-D diffusion series (with --bval and --bvec).
    #[arg(long, requires_all = ["bval", "bvec"])]
    dwi: Option<PathBuf>,
    #[arg(long)]
    bval: Option<PathBuf>,
    #[arg(long)]
    bvec: Option<PathBuf>,
    /// Brain mask (any grid).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Precomputed FA map (skips the tensor fit; with --md).
    #[arg(long, requires = "md")]
    fa: Option<PathBuf>,
    /// Precomputed MD map in mm²/s.
    #[arg(long, requires = "fa")]
    md: Option<PathBuf>,
    /// The image of the `resample` recipe.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Inputs are already registered to the template grid: skip registration.
    #[arg(long)]
    in_template_space: bool,
    /// Template folder for registration: ICBM152 2009a file names, or `t1.nii.gz` with
    /// optional `brain_mask.nii.gz`, `gm.nii.gz`, `wm.nii.gz` (default: BRAINAGED_TEMPLATE_DIR,
    /// else ~/.cache/brainaged/templates/icbm152_2009a).
    #[arg(long)]
    template: Option<PathBuf>,
    /// Register against the template block-averaged by this factor (2: a 2 mm template from a
    /// 1 mm one, ~8× faster; outputs stay on the 1 mm grid).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    registration_shrink: u8,
    /// Diffusion recipes: keep volumes with b below this (s/mm²; BRAID: 1500). Only for series
    /// without such a shell; the model was not trained on tensors fitted at higher b.
    #[arg(long)]
    shell_max: Option<f64>,
    /// `resample`: output voxel size in mm, "x,y,z" or one number.
    #[arg(long)]
    spacing: Option<String>,
    /// `resample`: final shape "x,y,z" after a centred crop/pad, or "none".
    #[arg(long)]
    shape: Option<String>,
    /// `resample`: NormalizeIntensity over nonzero voxels.
    #[arg(long)]
    normalize: bool,
    /// Output folder: input.npy and qa.png.
    #[arg(long)]
    out: PathBuf,
}

fn image(path: &Path) -> anyhow::Result<Image3> {
    let vol = read_volume_f32(path)?;
    Image3::from_volume(&vol).with_context(|| format!("{}", path.display()))
}

fn triple<T: std::str::FromStr + Copy>(text: &str) -> anyhow::Result<[T; 3]> {
    let parts: Vec<T> = text
        .split(',')
        .map(|p| p.trim().parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("cannot parse {text:?} as numbers"))?;
    match parts.as_slice() {
        [a] => Ok([*a, *a, *a]),
        [a, b, c] => Ok([*a, *b, *c]),
        _ => anyhow::bail!("{text:?}: give one or three comma-separated numbers"),
    }
}

/// The template registration, loaded only for recipes that register native-space inputs.
fn registrar(recipe: &Recipe, args: &Args) -> anyhow::Result<Option<TemplateRegistrar>> {
    if args.in_template_space || matches!(recipe, Recipe::Resample(_)) {
        return Ok(None);
    }
    let dir = args.template.clone().unwrap_or_else(Template::default_dir);
    let template = Template::load(&dir)
        .with_context(|| format!("loading the registration template from {}", dir.display()))?;
    let mut options = RegistrarOptions::new(braid_template_grid());
    options.shrink = usize::from(args.registration_shrink);
    Ok(Some(TemplateRegistrar::new(template, options)?))
}

/// Writes each QA image as `DIR/NAME.nii.gz`.
fn write_qa_images(dir: &Path, images: &[(&'static str, Image3)]) -> anyhow::Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, img) in images {
        let path = dir.join(format!("{name}.nii.gz"));
        write_volume(&path, &img.to_volume())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut recipe: Recipe = args.recipe.parse()?;
    if let Recipe::Resample(spec) = &mut recipe {
        if let Some(s) = &args.spacing {
            spec.spacing = triple(s)?;
        }
        match args.shape.as_deref() {
            Some("none") => spec.shape = None,
            Some(s) => spec.shape = Some(triple(s)?),
            None => {}
        }
        spec.normalize = args.normalize;
    }
    let dwi = match (&args.dwi, &args.bval, &args.bvec) {
        (Some(d), Some(bval), Some(bvec)) => Some(DwiInput {
            volume: read_volume(d).with_context(|| "reading the diffusion series")?,
            gradients: read_fsl_gradients(bval, bvec)?,
        }),
        _ => None,
    };
    let inputs = RecipeInputs {
        t1: args.t1.as_deref().map(image).transpose()?,
        dwi,
        mask: args.mask.as_deref().map(image).transpose()?,
        fa: args.fa.as_deref().map(image).transpose()?,
        md: args.md.as_deref().map(image).transpose()?,
        image: args.input.as_deref().map(image).transpose()?,
        in_template_space: args.in_template_space,
        shell_max: args.shell_max,
    };
    let registrar = registrar(&recipe, &args)?;
    let made = recipe::run(
        &recipe,
        &inputs,
        registrar.as_ref().map(|r| r as &dyn TemplateRegistration),
    )?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_npy(&args.out.join("input.npy"), &made.tensor)?;
    let channels: Vec<&Image3> = made.channels.iter().collect();
    write_qa_png(&args.out.join("qa.png"), &channels)?;
    write_qa_images(&args.out.join("qa"), &made.qa_images)?;
    println!(
        "{}",
        serde_json::json!({
            "recipe": recipe.name(),
            "shape": made.tensor.shape,
            "channels": made.names,
            "shell_max": args.shell_max,
        })
    );
    Ok(ExitCode::SUCCESS)
}
