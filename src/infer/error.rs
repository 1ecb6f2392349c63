//! Why inference could not run. One enum for the whole `infer` module so that a log line names the
//! package, fold or input that failed.

use std::path::PathBuf;

/// Every way loading a runtime, a package or running a model can fail.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(
        "ONNX Runtime library not found (looked at {looked}); run scripts/setup.d/50-onnxruntime.sh \
         or set inference.library_path / ORT_DYLIB_PATH"
    )]
    RuntimeMissing { looked: String },
    #[error("ONNX Runtime library {path}: {reason}")]
    RuntimeLoad { path: PathBuf, reason: String },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("model {path}: {reason}")]
    Session { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "package {package}: file {file} is missing{hint}",
        hint = if *.weights { " (weights are not shipped with brainaged: import them into the package, e.g. `brainaged models import braid DIR` for BRAID)" } else { "" }
    )]
    MissingFile {
        package: String,
        file: PathBuf,
        weights: bool,
    },
    #[error("package {package}: {file} has sha256 {actual}, the manifest says {expected}")]
    Checksum {
        package: String,
        file: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("package {package}: {reason}")]
    Input { package: String, reason: String },
    #[error("package {package}: model output: {reason}")]
    Output { package: String, reason: String },
}

impl InferError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> InferError {
        let path = path.into();
        move |source| InferError::Io { path, source }
    }
}
