//! FA and MD from `brainaged dti` against MRtrix 3.0.3 (`dwi2tensor` defaults, `tensor2metric
//! -fa -adc`) on every diffusion series of ../shared/dicom, converted inside the test by
//! `brainaged convert` (the pip `dcm2niix` for series it cannot convert yet). Both tools get the
//! same mask (MRtrix `dwi2mask`). Inside it: median |ΔFA| ≤ 0.005 and median relative
//! |ΔMD| ≤ 1%. Series whose diffusion-weighted volumes equal their b=0 (no diffusion contrast,
//! FA undefined) must give MD ≈ 0 from both tools instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use brainaged::nifti_io::{read_volume, read_volume_f32};
use brainaged::volume::Volume;

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: install Debian mrtrix3 (scripts/setup.d/10-apt.sh)");
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn values(v: &Volume) -> Vec<f32> {
    // Both sides are written on the same grid; compare in (i, j, k) order.
    let a = v.data.to_f32();
    a.t().iter().copied().collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// Fraction of masked voxels whose signal is identical in every volume.
fn flat_fraction(dwi: &Volume, mask: &[bool]) -> f64 {
    let a = dwi.data.to_f32();
    let shape = a.shape().to_vec();
    let nvox = shape[0] * shape[1] * shape[2];
    let vols: Vec<Vec<f32>> = (0..shape[3])
        .map(|t| {
            a.index_axis(ndarray::Axis(3), t)
                .t()
                .iter()
                .copied()
                .collect()
        })
        .collect();
    let inside: Vec<usize> = (0..nvox).filter(|&v| mask[v]).collect();
    let flat = inside
        .iter()
        .filter(|&&v| vols.iter().all(|vol| vol[v] == vols[0][v]))
        .count();
    flat as f64 / inside.len().max(1) as f64
}

/// The first diffusion series in `dir` with its gradient files: (nii, bval, bvec).
fn find_dwi(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let mut bvals: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bval"))
        .collect();
    bvals.sort();
    let bval = bvals.into_iter().next()?;
    let stem = bval.with_extension("");
    Some((
        stem.with_extension("nii.gz"),
        bval,
        stem.with_extension("bvec"),
    ))
}

/// Converts a DICOM folder with `brainaged convert`; series it cannot convert yet (its issue for
/// mosaic and enhanced multi-frame DICOM is still open) go through the pip `dcm2niix`, the
/// reference converter, so that every diffusion series is still checked.
fn convert_dwi(folder: &Path, dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf, &'static str)> {
    let ours = dir.join("brainaged");
    let status = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(folder)
        .arg(&ours)
        .output()
        .expect("running brainaged convert");
    if status.status.success()
        && let Some((nii, bval, bvec)) = find_dwi(&ours)
    {
        return Some((nii, bval, bvec, "brainaged convert"));
    }
    let reference = dir.join("dcm2niix");
    std::fs::create_dir_all(&reference).unwrap();
    run(
        Command::new("dcm2niix")
            .args(["-z", "y", "-f", "%s_%d", "-o"])
            .arg(&reference)
            .arg(folder),
        "dcm2niix (pip install dcm2niix)",
    );
    find_dwi(&reference).map(|(nii, bval, bvec)| (nii, bval, bvec, "dcm2niix"))
}

#[test]
fn fa_md_match_mrtrix_on_shared_diffusion_series() {
    let dicom = common::shared_dir().join("dicom");
    assert!(
        dicom.is_dir(),
        "{} missing (set BRAINAGED_SHARED)",
        dicom.display()
    );
    let work = tempfile::tempdir().unwrap();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dicom)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().contains("dwi"))
        .collect();
    folders.sort();
    let mut compared = 0;
    let mut failures = Vec::new();
    for folder in folders {
        let name = folder.file_name().unwrap().to_string_lossy().to_string();
        let dir = work.path().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let Some((nii, bval, bvec, converter)) = convert_dwi(&folder, &dir) else {
            println!("{name}: no diffusion series after conversion");
            continue;
        };
        let mif = dir.join("dwi.mif");
        let mask = dir.join("mask.nii");
        run(
            Command::new(tool("mrconvert"))
                .arg("-quiet")
                .arg(&nii)
                .arg("-fslgrad")
                .arg(&bvec)
                .arg(&bval)
                .arg(&mif),
            "mrconvert",
        );
        run(
            Command::new(tool("dwi2mask"))
                .arg("-quiet")
                .arg(&mif)
                .arg(&mask),
            "dwi2mask",
        );
        let dt = dir.join("dt.mif");
        run(
            Command::new(tool("dwi2tensor"))
                .args(["-quiet", "-mask"])
                .arg(&mask)
                .arg(&mif)
                .arg(&dt),
            "dwi2tensor",
        );
        run(
            Command::new(tool("tensor2metric"))
                .arg("-quiet")
                .arg(&dt)
                .arg("-fa")
                .arg(dir.join("mr_fa.nii"))
                .arg("-adc")
                .arg(dir.join("mr_md.nii")),
            "tensor2metric",
        );
        let ours = dir.join("ours");
        run(
            Command::new(env!("CARGO_BIN_EXE_brainaged"))
                .arg("dti")
                .arg("--dwi")
                .arg(&nii)
                .arg("--bval")
                .arg(&bval)
                .arg("--bvec")
                .arg(&bvec)
                .arg("--mask")
                .arg(&mask)
                .arg("--out")
                .arg(&ours),
            "brainaged dti",
        );
        let mask_v = read_volume_f32(&mask).unwrap();
        let mr_fa = read_volume_f32(&dir.join("mr_fa.nii")).unwrap();
        let mr_md = read_volume_f32(&dir.join("mr_md.nii")).unwrap();
        let our_fa = read_volume_f32(&ours.join("fa.nii.gz")).unwrap();
        let our_md = read_volume_f32(&ours.join("md.nii.gz")).unwrap();
        assert_eq!(
            mr_fa.data.shape(),
            our_fa.data.shape(),
            "{name}: grids differ"
        );
        assert!(
            (mr_fa.affine - our_fa.affine).abs().max() < 1e-3,
            "{name}: affines differ:\n{}\n{}",
            mr_fa.affine,
            our_fa.affine
        );
        let inside: Vec<bool> = values(&mask_v).iter().map(|&v| v > 0.5).collect();
        let (mf, mm, of, om) = (
            values(&mr_fa),
            values(&mr_md),
            values(&our_fa),
            values(&our_md),
        );
        let dwi = read_volume(&nii).unwrap();
        let flat = flat_fraction(&dwi, &inside);
        if flat > 0.99 {
            let md_max = (0..inside.len())
                .filter(|&v| inside[v])
                .map(|v| (mm[v].abs() as f64).max(om[v].abs() as f64))
                .fold(0.0, f64::max);
            println!(
                "{name} ({converter}): {:.0}% of masked voxels have identical signal in every volume (no \
                 diffusion contrast): FA undefined; max |MD| of both tools {md_max:.2e} mm²/s",
                flat * 100.0
            );
            if md_max > 1e-6 {
                failures.push(format!(
                    "{name}: MD should be ~0 without contrast, got {md_max}"
                ));
            }
            continue;
        }
        let mut dfa = Vec::new();
        let mut rmd = Vec::new();
        for v in 0..inside.len() {
            if !inside[v] || !mm[v].is_finite() || !mf[v].is_finite() || mm[v] == 0.0 {
                continue;
            }
            dfa.push((of[v] as f64 - mf[v] as f64).abs());
            rmd.push(((om[v] as f64 - mm[v] as f64) / mm[v] as f64).abs());
        }
        let (med_fa, med_md) = (median(dfa.clone()), median(rmd.clone()));
        let max_fa = dfa.iter().copied().fold(0.0, f64::max);
        println!(
            "{name} ({converter}): {} voxels in mask, median |ΔFA| = {med_fa:.2e} (max {max_fa:.2e}), \
             median relative |ΔMD| = {med_md:.2e}",
            dfa.len()
        );
        if dfa.len() < 1000 {
            failures.push(format!(
                "{name}: only {} voxels in the shared mask",
                dfa.len()
            ));
        }
        if med_fa.is_nan() || med_fa > 0.005 {
            failures.push(format!("{name}: median |ΔFA| {med_fa} > 0.005"));
        }
        if med_md.is_nan() || med_md > 0.01 {
            failures.push(format!("{name}: median relative |ΔMD| {med_md} > 1%"));
        }
        compared += 1;
    }
    assert!(
        compared >= 4,
        "only {compared} series with diffusion contrast were compared"
    );
    assert!(
        failures.is_empty(),
        "MRtrix parity failures:\n{}",
        failures.join("\n")
    );
}

