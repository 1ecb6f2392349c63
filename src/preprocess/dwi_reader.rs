//! Streams a 4-D diffusion NIfTI straight into the flat float layout the tensor fit uses.
//!
//! The general reader ([`crate::nifti_io`]) decompresses the whole file into memory and then
//! builds a typed array from it; for a diffusion series that is two full copies before the float
//! copy the fit needs, and the page faults of those copies cost as much time as the fit itself.
//! Here the (possibly gzipped) file is read volume by volume and only the volumes the fit keeps
//! are converted, so the series is held once, as f32.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use nifti::{Endianness, NiftiHeader, NiftiType};

use super::dti::DwiSeries;
use crate::volume::GradientTable;

/// Why a diffusion series could not be streamed.
#[derive(Debug, thiserror::Error)]
pub enum DwiReadError {
    #[error("{path}: cannot read the NIfTI header")]
    Header {
        path: String,
        source: nifti::NiftiError,
    },
    #[error("reading {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: voxel type {kind:?} is not supported for diffusion data")]
    Type { path: String, kind: NiftiType },
    #[error("{path}: expected a 4-D series, header says {dims} dimensions")]
    NotFourD { path: String, dims: u16 },
    #[error("{path}: {volumes} volumes but {entries} gradient entries")]
    GradientCount {
        path: String,
        volumes: usize,
        entries: usize,
    },
}

/// Reads the volumes of `path` whose b-value is below `b_max` (all when `None`).
pub fn read_dwi(
    path: &Path,
    gradients: &GradientTable,
    b_max: Option<f64>,
) -> Result<DwiSeries, DwiReadError> {
    let p = path.display().to_string();
    // Opened first so that a missing or unreadable file is reported as such, not as a header.
    File::open(path).map_err(|source| DwiReadError::Io {
        path: p.clone(),
        source,
    })?;
    let header = NiftiHeader::from_file(path).map_err(|source| DwiReadError::Header {
        path: p.clone(),
        source,
    })?;
    if header.dim[0] != 4 {
        return Err(DwiReadError::NotFourD {
            path: p,
            dims: header.dim[0],
        });
    }
    let dims = [
        header.dim[1] as usize,
        header.dim[2] as usize,
        header.dim[3] as usize,
    ];
    let volumes = header.dim[4] as usize;
    if volumes != gradients.len() {
        return Err(DwiReadError::GradientCount {
            path: p,
            volumes,
            entries: gradients.len(),
        });
    }
    let kind = header.data_type().map_err(|source| DwiReadError::Header {
        path: p.clone(),
        source,
    })?;
    let width = match kind {
        NiftiType::Uint8 => 1,
        NiftiType::Int16 | NiftiType::Uint16 => 2,
        NiftiType::Int32 | NiftiType::Uint32 | NiftiType::Float32 => 4,
        NiftiType::Float64 => 8,
        other => {
            return Err(DwiReadError::Type {
                path: p,
                kind: other,
            });
        }
    };
    let big = header.endianness == Endianness::Big;
    let scaled = header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0);
    let (slope, inter) = if scaled {
        (header.scl_slope, header.scl_inter)
    } else {
        (1.0, 0.0)
    };
    let io = |source| DwiReadError::Io {
        path: p.clone(),
        source,
    };
    let file = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let mut reader: Box<dyn Read> = if p.ends_with(".gz") {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let skip = header.vox_offset.max(352.0) as u64;
    std::io::copy(&mut reader.by_ref().take(skip), &mut std::io::sink()).map_err(io)?;
    let keep: Vec<usize> = (0..volumes)
        .filter(|&t| b_max.is_none_or(|b| gradients.bvals[t] < b))
        .collect();
    let nvox = dims[0] * dims[1] * dims[2];
    let mut data = vec![0.0f32; nvox * keep.len()];
    let mut bytes = vec![0u8; nvox * width];
    let mut slot = 0;
    for t in 0..volumes {
        reader.read_exact(&mut bytes).map_err(io)?;
        if keep.get(slot) != Some(&t) {
            continue;
        }
        let out = &mut data[slot * nvox..(slot + 1) * nvox];
        decode(&bytes, kind, big, out);
        if scaled {
            out.iter_mut().for_each(|v| *v = *v * slope + inter);
        }
        slot += 1;
    }
    Ok(DwiSeries {
        dims,
        affine: header.affine(),
        data,
        bvals: keep.iter().map(|&t| gradients.bvals[t]).collect(),
        bvecs: keep.iter().map(|&t| gradients.bvecs[t]).collect(),
    })
}

fn decode(bytes: &[u8], kind: NiftiType, big: bool, out: &mut [f32]) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                let mut b = [0u8; $n];
                b.copy_from_slice(c);
                *o = if big {
                    <$t>::from_be_bytes(b) as f32
                } else {
                    <$t>::from_le_bytes(b) as f32
                };
            }
        };
    }
    match kind {
        NiftiType::Uint8 => out.iter_mut().zip(bytes).for_each(|(o, b)| *o = *b as f32),
        NiftiType::Int16 => conv!(i16, 2),
        NiftiType::Uint16 => conv!(u16, 2),
        NiftiType::Int32 => conv!(i32, 4),
        NiftiType::Uint32 => conv!(u32, 4),
        NiftiType::Float32 => conv!(f32, 4),
        _ => conv!(f64, 8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nifti_io::write_volume;
    use crate::volume::{Volume, VoxelData};
    use ndarray::ArrayD;

    #[test]
    fn streamed_series_equals_the_general_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dwi.nii.gz");
        let data = ArrayD::from_shape_fn(vec![3, 4, 2, 5], |ix| {
            (ix[0] + 3 * ix[1] + 12 * ix[2] + 24 * ix[3]) as i16
        });
        let volume = Volume {
            data: VoxelData::I16(data),
            affine: nalgebra::Matrix4::identity() * 2.0,
            meta: Default::default(),
            gradients: None,
        };
        write_volume(&path, &volume).unwrap();
        let grads = GradientTable {
            bvals: vec![0.0, 1000.0, 3000.0, 1000.0, 0.0],
            bvecs: vec![[0.0, 0.0, 1.0]; 5],
        };
        let streamed = read_dwi(&path, &grads, Some(1500.0)).unwrap();
        let general = DwiSeries::select(&volume, &grads, Some(1500.0)).unwrap();
        assert_eq!(streamed.data, general.data);
        assert_eq!(streamed.bvals, vec![0.0, 1000.0, 1000.0, 0.0]);
        assert_eq!(streamed.dims, [3, 4, 2]);
    }
}
