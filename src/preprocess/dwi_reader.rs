//! Streams a 4-D diffusion NIfTI straight into the flat float layout the tensor fit uses.
//!
//! The general reader ([`crate::nifti_io`]) decompresses the whole file into memory and then
//! builds a typed array from it; for a diffusion series that is two full copies before the float
//! copy the fit needs, and the page faults of those copies cost as much time as the fit itself.
//! Here the (possibly gzipped) file is read volume by volume and only the volumes the fit keeps
//! are converted, so the series is held once, as f32; [`DwiFile::read_voxels`] keeps only the
//! voxels inside the fit mask as well.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nalgebra::Matrix4;
use nifti::{Endianness, NiftiHeader, NiftiType};

use super::dti::{DtiError, DwiSeries, VoxelSeries, voxels_inside};
use super::mask::Mask;
use super::resample::Grid;
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
    #[error("{path}: {source}")]
    Mask { path: String, source: DtiError },
}

/// A diffusion NIfTI whose header has been read and checked against its gradient table: its grid
/// is known (so a mask can be moved onto it) before any voxel is decompressed.
#[derive(Debug, Clone)]
pub struct DwiFile {
    path: PathBuf,
    /// Grid size along i, j, k.
    pub dims: [usize; 3],
    /// Voxel (i, j, k) to RAS+ millimetres.
    pub affine: Matrix4<f64>,
    volumes: usize,
    kind: NiftiType,
    width: usize,
    big: bool,
    scaling: Option<(f32, f32)>,
    skip: u64,
    keep: Vec<usize>,
    bvals: Vec<f64>,
    bvecs: Vec<[f64; 3]>,
}

