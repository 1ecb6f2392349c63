//! `brainaged prepare` on native-space input: the real T1 and DWI of one subject and session
//! (siemens-xa30-t1 and siemens-xa30-dwi of ../shared/dicom, converted by `brainaged convert`)
//! go through the BRAID recipes with registration to the ICBM152 template, and the outputs are
//! checked against the template itself, which knows where brain, WM and GM are:
//! - the tensor has the model's shape and only finite values; FA lies in [0, 1], MD in a
//!   physiological range;
//! - the subject brain mask, carried into MNI space by the recipe's own T1 → template transform,
//!   overlaps the template brain mask (Dice ≥ [`MIN_MASK_DICE`]). The mask came from the
//!   template through the whole-head registration's inverse, so this checks that the two
//!   registrations agree (and that transforms run in the right direction), not that the mask
//!   follows the subject's brain;
//! - FA in MNI space is higher in the template's WM than in its GM (median ratio ≥
//!   [`MIN_FA_WM_GM_RATIO`]), and the T1 brighter in WM than in GM: tissue only lines up when
//!   the whole chain (b0 → T1 rigid, T1 → MNI, one resampling) is right. The thresholds sit
//!   below what this data gives today (figures beside each constant): a whole-head T1 against
//!   the skull-stripped template is the weak point, and these are guards against a broken
//!   chain, not evidence of BRAID-grade alignment.
//!
//! The XA30 DWI has only b = 0 and b = 2500 volumes, so the diffusion runs pass `--shell-max 3000`
//! (BRAID fits b < 1500; FA/MD at b = 2500 are lower in MD but keep the WM/GM contrast).
//! Registration runs against the template averaged to 2 mm (`--registration-shrink 2`): the
//! subject T1 is 2 mm, and a full-resolution run takes several minutes on a loaded 2-core machine.
//!
//! Needs the template (`scripts/setup.d/45-template.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use brainaged::nifti_io::read_volume_f32;
use brainaged::preprocess::image::Image3;
use brainaged::preprocess::npy::read_npy;
use brainaged::preprocess::recipe::{braid_monai_chain, braid_template_grid};
use brainaged::preprocess::resample::{Interp, Padding, resample_to_grid};
use brainaged::preprocess::template::{Template, dice};

/// The subject mask in MNI space against the template's (see the module docs). Measured
/// 2026-11-26: 0.982 (affine), 0.962 (nonrigid).
const MIN_MASK_DICE: f64 = 0.90;
/// Median FA in template WM over median FA in template GM, affine chain. Measured: 1.35
/// (0.283 / 0.210). Noise at b = 2500 with 20 directions and 3 mm voxels lifts GM FA; the T1
/// brain mask's rim of scalp (see `preprocess::template_registration`) blurs the alignment.
const MIN_FA_WM_GM_RATIO: f64 = 1.2;
/// The same for the nonrigid chain. Measured: 1.20 (0.255 / 0.212; mask Dice 0.943) with the
/// 2 mm registration this test uses, once the pyramid keeps its physical scales on the shrunk
/// template (before: 1.10). SyN driven by the scalp rim left in the stripped T1 still gives up
/// some of the affine's tissue alignment; a known weakness. The threshold sits midway between
/// the good 1.20 and the broken 1.10 (BENCHMARKS.md, "Model-input recipes on native-space
/// input"), so it catches that regression as well as a chain broken altogether (≈ 1.0 when FA
/// and MNI do not line up). Re-measured 2026-11-27: 0.255 / 0.212 again.
const MIN_FA_WM_GM_RATIO_NONRIGID: f64 = 1.15;
/// Normalised T1: median in WM minus median in GM. Measured: 0.39 (−0.01 vs −0.41).
const MIN_T1_WM_MINUS_GM: f64 = 0.2;

/// Converts one series folder with `brainaged convert --json`; returns (nifti, bval, bvec).
fn convert(series: &str, work: &Path) -> (PathBuf, Option<PathBuf>, Option<PathBuf>) {
    let out = work.join(series);
    let run = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("convert")
        .arg(common::dicom_folder(series))
        .arg(&out)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "convert {series}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8_lossy(&run.stdout);
    let row: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .next()
        .unwrap_or_else(|| panic!("no JSON row from convert {series}: {text}"));
    let path = |key: &str| row[key].as_str().map(PathBuf::from);
    (path("nifti").unwrap(), path("bval"), path("bvec"))
}

fn template() -> Template {
    let dir = Template::default_dir();
    Template::load(&dir).unwrap_or_else(|e| panic!("{e} (looked in {})", dir.display()))
}

fn prepare(args: &[&std::ffi::OsStr]) -> Output {
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_brainaged"))
        .arg("prepare")
        .args(args)
        .output()
        .unwrap();
    println!(
        "prepare {:?}: {:.1} s",
        args.get(1),
        started.elapsed().as_secs_f64()
    );
    run
}

