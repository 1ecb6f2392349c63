//! Siemens mosaics: one DICOM image that holds every slice of a volume as tiles of a grid.
//!
//! Siemens EPI and DWI (syngo VB/VD/VE) store each volume as one image whose ImageType contains
//! MOSAIC. The CSA image header says how many tiles are real slices (NumberOfImagesInMosaic) and
//! along which direction they advance (SliceNormalVector); the grid is ceil(sqrt(N)) tiles wide.
//! The file's ImagePositionPatient is the corner of the whole grid, not of a slice, so, as dcm2niix
//! does, each tile's corner is found by moving half the unused grid width and height in plane and
//! then `k × spacing` along the slice normal for tile `k`. Diffusion comes from the CSA header
//! (B_value, DiffusionGradientDirection, in the patient frame), or from the standard tags.
//! Tiles are cut from the decoded mosaic by `pixels`, from `PixelSource::MosaicTile`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::attrs::{array as fixed, first_item, float, int, text};
use super::csa::{CsaError, CsaHeader};
use super::frame::{Diffusion, Frame, PixelSource};
use super::private::{bytes, private_tag, upper_texts};
use crate::volume::VolumeMeta;

/// Why a mosaic could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum MosaicError {
    #[error("{path}: CSA image header: {source}")]
    Csa { path: PathBuf, source: CsaError },
    #[error("{path}: mosaic without NumberOfImagesInMosaic (CSA or (0019,100A))")]
    NoTileCount { path: PathBuf },
    #[error("{path}: mosaic of {rows}×{columns} cannot hold {tiles} equal tiles")]
    BadGrid {
        path: PathBuf,
        rows: u32,
        columns: u32,
        tiles: u32,
    },
    #[error("{path}: missing or malformed {attribute}")]
    Missing {
        path: PathBuf,
        attribute: &'static str,
    },
}

/// How the tiles of one mosaic are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MosaicLayout {
    /// Tiles that hold slices; the rest of the grid is blank.
    pub tiles: u32,
    /// Grid width and height in tiles: ceil(sqrt(tiles)).
    pub tiles_per_row: u32,
    /// Size of one tile (one slice).
    pub tile_rows: u32,
    pub tile_columns: u32,
    /// Size of the whole mosaic image.
    pub mosaic_rows: u32,
    pub mosaic_columns: u32,
}

/// True when `obj` is a Siemens mosaic (ImageType contains MOSAIC).
pub fn is_mosaic(obj: &InMemDicomObject) -> bool {
    upper_texts(obj, tags::IMAGE_TYPE)
        .iter()
        .any(|v| v == "MOSAIC")
}

/// The CSA image header (0029,1010) of `obj`, if there is one.
pub fn csa_image_header(obj: &InMemDicomObject) -> Option<Result<CsaHeader, CsaError>> {
    let tag = private_tag(obj, 0x0029, "SIEMENS CSA HEADER", 0x10)
        .unwrap_or(dicom_core::Tag(0x0029, 0x1010));
    bytes(obj, tag).map(|raw| CsaHeader::parse(&raw))
}

/// Grid layout of the mosaic `obj` (read from `path`, for error messages).
pub fn layout(
    path: &Path,
    obj: &InMemDicomObject,
    csa: Option<&CsaHeader>,
) -> Result<MosaicLayout, MosaicError> {
    let missing = |attribute| MosaicError::Missing {
        path: path.to_path_buf(),
        attribute,
    };
    let mosaic_rows = int(obj, tags::ROWS).ok_or_else(|| missing("Rows"))? as u32;
    let mosaic_columns = int(obj, tags::COLUMNS).ok_or_else(|| missing("Columns"))? as u32;
    let from_csa = csa.and_then(|c| c.number("NumberOfImagesInMosaic"));
    let from_private =
        private_tag(obj, 0x0019, "SIEMENS MR HEADER", 0x0A).and_then(|tag| float(obj, tag));
    let tiles = from_csa
        .or(from_private)
        .filter(|&n| n >= 1.0 && n.fract() == 0.0)
        .ok_or_else(|| MosaicError::NoTileCount {
            path: path.to_path_buf(),
        })? as u32;
    let tiles_per_row = (tiles as f64).sqrt().ceil() as u32;
    let bad_grid = || MosaicError::BadGrid {
        path: path.to_path_buf(),
        rows: mosaic_rows,
        columns: mosaic_columns,
        tiles,
    };
    if !mosaic_rows.is_multiple_of(tiles_per_row) || !mosaic_columns.is_multiple_of(tiles_per_row) {
        return Err(bad_grid());
    }
    let (tile_rows, tile_columns) = (mosaic_rows / tiles_per_row, mosaic_columns / tiles_per_row);
    if tile_rows == 0 || tile_columns == 0 {
        return Err(bad_grid());
    }
    Ok(MosaicLayout {
        tiles,
        tiles_per_row,
        tile_rows,
        tile_columns,
        mosaic_rows,
        mosaic_columns,
    })
}

