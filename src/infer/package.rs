//! Model packages on disk: `<dir>/model.toml` plus the ONNX files it names.
//!
//! Opening a package reads and checks the manifest only, so that `models list` works for
//! packages whose weights a site has not imported yet. Checksums are checked by [`ModelPackage::verify`]
//! and before any fold is loaded for scoring, so a truncated or swapped file never scores a patient.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use ndarray::ArrayD;
use sha2::{Digest, Sha256};

use super::error::InferError;
use super::manifest::{InputKind, InputSpec, Manifest, OutputSemantics, Task};
use super::runtime::{ModelSession, Provider, RuntimeOptions};

/// The manifest's file name inside a package directory.
pub const MANIFEST_FILE: &str = "model.toml";

/// A package whose manifest has been read and checked.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    /// The package directory.
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// A package directory and what opening it gave.
pub type Listed = (PathBuf, Result<ModelPackage, InferError>);

/// The outcome of checking one file of a package.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileCheck {
    /// Path relative to the package.
    pub file: String,
    /// "ok", "missing", "checksum mismatch", "no checksum", "load failed", "run failed".
    pub status: String,
    /// Why, when not ok.
    pub detail: Option<String>,
    /// The provider the file ran on, when it ran.
    pub provider: Option<Provider>,
}

