//! Resampling, registration, DTI and model-input recipes.
//!
//! Everything here works on [`image::Image3`] (one flat float buffer, i fastest, plus its affine)
//! and reproduces the reference tools a model's training inputs came from: MONAI 1.4 transforms
//! ([`monai`]), MRtrix 3.0.3 tensor fitting ([`dti`]), ANTs-style registration ([`register`]) to
//! the ICBM152 template ([`template`]), then assembles the tensors a model package names
//! ([`recipe`]).

pub mod dti;
pub mod dwi_reader;
pub mod fsl_grad;
pub mod image;
pub mod lane_math;
pub mod mask;
pub mod monai;
pub mod npy;
pub mod qa;
pub mod recipe;
pub mod register;
pub mod resample;
pub mod template;
pub mod template_registration;
pub mod tensor_fit;
pub mod torch_grid;
