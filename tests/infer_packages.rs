//! Model packages: clear errors for a wrong input shape, a missing file, a bad checksum and a
//! broken manifest; CUDA asked for on a machine without it falls back to CPU and says so; fold
//! ensembles, both bias corrections and sex QA against numpy's answers for small models built by
//! `tools/make_tiny_package.py` with the same contracts as real packages; and the shipped
//! manifests for BRAID and SFCN open, list, and report their missing weights.

mod infer_support;

use std::path::Path;

use brainaged::infer::InferError;
use brainaged::infer::covariates::Sex;
use brainaged::infer::ensemble::Ensemble;
use brainaged::infer::package::ModelPackage;
use brainaged::infer::registry::Registry;
use brainaged::infer::runtime::{ModelSession, Provider, RuntimeOptions};
use brainaged::infer::sex::SexCheck;
use ndarray::{ArrayD, IxDyn};

fn shape_of(v: &serde_json::Value) -> Vec<usize> {
    serde_json::from_value(v.clone()).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    reference: serde_json::Value,
    image: ArrayD<f32>,
    covariates: ArrayD<f32>,
}

fn fixture() -> Fixture {
    infer_support::require_ort();
    let dir = infer_support::tempdir();
    let root = dir.path().to_path_buf();
    infer_support::run_tool("make_tiny_package.py", &[root.to_str().unwrap()]);
    let reference = infer_support::read_json(&root.join("reference.json"));
    let image = infer_support::read_f32(
        &root.join("image.f32"),
        &shape_of(&reference["image_shape"]),
    );
    let covariates = infer_support::read_f32(
        &root.join("covariates.f32"),
        &shape_of(&reference["covariates_shape"]),
    );
    Fixture {
        _dir: dir,
        root,
        reference,
        image,
        covariates,
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn ensemble_runs_every_fold_and_corrects_bias_only_when_age_is_known() {
    let f = fixture();
    let package = ModelPackage::open(&f.root.join("tiny-age")).unwrap();
    let ensemble = Ensemble::load(package, &RuntimeOptions::cpu(1)).unwrap();
    let ages: Vec<Option<f64>> = serde_json::from_value(f.reference["ages"].clone()).unwrap();
    let predictions = ensemble
        .predict_age(&f.image, Some(&f.covariates), &ages)
        .unwrap();
    let folds = f.reference["age_folds"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p.raw.folds.len(), 3);
        let want: Vec<f64> = folds
            .iter()
            .map(|fold| fold["raw"][i].as_f64().unwrap())
            .collect();
        for (got, want) in p.raw.folds.iter().zip(&want) {
            assert!(
                close(*got, *want, 1e-5),
                "subject {i}: fold {got} vs numpy {want}"
            );
        }
        let mean = want.iter().sum::<f64>() / 3.0;
        let std = (want.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!(close(p.raw.mean, mean, 1e-5) && close(p.raw.std, std, 1e-4));
        assert_eq!(p.provider, Provider::Cpu);
        match ages[i] {
            None => assert!(p.corrected.is_none(), "no age, no correction"),
            Some(age) => {
                assert_eq!(p.chronological_age, Some(age));
                let c = p.corrected.as_ref().expect("age known: corrected");
                for (k, fold) in folds.iter().enumerate() {
                    let want = fold["corrected"][i].as_f64().unwrap();
                    assert!(
                        close(c.folds[k], want, 1e-5),
                        "corrected fold {k}: {} vs {want}",
                        c.folds[k]
                    );
                }
                assert_eq!(p.outside_training_range, !(45.0..=90.0).contains(&age));
            }
        }
    }
}

#[test]
fn missing_onnx_runtime_library_is_a_clear_error_not_a_panic() {
    let f = fixture();
    let out = infer_support::brainaged()
        .env(
            "BRAINAGED__INFERENCE__LIBRARY_PATH",
            "/nonexistent/libonnxruntime.so",
        )
        .args([
            "models",
            "--models-dir",
            f.root.to_str().unwrap(),
            "verify",
            "tiny-sex",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        text.contains("/nonexistent/libonnxruntime.so") && text.contains("50-onnxruntime.sh"),
        "{text}"
    );
}

#[test]
fn registry_loads_each_package_once() {
    let f = fixture();
    let registry = Registry::new(&f.root, RuntimeOptions::cpu(1));
    let a = registry.ensemble("tiny-age").unwrap();
    let b = registry.ensemble("tiny-age").unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "the second job reuses the loaded sessions"
    );
    assert_eq!(a.len(), 3);
    let err = registry.ensemble("no-such-model").unwrap_err();
    assert!(err.to_string().contains("no-such-model"), "{err}");
}

#[test]
fn sex_probabilities_and_qa_flag() {
    let f = fixture();
    let package = ModelPackage::open(&f.root.join("tiny-sex")).unwrap();
    let threshold = package.manifest.sex_qa_threshold.unwrap();
    let ensemble = Ensemble::load(package, &RuntimeOptions::cpu(1)).unwrap();
    let predictions = ensemble.predict_classes(&f.image, None).unwrap();
    let want = f.reference["sex_probabilities"].as_array().unwrap();
    for (i, p) in predictions.iter().enumerate() {
        let pm = p.probabilities["M"].mean;
        assert!(close(pm, want[i][1].as_f64().unwrap(), 1e-5));
        assert!(close(
            p.probabilities["F"].mean,
            want[i][0].as_f64().unwrap(),
            1e-5
        ));
        // DICOM saying the less likely sex is flagged only above the threshold.
        let other = if pm >= 0.5 { Sex::Female } else { Sex::Male };
        let check = SexCheck::assess(pm, other, threshold);
        assert_eq!(check.contradicts_dicom, pm.max(1.0 - pm) > threshold);
    }
}

#[test]
fn wrong_input_shape_is_a_clear_error() {
    let f = fixture();
    let package = ModelPackage::open(&f.root.join("tiny-age")).unwrap();
    let ensemble = Ensemble::load(package, &RuntimeOptions::cpu(1)).unwrap();
    let wrong = ArrayD::<f32>::zeros(IxDyn(&[3, 1, 4, 5, 7]));
    let err = ensemble
        .predict_age(&wrong, Some(&f.covariates), &[None, None, None])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, InferError::Input { .. }), "{msg}");
    assert!(
        msg.contains("[3, 1, 4, 5, 7]") && msg.contains("[-1, 1, 4, 5, 6]"),
        "{msg}"
    );
    // Covariates missing for a model that needs them.
    let err = ensemble
        .predict_age(&f.image, None, &[None; 3])
        .unwrap_err();
    assert!(err.to_string().contains("covariates"), "{err}");
    // Batch disagreement between inputs.
    let cov1 = ArrayD::<f32>::zeros(IxDyn(&[1, 6]));
    let err = ensemble
        .predict_age(&f.image, Some(&cov1), &[None; 3])
        .unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
}

