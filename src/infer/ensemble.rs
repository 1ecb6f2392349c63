//! Fold ensembles: every fold runs on the same input, and the report carries each fold's value,
//! their mean and spread, and, when chronological age is known, the bias-corrected values beside
//! the raw ones. Sessions are loaded once per fold and reused for every subject.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn};
use serde::Serialize;

use super::error::InferError;
use super::manifest::{InputKind, OutputSemantics, Task};
use super::package::ModelPackage;
use super::runtime::{ModelSession, Provider, RuntimeOptions};

/// A package with every fold loaded.
#[derive(Debug)]
pub struct Ensemble {
    pub package: ModelPackage,
    folds: Vec<ModelSession>,
}

/// Mean and standard deviation over folds of one quantity.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FoldSummary {
    /// One value per fold, in manifest order.
    pub folds: Vec<f64>,
    pub mean: f64,
    /// Population standard deviation across folds (numpy's default, as BRAID reports it).
    pub std: f64,
}

impl FoldSummary {
    /// Summarises per-fold values.
    pub fn of(folds: Vec<f64>) -> Self {
        let n = folds.len() as f64;
        let mean = folds.iter().sum::<f64>() / n.max(1.0);
        let std = (folds.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1.0)).sqrt();
        Self { folds, mean, std }
    }
}

/// A brain-age prediction for one subject.
#[derive(Debug, Clone, Serialize)]
pub struct AgePrediction {
    pub package: String,
    pub version: String,
    /// The execution provider the folds ran on.
    pub provider: Provider,
    /// Model output in years, before any correction.
    pub raw: FoldSummary,
    /// Chronological age used for correction, when known.
    pub chronological_age: Option<f64>,
    /// Bias-corrected values; present only when the age is known and every fold has a correction.
    pub corrected: Option<FoldSummary>,
    /// The chronological age lies outside the package's training range.
    pub outside_training_range: bool,
}

/// Class probabilities for one subject, averaged over folds.
#[derive(Debug, Clone, Serialize)]
pub struct ClassPrediction {
    pub package: String,
    pub version: String,
    pub provider: Provider,
    /// Per class: fold values, mean and spread of the probability.
    pub probabilities: BTreeMap<String, FoldSummary>,
}

impl Ensemble {
    /// Loads (and checksums) every fold of `package`.
    pub fn load(package: ModelPackage, options: &RuntimeOptions) -> Result<Self, InferError> {
        let folds = (0..package.manifest.folds.len())
            .map(|i| package.load_fold(i, options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { package, folds })
    }

    /// The provider of the first fold (all folds are built with the same options).
    pub fn provider(&self) -> Provider {
        self.folds
            .first()
            .map(ModelSession::provider)
            .unwrap_or(Provider::Cpu)
    }

    /// Number of folds.
    pub fn len(&self) -> usize {
        self.folds.len()
    }

    /// True for an ensemble without folds (never, for a validated package).
    pub fn is_empty(&self) -> bool {
        self.folds.is_empty()
    }

    /// Runs every fold; returns each fold's prediction output as [N, K].
    pub fn run_folds(
        &self,
        image: &ArrayD<f32>,
        covariates: Option<&ArrayD<f32>>,
    ) -> Result<Vec<ArrayD<f32>>, InferError> {
        (0..self.folds.len())
            .map(|k| self.run_fold(k, image, covariates))
            .collect()
    }

    /// Runs fold `k` (manifest order); returns its prediction output as [N, K].
    pub fn run_fold(
        &self,
        k: usize,
        image: &ArrayD<f32>,
        covariates: Option<&ArrayD<f32>>,
    ) -> Result<ArrayD<f32>, InferError> {
        let name = self.package.name().to_string();
        let fold = self.folds.get(k).ok_or_else(|| InferError::Input {
            package: name.clone(),
            reason: format!("no fold {k}"),
        })?;
        let inputs = self.bind_inputs(image, covariates)?;
        let batch = image.shape()[0];
        let outputs = fold.run(&inputs)?;
        let index = match self
            .package
            .manifest
            .output
            .as_ref()
            .and_then(|o| o.name.as_ref())
        {
            Some(n) => fold.output_names().iter().position(|x| x == n).unwrap_or(0),
            None => 0,
        };
        let value = outputs
            .into_iter()
            .nth(index)
            .ok_or_else(|| InferError::Output {
                package: name.clone(),
                reason: "the graph returned no outputs".into(),
            })?;
        if value.is_empty() || value.shape()[0] != batch {
            return Err(InferError::Output {
                package: name,
                reason: format!(
                    "{}: output shape {:?} does not start with the batch size {batch}",
                    fold.path().display(),
                    value.shape()
                ),
            });
        }
        let per_subject = value.len() / batch;
        value
            .into_shape_with_order(IxDyn(&[batch, per_subject]))
            .map_err(|e| InferError::Output {
                package: name,
                reason: e.to_string(),
            })
    }

    fn bind_inputs<'a>(
        &'a self,
        image: &'a ArrayD<f32>,
        covariates: Option<&'a ArrayD<f32>>,
    ) -> Result<Vec<(&'a str, &'a ArrayD<f32>)>, InferError> {
        let name = self.package.name();
        let mut inputs: Vec<(&'a str, &'a ArrayD<f32>)> = Vec::new();
        for spec in &self.package.manifest.inputs {
            let array = match spec.kind {
                InputKind::Image => image,
                InputKind::Covariates => covariates.ok_or_else(|| InferError::Input {
                    package: name.to_string(),
                    reason: format!("input {:?} (covariates) was not given", spec.name),
                })?,
            };
            self.package.check_input(spec, array)?;
            if array.shape().first() != image.shape().first() {
                return Err(InferError::Input {
                    package: name.to_string(),
                    reason: format!(
                        "input {:?} has batch {:?}, the image has {:?}",
                        spec.name,
                        array.shape().first(),
                        image.shape().first()
                    ),
                });
            }
            inputs.push((spec.name.as_str(), array));
        }
        Ok(inputs)
    }

