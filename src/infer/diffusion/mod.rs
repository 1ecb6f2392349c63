//! MetaVoxel-style joint diffusion: one diffusion process over image (or latent) and metadata,
//! so that any subset of the variables can be given and the rest sampled from the model's
//! conditional. [`spec`] is the package's `[joint]` section, [`schedule`] the noise schedule,
//! [`sampler`] the DDPM/DDIM sampler that asks the questions.

pub mod sampler;
pub mod schedule;
pub mod spec;

pub use sampler::{JointModel, Known, Method, SampleRequest, SampleResult, VariableSummary};