/// A template volume on BRAID's 1 mm MNI grid.
fn on_braid_grid(volume: &brainaged::volume::Volume, interp: Interp) -> Image3 {
    let img = Image3::from_volume(volume).unwrap();
    resample_to_grid(&img, &braid_template_grid(), interp, Padding::Zeros).unwrap()
}

/// Channel `c` of a [1, C, X, Y, Z] C-order tensor as an i-fastest buffer matching `like`.
fn channel(tensor: &brainaged::preprocess::npy::NpyArray, c: usize, like: &Image3) -> Vec<f32> {
    let [ni, nj, nk] = like.dims;
    assert_eq!(tensor.shape[2..], [ni, nj, nk]);
    let base = c * ni * nj * nk;
    let mut out = vec![0.0f32; ni * nj * nk];
    for i in 0..ni {
        for j in 0..nj {
            for k in 0..nk {
                out[like.index(i, j, k)] = tensor.data[base + (i * nj + j) * nk + k];
            }
        }
    }
    out
}

/// Median of `values` where `weight` > 0.9 and `values` ≠ 0 (inside the image's coverage);
/// a median, because a few noise voxels of a b = 2500 fit carry MD values of −100 and more.
fn median_where(values: &[f32], weight: &[f32]) -> f64 {
    let mut picked: Vec<f32> = values
        .iter()
        .zip(weight)
        .filter(|(v, w)| **w > 0.9 && **v != 0.0)
        .map(|(v, _)| *v)
        .collect();
    assert!(picked.len() > 1000, "only {} voxels", picked.len());
    let mid = picked.len() / 2;
    let (_, m, _) = picked.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    *m as f64
}

/// Dice of the recipe's MNI-space subject mask against the template mask.
fn mask_dice(out: &Path, t: &Template) -> f64 {
    let subject = read_volume_f32(&out.join("qa/t1_brain_mask_template.nii.gz")).unwrap();
    let subject = Image3::from_volume(&subject).unwrap();
    let reference = on_braid_grid(&t.brain_mask, Interp::Nearest);
    assert_eq!(subject.dims, reference.dims);
    dice(&subject.data, &reference.data)
}

/// The template's WM and GM probabilities on the tensor's grid.
fn tissue_on_tensor_grid(t: &Template) -> (Image3, Image3) {
    let wm = on_braid_grid(t.wm.as_ref().expect("template WM map"), Interp::Linear);
    let gm = on_braid_grid(t.gm.as_ref().expect("template GM map"), Interp::Linear);
    (
        braid_monai_chain(&wm).unwrap(),
        braid_monai_chain(&gm).unwrap(),
    )
}

