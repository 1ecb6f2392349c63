//! `brainaged sample`: ask a joint-diffusion package a question — any of its variables given,
//! the rest sampled — and print the answer (JSON with `--json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use brainaged::config::Config;
use brainaged::infer::RuntimeOptions;
use brainaged::infer::diffusion::sampler::read_known_image;
use brainaged::infer::diffusion::spec::VariableKind;
use brainaged::infer::diffusion::{JointModel, Known, Method, SampleRequest, VariableSummary};
use brainaged::infer::package::ModelPackage;
use brainaged::volume::{Volume, VolumeMeta, VoxelData};

#[derive(clap::Args)]
pub struct Args {
    /// The package directory (holding model.toml).
    #[arg(long)]
    package: PathBuf,
    /// A known variable: NAME=VALUE (continuous: comma-separated numbers; categorical: a class).
    #[arg(long = "known", value_name = "NAME=VALUE")]
    known: Vec<String>,
    /// A known image variable: NAME=FILE.nii.gz.
    #[arg(long = "known-image", value_name = "NAME=FILE")]
    known_image: Vec<String>,
    /// Samples drawn in one batch.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Sampling steps (at most the model's training steps).
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// ddpm (ancestral) or ddim.
    #[arg(long, default_value = "ddim")]
    sampler: String,
    /// DDIM's eta (0: deterministic); ignored for ddpm.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// RePaint-style resampling: take each step this many times (replacement models).
    #[arg(long, default_value_t = 1)]
    resample: usize,
    /// Where generated images are written.
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
    /// Configuration file (for `[inference]`).
    #[arg(long, env = "BRAINAGED_CONFIG")]
    config: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let options = RuntimeOptions::from_config(&config.inference);
    let package = ModelPackage::open(&args.package)?;
    let model = JointModel::load(package, &options)?;
    let method = match args.sampler.as_str() {
        "ddpm" => Method::Ddpm,
        "ddim" => Method::Ddim { eta: args.eta },
        other => bail!("--sampler must be ddpm or ddim, not {other:?}"),
    };
    let mut known = BTreeMap::new();
    for item in &args.known {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--known {item:?}: expected NAME=VALUE"))?;
        let var = model
            .spec
            .variables
            .iter()
            .find(|v| v.name == name)
            .with_context(|| format!("--known: the package has no variable {name:?}"))?;
        let parsed = match var.kind {
            VariableKind::Categorical => Known::Class(value.to_string()),
            VariableKind::Continuous | VariableKind::Image => Known::Values(
                value
                    .split(',')
                    .map(|v| v.trim().parse::<f64>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("--known {name}: {value:?} is not a number list"))?,
            ),
        };
        known.insert(name.to_string(), parsed);
    }
    for item in &args.known_image {
        let (name, file) = item
            .split_once('=')
            .with_context(|| format!("--known-image {item:?}: expected NAME=FILE"))?;
        known.insert(
            name.to_string(),
            read_known_image(std::path::Path::new(file))?,
        );
    }
    let request = SampleRequest {
        known,
        samples: args.samples,
        steps: args.steps,
        method,
        seed: args.seed,
        resample: args.resample,
    };
    let result = model.sample(&request)?;
    let mut variables = serde_json::Map::new();
    for (name, summary) in &result.variables {
        let value = match summary {
            VariableSummary::Image { mean, std, shape } => {
                std::fs::create_dir_all(&args.output_dir)
                    .with_context(|| format!("creating {}", args.output_dir.display()))?;
                let mean_path = args.output_dir.join(format!("{name}.nii.gz"));
                let std_path = args.output_dir.join(format!("{name}_std.nii.gz"));
                write_image(&mean_path, mean)?;
                write_image(&std_path, std)?;
                serde_json::json!({"file": mean_path, "std_file": std_path, "shape": shape})
            }
            other => serde_json::to_value(other)?,
        };
        variables.insert(name.clone(), value);
    }
    let answer = serde_json::json!({
        "package": model.package.name(),
        "provider": result.provider,
        "sampler": args.sampler,
        "steps": args.steps.min(model.schedule.num_train_steps()),
        "samples": args.samples,
        "variables": variables,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        for (name, v) in &variables {
            println!("{name}: {v}");
        }
        println!("(provider {}, {} samples)", result.provider, args.samples);
    }
    Ok(ExitCode::SUCCESS)
}

fn write_image(path: &std::path::Path, data: &ndarray::ArrayD<f32>) -> anyhow::Result<()> {
    let volume = Volume {
        data: VoxelData::F32(data.clone()),
        affine: nalgebra::Matrix4::identity(),
        meta: VolumeMeta::default(),
        gradients: None,
    };
    brainaged::nifti_io::write_volume(path, &volume)
        .with_context(|| format!("writing {}", path.display()))
}