#[test]
fn missing_fold_file_is_a_clear_error_and_fails_verify() {
    let f = fixture();
    let missing = f.root.join("tiny-age/tiny-age-fold-2.onnx");
    std::fs::remove_file(&missing).unwrap();
    let package = ModelPackage::open(&f.root.join("tiny-age")).unwrap();
    let err = Ensemble::load(package, &RuntimeOptions::cpu(1)).unwrap_err();
    assert!(matches!(err, InferError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("tiny-age-fold-2.onnx"), "{err}");
    let out = infer_support::brainaged()
        .args([
            "models",
            "--models-dir",
            f.root.to_str().unwrap(),
            "verify",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "verify must fail with a missing fold"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = report
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == "tiny-age")
        .unwrap()["files"]
        .as_array()
        .unwrap()
        .clone();
    let statuses: Vec<&str> = files
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "missing", "ok"]);
}

#[test]
fn bad_checksum_is_a_clear_error_and_fails_verify() {
    let f = fixture();
    let fold = f.root.join("tiny-age/tiny-age-fold-3.onnx");
    let mut bytes = std::fs::read(&fold).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&fold, bytes).unwrap();
    let package = ModelPackage::open(&f.root.join("tiny-age")).unwrap();
    let err = Ensemble::load(package, &RuntimeOptions::cpu(1)).unwrap_err();
    assert!(matches!(err, InferError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("sha256"), "{err}");
    let out = infer_support::brainaged()
        .args([
            "models",
            "--models-dir",
            f.root.to_str().unwrap(),
            "verify",
            "tiny-age",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("checksum mismatch"));
}

#[test]
fn broken_manifests_are_refused_with_the_reason() {
    let f = fixture();
    let manifest = f.root.join("tiny-age/model.toml");
    let good = std::fs::read_to_string(&manifest).unwrap();
    let cases = [
        (
            good.replace("semantics = \"years\"", "semantics = \"logits\""),
            "do not fit task",
        ),
        (
            good.replace(
                "encoding = \"braid-demographics\"",
                "encoding = \"zip-code\"",
            ),
            "unknown covariate encoding",
        ),
        (
            good.replace("shape = [-1, 6]", "shape = [-1, 5]"),
            "6 values",
        ),
        (format!("{good}\nunknown_key = 1\n"), "unknown field"),
        (
            good.replace(
                "file = \"tiny-age-fold-1.onnx\"",
                "file = \"../outside.onnx\"",
            ),
            "inside the package",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&manifest, &text).unwrap();
        let result = ModelPackage::open(&f.root.join("tiny-age"))
            .and_then(|p| Ensemble::load(p, &RuntimeOptions::cpu(1)).map(|_| ()));
        let err = result.expect_err(needle);
        assert!(
            err.to_string().contains(needle),
            "expected {needle:?} in: {err}"
        );
    }
}

#[test]
fn cuda_requested_without_a_gpu_falls_back_to_cpu() {
    let f = fixture();
    let options = RuntimeOptions {
        providers: vec![Provider::Cuda, Provider::Cpu],
        intra_op_threads: 1,
        library_path: None,
    };
    let fold = f.root.join("tiny-sex/tiny-sex-fold-1.onnx");
    let session = ModelSession::load(&fold, &options).unwrap();
    let has_gpu = Path::new("/dev/nvidia0").exists();
    if has_gpu {
        println!("a GPU is present: served by {}", session.provider());
    } else {
        assert_eq!(session.provider(), Provider::Cpu);
    }
    // Even CUDA alone (no "cpu" configured) falls back rather than failing.
    let only_cuda = RuntimeOptions {
        providers: vec![Provider::Cuda],
        ..options
    };
    let package = ModelPackage::open(&f.root.join("tiny-sex")).unwrap();
    let ensemble = Ensemble::load(package, &only_cuda).unwrap();
    let p = ensemble.predict_classes(&f.image, None).unwrap();
    if !has_gpu {
        assert_eq!(
            p[0].provider,
            Provider::Cpu,
            "the provider is recorded with the prediction"
        );
    }
}

#[test]
fn shipped_manifests_open_and_report_missing_weights() {
    let models = infer_support::root().join("models");
    let listed = ModelPackage::list(&models).unwrap();
    let names: Vec<String> = listed
        .iter()
        .map(|(d, p)| match p {
            Ok(p) => p.name().to_string(),
            Err(e) => panic!("{}: {e}", d.display()),
        })
        .collect();
    for want in [
        "braid-gm-age",
        "braid-wm-age-affine",
        "braid-wm-age-nonrigid",
        "sfcn-brain-age",
        "sfcn-sex",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not among {names:?}"
        );
    }
    let braid = ModelPackage::open(&models.join("braid-wm-age-nonrigid")).unwrap();
    assert_eq!(braid.manifest.folds.len(), 5);
    assert_eq!(braid.manifest.inputs[0].shape, vec![-1, 2, 128, 152, 128]);
    let sfcn = ModelPackage::open(&models.join("sfcn-brain-age")).unwrap();
    assert_eq!(sfcn.manifest.inputs[0].shape, vec![-1, 1, 160, 192, 160]);
    // No weights are shipped: loading says which file and how to get it.
    if !models
        .join("braid-wm-age-nonrigid/braid-wm-age-nonrigid-fold-1.onnx")
        .exists()
    {
        let err = Ensemble::load(braid, &RuntimeOptions::cpu(1)).unwrap_err();
        assert!(err.to_string().contains("import"), "{err}");
    }
    let out = infer_support::brainaged()
        .args([
            "models",
            "--models-dir",
            models.to_str().unwrap(),
            "list",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), listed.len());
}
