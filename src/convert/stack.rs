//! Stacking decoded frames into one voxel array, in the source's integer type where dcm2niix
//! keeps it, with the intensity scaling it would write.

use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use super::frame::Frame;
use super::philips;
use super::pixels::{self, PixelError};
use crate::volume::VoxelData;

/// Frames in storage order (slice fastest, then volume) and the array shape [i, j, k(, t)].
pub struct Layout<'a> {
    pub frames: Vec<&'a Frame>,
    pub shape: Vec<usize>,
}

/// The (slope, intercept) that turns a frame's stored values into true ones.
pub fn frame_scaling(f: &Frame) -> (f64, f64) {
    match f.private_scale {
        Some(ss) => philips::precise_scaling(f.rescale, ss),
        None => f.rescale,
    }
}

/// Decodes and stacks; returns the voxels and the scaling to store (None: identity). When the
/// scaling differs between frames, voxels are converted to f32 with each frame's own scaling.
pub fn stack(
    layout: &Layout,
    cache: &pixels::PixelCache,
) -> Result<(VoxelData, Option<(f64, f64)>), PixelError> {
    let decoded = pixels::decode_frames(&layout.frames, cache)?;
    let first = layout.frames[0];
    let scalings: Vec<(f64, f64)> = layout.frames.iter().map(|f| frame_scaling(f)).collect();
    let uniform = scalings.iter().all(|s| *s == scalings[0]);
    let (rows, cols) = (first.rows as usize, first.columns as usize);
    let signed = first.pixel_representation == 1;
    let dims = IxDyn(&layout.shape).f();
    let data = match first.bits_allocated {
        8 => VoxelData::U8(build(&decoded, rows, cols, dims, |b| b[0])),
        16 if signed => VoxelData::I16(build(&decoded, rows, cols, dims, |b| {
            i16::from_le_bytes([b[0], b[1]])
        })),
        16 => {
            let a = build(&decoded, rows, cols, dims, |b| {
                u16::from_le_bytes([b[0], b[1]])
            });
            // dcm2niix stores unsigned 16-bit data as signed when every value fits.
            let fits = a
                .as_slice_memory_order()
                .is_some_and(|s| s.iter().all(|&v| v <= i16::MAX as u16));
            if fits {
                VoxelData::I16(a.mapv(|v| v as i16))
            } else {
                VoxelData::U16(a)
            }
        }
        _ if signed => VoxelData::I32(build(&decoded, rows, cols, dims, |b| {
            i32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })),
        _ => VoxelData::U32(build(&decoded, rows, cols, dims, |b| {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })),
    };
    if uniform {
        let s = scalings[0];
        return Ok((data, (s != (1.0, 0.0)).then_some(s)));
    }
    Ok((
        VoxelData::F32(apply_per_frame(&data, &scalings, rows * cols)),
        None,
    ))
}

/// Voxels in NIfTI order (i fastest) from frames given slice-major, rows flipped bottom-up.
fn build<T: Copy + Default>(
    decoded: &[Vec<u8>],
    rows: usize,
    cols: usize,
    dims: ndarray::Shape<IxDyn>,
    read: impl Fn(&[u8]) -> T,
) -> ArrayD<T> {
    let bytes_per = decoded
        .first()
        .map_or(1, |d| (d.len() / (rows * cols).max(1)).max(1));
    let plane = rows * cols;
    let mut out = vec![T::default(); plane * decoded.len()];
    for (z, frame) in decoded.iter().enumerate() {
        let dest = &mut out[z * plane..(z + 1) * plane];
        for r in 0..rows {
            let src = &frame[r * cols * bytes_per..(r + 1) * cols * bytes_per];
            let dst = &mut dest[(rows - 1 - r) * cols..(rows - r) * cols];
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(bytes_per)) {
                *d = read(s);
            }
        }
    }
    // Layout fixed by construction: shape product equals the buffer length.
    ArrayD::from_shape_vec(dims, out).unwrap_or_else(|_| ArrayD::default(IxDyn(&[0])))
}

/// Float values with each frame's own scaling (frames are consecutive planes in memory order).
fn apply_per_frame(data: &VoxelData, scalings: &[(f64, f64)], plane: usize) -> ArrayD<f32> {
    let mut values = data.to_f32();
    if let Some(slice) = values.as_slice_memory_order_mut() {
        for (z, chunk) in slice.chunks_mut(plane).enumerate() {
            let (m, b) = scalings[z];
            for v in chunk {
                *v = (f64::from(*v) * m + b) as f32;
            }
        }
    }
    values
}

/// The volumes `keep` (indices along axis 3) of a 4-D array stored i-fastest; a 3-D array when
/// one volume is kept.
pub fn select_volumes(data: &VoxelData, keep: &[usize]) -> VoxelData {
    fn one<T: Clone>(a: &ArrayD<T>, keep: &[usize]) -> ArrayD<T> {
        let shape = a.shape().to_vec();
        let per_volume: usize = shape.iter().take(3).product();
        let Some(flat) = a
            .as_slice_memory_order()
            .filter(|_| a.t().is_standard_layout())
        else {
            return a.select(ndarray::Axis(3), keep);
        };
        let mut out = Vec::with_capacity(per_volume * keep.len());
        for &t in keep {
            out.extend_from_slice(&flat[t * per_volume..(t + 1) * per_volume]);
        }
        let mut dims = shape[..3].to_vec();
        if keep.len() > 1 {
            dims.push(keep.len());
        }
        ArrayD::from_shape_vec(IxDyn(&dims).f(), out)
            .unwrap_or_else(|_| a.select(ndarray::Axis(3), keep))
    }
    match data {
        VoxelData::U8(a) => VoxelData::U8(one(a, keep)),
        VoxelData::I16(a) => VoxelData::I16(one(a, keep)),
        VoxelData::U16(a) => VoxelData::U16(one(a, keep)),
        VoxelData::I32(a) => VoxelData::I32(one(a, keep)),
        VoxelData::U32(a) => VoxelData::U32(one(a, keep)),
        VoxelData::F32(a) => VoxelData::F32(one(a, keep)),
        VoxelData::F64(a) => VoxelData::F64(one(a, keep)),
    }
}
