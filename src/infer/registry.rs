//! The daemon's model cache: each package is loaded the first time a job asks for it, and every
//! later job reuses the same sessions, so a fold's ONNX file is read and optimised once per
//! process rather than once per study.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::diffusion::JointModel;
use super::ensemble::Ensemble;
use super::error::InferError;
use super::manifest::Task;
use super::package::ModelPackage;
use super::runtime::RuntimeOptions;

/// Packages under one models directory, loaded on first use.
pub struct Registry {
    models_dir: PathBuf,
    options: RuntimeOptions,
    ensembles: Mutex<HashMap<String, Arc<Ensemble>>>,
    joints: Mutex<HashMap<String, Arc<JointModel>>>,
}

impl Registry {
    /// A registry over `models_dir`; nothing is loaded yet.
    pub fn new(models_dir: &Path, options: RuntimeOptions) -> Self {
        Self {
            models_dir: models_dir.to_path_buf(),
            options,
            ensembles: Mutex::new(HashMap::new()),
            joints: Mutex::new(HashMap::new()),
        }
    }

    fn find(&self, name: &str) -> Result<ModelPackage, InferError> {
        let dir = self.models_dir.join(name);
        let package = ModelPackage::open(&dir)?;
        if package.name() != name {
            return Err(InferError::Manifest {
                path: dir.join(super::package::MANIFEST_FILE),
                reason: format!(
                    "directory {name} holds package {:?}; the directory must be named after it",
                    package.name()
                ),
            });
        }
        Ok(package)
    }

    /// The brain-age or sex ensemble called `name` (directory `<models_dir>/<name>`).
    pub fn ensemble(&self, name: &str) -> Result<Arc<Ensemble>, InferError> {
        let mut cache = self.ensembles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = cache.get(name) {
            return Ok(Arc::clone(e));
        }
        let package = self.find(name)?;
        if package.manifest.task == Task::JointDiffusion {
            return Err(InferError::Input {
                package: name.to_string(),
                reason: "a joint_diffusion package is sampled, not run as an ensemble".into(),
            });
        }
        let ensemble = Arc::new(Ensemble::load(package, &self.options)?);
        cache.insert(name.to_string(), Arc::clone(&ensemble));
        Ok(ensemble)
    }

    /// The joint-diffusion model called `name`.
    pub fn joint(&self, name: &str) -> Result<Arc<JointModel>, InferError> {
        let mut cache = self.joints.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = cache.get(name) {
            return Ok(Arc::clone(j));
        }
        let model = Arc::new(JointModel::load(self.find(name)?, &self.options)?);
        cache.insert(name.to_string(), Arc::clone(&model));
        Ok(model)
    }
}
