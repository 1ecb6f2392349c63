//! A 3-D scalar image in the layout every voxel loop of `preprocess` uses.
//!
//! [`Volume`] keeps whatever array layout the reader produced and whatever voxel type the source
//! had; resampling and fitting want one flat float buffer with i fastest (NIfTI's on-disk order),
//! so that neighbours along i are adjacent in memory and a slice is one contiguous run.

use nalgebra::Matrix4;
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use crate::volume::{Volume, VolumeMeta, VoxelData};

/// Why a volume cannot be used as a 3-D image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("expected a 3-D image (or 4-D with one volume), got shape {0:?}")]
    NotThreeD(Vec<usize>),
    #[error("volume index {index} out of range for a series of {count} volumes")]
    NoSuchVolume { index: usize, count: usize },
}

/// Float voxels, i fastest, with the voxel-to-RAS affine that places them.
#[derive(Debug, Clone, PartialEq)]
pub struct Image3 {
    /// Grid size along i, j, k.
    pub dims: [usize; 3],
    /// `dims[0] * dims[1] * dims[2]` values, index `i + dims[0] * (j + dims[1] * k)`.
    pub data: Vec<f32>,
    /// Voxel (i, j, k) to RAS+ millimetres.
    pub affine: Matrix4<f64>,
}

impl Image3 {
    /// A zero-filled image on the given grid.
    pub fn zeros(dims: [usize; 3], affine: Matrix4<f64>) -> Self {
        Image3 {
            dims,
            data: vec![0.0; dims[0] * dims[1] * dims[2]],
            affine,
        }
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for an empty grid.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Flat index of voxel (i, j, k).
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Voxel sizes in millimetres (lengths of the affine's columns).
    pub fn voxel_sizes(&self) -> [f64; 3] {
        let col = |c: usize| self.affine.fixed_view::<3, 1>(0, c).norm();
        [col(0), col(1), col(2)]
    }

    /// The image of a 3-D volume, or of a 4-D volume that holds a single volume.
    pub fn from_volume(volume: &Volume) -> Result<Self, ImageError> {
        let shape = volume.data.shape().to_vec();
        let is_3d = shape.len() == 3 || (shape.len() == 4 && shape[3] == 1);
        if !is_3d {
            return Err(ImageError::NotThreeD(shape));
        }
        Self::from_array(&volume.data.to_f32(), volume.affine, 0)
    }

    /// Volume `index` of a 4-D float array (or the whole of a 3-D one when `index` is 0).
    pub fn from_array(
        array: &ArrayD<f32>,
        affine: Matrix4<f64>,
        index: usize,
    ) -> Result<Self, ImageError> {
        let shape = array.shape();
        if shape.len() < 3 || shape.len() > 4 {
            return Err(ImageError::NotThreeD(shape.to_vec()));
        }
        let count = if shape.len() == 4 { shape[3] } else { 1 };
        if index >= count {
            return Err(ImageError::NoSuchVolume { index, count });
        }
        let dims = [shape[0], shape[1], shape[2]];
        let volume = if shape.len() == 4 {
            array.index_axis(ndarray::Axis(3), index)
        } else {
            array.view()
        };
        // Reversed axes iterate with i fastest: a plain copy when the array is in NIfTI order.
        let reversed = volume.t();
        let data: Vec<f32> = match reversed.as_slice() {
            Some(s) => s.to_vec(),
            None => reversed.iter().copied().collect(),
        };
        Ok(Image3 { dims, data, affine })
    }

    /// An f32 array in (i, j, k) axis order, sharing the flat buffer's layout (Fortran order).
    pub fn to_array(&self) -> ArrayD<f32> {
        flat_array(self.dims, self.data.clone())
    }

    /// A float [`Volume`] for writing with [`crate::nifti_io::write_volume`].
    pub fn to_volume(&self) -> Volume {
        float_volume(self.dims, self.data.clone(), self.affine)
    }
}

/// A float [`Volume`] of `data` (i fastest) on the grid `dims` placed by `affine`: the one way
/// both this module's images and registration's working images become volumes again.
pub(crate) fn float_volume(dims: [usize; 3], data: Vec<f32>, affine: Matrix4<f64>) -> Volume {
    Volume {
        data: VoxelData::F32(flat_array(dims, data)),
        affine,
        meta: VolumeMeta::default(),
        gradients: None,
    }
}

/// An (i, j, k) array over a flat i-fastest buffer (Fortran order: the buffer is not reordered).
fn flat_array(dims: [usize; 3], data: Vec<f32>) -> ArrayD<f32> {
    // The buffer has exactly dims' product elements wherever it comes from.
    ArrayD::from_shape_vec(IxDyn(&dims).f(), data).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&dims)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_round_trip_keeps_voxel_positions() {
        let a = ArrayD::from_shape_fn(IxDyn(&[3, 4, 5]), |ix| {
            (ix[0] + 10 * ix[1] + 100 * ix[2]) as f32
        });
        let img = Image3::from_array(&a, Matrix4::identity(), 0).unwrap();
        assert_eq!(img.data[img.index(2, 3, 4)], 432.0);
        assert_eq!(img.to_array(), a);
    }
}