/// Unpacks the mosaic `obj`, read from `path`, into one [`Frame`] per tile, tile 0 first.
///
/// `series` is the series-level metadata the caller read from the same file.
pub fn mosaic_frames(
    path: &Path,
    obj: &InMemDicomObject,
    series: Arc<VolumeMeta>,
) -> Result<Vec<Frame>, MosaicError> {
    let csa = match csa_image_header(obj) {
        Some(parsed) => Some(parsed.map_err(|source| MosaicError::Csa {
            path: path.to_path_buf(),
            source,
        })?),
        None => None,
    };
    let layout = layout(path, obj, csa.as_ref())?;
    let missing = |attribute| MosaicError::Missing {
        path: path.to_path_buf(),
        attribute,
    };
    let corner: [f64; 3] =
        fixed(obj, tags::IMAGE_POSITION_PATIENT).ok_or_else(|| missing("ImagePositionPatient"))?;
    let orientation: [f64; 6] = fixed(obj, tags::IMAGE_ORIENTATION_PATIENT)
        .ok_or_else(|| missing("ImageOrientationPatient"))?;
    let pixel_spacing: [f64; 2] =
        fixed(obj, tags::PIXEL_SPACING).ok_or_else(|| missing("PixelSpacing"))?;
    let row_dir = [orientation[0], orientation[1], orientation[2]];
    let col_dir = [orientation[3], orientation[4], orientation[5]];
    let normal = csa
        .as_ref()
        .and_then(|c| c.vector3("SliceNormalVector"))
        .filter(|n| norm(*n) > 0.5)
        .unwrap_or_else(|| cross(row_dir, col_dir));
    let slice_thickness = float(obj, tags::SLICE_THICKNESS);
    let spacing = float(obj, tags::SPACING_BETWEEN_SLICES)
        .filter(|s| *s > 0.0)
        .or(slice_thickness)
        .ok_or_else(|| missing("SpacingBetweenSlices or SliceThickness"))?;

    let first = tile_zero_position(corner, row_dir, col_dir, pixel_spacing, &layout);
    let diffusion = diffusion(obj, csa.as_ref());
    let template = Frame {
        series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        rows: layout.tile_rows,
        columns: layout.tile_columns,
        position: first,
        orientation,
        pixel_spacing,
        slice_thickness,
        echo_number: int(obj, tags::ECHO_NUMBERS),
        echo_time: float(obj, tags::ECHO_TIME),
        image_type: upper_texts(obj, tags::IMAGE_TYPE),
        acquisition_time: text(obj, tags::ACQUISITION_TIME),
        volume_index: None,
        diffusion,
        rescale: (
            float(obj, tags::RESCALE_SLOPE)
                .filter(|s| *s != 0.0)
                .unwrap_or(1.0),
            float(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
        ),
        private_scale: None,
        bits_allocated: int(obj, tags::BITS_ALLOCATED).unwrap_or(16) as u16,
        pixel_representation: int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) as u16,
        pixels: PixelSource::File {
            path: path.to_path_buf(),
            index: 0,
        },
        series,
    };
    Ok((0..layout.tiles)
        .map(|tile| {
            let step = tile as f64 * spacing;
            Frame {
                position: [
                    first[0] + step * normal[0],
                    first[1] + step * normal[1],
                    first[2] + step * normal[2],
                ],
                pixels: PixelSource::MosaicTile {
                    path: path.to_path_buf(),
                    index: 0,
                    tile,
                    tiles_per_row: layout.tiles_per_row,
                },
                ..template.clone()
            }
        })
        .collect())
}

