//! ONNX Runtime inference: model packages, ensembles, bias correction, joint-diffusion sampling.
//!
//! Sites bring their own weights as ONNX. A model package (`models/<name>/model.toml` plus ONNX
//! files) says what the model takes and gives; [`package`] reads and checks it, [`runtime`] loads
//! each ONNX file once on the best execution provider available, [`ensemble`] runs every fold and
//! corrects the age bias, [`sex`] checks a sex prediction against DICOM, and [`diffusion`] samples
//! MetaVoxel-style joint models over image and metadata.

pub mod age;
pub mod bias;
pub mod covariates;
pub mod diffusion;
pub mod ensemble;
pub mod error;
pub mod manifest;
pub mod package;
pub mod registry;
pub mod runtime;
pub mod sex;

pub use error::InferError;
pub use runtime::{ModelSession, Provider, RuntimeOptions};
