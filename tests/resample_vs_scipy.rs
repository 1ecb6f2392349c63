//! General resampling between grids given by affines (`preprocess::resample`) against
//! `scipy.ndimage.map_coordinates` (order 1 and 0, zeros outside) on oblique, flipped,
//! anisotropic grids that only partly overlap.

mod common;

use std::path::Path;
use std::process::Command;

use brainaged::nifti_io::read_volume_f32;
use brainaged::preprocess::image::Image3;
use brainaged::preprocess::resample::{Grid, Interp, Padding, resample_to_grid};

fn image(path: &Path) -> Image3 {
    Image3::from_volume(&read_volume_f32(path).unwrap()).unwrap()
}

#[test]
fn trilinear_and_nearest_match_scipy() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/scipy_resample_reference.py");
    let out = Command::new(common::venv_python())
        .arg(&script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scipy reference failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let src = image(&dir.path().join("src.nii.gz"));
    let target = image(&dir.path().join("grid.nii.gz"));
    let grid = Grid {
        dims: target.dims,
        affine: target.affine,
    };
    for (name, interp) in [("linear", Interp::Linear), ("nearest", Interp::Nearest)] {
        let want = image(&dir.path().join(format!("{name}.nii.gz")));
        let ours = resample_to_grid(&src, &grid, interp, Padding::Zeros).unwrap();
        let max = ours
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let inside = want.data.iter().filter(|v| **v != 0.0).count();
        println!("{name}: {inside} voxels inside the source, max |Δ| = {max:.3e}");
        assert!(inside > want.data.len() / 4, "{name}: grids barely overlap");
        assert!(max < 1e-3, "{name}: max |Δ| {max} vs scipy");
    }
}