/// Adds what only the CSA header says to the series metadata: the phase-encoding polarity
/// (PhaseEncodingDirectionPositive, used by assembly for the BIDS PhaseEncodingDirection) and the
/// slice times (MosaicRefAcqTimes, ms → BIDS SliceTiming in s, in tile order).
pub fn fill_series_meta(obj: &InMemDicomObject, meta: &mut VolumeMeta) {
    let Some(Ok(csa)) = csa_image_header(obj) else {
        return;
    };
    if let Some(positive) = csa.number("PhaseEncodingDirectionPositive") {
        meta.extra.insert(
            super::meta::PHASE_POSITIVE.into(),
            serde_json::Value::from(positive as i64),
        );
    }
    let tiles = layout(Path::new(""), obj, Some(&csa)).map(|l| l.tiles as usize);
    if let (Some(times), Ok(tiles)) = (csa.numbers("MosaicRefAcqTimes"), tiles)
        && times.len() >= tiles
    {
        let seconds: Vec<f64> = times[..tiles].iter().map(|ms| ms / 1000.0).collect();
        meta.extra
            .insert("SliceTiming".into(), serde_json::json!(seconds));
    }
}

/// Corner of tile 0: the mosaic's corner moved in plane by half the blank width and height.
fn tile_zero_position(
    corner: [f64; 3],
    row_dir: [f64; 3],
    col_dir: [f64; 3],
    pixel_spacing: [f64; 2],
    layout: &MosaicLayout,
) -> [f64; 3] {
    // Along a row (row_dir) pixels are PixelSpacing[1] apart; down a column, PixelSpacing[0].
    let across = pixel_spacing[1] * (layout.mosaic_columns - layout.tile_columns) as f64 / 2.0;
    let down = pixel_spacing[0] * (layout.mosaic_rows - layout.tile_rows) as f64 / 2.0;
    [0, 1, 2].map(|i| corner[i] + row_dir[i] * across + col_dir[i] * down)
}

