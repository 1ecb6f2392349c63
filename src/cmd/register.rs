//! `brainaged register --fixed F --moving M --transform rigid|affine|syn --out DIR`: registers
//! M to F with the reference chain's ANTs settings and writes `DIR/warped.nii.gz` (M on F's
//! grid), `DIR/affine.json` and, for SyN, `DIR/warp.nii.gz` and `DIR/inverse_warp.nii.gz`
//! (formats in `preprocess::register::transform`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use brainaged::nifti_io;
use brainaged::preprocess::register::{RegistrationParams, TransformKind, register_volumes};

#[derive(clap::Args)]
pub struct Args {
    /// The image that stays put (e.g. the MNI template).
    #[arg(long)]
    fixed: PathBuf,
    /// The image that is moved onto the fixed one (e.g. a subject T1).
    #[arg(long)]
    moving: PathBuf,
    /// What to estimate; each includes the ones before it.
    #[arg(long, value_enum, default_value = "syn")]
    transform: Kind,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    Rigid,
    Affine,
    Syn,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = match args.transform {
        Kind::Rigid => TransformKind::Rigid,
        Kind::Affine => TransformKind::Affine,
        Kind::Syn => TransformKind::Syn,
    };
    let fixed = nifti_io::read_volume_f32(&args.fixed)
        .with_context(|| format!("reading the fixed image {}", args.fixed.display()))?;
    let moving = nifti_io::read_volume_f32(&args.moving)
        .with_context(|| format!("reading the moving image {}", args.moving.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let params = RegistrationParams::ants_syn_defaults();
    let (registration, warped) =
        register_volumes(&fixed, &moving, kind, &params).context("registration failed")?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "registered");
    nifti_io::write_volume(&args.out.join("warped.nii.gz"), &warped)
        .context("writing warped.nii.gz")?;
    registration
        .write(&args.out)
        .context("writing the transform files")?;
    Ok(ExitCode::SUCCESS)
}
