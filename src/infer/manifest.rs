//! `model.toml`: what a model package declares. The keys are a contract with the sites that
//! write packages for their own weights, so they are documented here and refused when unknown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::diffusion::spec::JointSpec;

/// What a package predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Age in years from an image.
    BrainAge,
    /// Sex from an image.
    Sex,
    /// A joint diffusion model over image and metadata (MetaVoxel-style).
    JointDiffusion,
}

/// Which image the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    T1w,
    Dwi,
}

/// The role of one graph input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// The image tensor made by the preprocessing recipe.
    Image,
    /// A vector of covariates (demographics) in a declared encoding.
    Covariates,
}

/// One graph input as the manifest declares it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Graph input name.
    pub name: String,
    pub kind: InputKind,
    /// Element type; only "float32" is produced by the preprocessing stage.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Dimensions; -1 marks the dynamic batch (or any free dimension).
    pub shape: Vec<i64>,
    /// For covariates: the encoding name, e.g. "braid-demographics".
    #[serde(default)]
    pub encoding: Option<String>,
}

fn default_dtype() -> String {
    "float32".into()
}

/// How the model's output is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputSemantics {
    /// One value per subject, in years.
    Years,
    /// SFCN-style soft classification: log-probabilities over age bins (`bin_start`, `bin_width`).
    AgeBinLogProbabilities,
    /// Class logits; softmax gives probabilities.
    Logits,
    /// Class log-probabilities.
    LogProbabilities,
    /// Class probabilities.
    Probabilities,
}

/// The graph output read as the prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Graph output name; absent: the first output.
    #[serde(default)]
    pub name: Option<String>,
    pub semantics: OutputSemantics,
    /// For class outputs: the class at each index, e.g. ["F", "M"].
    #[serde(default)]
    pub classes: Vec<String>,
    /// For age bins: the centre of the first bin, in years.
    #[serde(default)]
    pub bin_start: Option<f64>,
    /// For age bins: the bin width, in years.
    #[serde(default)]
    pub bin_width: Option<f64>,
}

/// Per-fold age-bias correction, fitted by whoever trained the fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiasSpec {
    pub method: BiasMethod,
    pub slope: f64,
    pub intercept: f64,
}

/// The two common corrections of regression to the mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BiasMethod {
    /// BRAID (after Smith et al. 2019): the fit is of the gap pred − age on age, and
    /// corrected = pred − (slope·age + intercept).
    Smith,
    /// Cole et al. 2018: corrected = (pred − intercept) / slope.
    Cole,
}

/// One fold of an ensemble.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldSpec {
    /// ONNX file, relative to the package directory.
    pub file: String,
    /// Hex sha256 of the file; absent for a manifest whose weights are not imported yet.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub bias: Option<BiasSpec>,
}

/// The whole `model.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub task: Task,
    pub modality: Modality,
    /// The preprocessing recipe that makes the image input, e.g. "braid-dti-nonrigid".
    #[serde(default)]
    pub recipe: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub licence: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// Ages the model was trained on, in years; predictions outside are flagged.
    #[serde(default)]
    pub training_age_range: Option<[f64; 2]>,
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    #[serde(default)]
    pub output: Option<OutputSpec>,
    #[serde(default)]
    pub folds: Vec<FoldSpec>,
    /// For sex models: probability above which a contradiction of DICOM PatientSex is flagged.
    #[serde(default)]
    pub sex_qa_threshold: Option<f64>,
    /// For `joint_diffusion`.
    #[serde(default)]
    pub joint: Option<JointSpec>,
    /// Free-form notes kept with the package (import provenance and the like).
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}
