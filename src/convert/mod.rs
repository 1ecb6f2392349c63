//! DICOM series → [`crate::volume::Volume`] and gradient tables, as dcm2niix converts them.
pub mod frame;