/// Diffusion encoding from the CSA header, else the standard tags; None for non-diffusion images.
fn diffusion(obj: &InMemDicomObject, csa: Option<&CsaHeader>) -> Option<Diffusion> {
    let bval = csa
        .and_then(|c| c.number("B_value"))
        .or_else(|| float(obj, tags::DIFFUSION_B_VALUE))?;
    let direction = csa
        .and_then(|c| c.vector3("DiffusionGradientDirection"))
        .or_else(|| {
            first_item(obj, tags::DIFFUSION_GRADIENT_DIRECTION_SEQUENCE)
                .and_then(|item| fixed(item, tags::DIFFUSION_GRADIENT_ORIENTATION))
        })
        .filter(|v| norm(*v) > 0.5)
        .map(unit);
    Some(Diffusion {
        bval,
        bvec_patient: if bval > 0.0 { direction } else { None },
        derived_isotropic: false,
    })
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Euclidean length.
pub(super) fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = norm(v);
    v.map(|x| x / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};

    use crate::convert::test_support::{shared_dicom as shared, text_element as element};

    fn first_mosaic(dir: &str) -> (PathBuf, dicom_object::DefaultDicomObject) {
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(shared(dir))
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".txt"))
            .collect();
        files.sort();
        let obj = dicom_object::open_file(&files[0]).unwrap();
        (files[0].clone(), obj)
    }

    #[test]
    fn tile_size_agrees_with_the_scanner_acquisition_matrix_text() {
        // The scanner writes the reconstructed matrix as text ("64*64", "82p*82") in the CSA
        // header; our tile size comes from the grid arithmetic alone.
        for dir in [
            "siemens-mosaic-orient-axasc35",
            "siemens-mosaic-orient-sagdesc36",
            "siemens-mosaic-dwi-sag",
            "siemens-skyra-epi/mr_0003",
        ] {
            let (path, obj) = first_mosaic(dir);
            assert!(is_mosaic(&obj), "{dir}");
            let csa = csa_image_header(&obj).unwrap().unwrap();
            let grid = layout(&path, &obj, Some(&csa)).unwrap();
            let text = &csa.get("AcquisitionMatrixText").unwrap().items[0];
            let dims: Vec<u32> = text
                .split('*')
                .map(|d| d.trim_end_matches(['p', 'P']).parse().unwrap())
                .collect();
            assert_eq!(
                [grid.tile_rows, grid.tile_columns],
                [dims[0], dims[1]],
                "{dir}"
            );
            let frames = mosaic_frames(&path, &obj, Arc::default()).unwrap();
            assert_eq!(frames.len() as u32, grid.tiles);
            assert_eq!(
                frames.len() as f64,
                csa.number("NumberOfImagesInMosaic").unwrap()
            );
        }
    }

    #[test]
    fn diffusion_comes_from_the_csa_header() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(shared("siemens-mosaic-dwi-sag"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let b0 = dicom_object::open_file(&files[0]).unwrap();
        let frames = mosaic_frames(&files[0], &b0, Arc::default()).unwrap();
        assert_eq!(frames[0].diffusion.as_ref().map(|d| d.bval), Some(0.0));
        let dw = dicom_object::open_file(&files[1]).unwrap();
        let frames = mosaic_frames(&files[1], &dw, Arc::default()).unwrap();
        let d = frames[47].diffusion.as_ref().unwrap();
        assert_eq!((d.bval, d.bvec_patient), (2000.0, Some([1.0, 0.0, 0.0])));
        // Non-diffusion EPI mosaics carry no diffusion encoding at all.
        let (path, epi) = first_mosaic("siemens-skyra-epi/mr_0003");
        let frames = mosaic_frames(&path, &epi, Arc::default()).unwrap();
        assert!(frames.iter().all(|f| f.diffusion.is_none()));
    }

    fn synthetic(rows: &str, csa: Option<Vec<u8>>) -> InMemDicomObject {
        let mut obj = InMemDicomObject::from_element_iter([
            element(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\M\\MOSAIC"),
            element(tags::ROWS, VR::US, rows),
            element(tags::COLUMNS, VR::US, "384"),
            element(tags::IMAGE_POSITION_PATIENT, VR::DS, "0\\0\\0"),
            element(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
            element(tags::PIXEL_SPACING, VR::DS, "3\\3"),
            element(tags::SLICE_THICKNESS, VR::DS, "3"),
        ]);
        if let Some(bytes) = csa {
            obj.put(element(Tag(0x0029, 0x0010), VR::LO, "SIEMENS CSA HEADER"));
            obj.put(DataElement::new(
                Tag(0x0029, 0x1010),
                VR::OB,
                PrimitiveValue::from(bytes),
            ));
        }
        obj
    }

    #[test]
    fn bad_mosaics_are_clear_errors() {
        let path = Path::new("bad.dcm");
        let (_, real) = first_mosaic("siemens-mosaic-orient-axasc35");
        let csa = bytes(&real, Tag(0x0029, 0x1010)).unwrap();

        let ok = mosaic_frames(path, &synthetic("384", Some(csa.clone())), Arc::default());
        assert_eq!(ok.unwrap().len(), 35);
        let err = mosaic_frames(path, &synthetic("384", None), Arc::default()).unwrap_err();
        assert!(matches!(err, MosaicError::NoTileCount { .. }), "{err}");
        let err = mosaic_frames(path, &synthetic("380", Some(csa.clone())), Arc::default());
        assert!(matches!(err, Err(MosaicError::BadGrid { .. })));
        let cut = csa[..csa.len() / 3].to_vec();
        let err = mosaic_frames(path, &synthetic("384", Some(cut)), Arc::default());
        assert!(matches!(err, Err(MosaicError::Csa { .. })));
    }
}