impl ModelPackage {
    /// Reads `<dir>/model.toml` and checks it.
    pub fn open(dir: &Path) -> Result<Self, InferError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(InferError::io(&path))?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| InferError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        validate(&manifest).map_err(|reason| InferError::Manifest {
            path: path.clone(),
            reason,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Every package directly under `models_dir`, sorted by directory name; a directory whose
    /// manifest is broken is returned as its error so that a listing shows it rather than hides it.
    pub fn list(models_dir: &Path) -> Result<Vec<Listed>, InferError> {
        let entries = std::fs::read_dir(models_dir).map_err(InferError::io(models_dir))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        Ok(dirs
            .into_iter()
            .map(|d| {
                let opened = Self::open(&d);
                (d, opened)
            })
            .collect())
    }

    /// The package's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// A file of the package, refusing names that would leave the directory.
    pub fn file(&self, relative: &str) -> Result<PathBuf, InferError> {
        let rel = Path::new(relative);
        let escapes = rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes {
            return Err(InferError::Manifest {
                path: self.dir.join(MANIFEST_FILE),
                reason: format!("file {relative:?} must be a relative path inside the package"),
            });
        }
        Ok(self.dir.join(rel))
    }

    /// Checks that `relative` exists and, when `sha256` is given, that its digest matches.
    pub fn check_file(
        &self,
        relative: &str,
        sha256: Option<&str>,
        weights: bool,
    ) -> Result<PathBuf, InferError> {
        let path = self.file(relative)?;
        if !path.is_file() {
            return Err(InferError::MissingFile {
                package: self.manifest.name.clone(),
                file: path,
                weights,
            });
        }
        if let Some(expected) = sha256 {
            let actual = sha256_file(&path)?;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                return Err(InferError::Checksum {
                    package: self.manifest.name.clone(),
                    file: path,
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(path)
    }

    /// Loads one fold after checking its checksum.
    pub fn load_fold(
        &self,
        index: usize,
        options: &RuntimeOptions,
    ) -> Result<ModelSession, InferError> {
        let fold = self
            .manifest
            .folds
            .get(index)
            .ok_or_else(|| InferError::Input {
                package: self.manifest.name.clone(),
                reason: format!("no fold {index}"),
            })?;
        let path = self.check_file(&fold.file, fold.sha256.as_deref(), true)?;
        let session = ModelSession::load(&path, options)?;
        self.check_graph(&session)?;
        Ok(session)
    }

    /// The graph must have the inputs the manifest declares, with compatible names.
    fn check_graph(&self, session: &ModelSession) -> Result<(), InferError> {
        for input in &self.manifest.inputs {
            if !session.input_names().iter().any(|n| n == &input.name) {
                return Err(InferError::Input {
                    package: self.manifest.name.clone(),
                    reason: format!(
                        "{} has no input {:?} (graph inputs: {:?})",
                        session.path().display(),
                        input.name,
                        session.input_names()
                    ),
                });
            }
        }
        if let Some(name) = self.manifest.output.as_ref().and_then(|o| o.name.as_ref())
            && !session.output_names().iter().any(|n| n == name)
        {
            return Err(InferError::Output {
                package: self.manifest.name.clone(),
                reason: format!(
                    "{} has no output {name:?} (graph outputs: {:?})",
                    session.path().display(),
                    session.output_names()
                ),
            });
        }
        Ok(())
    }

    /// Checks `array` against the declared input: rank, fixed dimensions, batch agreement.
    pub fn check_input(&self, spec: &InputSpec, array: &ArrayD<f32>) -> Result<(), InferError> {
        check_shape(&self.manifest.name, spec, array.shape())
    }

    /// A zero input of the declared shape with every free dimension set to 1.
    pub fn dummy_input(spec: &InputSpec) -> ArrayD<f32> {
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|&d| if d < 0 { 1 } else { d as usize })
            .collect();
        ArrayD::zeros(shape)
    }

    /// Checks every file: present, checksum as declared, loads, and runs on a dummy input.
    pub fn verify(&self, options: &RuntimeOptions) -> Vec<FileCheck> {
        let mut checks = Vec::new();
        for fold in &self.manifest.folds {
            checks.push(self.verify_fold(&fold.file, fold.sha256.as_deref(), options));
        }
        if let Some(joint) = &self.manifest.joint {
            let denoiser = &joint.denoiser;
            checks.push(
                match self.check_file(denoiser, joint.denoiser_sha256.as_deref(), true) {
                    Ok(path) => self.verify_denoiser(&path, joint, options),
                    Err(e) => file_error(denoiser, e),
                },
            );
            for file in joint.encoder.iter().chain(joint.decoder.iter()) {
                let check = match self.check_file(file, None, true) {
                    Ok(path) => match ModelSession::load(&path, options) {
                        Ok(s) => ok_check(file, s.provider()),
                        Err(e) => failed(file, "load failed", e),
                    },
                    Err(e) => file_error(file, e),
                };
                checks.push(check);
            }
        }
        checks
    }

    /// Loads the denoiser and runs it on one all-zero sample at t = 0; the output must be [1, D].
    fn verify_denoiser(
        &self,
        path: &Path,
        joint: &super::diffusion::spec::JointSpec,
        options: &RuntimeOptions,
    ) -> FileCheck {
        use super::diffusion::spec::Conditioning;
        let file = joint.denoiser.as_str();
        let session = match ModelSession::load(path, options) {
            Ok(s) => s,
            Err(e) => return failed(file, "load failed", e),
        };
        let d = joint.dim();
        let x = ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, d]));
        let t = match joint.conditioning {
            Conditioning::PerVariableT => {
                ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, joint.variables.len()]))
            }
            Conditioning::Replacement => ArrayD::<f32>::zeros(ndarray::IxDyn(&[1])),
        };
        match session.run(&[(joint.x_input.as_str(), &x), (joint.t_input.as_str(), &t)]) {
            Ok(out) if out.first().is_some_and(|e| e.shape() == [1, d]) => {
                let mut check = ok_check(file, session.provider());
                if joint.denoiser_sha256.is_none() {
                    check.status = "no checksum".into();
                    check.detail = Some("the manifest gives no sha256 for this file".into());
                }
                check
            }
            Ok(out) => FileCheck {
                file: file.to_string(),
                status: "run failed".into(),
                detail: Some(format!(
                    "denoiser output shape {:?}, expected [1, {d}]",
                    out.first().map(|e| e.shape().to_vec())
                )),
                provider: Some(session.provider()),
            },
            Err(e) => failed(file, "run failed", e),
        }
    }

    fn verify_fold(&self, file: &str, sha: Option<&str>, options: &RuntimeOptions) -> FileCheck {
        if let Err(e) = self.check_file(file, sha, true) {
            return file_error(file, e);
        }
        let session = match ModelSession::load(&self.dir.join(file), options)
            .and_then(|s| self.check_graph(&s).map(|_| s))
        {
            Ok(s) => s,
            Err(e) => return failed(file, "load failed", e),
        };
        let dummies: Vec<(String, ArrayD<f32>)> = self
            .manifest
            .inputs
            .iter()
            .map(|spec| (spec.name.clone(), Self::dummy_input(spec)))
            .collect();
        let inputs: Vec<(&str, &ArrayD<f32>)> =
            dummies.iter().map(|(n, a)| (n.as_str(), a)).collect();
        match session.run(&inputs) {
            Ok(outputs) if outputs.is_empty() => FileCheck {
                file: file.to_string(),
                status: "run failed".into(),
                detail: Some("the graph returned no outputs".into()),
                provider: Some(session.provider()),
            },
            Ok(_) => {
                let mut check = ok_check(file, session.provider());
                if sha.is_none() {
                    check.status = "no checksum".into();
                    check.detail = Some("the manifest gives no sha256 for this file".into());
                }
                check
            }
            Err(e) => failed(file, "run failed", e),
        }
    }
}