impl DwiFile {
    /// Reads the header of `path` and selects the volumes whose b-value is below `b_max` (all
    /// when `None`).
    pub fn open(
        path: &Path,
        gradients: &GradientTable,
        b_max: Option<f64>,
    ) -> Result<Self, DwiReadError> {
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
        let scaled =
            header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0);
        let keep: Vec<usize> = (0..volumes)
            .filter(|&t| b_max.is_none_or(|b| gradients.bvals[t] < b))
            .collect();
        Ok(DwiFile {
            path: path.to_path_buf(),
            dims: [
                header.dim[1] as usize,
                header.dim[2] as usize,
                header.dim[3] as usize,
            ],
            affine: header.affine(),
            volumes,
            kind,
            width,
            big: header.endianness == Endianness::Big,
            scaling: scaled.then_some((header.scl_slope, header.scl_inter)),
            skip: header.vox_offset.max(352.0) as u64,
            bvals: keep.iter().map(|&t| gradients.bvals[t]).collect(),
            bvecs: keep.iter().map(|&t| gradients.bvecs[t]).collect(),
            keep,
        })
    }

    /// The diffusion grid, for moving a mask onto it.
    pub fn grid(&self) -> Grid {
        Grid {
            dims: self.dims,
            affine: self.affine,
        }
    }

    fn nvox(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Every voxel of the kept volumes.
    pub fn read_all(&self) -> Result<DwiSeries, DwiReadError> {
        // With every voxel held, the volume-major layouts of the two types coincide.
        let all = self.read_voxels(None)?;
        Ok(DwiSeries {
            dims: all.dims,
            affine: all.affine,
            data: all.data,
            bvals: all.bvals,
            bvecs: all.bvecs,
        })
    }

    /// Only the voxels inside `mask` (every voxel when `None`): the tensor fit needs no others,
    /// and a brain mask holds a fifth to a third of the grid, so the series held in memory (and
    /// the page faults of filling it) shrink by as much.
    pub fn read_voxels(&self, mask: Option<&Mask>) -> Result<VoxelSeries, DwiReadError> {
        let voxels = voxels_inside(self.dims, mask).map_err(|source| DwiReadError::Mask {
            path: self.path.display().to_string(),
            source,
        })?;
        let n = voxels.len();
        let mut data = vec![0.0f32; n * self.keep.len()];
        self.stream(|slot, bytes| {
            let out = &mut data[slot * n..(slot + 1) * n];
            gather(bytes, self.kind, self.big, &voxels, out);
            self.scale(out);
        })?;
        Ok(VoxelSeries {
            dims: self.dims,
            affine: self.affine,
            voxels,
            data,
            bvals: self.bvals.clone(),
            bvecs: self.bvecs.clone(),
        })
    }

    fn scale(&self, out: &mut [f32]) {
        if let Some((slope, inter)) = self.scaling {
            out.iter_mut().for_each(|v| *v = *v * slope + inter);
        }
    }

    /// Decompresses the file volume by volume and hands each kept volume's raw bytes, with its
    /// slot among the kept volumes, to `each`.
    fn stream(&self, mut each: impl FnMut(usize, &[u8])) -> Result<(), DwiReadError> {
        let io = |source| DwiReadError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let file = BufReader::with_capacity(1 << 20, File::open(&self.path).map_err(io)?);
        let gz = self
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        let mut reader: Box<dyn Read> = if gz {
            Box::new(MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        std::io::copy(&mut reader.by_ref().take(self.skip), &mut std::io::sink()).map_err(io)?;
        let mut bytes = vec![0u8; self.nvox() * self.width];
        let mut slot = 0;
        for t in 0..self.volumes {
            reader.read_exact(&mut bytes).map_err(io)?;
            if self.keep.get(slot) == Some(&t) {
                each(slot, &bytes);
                slot += 1;
            }
        }
        Ok(())
    }
}

/// Reads every voxel of the volumes of `path` whose b-value is below `b_max` (all when `None`).
pub fn read_dwi(
    path: &Path,
    gradients: &GradientTable,
    b_max: Option<f64>,
) -> Result<DwiSeries, DwiReadError> {
    DwiFile::open(path, gradients, b_max)?.read_all()
}

/// One stored voxel as f32, from its `N` bytes.
macro_rules! value {
    ($t:ty, $n:expr, $bytes:expr, $big:expr) => {{
        let mut b = [0u8; $n];
        b.copy_from_slice($bytes);
        if $big {
            <$t>::from_be_bytes(b) as f32
        } else {
            <$t>::from_le_bytes(b) as f32
        }
    }};
}

/// Decodes voxels `voxels` (flat indices into one volume) of `bytes` into `out`, in order.
fn gather(bytes: &[u8], kind: NiftiType, big: bool, voxels: &[usize], out: &mut [f32]) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            for (o, &v) in out.iter_mut().zip(voxels) {
                *o = value!($t, $n, &bytes[v * $n..(v + 1) * $n], big);
            }
        };
    }
    match kind {
        NiftiType::Uint8 => conv!(u8, 1),
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

    /// A 4-D series whose voxel (i, j, k) of volume t holds i + 3j + 12k + 24t, written to `path`.
    fn written_series<T: Copy + 'static>(
        path: &Path,
        shape: [usize; 4],
        convert: fn(usize) -> T,
        wrap: fn(ArrayD<T>) -> VoxelData,
        affine: nalgebra::Matrix4<f64>,
    ) -> Volume {
        let data = ArrayD::from_shape_fn(shape.to_vec(), |ix| {
            convert(ix[0] + 3 * ix[1] + 12 * ix[2] + 24 * ix[3])
        });
        let volume = Volume {
            data: wrap(data),
            affine,
            meta: Default::default(),
            gradients: None,
        };
        write_volume(path, &volume).unwrap();
        volume
    }

    #[test]
    fn streamed_series_equals_the_general_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dwi.nii.gz");
        let affine = nalgebra::Matrix4::identity() * 2.0;
        let volume = written_series(&path, [3, 4, 2, 5], |v| v as i16, VoxelData::I16, affine);
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

    #[test]
    fn masked_voxels_equal_those_of_the_whole_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dwi.nii.gz");
        let affine = nalgebra::Matrix4::identity();
        written_series(&path, [3, 4, 2, 3], |v| v as u16, VoxelData::U16, affine);
        let grads = GradientTable {
            bvals: vec![0.0, 1000.0, 1000.0],
            bvecs: vec![[0.0, 0.0, 1.0]; 3],
        };
        let mask = Mask {
            dims: [3, 4, 2],
            inside: (0..24).map(|v| v % 5 == 1 || v == 23).collect(),
        };
        let file = DwiFile::open(&path, &grads, None).unwrap();
        let streamed = file.read_voxels(Some(&mask)).unwrap();
        let whole = file.read_all().unwrap().voxels(Some(&mask)).unwrap();
        assert_eq!(streamed.voxels, vec![1, 6, 11, 16, 21, 23]);
        assert_eq!(streamed.data, whole.data);
        // Volume 2 of voxel 23 (i=2, j=3, k=1) is 2 + 9 + 12 + 48.
        assert_eq!(streamed.data[2 * 6 + 5], 71.0);
        let wrong = Mask::full([3, 4, 1]);
        assert!(matches!(
            file.read_voxels(Some(&wrong)),
            Err(DwiReadError::Mask { .. })
        ));
    }
}
