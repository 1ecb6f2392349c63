//! `brainaged register` keeps its contract: warped image on the fixed grid plus transform files
//! that say what was found, and a clear error for a missing input.

use std::process::Command;

use nalgebra::{Matrix4, Vector3};

use brainaged::nifti_io;
use brainaged::preprocess::register::image::Image;
use brainaged::preprocess::register::pyramid::level_image;
use brainaged::preprocess::register::transform::{AffineTransform, Chain, Interpolation, warp};
use brainaged::preprocess::template::Template;

#[test]
fn register_rigid_writes_warped_image_and_affine_that_undo_a_known_shift() {
    let dir = Template::default_dir();
    let t = Template::load(&dir).unwrap_or_else(|e| panic!("{e} (in {})", dir.display()));
    let fixed = level_image(&Image::from_volume(&t.t1).unwrap(), 2, 0.5);
    // moving(y) = fixed(y + s): the fixed→moving map is x ↦ x − s.
    let shift = Vector3::new(6.0, -4.0, 3.0);
    let moving = warp(
        &fixed,
        &fixed.grid,
        &Chain::affine(AffineTransform::translation(shift)),
        Interpolation::Linear,
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("fixed.nii.gz");
    let m = work.path().join("moving.nii.gz");
    nifti_io::write_volume(&f, &fixed.to_volume()).unwrap();
    nifti_io::write_volume(&m, &moving.to_volume()).unwrap();
    let out = work.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .args(["register", "--transform", "rigid", "--fixed"])
        .arg(&f)
        .arg("--moving")
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let warped = nifti_io::read_volume_f32(&out.join("warped.nii.gz")).unwrap();
    assert_eq!(warped.data.shape(), &fixed.grid.dims[..]);
    let affine = AffineTransform::read_json(&out.join("affine.json")).unwrap();
    let expected = -shift;
    let found = Vector3::new(
        affine.matrix[(0, 3)],
        affine.matrix[(1, 3)],
        affine.matrix[(2, 3)],
    );
    let linear = affine.matrix.fixed_view::<3, 3>(0, 0).into_owned();
    assert!(
        (found - expected).norm() < 1.0,
        "translation {found:?}, expected {expected:?}"
    );
    assert!(
        (linear - Matrix4::<f64>::identity().fixed_view::<3, 3>(0, 0))
            .abs()
            .max()
            < 0.02
    );
    assert!(
        !out.join("warp.nii.gz").exists(),
        "a rigid run wrote a field"
    );
}

#[test]
fn register_reports_a_missing_input_and_fails() {
    let work = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .args(["register", "--transform", "affine", "--fixed"])
        .arg(work.path().join("nope.nii.gz"))
        .arg("--moving")
        .arg(work.path().join("nope2.nii.gz"))
        .arg("--out")
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("reading the fixed image"), "{err}");
}
