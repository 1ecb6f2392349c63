//! `brainaged models list|verify|import`: the model packages a site has, whether their files
//! are intact and runnable, and turning a BRAID v1.0 weights folder into packages.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use brainaged::config::Config;
use brainaged::infer::RuntimeOptions;
use brainaged::infer::package::{FileCheck, ModelPackage};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (for `[inference]`).
    #[arg(long, env = "BRAINAGED_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory of packages; default: `inference.models_dir`.
    #[arg(long, global = true)]
    models_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(clap::Subcommand)]
enum ModelsCommand {
    /// One line per package: name, version, task, modality, recipe, folds with weights present.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check every file: present, checksum as declared, loads, runs on a dummy input.
    Verify {
        /// Package names (default: all).
        names: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Time every fold of a package on one subject: median latency per fold, provider used.
    Bench {
        /// Package name.
        name: String,
        /// Raw little-endian float32 image of the declared shape with batch 1 (default: a
        /// seeded pseudo-random image).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Timed runs per fold (after one untimed warm-up run).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Intra-op threads (default: `inference.intra_op_threads`).
        #[arg(long)]
        threads: Option<usize>,
        /// Providers in order, comma-separated (default: `inference.providers`).
        #[arg(long)]
        providers: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Turn weights from elsewhere into packages.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
}

#[derive(clap::Subcommand)]
enum ImportSource {
    /// A BRAID v1.0 folder (`<type>/config.yaml`, `<type>-fold-k.pth`, bias parameters).
    Braid {
        dir: PathBuf,
        /// Comma-separated BRAID types (default: every type found).
        #[arg(long)]
        types: Option<String>,
        /// Image grid X,Y,Z declared in the manifests (default BRAID's 128,152,128).
        #[arg(long)]
        spatial_shape: Option<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let models_dir = args
        .models_dir
        .clone()
        .unwrap_or_else(|| config.inference.models_dir.clone());
    let mut inference = config.inference.clone();
    if let ModelsCommand::Bench {
        threads, providers, ..
    } = &args.command
    {
        if let Some(t) = threads {
            inference.intra_op_threads = *t;
        }
        if let Some(p) = providers {
            inference.providers = p.split(',').map(|s| s.trim().to_string()).collect();
        }
    }
    let options = RuntimeOptions::from_config(&inference);
    match args.command {
        ModelsCommand::List { json } => list(&models_dir, json),
        ModelsCommand::Verify { names, json } => verify(&models_dir, &names, &options, json),
        ModelsCommand::Bench {
            name,
            input,
            runs,
            json,
            ..
        } => bench(&models_dir, &name, input.as_deref(), runs, &options, json),
        ModelsCommand::Import {
            source:
                ImportSource::Braid {
                    dir,
                    types,
                    spatial_shape,
                },
        } => import_braid(&models_dir, &dir, types, spatial_shape),
    }
}

fn list(models_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let packages = ModelPackage::list(models_dir)?;
    let mut rows = Vec::new();
    for (dir, opened) in &packages {
        let row = match opened {
            Ok(p) => {
                let m = &p.manifest;
                let (present, total) = weights_present(p);
                serde_json::json!({
                    "name": m.name, "version": m.version, "task": m.task, "modality": m.modality,
                    "recipe": m.recipe, "folds": total, "weights_present": present,
                    "dir": dir, "error": null,
                })
            }
            Err(e) => serde_json::json!({"dir": dir, "error": e.to_string()}),
        };
        rows.push(row);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<26} {:<8} {:<16} {:<6} {:<20} {:>8}",
        "NAME", "VERSION", "TASK", "MOD", "RECIPE", "WEIGHTS"
    );
    for row in &rows {
        if let Some(err) = row["error"].as_str() {
            println!("{:<26} error: {err}", row["dir"].as_str().unwrap_or("?"));
            continue;
        }
        let s = |k: &str| row[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<26} {:<8} {:<16} {:<6} {:<20} {:>3}/{:<4}",
            s("name"),
            s("version"),
            s("task"),
            s("modality"),
            s("recipe"),
            row["weights_present"],
            row["folds"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Files (folds, or the joint model's denoiser) present on disk, and how many are declared.
fn weights_present(p: &ModelPackage) -> (usize, usize) {
    let mut files: Vec<&str> = p.manifest.folds.iter().map(|f| f.file.as_str()).collect();
    if let Some(j) = &p.manifest.joint {
        files.push(&j.denoiser);
    }
    let present = files
        .iter()
        .filter(|f| p.file(f).map(|path| path.is_file()).unwrap_or(false))
        .count();
    (present, files.len())
}

fn verify(
    models_dir: &Path,
    names: &[String],
    options: &RuntimeOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let packages = ModelPackage::list(models_dir)?;
    let mut report: Vec<(String, Vec<FileCheck>)> = Vec::new();
    for (dir, opened) in packages {
        let name = match &opened {
            Ok(p) => p.name().to_string(),
            Err(_) => dir.display().to_string(),
        };
        if !names.is_empty() && !names.contains(&name) {
            continue;
        }
        let checks = match opened {
            Ok(p) => p.verify(options),
            Err(e) => vec![FileCheck {
                file: "model.toml".into(),
                status: "invalid".into(),
                detail: Some(e.to_string()),
                provider: None,
            }],
        };
        report.push((name, checks));
    }
    for wanted in names {
        if !report.iter().any(|(n, _)| n == wanted) {
            bail!("no package called {wanted:?} in {}", models_dir.display());
        }
    }
    let all_ok = report
        .iter()
        .all(|(_, checks)| checks.iter().all(|c| c.status == "ok"));
    if json {
        let value: Vec<_> = report
            .iter()
            .map(|(n, c)| serde_json::json!({"package": n, "files": c}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "{:<26} {:<36} {:<18} {:<8} DETAIL",
            "PACKAGE", "FILE", "STATUS", "PROVIDER"
        );
        for (name, checks) in &report {
            for c in checks {
                println!(
                    "{:<26} {:<36} {:<18} {:<8} {}",
                    name,
                    c.file,
                    c.status,
                    c.provider.map(|p| p.as_str()).unwrap_or("-"),
                    c.detail.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench(
    models_dir: &Path,
    name: &str,
    input: Option<&Path>,
    runs: usize,
    options: &RuntimeOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use brainaged::infer::covariates::{Race, Sex, braid_demographics};
    use brainaged::infer::ensemble::Ensemble;
    use brainaged::infer::manifest::InputKind;
    use ndarray::{ArrayD, IxDyn};
    use rand::{Rng, SeedableRng};

    let package = ModelPackage::list(models_dir)?
        .into_iter()
        .filter_map(|(_, p)| p.ok())
        .find(|p| p.name() == name)
        .with_context(|| format!("no package called {name:?} in {}", models_dir.display()))?;
    let mut image = None;
    let mut covariates = None;
    for spec in &package.manifest.inputs {
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|&d| if d < 0 { 1 } else { d as usize })
            .collect();
        let count: usize = shape.iter().product();
        match spec.kind {
            InputKind::Image => {
                let values: Vec<f32> = match input {
                    Some(path) => {
                        let bytes = std::fs::read(path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        if bytes.len() != count * 4 {
                            bail!(
                                "{} has {} bytes; shape {shape:?} needs {}",
                                path.display(),
                                bytes.len(),
                                count * 4
                            );
                        }
                        bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    }
                    None => {
                        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                        (0..count).map(|_| rng.random::<f32>()).collect()
                    }
                };
                image = Some(ArrayD::from_shape_vec(IxDyn(&shape), values)?);
            }
            InputKind::Covariates => {
                let v = braid_demographics(Sex::Unknown, Race::Unknown);
                covariates = Some(ArrayD::from_shape_vec(IxDyn(&shape), v.to_vec())?);
            }
        }
    }
    let image = image.context("the package declares no image input")?;
    let started = std::time::Instant::now();
    let ensemble = Ensemble::load(package, options)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut folds = Vec::new();
    for k in 0..ensemble.len() {
        // The warm-up run's prediction is printed too, so that a provider's output can be
        // compared with the peer's on the same input (CUDA kernels may use TF32 arithmetic).
        let output = ensemble.run_fold(k, &image, covariates.as_ref())?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let t = std::time::Instant::now();
            ensemble.run_fold(k, &image, covariates.as_ref())?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        folds.push(serde_json::json!({
            "fold": k + 1,
            "file": ensemble.package.manifest.folds[k].file,
            "median_ms": median,
            "min_ms": times[0],
            "runs": times.len(),
            "output": output.iter().copied().collect::<Vec<f32>>(),
        }));
    }
    let result = serde_json::json!({
        "package": name,
        "provider": ensemble.provider(),
        "threads": options.intra_op_threads,
        "input_shape": image.shape(),
        "load_ms": load_ms,
        "folds": folds,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{name}: provider {}, input {:?}, load {load_ms:.0} ms",
            ensemble.provider(),
            image.shape()
        );
        for f in &folds {
            println!(
                "  fold {}: median {:.1} ms (min {:.1} ms, {} runs), output {}",
                f["fold"],
                f["median_ms"].as_f64().unwrap_or(f64::NAN),
                f["min_ms"].as_f64().unwrap_or(f64::NAN),
                f["runs"],
                f["output"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tools' Python: `$BRAINAGED_VENV/bin/python`, else the set-up script's default venv.
fn tools_python() -> anyhow::Result<PathBuf> {
    let venv = match std::env::var_os("BRAINAGED_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/brainaged/venv"),
    };
    let python = venv.join("bin/python");
    if !python.is_file() {
        bail!(
            "{} is missing: run scripts/setup.d/40-venv.sh (torch, MONAI, onnx) or set BRAINAGED_VENV",
            python.display()
        );
    }
    Ok(python)
}

/// `tools/` beside the installed binary's source tree, or `$BRAINAGED_TOOLS`.
fn tools_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tools"))
}

fn import_braid(
    models_dir: &Path,
    dir: &Path,
    types: Option<String>,
    spatial_shape: Option<String>,
) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let script = tools_dir().join("export_braid.py");
    if !script.is_file() {
        bail!("{} is missing (set BRAINAGED_TOOLS)", script.display());
    }
    std::fs::create_dir_all(models_dir)
        .with_context(|| format!("creating {}", models_dir.display()))?;
    let mut cmd = Command::new(tools_python()?);
    cmd.arg(&script).arg(dir).arg("--out").arg(models_dir);
    if let Some(t) = types {
        cmd.arg("--types").arg(t);
    }
    if let Some(s) = spatial_shape {
        cmd.arg("--spatial-shape").arg(s);
    }
    let output = cmd
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "export_braid.py failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every package written must open and match its own checksums before we call it imported.
    for line in stdout.lines() {
        if let Some(path) = line.strip_prefix("package ") {
            let package = ModelPackage::open(Path::new(path))?;
            for fold in &package.manifest.folds {
                package.check_file(&fold.file, fold.sha256.as_deref(), true)?;
            }
            println!(
                "imported {} ({} folds) into {}",
                package.name(),
                package.manifest.folds.len(),
                path
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
