//! Resampling, registration, DTI and model-input recipes.