/// Runs a BRAID diffusion recipe on the XA30 T1 + DWI and checks its output (module docs).
fn check_dti_recipe(recipe: &str, min_fa_ratio: f64) {
    let work = tempfile::tempdir().unwrap();
    let (t1, _, _) = convert("siemens-xa30-t1", work.path());
    let (dwi, bval, bvec) = convert("siemens-xa30-dwi", work.path());
    let out = work.path().join("dti");
    let run = prepare(&[
        "--recipe".as_ref(),
        recipe.as_ref(),
        "--t1".as_ref(),
        t1.as_os_str(),
        "--dwi".as_ref(),
        dwi.as_os_str(),
        "--bval".as_ref(),
        bval.as_deref().expect("bval").as_os_str(),
        "--bvec".as_ref(),
        bvec.as_deref().expect("bvec").as_os_str(),
        "--shell-max".as_ref(),
        "3000".as_ref(),
        "--registration-shrink".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.join("qa.png").exists());
    assert!(out.join("qa/b0_brain_mask.nii.gz").exists());
    let tensor = read_npy(&out.join("input.npy")).unwrap();
    assert_eq!(tensor.shape, vec![1, 2, 128, 152, 128]);
    assert!(tensor.data.iter().all(|v| v.is_finite()));

    let t = template();
    let (wm, gm) = tissue_on_tensor_grid(&t);
    let fa = channel(&tensor, 0, &wm);
    let md = channel(&tensor, 1, &wm);
    let brain: Vec<usize> = (0..md.len()).filter(|n| md[*n] != 0.0).collect();
    let share = |ok: &dyn Fn(usize) -> bool| {
        brain.iter().filter(|n| ok(**n)).count() as f64 / brain.len() as f64
    };
    let fa_in_range = share(&|n| (0.0..=1.0).contains(&fa[n]));
    let md_in_range = share(&|n| (0.0..0.005).contains(&md[n]));
    let fraction = brain.len() as f64 / md.len() as f64;
    println!(
        "nonzero fraction {fraction:.3}; FA in [0, 1]: {fa_in_range:.5}; \
         MD in [0, 0.005): {md_in_range:.5}"
    );
    // FA of a tensor with a negative eigenvalue (noise at b = 2500 in CSF) exceeds 1, as in
    // MRtrix, whose fit this is; it is never above √1.5, the bound for any symmetric tensor.
    assert!(fa.iter().all(|v| (0.0..=1.5f32.sqrt()).contains(v)));
    assert!(fa_in_range > 0.999, "FA in [0, 1] for {fa_in_range:.5}");
    assert!(md_in_range > 0.99, "MD in [0, 0.005) for {md_in_range:.5}");
    // A brain-sized share of the box (the template brain fills 0.24 of it; the DWI slab of
    // 39 × 3 mm misses some of the lower brain): neither empty nor the whole field of view.
    assert!(
        (0.08..0.30).contains(&fraction),
        "nonzero fraction {fraction}"
    );

    let dice = mask_dice(&out, &t);
    let fa_wm = median_where(&fa, &wm.data);
    let fa_gm = median_where(&fa, &gm.data);
    let md_wm = median_where(&md, &wm.data);
    println!("{recipe}: mask Dice {dice:.3}; FA WM {fa_wm:.3} GM {fa_gm:.3}; MD WM {md_wm:.2e}");
    assert!(dice >= MIN_MASK_DICE, "mask Dice {dice:.3}");
    assert!(
        fa_wm > min_fa_ratio * fa_gm,
        "FA in WM {fa_wm:.3} vs GM {fa_gm:.3}"
    );
    assert!((2e-4..1.2e-3).contains(&md_wm), "MD in WM {md_wm:.2e}");
}

#[test]
fn braid_dti_affine_from_native_t1_and_dwi_lines_up_with_the_template() {
    check_dti_recipe("braid-dti-affine", MIN_FA_WM_GM_RATIO);
}

#[test]
fn braid_dti_nonrigid_from_native_t1_and_dwi_lines_up_with_the_template() {
    check_dti_recipe("braid-dti-nonrigid", MIN_FA_WM_GM_RATIO_NONRIGID);
}

#[test]
fn braid_t1_affine_from_native_t1_lines_up_with_the_template() {
    let work = tempfile::tempdir().unwrap();
    let (t1, _, _) = convert("siemens-xa30-t1", work.path());
    let out = work.path().join("t1");
    let run = prepare(&[
        "--recipe".as_ref(),
        "braid-t1-affine".as_ref(),
        "--t1".as_ref(),
        t1.as_os_str(),
        "--registration-shrink".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let tensor = read_npy(&out.join("input.npy")).unwrap();
    assert_eq!(tensor.shape, vec![1, 1, 128, 152, 128]);
    assert!(tensor.data.iter().all(|v| v.is_finite()));
    let nonzero: Vec<f64> = tensor
        .data
        .iter()
        .filter(|v| **v != 0.0)
        .map(|v| *v as f64)
        .collect();
    let n = nonzero.len() as f64;
    let mean = nonzero.iter().sum::<f64>() / n;
    let sd = (nonzero.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        mean.abs() < 1e-3 && (sd - 1.0).abs() < 1e-3,
        "mean {mean}, sd {sd}"
    );
    let fraction = n / tensor.data.len() as f64;
    assert!(
        (0.15..0.30).contains(&fraction),
        "nonzero fraction {fraction}"
    );

    let t = template();
    let (wm, gm) = tissue_on_tensor_grid(&t);
    let img = channel(&tensor, 0, &wm);
    let dice = mask_dice(&out, &t);
    let (t1_wm, t1_gm) = (median_where(&img, &wm.data), median_where(&img, &gm.data));
    println!("mask Dice {dice:.3}; normalised T1 WM {t1_wm:.3} GM {t1_gm:.3}");
    assert!(dice >= MIN_MASK_DICE, "mask Dice {dice:.3}");
    // Normalised intensities: WM is the brightest tissue of a T1w brain, GM below it.
    assert!(
        t1_wm > t1_gm + MIN_T1_WM_MINUS_GM,
        "T1 WM {t1_wm:.3} vs GM {t1_gm:.3}"
    );
}

#[test]
fn a_missing_template_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let (t1, _, _) = convert("siemens-xa30-t1", work.path());
    let nowhere = work.path().join("no-template");
    let run = prepare(&[
        "--recipe".as_ref(),
        "braid-t1-affine".as_ref(),
        "--t1".as_ref(),
        t1.as_os_str(),
        "--template".as_ref(),
        nowhere.as_os_str(),
        "--out".as_ref(),
        work.path().join("out").as_os_str(),
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("loading the registration template") && err.contains("missing"),
        "{err}"
    );
    assert!(!work.path().join("out/input.npy").exists());
}
