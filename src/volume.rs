//! The one image type that flows between stages: voxels, a voxel-to-world affine and metadata.
//!
//! Voxels are stored in NIfTI order: axis 0 is i (fastest in the file), axis 1 j, axis 2 k and,
//! for 4-D series, axis 3 the volume index. The affine maps (i, j, k, 1) to RAS+ millimetres, the
//! convention of NIfTI's sform and of dcm2niix, so a `Volume` can be written out and compared with
//! reference tools without a second convention in between.

use nalgebra::Matrix4;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

/// Voxel data in the type the source had. dcm2niix keeps integer types when it can, and parity
/// with it means we must too; stages that need arithmetic convert with [`VoxelData::to_f32`].
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    U16(ArrayD<u16>),
    I32(ArrayD<i32>),
    U32(ArrayD<u32>),
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

macro_rules! each_variant {
    ($self:expr, $a:ident => $body:expr) => {
        match $self {
            VoxelData::U8($a) => $body,
            VoxelData::I16($a) => $body,
            VoxelData::U16($a) => $body,
            VoxelData::I32($a) => $body,
            VoxelData::U32($a) => $body,
            VoxelData::F32($a) => $body,
            VoxelData::F64($a) => $body,
        }
    };
}

impl VoxelData {
    /// Shape in NIfTI axis order (i, j, k[, t]).
    pub fn shape(&self) -> &[usize] {
        each_variant!(self, a => a.shape())
    }

    /// A float copy, for stages that compute on intensities.
    #[allow(clippy::unnecessary_cast)] // the macro's F32 arm casts f32 to itself
    pub fn to_f32(&self) -> ArrayD<f32> {
        each_variant!(self, a => a.mapv(|v| v as f32))
    }

    /// Name of the element type, for logs and error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            VoxelData::U8(_) => "u8",
            VoxelData::I16(_) => "i16",
            VoxelData::U16(_) => "u16",
            VoxelData::I32(_) => "i32",
            VoxelData::U32(_) => "u32",
            VoxelData::F32(_) => "f32",
            VoxelData::F64(_) => "f64",
        }
    }
}

/// Diffusion weighting of a 4-D series, one entry per volume.
///
/// `bvecs` are unit vectors in the image frame with dcm2niix's sign conventions, which is what FSL
/// and MRtrix (`-fslgrad`) expect; b=0 volumes carry (0, 0, 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GradientTable {
    /// b-values in s/mm².
    pub bvals: Vec<f64>,
    /// Unit gradient directions in the image frame.
    pub bvecs: Vec<[f64; 3]>,
}

impl GradientTable {
    /// Number of volumes described.
    pub fn len(&self) -> usize {
        self.bvals.len()
    }

    /// True when no volume is described.
    pub fn is_empty(&self) -> bool {
        self.bvals.is_empty()
    }
}

/// Metadata carried with a volume. Acquisition fields are what the BIDS sidecar and the classifier
/// need; everything is optional because real DICOM omits almost anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub series_instance_uid: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub protocol_name: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturers_model_name: Option<String>,
    pub magnetic_field_strength: Option<f64>,
    pub image_type: Vec<String>,
    /// Seconds, as BIDS writes them.
    pub repetition_time: Option<f64>,
    /// Seconds.
    pub echo_time: Option<f64>,
    /// Seconds.
    pub inversion_time: Option<f64>,
    /// Degrees.
    pub flip_angle: Option<f64>,
    /// Millimetres, as the scanner reports it (not the measured slice spacing).
    pub slice_thickness: Option<f64>,
    /// BIDS form: "i", "i-", "j", "j-", "k", "k-".
    pub phase_encoding_direction: Option<String>,
    /// Further sidecar fields a converter wants to keep (BIDS key → value).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// (slope, intercept) that turn stored integers into true values, written as NIfTI
    /// scl_slope/scl_inter. dcm2niix keeps scanner integers and puts DICOM rescale (or Philips
    /// precise scaling) here rather than converting to float; None means identity.
    #[serde(default)]
    pub intensity_scaling: Option<(f64, f64)>,
}

/// An image with its geometry: what `convert` produces and `preprocess` and `infer` consume.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Voxels in NIfTI axis order.
    pub data: VoxelData,
    /// Voxel (i, j, k) to RAS+ millimetres.
    pub affine: Matrix4<f64>,
    /// Acquisition metadata.
    pub meta: VolumeMeta,
    /// Present for diffusion series.
    pub gradients: Option<GradientTable>,
}

impl Volume {
    /// True intensities as f32: the stored voxels with [`VolumeMeta::intensity_scaling`] applied.
    pub fn values_f32(&self) -> ArrayD<f32> {
        let values = self.data.to_f32();
        match self.meta.intensity_scaling {
            Some((m, b)) if (m, b) != (1.0, 0.0) => values.mapv(|v| (f64::from(v) * m + b) as f32),
            _ => values,
        }
    }

    /// Voxel sizes in millimetres: the lengths of the affine's first three columns.
    pub fn voxel_sizes(&self) -> [f64; 3] {
        let col = |c: usize| self.affine.fixed_view::<3, 1>(0, c).norm();
        [col(0), col(1), col(2)]
    }
}
