//! The `[joint]` section of a `joint_diffusion` package: variables, noise schedule, conditioning.

use serde::{Deserialize, Serialize};

/// What a variable holds, which decides how it is encoded and summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariableKind {
    /// Real values, normalised as (value − mean) / std.
    Continuous,
    /// A class, one-hot encoded as ±1 (the class +1, the others −1).
    Categorical,
    /// An image, or its latent when the package has an encoder and a decoder.
    Image,
}

/// One variable of the joint model, in the order the denoiser concatenates them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSpec {
    pub name: String,
    /// Components in the denoiser's vector (for images: latent size, or voxels without encoder).
    pub size: usize,
    pub kind: VariableKind,
    /// Continuous: value subtracted before dividing by `std`.
    #[serde(default)]
    pub mean: Option<f64>,
    #[serde(default)]
    pub std: Option<f64>,
    /// Categorical: class names, one per component.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Image: voxel grid (i, j, k) of the decoded image.
    #[serde(default)]
    pub shape: Vec<usize>,
}

/// How betas are laid out over the training steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Betas evenly spaced from `beta_start` to `beta_end` (DDPM).
    Linear,
    /// Square roots of betas evenly spaced (Stable Diffusion's "scaled_linear").
    ScaledLinear,
    /// One beta per line in `file`.
    File,
}

/// The forward noise schedule the model was trained with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub kind: ScheduleKind,
    /// T: training steps. Timestep 0 means clean; 1..=T are noised.
    pub num_train_steps: usize,
    #[serde(default)]
    pub beta_start: Option<f64>,
    #[serde(default)]
    pub beta_end: Option<f64>,
    /// For `file`: path relative to the package.
    #[serde(default)]
    pub file: Option<String>,
}

/// How known variables enter the denoiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conditioning {
    /// `t` is [N, V]: known variables sit at t = 0, unknown ones at the current step.
    PerVariableT,
    /// `t` is [N]: known variables are replaced by their forward-noised values at every step.
    Replacement,
}

/// The `[joint]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JointSpec {
    pub conditioning: Conditioning,
    /// The ε-predictor: inputs `x_t` [N, D] and `t`, output `eps` [N, D].
    pub denoiser: String,
    #[serde(default)]
    pub denoiser_sha256: Option<String>,
    /// Image → latent, for image variables.
    #[serde(default)]
    pub encoder: Option<String>,
    /// Latent → image, for image variables.
    #[serde(default)]
    pub decoder: Option<String>,
    /// Input names of the denoiser; defaults "x_t" and "t".
    #[serde(default = "default_x_name")]
    pub x_input: String,
    #[serde(default = "default_t_name")]
    pub t_input: String,
    pub schedule: ScheduleSpec,
    pub variables: Vec<VariableSpec>,
}

fn default_x_name() -> String {
    "x_t".into()
}
fn default_t_name() -> String {
    "t".into()
}

impl JointSpec {
    /// D: the length of the concatenated vector.
    pub fn dim(&self) -> usize {
        self.variables.iter().map(|v| v.size).sum()
    }

    /// Offset of each variable in the concatenated vector.
    pub fn offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.variables
            .iter()
            .map(|v| {
                let o = at;
                at += v.size;
                o
            })
            .collect()
    }

    /// Index of the variable called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.variables.iter().position(|v| v.name == name)
    }

    /// Checks what serde cannot: sizes, classes, normalisation, schedule parameters.
    pub fn validate(&self) -> Result<(), String> {
        if self.variables.is_empty() {
            return Err("joint.variables is empty".into());
        }
        for (i, v) in self.variables.iter().enumerate() {
            if v.size == 0 {
                return Err(format!("variable {} has size 0", v.name));
            }
            if self.variables[..i].iter().any(|w| w.name == v.name) {
                return Err(format!("variable {} is declared twice", v.name));
            }
            match v.kind {
                VariableKind::Categorical if v.classes.len() != v.size => {
                    return Err(format!(
                        "categorical variable {} has size {} but {} classes",
                        v.name,
                        v.size,
                        v.classes.len()
                    ));
                }
                VariableKind::Continuous if v.std.is_some_and(|s| s <= 0.0) => {
                    return Err(format!("variable {}: std must be positive", v.name));
                }
                VariableKind::Image if !v.shape.is_empty() && self.decoder.is_none() => {
                    let voxels: usize = v.shape.iter().product();
                    if voxels != v.size {
                        return Err(format!(
                            "image variable {} has shape {:?} ({} voxels) but size {} and no decoder",
                            v.name, v.shape, voxels, v.size
                        ));
                    }
                }
                _ => {}
            }
        }
        let s = &self.schedule;
        if s.num_train_steps == 0 {
            return Err("schedule.num_train_steps must be at least 1".into());
        }
        match s.kind {
            ScheduleKind::Linear | ScheduleKind::ScaledLinear => {
                let (Some(a), Some(b)) = (s.beta_start, s.beta_end) else {
                    return Err("schedule needs beta_start and beta_end".into());
                };
                if !(a > 0.0 && b < 1.0 && a <= b) {
                    return Err(format!("schedule betas must satisfy 0 < {a} <= {b} < 1"));
                }
            }
            ScheduleKind::File if s.file.is_none() => {
                return Err("schedule kind \"file\" needs schedule.file".into());
            }
            ScheduleKind::File => {}
        }
        Ok(())
    }
}