/// A gradient table that does not match the series is refused with a message that says so, and
/// nothing is written.
#[test]
fn mismatched_gradient_table_is_a_clear_error() {
    use brainaged::nifti_io::write_volume;
    use brainaged::volume::VoxelData;
    let dir = tempfile::tempdir().unwrap();
    let dwi = dir.path().join("dwi.nii.gz");
    let data = ndarray::ArrayD::from_elem(vec![4, 4, 2, 8], 100i16);
    let volume = Volume {
        data: VoxelData::I16(data),
        affine: nalgebra::Matrix4::identity(),
        meta: Default::default(),
        gradients: None,
    };
    write_volume(&dwi, &volume).unwrap();
    std::fs::write(
        dir.path().join("b.bval"),
        "0 1000 1000 1000 1000 1000 1000\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.bvec"),
        "0 1 0 0 0.7 0.7 0\n0 0 1 0 0.7 0 0.7\n0 0 0 1 0 0.7 0.7\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("dti")
        .arg("--dwi")
        .arg(&dwi)
        .arg("--bval")
        .arg(dir.path().join("b.bval"))
        .arg("--bvec")
        .arg(dir.path().join("b.bvec"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("8 volumes but 7 gradient entries"), "{err}");
    assert!(!out.join("fa.nii.gz").exists());
}
