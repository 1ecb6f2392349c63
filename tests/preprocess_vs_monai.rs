//! Model-input recipes against MONAI 1.4.0 itself: the tools virtualenv runs MONAI's
//! Orientation/CenterSpatialCrop/Spacing/ResizeWithPadOrCrop/NormalizeIntensity on NIfTI inputs
//! the reference script generates (several shapes, spacings and orientations: RAS, LAS, PIR,
//! oblique, flipped, sheared, a near-identity spacing), and `brainaged prepare` must produce the
//! same tensors within 1e-4 (max abs) and the same shapes. Real T1 series of ../shared/dicom
//! (converted by `brainaged convert`, or the pip `dcm2niix` where it cannot convert yet) go
//! through the generic `resample` recipe and BRAID's T1 chain as well.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::preprocess::npy::read_npy;

/// The largest NIfTI in `dir` (the series itself, not a derived map).
fn largest_nifti(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".nii.gz"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
}

/// A T1 series of ../shared/dicom as NIfTI: `brainaged convert`, or dcm2niix where our converter
/// does not handle the encoding yet.
fn convert_t1(series: &str, work: &Path) -> PathBuf {
    let folder = common::dicom_folder(series);
    assert!(
        folder.is_dir(),
        "{} missing (set BRAINAGED_SHARED)",
        folder.display()
    );
    let ours = work.join(format!("{series}-brainaged"));
    let status = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(&folder)
        .arg(&ours)
        .output()
        .unwrap();
    if status.status.success()
        && let Some(nii) = largest_nifti(&ours)
    {
        return nii;
    }
    let reference = work.join(format!("{series}-dcm2niix"));
    std::fs::create_dir_all(&reference).unwrap();
    let out = Command::new("dcm2niix")
        .args(["-z", "y", "-f", "%s_%d", "-o"])
        .arg(&reference)
        .arg(&folder)
        .output()
        .expect("dcm2niix (pip install dcm2niix)");
    assert!(out.status.success(), "dcm2niix failed on {series}");
    largest_nifti(&reference).unwrap_or_else(|| panic!("no NIfTI from {series}"))
}

#[test]
fn recipes_match_monai() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/monai_reference.py");
    let real: Vec<String> = ["ge-t1-mprage", "siemens-xa30-t1"]
        .iter()
        .map(|s| {
            format!(
                "real_{}={}",
                s.replace('-', "_"),
                convert_t1(s, dir.path()).display()
            )
        })
        .collect();
    let out = Command::new(common::venv_python())
        .arg(&script)
        .arg(dir.path())
        .args(&real)
        .output()
        .expect("running the MONAI reference script");
    assert!(
        out.status.success(),
        "MONAI reference failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: serde_json::Value = serde_json::from_slice(&out.stdout).expect("case list JSON");
    let cases = cases.as_array().expect("a list of cases");
    assert!(
        cases.len() >= 8,
        "expected at least 8 cases, got {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let args: Vec<&str> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let case_out = dir.path().join(name).join("ours");
        let run = Command::new(env!("CARGO_BIN_EXE_brainaged"))
            .arg("prepare")
            .args(&args)
            .arg("--out")
            .arg(&case_out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{name}: brainaged prepare failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let ours = read_npy(&case_out.join("input.npy")).unwrap();
        let want = read_npy(&dir.path().join(name).join("expected.npy")).unwrap();
        let png = std::fs::read(case_out.join("qa.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{name}: QA picture is not a PNG");
        if ours.shape != want.shape {
            failures.push(format!(
                "{name}: shape {:?} vs MONAI {:?}",
                ours.shape, want.shape
            ));
            continue;
        }
        let max = ours
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let nonzero_ours = ours.data.iter().filter(|v| **v != 0.0).count();
        let nonzero_want = want.data.iter().filter(|v| **v != 0.0).count();
        println!(
            "{name}: shape {:?} max |Δ| = {max:.3e}, nonzero {nonzero_ours} vs {nonzero_want}",
            ours.shape
        );
        if max.is_nan() || max > 1e-4 {
            failures.push(format!("{name}: max |Δ| = {max:e} > 1e-4"));
        }
    }
    assert!(
        failures.is_empty(),
        "MONAI parity failures:\n{}",
        failures.join("\n")
    );
}
