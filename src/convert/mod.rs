//! DICOM series → [`crate::volume::Volume`] and gradient tables, as dcm2niix converts them.
pub mod csa;
pub mod dicom_value;
pub mod enhanced;
pub mod frame;
pub mod mosaic;
#[cfg(test)]
mod test_support;
