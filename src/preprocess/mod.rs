//! Resampling, registration, DTI and model-input recipes.

pub mod register;
pub mod template;
