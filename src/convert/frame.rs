//! The vendor-neutral unit of conversion: one 2-D image with its geometry and acquisition facts.
//!
//! Every encoding is reduced to frames first: a classic file is one frame, an enhanced multi-frame
//! file is many (one per item of the per-frame functional groups), a Siemens mosaic is one frame
//! per tile. Grouping, slice sorting, geometry, stacking and gradient handling then happen once,
//! in code that knows nothing about vendors. Vendor readers (`classic.rs`, `mosaic.rs`,
//! `enhanced.rs`, `siemens.rs`, `ge.rs`, `philips.rs`) only fill this struct.

use std::path::PathBuf;
use std::sync::Arc;

/// Where a frame's pixels come from, decoded lazily so that grouping never touches pixel data.
#[derive(Debug, Clone)]
pub enum PixelSource {
    /// Frame `index` of the PixelData of the file at `path` (0 for single-frame files).
    File { path: PathBuf, index: u32 },
    /// Tile `tile` of a Siemens mosaic stored as frame `index` of `path`; the mosaic grid is
    /// `tiles_per_row` tiles wide and each tile is `rows` × `columns` of the frame.
    MosaicTile {
        path: PathBuf,
        index: u32,
        tile: u32,
        tiles_per_row: u32,
    },
}

/// Diffusion encoding of one frame as the scanner reported it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diffusion {
    /// s/mm².
    pub bval: f64,
    /// Unit gradient direction in the patient (LPS) frame; None for b=0 or isotropic images.
    pub bvec_patient: Option<[f64; 3]>,
    /// A scanner-derived trace/isotropic/ADC image that dcm2niix drops from the diffusion series.
    pub derived_isotropic: bool,
}

/// One 2-D image and everything needed to place it in a volume.
#[derive(Debug, Clone)]
pub struct Frame {
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub instance_number: Option<i64>,
    /// Rows and columns of this frame (of the tile, for mosaics).
    pub rows: u32,
    pub columns: u32,
    /// ImagePositionPatient of the first transmitted pixel, LPS mm.
    pub position: [f64; 3],
    /// ImageOrientationPatient: row direction cosines then column direction cosines, LPS.
    pub orientation: [f64; 6],
    /// PixelSpacing: (row spacing, column spacing) in mm, DICOM order.
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: Option<f64>,
    pub echo_number: Option<i64>,
    pub echo_time: Option<f64>,
    /// ImageType values, upper case.
    pub image_type: Vec<String>,
    pub acquisition_time: Option<String>,
    /// Temporal position or other dimension index that orders volumes (enhanced DimensionIndex,
    /// TemporalPositionIdentifier, acquisition number), when the encoding gives one.
    pub volume_index: Option<i64>,
    pub diffusion: Option<Diffusion>,
    /// Rescale (slope, intercept) to apply; (1, 0) when absent.
    pub rescale: (f64, f64),
    /// Philips private scale slope (2005,100E) and friends, for vendors whose scaling dcm2niix
    /// applies differently from the standard rescale.
    pub private_scale: Option<f64>,
    pub bits_allocated: u16,
    pub pixel_representation: u16,
    pub pixels: PixelSource,
    /// Series-level metadata, shared by every frame of a file.
    pub series: Arc<crate::volume::VolumeMeta>,
}
