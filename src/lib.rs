//! brainaged: a daemon that sits beside a hospital PACS, receives MR studies over DICOM, keeps every
//! instance safe, converts T1-weighted and diffusion series to volumes, runs brain-age models and
//! keeps each patient's longitudinal history in PostgreSQL.
//!
//! The modules follow the data, and each calls only the ones downstream of it:
//! `scp` → `spool` → `tracker` → `convert` → `preprocess` → `infer` → `report` → `history`,
//! with `db`, `config`, `telemetry`, `shutdown` and `dataset_bounds` beside them. One
//! [`volume::Volume`] (voxels, affine, metadata) is the currency between `convert`,
//! `preprocess` and `infer`.

pub mod config;
pub mod convert;
pub mod dataset_bounds;
pub mod db;
pub mod infer;
pub mod nifti_io;
pub mod preprocess;
pub mod scp;
pub mod shutdown;
pub mod spool;
pub mod telemetry;
pub mod tracker;
pub mod volume;
