//! Binary brain masks: moving a mask onto another grid and dilating it.
//!
//! BRAID moves the T1 brain mask into b0 space with nearest-neighbour interpolation, fits tensors
//! inside the mask dilated by one voxel (so that later linear interpolation near the brain edge
//! reads fitted values, not zeros) and multiplies FA and MD by the undilated mask.

use super::image::Image3;
use super::resample::{Grid, Interp, Padding, ResampleError, resample_to_grid};

/// A mask on a grid: `true` inside.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub dims: [usize; 3],
    pub inside: Vec<bool>,
}

impl Mask {
    /// Everything inside.
    pub fn full(dims: [usize; 3]) -> Self {
        Mask {
            dims,
            inside: vec![true; dims[0] * dims[1] * dims[2]],
        }
    }

    /// Voxels above 0.5 (so that a mask stored as floats or labels reads as intended).
    pub fn from_image(img: &Image3) -> Self {
        Mask {
            dims: img.dims,
            inside: img.data.iter().map(|&v| v > 0.5).collect(),
        }
    }

    /// The mask `img` moved onto `grid` by nearest neighbour through world coordinates; the grid
    /// is used as is when it already matches (no interpolation round-off on identical grids).
    pub fn onto_grid(img: &Image3, grid: &Grid) -> Result<Self, ResampleError> {
        let same = img.dims == grid.dims && (img.affine - grid.affine).abs().max() < 1e-4;
        if same {
            return Ok(Self::from_image(img));
        }
        let moved = resample_to_grid(img, grid, Interp::Nearest, Padding::Zeros)?;
        Ok(Self::from_image(&moved))
    }

    /// Number of voxels inside.
    pub fn count(&self) -> usize {
        self.inside.iter().filter(|&&b| b).count()
    }

    /// The mask grown by one voxel across faces (6-connectivity, as `scipy.ndimage.binary_dilation`
    /// and MRtrix `maskfilter dilate` do by default).
    pub fn dilated(&self) -> Self {
        let [ni, nj, nk] = self.dims;
        let mut out = self.inside.clone();
        let at = |i: usize, j: usize, k: usize| i + ni * (j + nj * k);
        for k in 0..nk {
            for j in 0..nj {
                for i in 0..ni {
                    if !self.inside[at(i, j, k)] {
                        continue;
                    }
                    if i > 0 {
                        out[at(i - 1, j, k)] = true;
                    }
                    if i + 1 < ni {
                        out[at(i + 1, j, k)] = true;
                    }
                    if j > 0 {
                        out[at(i, j - 1, k)] = true;
                    }
                    if j + 1 < nj {
                        out[at(i, j + 1, k)] = true;
                    }
                    if k > 0 {
                        out[at(i, j, k - 1)] = true;
                    }
                    if k + 1 < nk {
                        out[at(i, j, k + 1)] = true;
                    }
                }
            }
        }
        Mask {
            dims: self.dims,
            inside: out,
        }
    }

    /// Zeroes every voxel of `img` outside the mask.
    pub fn apply(&self, img: &mut Image3) {
        for (v, &keep) in img.data.iter_mut().zip(&self.inside) {
            if !keep {
                *v = 0.0;
            }
        }
    }

    /// The mask as a 0/1 float image placed by `affine`.
    pub fn to_image(&self, affine: nalgebra::Matrix4<f64>) -> Image3 {
        Image3 {
            dims: self.dims,
            data: self
                .inside
                .iter()
                .map(|&b| if b { 1.0 } else { 0.0 })
                .collect(),
            affine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dilation_grows_one_voxel_across_faces_only() {
        let mut m = Mask {
            dims: [3, 3, 3],
            inside: vec![false; 27],
        };
        m.inside[13] = true; // centre
        let d = m.dilated();
        assert_eq!(d.count(), 7);
        assert!(!d.inside[0]); // a corner is not a face neighbour
    }
}
