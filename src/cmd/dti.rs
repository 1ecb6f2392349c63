//! `brainaged dti`: fit diffusion tensors and write FA and MD maps, as MRtrix `dwi2tensor` (default
//! IWLS) followed by `tensor2metric -fa -adc` would.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use brainaged::nifti_io::{read_volume_f32, write_volume};
use brainaged::preprocess::dti::{DEFAULT_ITERATIONS, fit_voxels};
use brainaged::preprocess::dwi_reader::DwiFile;
use brainaged::preprocess::fsl_grad::read_fsl_gradients;
use brainaged::preprocess::image::Image3;
use brainaged::preprocess::mask::Mask;

#[derive(clap::Args)]
pub struct Args {
    /// 4-D diffusion series (NIfTI).
    #[arg(long)]
    dwi: PathBuf,
    /// FSL b-values (s/mm²).
    #[arg(long)]
    bval: PathBuf,
    /// FSL b-vectors (image frame, as dcm2niix writes them).
    #[arg(long)]
    bvec: PathBuf,
    /// Brain mask (any grid; moved to the diffusion grid by nearest neighbour). Tensors are fitted
    /// inside the mask dilated by one voxel; FA and MD are then zeroed outside the mask.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Fit only volumes with b below this (b=0 included); all volumes when absent.
    #[arg(long)]
    shell_max: Option<f64>,
    /// IWLS reweightings after the initial weighted fit (MRtrix `-iter`).
    #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
    iterations: usize,
    /// Output folder for fa.nii.gz and md.nii.gz.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let gradients = read_fsl_gradients(&args.bval, &args.bvec)?;
    let dwi = DwiFile::open(&args.dwi, &gradients, args.shell_max)?;
    let mask = match &args.mask {
        Some(path) => {
            let img = Image3::from_volume(&read_volume_f32(path)?)
                .with_context(|| format!("{}", path.display()))?;
            Some(Mask::onto_grid(&img, &dwi.grid())?)
        }
        None => None,
    };
    // The mask is known before the series is decompressed, so only the voxels the fit needs
    // (inside the mask dilated by one voxel) are kept.
    let series = dwi.read_voxels(mask.as_ref().map(Mask::dilated).as_ref())?;
    let maps = fit_voxels(&series, args.iterations)?;
    let maps = match &mask {
        Some(m) => maps.within(m),
        None => maps,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_volume(&args.out.join("fa.nii.gz"), &maps.fa.to_volume())?;
    write_volume(&args.out.join("md.nii.gz"), &maps.md.to_volume())?;
    tracing::info!(
        volumes = series.bvals.len(),
        voxels = series.voxels.len(),
        seconds = started.elapsed().as_secs_f64(),
        "dti maps written"
    );
    Ok(ExitCode::SUCCESS)
}
