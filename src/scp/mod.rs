//! DICOM upper-layer service: associations, C-ECHO, C-STORE, AE policy.
