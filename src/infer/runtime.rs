//! ONNX Runtime, loaded at run time from the library the set-up script unpacked.
//!
//! `ort` allows one environment per process, so the environment lives in a process-wide cell and
//! every [`ModelSession`] is built against it. Execution providers are tried in the configured
//! order; one that is not compiled into the library, or that fails to start (no GPU, no driver),
//! is skipped with a warning, and the CPU provider is always the last resort. The provider that
//! actually serves a session is kept with it so that every prediction can record it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ndarray::ArrayD;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::TensorRef;

use super::error::InferError;
use crate::config::InferenceConfig;

/// An execution provider that brainaged knows how to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA GPUs through CUDA and cuDNN.
    Cuda,
    /// ONNX Runtime's default CPU kernels.
    Cpu,
}

impl Provider {
    /// The name used in configuration and in recorded predictions.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sessions are built: the providers wanted, in order, and the thread count.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Providers in order of preference; CPU is appended when absent.
    pub providers: Vec<Provider>,
    /// Threads inside one operator; 0 lets ONNX Runtime choose.
    pub intra_op_threads: usize,
    /// Explicit library path; otherwise `ORT_DYLIB_PATH`, then the set-up script's locations.
    pub library_path: Option<PathBuf>,
}

impl RuntimeOptions {
    /// Options from the `[inference]` section. Unknown provider names are skipped with a warning
    /// rather than refused, so that a configuration written for a newer build still starts.
    pub fn from_config(cfg: &InferenceConfig) -> Self {
        let mut providers = Vec::new();
        for name in &cfg.providers {
            match name.trim().to_ascii_lowercase().as_str() {
                "cuda" => providers.push(Provider::Cuda),
                "cpu" => providers.push(Provider::Cpu),
                other => tracing::warn!(provider = other, "unknown execution provider ignored"),
            }
        }
        Self {
            providers,
            intra_op_threads: cfg.intra_op_threads,
            library_path: cfg.library_path.clone(),
        }
    }

    /// CPU only, with a fixed thread count: what tests and benchmarks use.
    pub fn cpu(intra_op_threads: usize) -> Self {
        Self {
            providers: vec![Provider::Cpu],
            intra_op_threads,
            library_path: None,
        }
    }

    fn provider_order(&self) -> Vec<Provider> {
        let mut order: Vec<Provider> = Vec::new();
        for p in &self.providers {
            if !order.contains(p) {
                order.push(*p);
            }
        }
        if !order.contains(&Provider::Cpu) {
            order.push(Provider::Cpu);
        }
        order
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self::from_config(&InferenceConfig::default())
    }
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where the library is looked for when no path is configured, in order.
fn candidate_libraries(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH")
        && !p.is_empty()
    {
        out.push(PathBuf::from(p));
    }
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/ort/lib")];
    if let Ok(root) = std::env::var("BRAINAGED_ROOT") {
        dirs.insert(0, Path::new(&root).join(".cache/ort/lib"));
    }
    if let Ok(home) = std::env::var("HOME") {
        dirs.push(Path::new(&home).join(".cache/brainaged/ort/lib"));
    }
    for dir in dirs {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut libs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                })
                .collect();
            libs.sort();
            out.extend(libs);
        }
    }
    out
}

/// Loads the library once per process (later calls reuse it, whatever path they name) and
/// returns the environment every session is built on.
pub fn environment(
    library_path: Option<&Path>,
) -> Result<&'static ort::environment::Environment, InferError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let candidates = candidate_libraries(library_path);
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            let looked = if candidates.is_empty() {
                "no candidate paths".to_string()
            } else {
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(InferError::RuntimeMissing { looked }.to_string());
        };
        let builder = ort::init_from(path).map_err(|e| {
            InferError::RuntimeLoad {
                path: path.clone(),
                reason: e.to_string(),
            }
            .to_string()
        })?;
        let env = builder
            .with_name("brainaged")
            .build()
            .map_err(|e| InferError::Ort(e.to_string()).to_string())?;
        tracing::info!(library = %path.display(), "ONNX Runtime loaded");
        Ok(env)
    });
    result.as_ref().map_err(|e| InferError::Ort(e.clone()))
}

/// One ONNX model, loaded once and reused for every run. Runs are serialised: ONNX Runtime
/// sessions are not safe to run from several threads at once through `ort`.
pub struct ModelSession {
    path: PathBuf,
    provider: Provider,
    session: Mutex<Session>,
    input_names: Vec<String>,
    output_names: Vec<String>,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .finish()
    }
}

impl ModelSession {
    /// Loads `path` with the first provider in `options` that works.
    pub fn load(path: &Path, options: &RuntimeOptions) -> Result<Self, InferError> {
        let env = environment(options.library_path.as_deref())?;
        let session_err = |reason: String| InferError::Session {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(session_err("file not found".into()));
        }
        let mut last_error = String::new();
        for provider in options.provider_order() {
            match build_session(env, path, provider, options.intra_op_threads) {
                Ok(session) => {
                    let input_names = session
                        .inputs()
                        .iter()
                        .map(|o| o.name().to_string())
                        .collect();
                    let output_names = session
                        .outputs()
                        .iter()
                        .map(|o| o.name().to_string())
                        .collect();
                    tracing::info!(model = %path.display(), provider = %provider, "model session ready");
                    return Ok(Self {
                        path: path.to_path_buf(),
                        provider,
                        session: Mutex::new(session),
                        input_names,
                        output_names,
                    });
                }
                Err(reason) if provider != Provider::Cpu => {
                    tracing::warn!(
                        model = %path.display(),
                        provider = %provider,
                        %reason,
                        "execution provider unavailable, falling back"
                    );
                    last_error = reason;
                }
                Err(reason) => {
                    last_error = reason;
                }
            }
        }
        Err(session_err(last_error))
    }

    /// The provider that serves this session.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Graph input names, in graph order.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    /// Graph output names, in graph order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Runs the graph on named float inputs and returns every output as float, in graph order.
    pub fn run(&self, inputs: &[(&str, &ArrayD<f32>)]) -> Result<Vec<ArrayD<f32>>, InferError> {
        let ort_err = |e: ort::Error| InferError::Session {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let mut values = Vec::with_capacity(inputs.len());
        for (name, array) in inputs {
            let tensor = TensorRef::from_array_view(array.view()).map_err(ort_err)?;
            values.push((name.to_string(), tensor));
        }
        let mut session = self.session.lock().map_err(|_| InferError::Session {
            path: self.path.clone(),
            reason: "session lock poisoned by an earlier panic".into(),
        })?;
        let outputs = session.run(values).map_err(ort_err)?;
        let mut out = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let array = value.try_extract_array::<f32>().map_err(ort_err)?;
            out.push(array.to_owned());
        }
        Ok(out)
    }
}

fn build_session(
    env: &ort::environment::Environment,
    path: &Path,
    provider: Provider,
    threads: usize,
) -> Result<Session, String> {
    let mut builder = Session::builder(env).map_err(|e| e.to_string())?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| e.to_string())?;
    }
    if provider == Provider::Cuda {
        match ort::ep::CUDA::is_available() {
            Ok(true) => {}
            Ok(false) => {
                return Err("this ONNX Runtime build has no CUDA execution provider".into());
            }
            Err(e) => return Err(e.to_string()),
        }
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| e.to_string())?;
    }
    builder.commit_from_file(path).map_err(|e| e.to_string())
}
