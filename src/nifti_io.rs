//! NIfTI-1 reading and writing for [`Volume`]s.
//!
//! Writing keeps the voxel type (dcm2niix parity needs integer types kept), sets the sform and
//! the qform from the volume's affine with scanner-anatomical codes, as dcm2niix writes them, and
//! stores the volume's intensity scaling in scl_slope/scl_inter. `.nii.gz` is compressed on all
//! cores into one ordinary gzip member, so any reader can open it.
//! Reading applies scl_slope/scl_inter and returns f32 voxels unless the stored type is kept.

use std::io::Write;
use std::path::Path;

use nalgebra::Matrix4;
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions, XForm};

use crate::volume::{Volume, VolumeMeta, VoxelData};

mod gzip;

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
///
/// The header is what dcm2niix writes: sform and qform both "scanner" (code 1) from the same
/// affine, pixdim from the affine's column lengths with qfac for handedness, pixdim[4] = TR in
/// seconds, xyzt_units mm + s, dim_info from the phase-encoding axis when known, and the
/// volume's intensity scaling as scl_slope/scl_inter over the stored values.
pub fn write_volume(path: &Path, volume: &Volume) -> Result<(), NiftiError> {
    let mut bytes = header_bytes(volume);
    append_voxel_bytes(&volume.data, &mut bytes);
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let io = |source: std::io::Error| NiftiError::Io {
        path: path.display().to_string(),
        source: nifti::NiftiError::from(source),
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    if gz {
        gzip::write_parallel(&mut out, &bytes).map_err(io)?;
    } else {
        out.write_all(&bytes).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// NIfTI-1 datatype code and bits per voxel.
fn datatype(data: &VoxelData) -> (i16, i16) {
    match data {
        VoxelData::U8(_) => (2, 8),
        VoxelData::I16(_) => (4, 16),
        VoxelData::I32(_) => (8, 32),
        VoxelData::F32(_) => (16, 32),
        VoxelData::F64(_) => (64, 64),
        VoxelData::U16(_) => (512, 16),
        VoxelData::U32(_) => (768, 32),
    }
}

/// The 348-byte header plus the 4-byte "no extensions" flag.
fn header_bytes(volume: &Volume) -> Vec<u8> {
    let mut h = NiftiHeader::default();
    h.set_sform(&volume.affine, XForm::ScannerAnat);
    h.set_qform(&volume.affine, XForm::ScannerAnat);
    let shape = volume.data.shape();
    let mut b = vec![0u8; 352];
    let put_i16 = |b: &mut [u8], at: usize, v: i16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |b: &mut [u8], at: usize, v: f32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[0..4].copy_from_slice(&348i32.to_le_bytes());
    b[38] = b'r';
    b[39] = dim_info(volume);
    put_i16(&mut b, 40, shape.len() as i16);
    for d in 0..7 {
        put_i16(&mut b, 42 + 2 * d, shape.get(d).map_or(1, |&n| n as i16));
    }
    let (code, bits) = datatype(&volume.data);
    put_i16(&mut b, 70, code);
    put_i16(&mut b, 72, bits);
    let mut pixdim = h.pixdim;
    pixdim[4] = volume.meta.repetition_time.unwrap_or(0.0) as f32;
    pixdim[5..].fill(0.0);
    pixdim[4] = pixdim[4].max(0.0);
    for (d, v) in pixdim.iter().enumerate() {
        put_f32(&mut b, 76 + 4 * d, *v);
    }
    put_f32(&mut b, 108, 352.0);
    let (slope, inter) = volume.meta.intensity_scaling.unwrap_or((1.0, 0.0));
    put_f32(&mut b, 112, slope as f32);
    put_f32(&mut b, 116, inter as f32);
    b[123] = 2 | 8; // millimetres, seconds
    let descrip = description(volume);
    b[148..148 + descrip.len()].copy_from_slice(descrip.as_bytes());
    put_i16(&mut b, 252, h.qform_code);
    put_i16(&mut b, 254, h.sform_code);
    let q = [
        h.quatern_b,
        h.quatern_c,
        h.quatern_d,
        h.quatern_x,
        h.quatern_y,
        h.quatern_z,
    ];
    for (i, v) in q.iter().enumerate() {
        put_f32(&mut b, 256 + 4 * i, *v);
    }
    for (row, srow) in [h.srow_x, h.srow_y, h.srow_z].iter().enumerate() {
        for (i, v) in srow.iter().enumerate() {
            put_f32(&mut b, 280 + 16 * row + 4 * i, *v);
        }
    }
    b[344..348].copy_from_slice(b"n+1\0");
    b
}

/// freq | phase << 2 | slice << 4, as dcm2niix sets it when the phase-encoding axis is known.
fn dim_info(volume: &Volume) -> u8 {
    match volume
        .meta
        .extra
        .get("PhaseEncodingAxis")
        .and_then(|v| v.as_str())
    {
        Some("i") => 2 | (1 << 2) | (3 << 4),
        Some("j") => 1 | (2 << 2) | (3 << 4),
        _ => 0,
    }
}

/// A short description (echo time), within the 80-byte field.
fn description(volume: &Volume) -> String {
    let mut s = match volume.meta.echo_time {
        Some(te) => format!("TE={}", (te * 1000.0 * 1000.0).round() / 1000.0),
        None => String::new(),
    };
    s.truncate(79);
    s
}

/// Appends voxels as little-endian bytes in NIfTI order (i fastest), whatever the layout.
fn append_voxel_bytes(data: &VoxelData, out: &mut Vec<u8>) {
    fn bytes<T: Copy, const N: usize>(
        a: &ndarray::ArrayD<T>,
        out: &mut Vec<u8>,
        le: impl Fn(T) -> [u8; N],
    ) {
        out.reserve(a.len() * N);
        let t = a.t();
        match t.as_slice() {
            Some(s) => s.iter().for_each(|&v| out.extend_from_slice(&le(v))),
            None => t.iter().for_each(|&v| out.extend_from_slice(&le(v))),
        }
    }
    match data {
        VoxelData::U8(a) => bytes(a, out, |v: u8| [v]),
        VoxelData::I16(a) => bytes(a, out, i16::to_le_bytes),
        VoxelData::U16(a) => bytes(a, out, u16::to_le_bytes),
        VoxelData::I32(a) => bytes(a, out, i32::to_le_bytes),
        VoxelData::U32(a) => bytes(a, out, u32::to_le_bytes),
        VoxelData::F32(a) => bytes(a, out, f32::to_le_bytes),
        VoxelData::F64(a) => bytes(a, out, f64::to_le_bytes),
    }
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

/// The volume's voxels in its stored type (scaling, if any, applied by nifti-rs only for floats).
fn typed(
    volume: nifti::InMemNiftiVolume,
    kind: NiftiType,
    path: &Path,
) -> Result<VoxelData, NiftiError> {
    Ok(match kind {
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
    let data = if scaled {
        VoxelData::F32(volume.into_ndarray::<f32>().map_err(io_err(path))?)
    } else {
        typed(volume, kind, path)?
    };
    Ok(Volume {
        data,
        affine,
        meta: VolumeMeta::default(),
        gradients: None,
    })
}

/// Reads `path` exactly as stored: the file's voxel type, with scl_slope/scl_inter (when not
/// identity) in [`VolumeMeta::intensity_scaling`] instead of applied. Conformance checks use
/// this to compare stored integers and scaling separately.
pub fn read_volume_raw(path: &Path) -> Result<Volume, NiftiError> {
    let object = ReaderOptions::new().read_file(path).map_err(io_err(path))?;
    let header = object.header().clone();
    let affine: Matrix4<f64> = header.affine();
    let kind = header.data_type().map_err(io_err(path))?;
    let (slope, inter) = (f64::from(header.scl_slope), f64::from(header.scl_inter));
    let scaling = (slope != 0.0 && slope.is_finite() && (slope != 1.0 || inter != 0.0))
        .then_some((slope, inter));
    let bytes = object.into_volume().into_raw_data();
    let mut unscaled = header.clone();
    unscaled.scl_slope = 1.0;
    unscaled.scl_inter = 0.0;
    let plain = nifti::InMemNiftiVolume::from_raw_data(&unscaled, bytes).map_err(io_err(path))?;
    let data = typed(plain, kind, path)?;
    let meta = VolumeMeta {
        intensity_scaling: scaling,
        ..Default::default()
    };
    Ok(Volume {
        data,
        affine,
        meta,
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
