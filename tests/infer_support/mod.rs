//! Shared by the `infer_*` integration tests: the tools' Python, the ONNX Runtime library check,
//! and running our Python test-model builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../common/mod.rs"]
mod common;

/// The tools' virtualenv Python (torch, onnx, onnxruntime), made by scripts/setup.d/40-venv.sh.
pub use common::venv_python;

/// Runs `tools/<script>` with the venv Python; panics with its output when it fails.
pub fn run_tool(script: &str, args: &[&str]) -> String {
    let out = Command::new(venv_python())
        .arg(root().join("tools").join(script))
        .args(args)
        .output()
        .expect("failed to start the tools' Python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tools/{script} failed:\n{text}");
    text
}

/// The brainaged binary built for this test run.
pub fn brainaged() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brainaged"))
}

/// Parses stdout of a successful brainaged run as JSON.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("failed to run brainaged");
    assert!(
        out.status.success(),
        "brainaged failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("brainaged printed invalid JSON")
}

/// A temp directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Panics early with the set-up hint when the ONNX Runtime library cannot be loaded.
pub fn require_ort() {
    if let Err(e) = brainaged::infer::runtime::environment(None) {
        panic!("{e}");
    }
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("parse json")
}

/// Reads raw little-endian float32 (C order), as the Python tools write reference inputs.
pub fn read_f32(path: &Path, shape: &[usize]) -> ndarray::ArrayD<f32> {
    let bytes = std::fs::read(path).expect("read f32 file");
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), values).expect("shape matches file")
}