fn ok_check(file: &str, provider: Provider) -> FileCheck {
    FileCheck {
        file: file.to_string(),
        status: "ok".into(),
        detail: None,
        provider: Some(provider),
    }
}

fn failed(file: &str, status: &str, e: InferError) -> FileCheck {
    FileCheck {
        file: file.to_string(),
        status: status.into(),
        detail: Some(e.to_string()),
        provider: None,
    }
}

fn file_error(file: &str, e: InferError) -> FileCheck {
    let status = match &e {
        InferError::MissingFile { .. } => "missing",
        InferError::Checksum { .. } => "checksum mismatch",
        _ => "invalid",
    };
    failed(file, status, e)
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, InferError> {
    let mut file = std::fs::File::open(path).map_err(InferError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(InferError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Rank and fixed dimensions must match; -1 in the manifest accepts any size.
pub fn check_shape(package: &str, spec: &InputSpec, shape: &[usize]) -> Result<(), InferError> {
    let wrong = || InferError::Input {
        package: package.to_string(),
        reason: format!(
            "input {:?} has shape {:?}, the manifest declares {:?} (-1 = any)",
            spec.name, shape, spec.shape
        ),
    };
    if shape.len() != spec.shape.len() {
        return Err(wrong());
    }
    for (&got, &want) in shape.iter().zip(&spec.shape) {
        if want >= 0 && got as i64 != want {
            return Err(wrong());
        }
    }
    Ok(())
}

fn validate(m: &Manifest) -> Result<(), String> {
    if m.name.trim().is_empty() {
        return Err("name is empty".into());
    }
    match m.task {
        Task::JointDiffusion => {
            let joint = m
                .joint
                .as_ref()
                .ok_or("task joint_diffusion needs a [joint] section")?;
            joint.validate()?;
        }
        Task::BrainAge | Task::Sex => {
            if m.joint.is_some() {
                return Err("[joint] is only for task joint_diffusion".into());
            }
            if m.folds.is_empty() {
                return Err("at least one [[folds]] entry is required".into());
            }
            let images = m
                .inputs
                .iter()
                .filter(|i| i.kind == InputKind::Image)
                .count();
            if images != 1 {
                return Err(format!(
                    "exactly one image input is required, found {images}"
                ));
            }
            for input in &m.inputs {
                if input.dtype != "float32" {
                    return Err(format!(
                        "input {}: dtype {} is not supported (float32 only)",
                        input.name, input.dtype
                    ));
                }
                if input.shape.is_empty() {
                    return Err(format!("input {}: shape is empty", input.name));
                }
                if input.kind == InputKind::Covariates {
                    let enc = input.encoding.as_deref().unwrap_or("");
                    let Some(width) = super::covariates::encoding_width(enc) else {
                        return Err(format!(
                            "input {}: unknown covariate encoding {enc:?}",
                            input.name
                        ));
                    };
                    if input.shape.last() != Some(&(width as i64)) {
                        return Err(format!(
                            "input {}: encoding {enc} has {width} values, shape is {:?}",
                            input.name, input.shape
                        ));
                    }
                }
            }
            let out = m.output.as_ref().ok_or("an [output] section is required")?;
            validate_output(m.task, out)?;
            for fold in &m.folds {
                if let Some(bias) = &fold.bias
                    && bias.method == super::manifest::BiasMethod::Cole
                    && bias.slope == 0.0
                {
                    return Err(format!("fold {}: Cole correction with slope 0", fold.file));
                }
            }
        }
    }
    Ok(())
}

fn validate_output(task: Task, out: &super::manifest::OutputSpec) -> Result<(), String> {
    use OutputSemantics::*;
    match (task, out.semantics) {
        (Task::BrainAge, Years) => Ok(()),
        (Task::BrainAge, AgeBinLogProbabilities) => {
            if out.bin_start.is_none() || out.bin_width.is_none_or(|w| w <= 0.0) {
                Err("age-bin output needs bin_start and a positive bin_width".into())
            } else {
                Ok(())
            }
        }
        (Task::Sex, Logits | LogProbabilities | Probabilities) => {
            let has = |c: &str| out.classes.iter().any(|x| x == c);
            if out.classes.len() == 2 && has("F") && has("M") {
                Ok(())
            } else {
                Err("a sex output must name its classes, e.g. classes = [\"F\", \"M\"]".into())
            }
        }
        (task, semantics) => Err(format!(
            "output semantics {semantics:?} do not fit task {task:?}"
        )),
    }
}
