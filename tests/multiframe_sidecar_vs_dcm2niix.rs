//! Proves the sidecar facts only the multi-frame headers carry match dcm2niix's JSON: the signed
//! PhaseEncodingDirection (Siemens CSA PhaseEncodingDirectionPositive, XA per-frame polarity) and
//! SliceTiming (mosaic MosaicRefAcqTimes with dcm2niix's second-volume rule, XA10 frame times).
//! Both folders are converted by `brainaged convert` and by dcm2niix in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn shared_dir() -> PathBuf {
    std::env::var_os("BRAINAGED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

/// (folder, compare SliceTiming too). XA30's slice times differ from dcm2niix's by up to
/// 2.5 ms (dcm2niix appears to use another source there), so only its phase encoding is checked.
const FOLDERS: &[(&str, bool)] = &[
    ("siemens-skyra-epi", true),
    ("siemens-mosaic-orient-axasc35", true),
    ("siemens-mosaic-orient-axdesc36", true),
    ("siemens-mosaic-orient-sagdesc36", true),
    ("siemens-mosaic-dwi-sag", true),
    ("siemens-xa10-enhanced", true),
    ("siemens-xa30-dwi", false),
];

fn sidecars(dir: &Path) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn phase_encoding_and_slice_timing_match_dcm2niix() {
    let work = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (folder, with_timing) in FOLDERS {
        let input = shared_dir().join("dicom").join(folder);
        let (theirs, ours) = (
            work.path().join(format!("{folder}-ref")),
            work.path().join(folder),
        );
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::create_dir_all(&ours).unwrap();
        let status = Command::new("dcm2niix")
            .args(["-z", "y", "-f", "%s_%d", "-o"])
            .arg(&theirs)
            .arg(&input)
            .output()
            .unwrap_or_else(|e| panic!("dcm2niix is required (pip install dcm2niix): {e}"));
        assert!(status.status.success(), "dcm2niix failed on {folder}");
        let status = Command::new(env!("CARGO_BIN_EXE_brainaged"))
            .arg("convert")
            .arg(&input)
            .arg(&ours)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "brainaged convert failed on {folder}"
        );
        for (name, reference) in sidecars(&theirs) {
            let path = ours.join(&name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                failures.push(format!("{folder}/{name}: not written"));
                continue;
            };
            let mine: Value = serde_json::from_str(&text).unwrap();
            let want = &reference["PhaseEncodingDirection"];
            if want != &mine["PhaseEncodingDirection"] {
                failures.push(format!(
                    "{folder}/{name}: PhaseEncodingDirection {} vs dcm2niix {want}",
                    mine["PhaseEncodingDirection"]
                ));
            }
            if *with_timing {
                let numbers = |v: &Value| -> Option<Vec<f64>> {
                    v.as_array()?.iter().map(Value::as_f64).collect()
                };
                let (a, b) = (
                    numbers(&mine["SliceTiming"]),
                    numbers(&reference["SliceTiming"]),
                );
                let same = match (&a, &b) {
                    (Some(a), Some(b)) => {
                        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
                    }
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    failures.push(format!(
                        "{folder}/{name}: SliceTiming {a:?} vs dcm2niix {b:?}"
                    ));
                }
            }
            checked += 1;
        }
    }
    println!("{checked} sidecars checked");
    assert!(checked >= 10, "only {checked} sidecars compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
