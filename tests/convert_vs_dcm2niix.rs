//! Conformance: every folder of the shared development DICOM is converted by `brainaged
//! convert` and by the reference converter dcm2niix (PyPI `dcm2niix`, run here), and every
//! output dcm2niix writes must be matched by ours: same name, dimensions, voxel type and stored
//! values (exact for integers, 1e-5 relative for floats), same intensity scaling, sform within
//! 1e-4 mm, identical b-values and b-vectors within 1e-4 (b=0 columns ignored). Outputs of
//! ours that dcm2niix does not write are failures too. A per-output table is printed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::nifti_io;
use brainaged::volume::{Volume, VoxelData};

fn shared_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn dicom_folders() -> Vec<PathBuf> {
    let root = shared_dir().join("dicom");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e} (set BRAINAGED_SHARED)", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn run_dcm2niix(input: &Path, out: &Path) {
    let status = Command::new("dcm2niix")
        .args(["-z", "y", "-f", "%s_%d", "-o"])
        .arg(out)
        .arg(input)
        .output()
        .unwrap_or_else(|e| {
            panic!("dcm2niix is not runnable ({e}): install it with `pip install dcm2niix`")
        });
    assert!(
        status.status.success() || has_nifti(out),
        "dcm2niix failed on {}: {}",
        input.display(),
        String::from_utf8_lossy(&status.stderr)
    );
}

fn run_ours(input: &Path, out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(input)
        .arg(out)
        .arg("--json")
        .output()
        .expect("run brainaged");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn has_nifti(dir: &Path) -> bool {
    !stems(dir).is_empty()
}

/// Stems of the `.nii.gz` files in `dir`.
fn stems(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".nii.gz").map(str::to_string)
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Exact for integer types; relative 1e-5 for floats. Types must agree.
fn compare_voxels(ours: &VoxelData, reference: &VoxelData) -> Result<(), String> {
    if ours.shape() != reference.shape() {
        return Err(format!(
            "dimensions {:?} vs dcm2niix {:?}",
            ours.shape(),
            reference.shape()
        ));
    }
    if ours.type_name() != reference.type_name() {
        return Err(format!(
            "voxel type {} vs dcm2niix {}",
            ours.type_name(),
            reference.type_name()
        ));
    }
    let differing = match (ours, reference) {
        (VoxelData::F32(a), VoxelData::F32(b)) => a
            .iter()
            .zip(b.iter())
            .filter(|(x, y)| (**x - **y).abs() > 1e-5 * y.abs().max(1e-6))
            .count(),
        (VoxelData::F64(a), VoxelData::F64(b)) => a
            .iter()
            .zip(b.iter())
            .filter(|(x, y)| (**x - **y).abs() > 1e-5 * y.abs().max(1e-6))
            .count(),
        _ => {
            let (a, b) = (ours.to_f32(), reference.to_f32());
            // Integers up to 2^24 are exact in f32; 16-bit data always is.
            a.iter().zip(b.iter()).filter(|(x, y)| x != y).count()
        }
    };
    if differing > 0 {
        return Err(format!("{differing} voxels differ"));
    }
    Ok(())
}

fn compare_scaling(ours: &Volume, reference: &Volume) -> Result<(), String> {
    let (a, b) = (
        ours.meta.intensity_scaling.unwrap_or((1.0, 0.0)),
        reference.meta.intensity_scaling.unwrap_or((1.0, 0.0)),
    );
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * y.abs().max(1.0);
    if close(a.0, b.0) && close(a.1, b.1) {
        Ok(())
    } else {
        Err(format!("scl_slope/inter {a:?} vs dcm2niix {b:?}"))
    }
}

fn read_numbers(path: &Path) -> Result<Vec<Vec<f64>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .map(|t| {
                    t.parse::<f64>()
                        .map_err(|e| format!("{}: {t}: {e}", path.display()))
                })
                .collect()
        })
        .collect()
}