    /// Brain age for each subject of the batch; `ages[i]` is subject i's chronological age.
    pub fn predict_age(
        &self,
        image: &ArrayD<f32>,
        covariates: Option<&ArrayD<f32>>,
        ages: &[Option<f64>],
    ) -> Result<Vec<AgePrediction>, InferError> {
        let m = &self.package.manifest;
        if m.task != Task::BrainAge {
            return Err(self.wrong_task("brain_age"));
        }
        let outputs = self.run_folds(image, covariates)?;
        let batch = image.shape()[0];
        let spec = m
            .output
            .as_ref()
            .ok_or_else(|| self.wrong_task("brain_age"))?;
        let mut result = Vec::with_capacity(batch);
        for i in 0..batch {
            let raw: Vec<f64> = outputs
                .iter()
                .map(|o| read_years(spec, o.index_axis(Axis(0), i).iter().copied()))
                .collect();
            let age = ages.get(i).copied().flatten();
            let corrected = age.and_then(|a| {
                m.folds
                    .iter()
                    .zip(&raw)
                    .map(|(f, &p)| f.bias.map(|b| b.apply(p, a)))
                    .collect::<Option<Vec<f64>>>()
                    .map(FoldSummary::of)
            });
            let outside = match (age, m.training_age_range) {
                (Some(a), Some([lo, hi])) => a < lo || a > hi,
                _ => false,
            };
            result.push(AgePrediction {
                package: m.name.clone(),
                version: m.version.clone(),
                provider: self.provider(),
                raw: FoldSummary::of(raw),
                chronological_age: age,
                corrected,
                outside_training_range: outside,
            });
        }
        Ok(result)
    }

    /// Class probabilities for each subject of the batch (sex models).
    pub fn predict_classes(
        &self,
        image: &ArrayD<f32>,
        covariates: Option<&ArrayD<f32>>,
    ) -> Result<Vec<ClassPrediction>, InferError> {
        let m = &self.package.manifest;
        if m.task != Task::Sex {
            return Err(self.wrong_task("sex"));
        }
        let spec = m.output.as_ref().ok_or_else(|| self.wrong_task("sex"))?;
        let outputs = self.run_folds(image, covariates)?;
        let batch = image.shape()[0];
        let mut result = Vec::with_capacity(batch);
        for i in 0..batch {
            let mut per_class: Vec<Vec<f64>> = vec![Vec::new(); spec.classes.len()];
            for o in &outputs {
                let row: Vec<f64> = o.index_axis(Axis(0), i).iter().map(|&v| v as f64).collect();
                if row.len() != spec.classes.len() {
                    return Err(InferError::Output {
                        package: m.name.clone(),
                        reason: format!(
                            "{} values per subject, the manifest names {} classes",
                            row.len(),
                            spec.classes.len()
                        ),
                    });
                }
                for (c, p) in to_probabilities(spec.semantics, &row)
                    .into_iter()
                    .enumerate()
                {
                    per_class[c].push(p);
                }
            }
            let probabilities = spec
                .classes
                .iter()
                .cloned()
                .zip(per_class.into_iter().map(FoldSummary::of))
                .collect();
            result.push(ClassPrediction {
                package: m.name.clone(),
                version: m.version.clone(),
                provider: self.provider(),
                probabilities,
            });
        }
        Ok(result)
    }

    fn wrong_task(&self, wanted: &str) -> InferError {
        InferError::Input {
            package: self.package.name().to_string(),
            reason: format!(
                "package task is {:?}, not {wanted}",
                self.package.manifest.task
            ),
        }
    }
}

/// Years from one subject's output row.
fn read_years(spec: &super::manifest::OutputSpec, row: impl Iterator<Item = f32>) -> f64 {
    let values: Vec<f64> = row.map(f64::from).collect();
    match spec.semantics {
        OutputSemantics::AgeBinLogProbabilities => {
            let start = spec.bin_start.unwrap_or(0.0);
            let width = spec.bin_width.unwrap_or(1.0);
            let probs: Vec<f64> = values.iter().map(|lp| lp.exp()).collect();
            let total: f64 = probs.iter().sum();
            probs
                .iter()
                .enumerate()
                .map(|(k, p)| p * (start + width * k as f64))
                .sum::<f64>()
                / total.max(f64::MIN_POSITIVE)
        }
        _ => values.first().copied().unwrap_or(f64::NAN),
    }
}

/// Probabilities from logits, log-probabilities or probabilities.
fn to_probabilities(semantics: OutputSemantics, row: &[f64]) -> Vec<f64> {
    match semantics {
        OutputSemantics::Logits => {
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            exps.iter().map(|e| e / total).collect()
        }
        OutputSemantics::LogProbabilities => row.iter().map(|v| v.exp()).collect(),
        _ => row.to_vec(),
    }
}
