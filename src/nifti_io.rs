//! NIfTI-1 reading and writing for [`Volume`]s.
//!
//! Writing keeps the voxel type (dcm2niix parity needs integer types kept), sets the sform and
//! the qform from the volume's affine with scanner-anatomical codes, as dcm2niix writes them, and
//! leaves scl_slope at 1: anything that needed rescaling must already be float.
//! Reading applies scl_slope/scl_inter and returns f32 voxels unless the stored type is kept.

use std::path::Path;

use nalgebra::Matrix4;
use nifti::writer::WriterOptions;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions, XForm};

use crate::volume::{Volume, VolumeMeta, VoxelData};

/// Why a NIfTI file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NiftiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: nifti::NiftiError,
    },
    #[error("{path}: unsupported NIfTI data type {kind:?}")]
    Unsupported { path: String, kind: NiftiType },
}

fn io_err(path: &Path) -> impl FnOnce(nifti::NiftiError) -> NiftiError + '_ {
    move |source| NiftiError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `volume` to `path` (`.nii` or `.nii.gz`, chosen by the extension).
pub fn write_volume(path: &Path, volume: &Volume) -> Result<(), NiftiError> {
    let mut header = NiftiHeader::default();
    header.set_sform(&volume.affine, XForm::ScannerAnat);
    header.set_qform(&volume.affine, XForm::ScannerAnat);
    header.xyzt_units = 2 | 8; // millimetres, seconds
    if let Some(tr) = volume.meta.repetition_time {
        header.pixdim[4] = tr as f32;
    }
    let options = WriterOptions::new(path).reference_header(&header);
    let written = match &volume.data {
        VoxelData::U8(a) => options.write_nifti(a),
        VoxelData::I16(a) => options.write_nifti(a),
        VoxelData::U16(a) => options.write_nifti(a),
        VoxelData::I32(a) => options.write_nifti(a),
        VoxelData::U32(a) => options.write_nifti(a),
        VoxelData::F32(a) => options.write_nifti(a),
        VoxelData::F64(a) => options.write_nifti(a),
    };
    written.map_err(io_err(path))
}

/// Reads `path` as float voxels (scaled by scl_slope/scl_inter) with its sform (or qform) affine.
pub fn read_volume_f32(path: &Path) -> Result<Volume, NiftiError> {
    let object = ReaderOptions::new().read_file(path).map_err(io_err(path))?;
    let affine: Matrix4<f64> = object.header().affine();
    let data = object
        .into_volume()
        .into_ndarray::<f32>()
        .map_err(io_err(path))?;
    Ok(Volume {
        data: VoxelData::F32(data),
        affine,
        meta: VolumeMeta::default(),
        gradients: None,
    })
}

/// Reads `path` keeping integer types when the file has no scaling, as a reference reader would.
pub fn read_volume(path: &Path) -> Result<Volume, NiftiError> {
    let object = ReaderOptions::new().read_file(path).map_err(io_err(path))?;
    let header = object.header().clone();
    let affine: Matrix4<f64> = header.affine();
    let kind = header.data_type().map_err(io_err(path))?;
    let scaled = header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0);
    let volume = object.into_volume();
    let data = match kind {
        _ if scaled => VoxelData::F32(volume.into_ndarray::<f32>().map_err(io_err(path))?),
        NiftiType::Uint8 => VoxelData::U8(volume.into_ndarray::<u8>().map_err(io_err(path))?),
        NiftiType::Int16 => VoxelData::I16(volume.into_ndarray::<i16>().map_err(io_err(path))?),
        NiftiType::Uint16 => VoxelData::U16(volume.into_ndarray::<u16>().map_err(io_err(path))?),
        NiftiType::Int32 => VoxelData::I32(volume.into_ndarray::<i32>().map_err(io_err(path))?),
        NiftiType::Uint32 => VoxelData::U32(volume.into_ndarray::<u32>().map_err(io_err(path))?),
        NiftiType::Float32 => VoxelData::F32(volume.into_ndarray::<f32>().map_err(io_err(path))?),
        NiftiType::Float64 => VoxelData::F64(volume.into_ndarray::<f64>().map_err(io_err(path))?),
        other => {
            return Err(NiftiError::Unsupported {
                path: path.display().to_string(),
                kind: other,
            });
        }
    };
    Ok(Volume {
        data,
        affine,
        meta: VolumeMeta::default(),
        gradients: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn round_trip_keeps_type_values_and_affine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.nii.gz");
        let data = ArrayD::from_shape_fn(vec![4, 3, 2], |ix| {
            (ix[0] + 10 * ix[1] + 100 * ix[2]) as i16
        });
        let mut affine = Matrix4::identity();
        affine[(0, 0)] = -2.0;
        affine[(1, 1)] = 3.0;
        affine[(2, 2)] = 1.5;
        affine[(0, 3)] = 90.0;
        affine[(1, 3)] = -120.0;
        affine[(2, 3)] = -70.0;
        let volume = Volume {
            data: VoxelData::I16(data.clone()),
            affine,
            meta: Default::default(),
            gradients: None,
        };
        write_volume(&path, &volume).unwrap();
        let back = read_volume(&path).unwrap();
        assert_eq!(back.data, VoxelData::I16(data));
        assert!((back.affine - affine).abs().max() < 1e-5);
        assert_eq!(
            back.voxel_sizes().map(|v| (v * 10.0).round() / 10.0),
            [2.0, 3.0, 1.5]
        );
    }
}