fn compare_gradients(ours: &Path, reference: &Path) -> Result<(), String> {
    let bval_ref = reference.with_extension("bval");
    let bval_ours = ours.with_extension("bval");
    match (bval_ref.exists(), bval_ours.exists()) {
        (false, false) => return Ok(()),
        (true, false) => return Err("no .bval written".into()),
        (false, true) => return Err(".bval written where dcm2niix writes none".into()),
        (true, true) => {}
    }
    let (b_ref, b_ours) = (read_numbers(&bval_ref)?, read_numbers(&bval_ours)?);
    if b_ref != b_ours {
        return Err(format!("bval {b_ours:?} vs dcm2niix {b_ref:?}"));
    }
    let (v_ref, v_ours) = (
        read_numbers(&reference.with_extension("bvec"))?,
        read_numbers(&ours.with_extension("bvec"))?,
    );
    if v_ref.len() != 3 || v_ours.len() != 3 {
        return Err("bvec does not have three rows".into());
    }
    let bvals = &b_ref[0];
    for (col, &b) in bvals.iter().enumerate() {
        if b == 0.0 {
            continue;
        }
        for axis in 0..3 {
            let (x, y) = (
                v_ours[axis].get(col).copied().unwrap_or(f64::NAN),
                v_ref[axis].get(col).copied().unwrap_or(f64::NAN),
            );
            // NaN (a missing column) fails too.
            if (x - y).abs() <= 1e-4 {
                continue;
            }
            return Err(format!(
                "bvec volume {col}: ({}, {}, {}) vs dcm2niix ({}, {}, {})",
                v_ours[0][col],
                v_ours[1][col],
                v_ours[2][col],
                v_ref[0][col],
                v_ref[1][col],
                v_ref[2][col]
            ));
        }
    }
    Ok(())
}

fn compare_output(ours_dir: &Path, ref_dir: &Path, stem: &str) -> Result<(), String> {
    let ours_path = ours_dir.join(format!("{stem}.nii.gz"));
    let ref_path = ref_dir.join(format!("{stem}.nii.gz"));
    if !ours_path.exists() {
        return Err("not written by brainaged".into());
    }
    let ours = nifti_io::read_volume_raw(&ours_path).map_err(|e| e.to_string())?;
    let reference = nifti_io::read_volume_raw(&ref_path).map_err(|e| e.to_string())?;
    compare_voxels(&ours.data, &reference.data)?;
    compare_scaling(&ours, &reference)?;
    let diff = (ours.affine - reference.affine).abs().max();
    if diff > 1e-4 {
        return Err(format!(
            "affine differs by {diff:.2e} mm: ours {} dcm2niix {}",
            ours.affine, reference.affine
        ));
    }
    let (h_ours, h_ref) = (
        nifti::NiftiHeader::from_file(&ours_path).map_err(|e| e.to_string())?,
        nifti::NiftiHeader::from_file(&ref_path).map_err(|e| e.to_string())?,
    );
    if (h_ours.sform_code, h_ours.qform_code) != (h_ref.sform_code, h_ref.qform_code) {
        return Err(format!(
            "sform/qform codes {:?} vs dcm2niix {:?}",
            (h_ours.sform_code, h_ours.qform_code),
            (h_ref.sform_code, h_ref.qform_code)
        ));
    }
    let qfac = |h: &nifti::NiftiHeader| if h.pixdim[0] < 0.0 { -1 } else { 1 };
    if qfac(&h_ours) != qfac(&h_ref) {
        return Err("qform handedness (pixdim[0]) differs".into());
    }
    compare_gradients(
        &ours_dir.join(format!("{stem}.nii")),
        &ref_dir.join(format!("{stem}.nii")),
    )
}

#[test]
fn every_development_series_matches_dcm2niix() {
    let work = tempfile::tempdir().unwrap();
    let mut rows: Vec<(String, String, Result<(), String>)> = Vec::new();
    for folder in dicom_folders() {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let (ref_dir, ours_dir) = (
            work.path().join("ref").join(&name),
            work.path().join("ours").join(&name),
        );
        std::fs::create_dir_all(&ref_dir).unwrap();
        std::fs::create_dir_all(&ours_dir).unwrap();
        run_dcm2niix(&folder, &ref_dir);
        let stderr = run_ours(&folder, &ours_dir);
        let (want, got) = (stems(&ref_dir), stems(&ours_dir));
        if want.is_empty() {
            rows.push((
                name.clone(),
                "-".into(),
                Err("dcm2niix wrote nothing".into()),
            ));
        }
        for stem in &want {
            let mut r = compare_output(&ours_dir, &ref_dir, stem);
            if let Err(e) = &mut r
                && !stderr.trim().is_empty()
            {
                e.push_str(&format!(
                    " [brainaged: {}]",
                    stderr.trim().replace('\n', "; ")
                ));
            }
            rows.push((name.clone(), stem.clone(), r));
        }
        for extra in got.difference(&want) {
            rows.push((
                name.clone(),
                extra.clone(),
                Err("written by brainaged, not by dcm2niix".into()),
            ));
        }
    }
    let passed = rows.iter().filter(|r| r.2.is_ok()).count();
    println!("\n{:<34} {:<40} result", "folder", "output");
    for (folder, stem, r) in &rows {
        match r {
            Ok(()) => println!("{folder:<34} {stem:<40} pass"),
            Err(e) => println!("{folder:<34} {stem:<40} FAIL: {e}"),
        }
    }
    println!("{passed}/{} outputs match dcm2niix", rows.len());
    assert_eq!(passed, rows.len(), "not every output matches dcm2niix");
}

/// Cross-check of our reader and writer with an independent one: nibabel reads our GE T1
/// output and must see the same shape, sform and voxel sum as `nifti_io` does.
#[test]
fn nibabel_reads_our_output_as_we_do() {
    let folder = shared_dir().join("dicom/ge-t1-mprage");
    let out = tempfile::tempdir().unwrap();
    run_ours(&folder, out.path());
    let path = out.path().join("5_3D_Ax_T1_MP-RAGE_R22.nii.gz");
    let ours = nifti_io::read_volume_raw(&path).expect("our output");
    let script = "import sys, nibabel as nib, numpy as np\n\
                  im = nib.load(sys.argv[1])\n\
                  a = np.asarray(im.dataobj).astype(np.int64)\n\
                  print(' '.join(map(str, im.shape)))\n\
                  print(' '.join(repr(float(v)) for v in im.affine[:3].ravel()))\n\
                  print(int(a.sum()), int(a[10, 20, 30]), int(a[200, 100, 120]))";
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 with nibabel is needed (pip install nibabel)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let shape: Vec<usize> = lines[0].split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(shape, ours.data.shape());
    let affine: Vec<f64> = lines[1].split(' ').map(|v| v.parse().unwrap()).collect();
    for r in 0..3 {
        for c in 0..4 {
            assert!((affine[r * 4 + c] - ours.affine[(r, c)]).abs() < 1e-4);
        }
    }
    let VoxelData::I16(a) = &ours.data else {
        panic!("GE T1 should be int16, got {}", ours.data.type_name())
    };
    let sum: i64 = a.iter().map(|&v| i64::from(v)).sum();
    let probes: Vec<i64> = lines[2].split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(probes[0], sum);
    assert_eq!(probes[1], i64::from(a[[10, 20, 30]]));
    assert_eq!(probes[2], i64::from(a[[200, 100, 120]]));
}

/// GE's gradient directions are stored in the logical frame and mapped to `.bvec` by sign
/// flips that depend on the slice plane and the phase-encoding direction. The development set
/// holds only axial COL data, so copies of a real GE DWI are edited (with pydicom) into ROW
/// phase encoding, coronal, sagittal and coronal + ROW, and each must match dcm2niix.
#[test]
fn ge_gradient_conventions_match_dcm2niix_on_reoriented_copies() {
    let work = tempfile::tempdir().unwrap();
    let script = r#"
import sys, glob, os, numpy as np, pydicom
src, out = sys.argv[1], sys.argv[2]
variants = {'row': None, 'cor': [1, 0, 0, 0, 0, -1], 'sag': [0, 1, 0, 0, 0, -1],
            'corrow': [1, 0, 0, 0, 0, -1]}
for name, iop in variants.items():
    os.makedirs(os.path.join(out, name), exist_ok=True)
    for f in sorted(glob.glob(os.path.join(src, '*'))):
        ds = pydicom.dcmread(f)
        o = np.array(ds.ImageOrientationPatient, float)
        depth = float(np.array(ds.ImagePositionPatient, float) @ np.cross(o[:3], o[3:]))
        if name.endswith('row'):
            ds.InPlanePhaseEncodingDirection = 'ROW'
        if iop:
            ds.ImageOrientationPatient = iop
            n = np.cross(iop[:3], iop[3:])
            ds.ImagePositionPatient = [float(v) for v in n * depth + np.array([-100.0, 20.0, 50.0]) * (1 - np.abs(n))]
        ds.SeriesDescription = 'ge_' + name
        ds.save_as(os.path.join(out, name, os.path.basename(f)))
"#;
    let src = shared_dir().join("dicom/ge-dwi-tensor-r2");
    let made = work.path().join("in");
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&src)
        .arg(&made)
        .output()
        .expect("python3 with pydicom and numpy is needed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut failures = Vec::new();
    for variant in ["row", "cor", "sag", "corrow"] {
        let input = made.join(variant);
        let (ref_dir, ours_dir) = (
            work.path().join("ref").join(variant),
            work.path().join("ours").join(variant),
        );
        std::fs::create_dir_all(&ref_dir).unwrap();
        std::fs::create_dir_all(&ours_dir).unwrap();
        run_dcm2niix(&input, &ref_dir);
        run_ours(&input, &ours_dir);
        let want = stems(&ref_dir);
        assert_eq!(want.len(), 1, "{variant}: dcm2niix outputs {want:?}");
        for stem in &want {
            match compare_output(&ours_dir, &ref_dir, stem) {
                Ok(()) => println!("{variant:<8} {stem:<30} pass"),
                Err(e) => failures.push(format!("{variant}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
