//! BRAID exporter round trip: randomly initialised BRAID ResNet-101 folds in the BRAID v1.0
//! layout, imported by `brainaged models import braid` (tools/export_braid.py), then run by
//! brainaged through ONNX Runtime on a batch of two subjects with both inputs, must equal
//! PyTorch's outputs on the same input within 1e-4 years, fold by fold, with BRAID's mean, std
//! and bias-corrected values. The real architecture is kept; the grid is 24×28×24 instead of
//! 128×152×128 so that two cores finish in time (the network is fully convolutional up to its
//! global pooling, so the grid changes no weights).

mod infer_support;

use brainaged::infer::covariates::{Race, Sex, braid_demographics};
use brainaged::infer::ensemble::Ensemble;
use brainaged::infer::package::ModelPackage;
use brainaged::infer::runtime::RuntimeOptions;
use ndarray::Axis;

#[test]
fn exported_braid_folds_match_pytorch() {
    infer_support::require_ort();
    let dir = infer_support::tempdir();
    let root = dir.path();
    infer_support::run_tool(
        "make_braid_fixture.py",
        &[
            root.to_str().unwrap(),
            "--folds",
            "2",
            "--spatial",
            "24,28,24",
            "--batch",
            "2",
        ],
    );
    let models = root.join("models");
    let out = infer_support::brainaged()
        .args([
            "models",
            "--models-dir",
            models.to_str().unwrap(),
            "import",
            "braid",
        ])
        .arg(root.join("braid-v1.0"))
        .args(["--spatial-shape", "24,28,24"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let package_dir = models.join("braid-wm-age-nonrigid");
    let package = ModelPackage::open(&package_dir).unwrap();
    let m = &package.manifest;
    assert_eq!(m.folds.len(), 2);
    assert!(
        m.folds
            .iter()
            .all(|f| f.sha256.is_some() && f.bias.is_some())
    );
    assert_eq!(m.inputs[0].shape, vec![-1, 2, 24, 28, 24]);
    assert_eq!(m.recipe.as_deref(), Some("braid-dti-nonrigid"));

    let reference =
        infer_support::read_json(&root.join("reference/wm-age-nonrigid/reference.json"));
    let shape = |k: &str| -> Vec<usize> { serde_json::from_value(reference[k].clone()).unwrap() };
    let image = infer_support::read_f32(
        &root.join("reference/wm-age-nonrigid/image.f32"),
        &shape("image_shape"),
    );
    let covariates = infer_support::read_f32(
        &root.join("reference/wm-age-nonrigid/covariates.f32"),
        &shape("covariates_shape"),
    );
    let ages: Vec<Option<f64>> = serde_json::from_value(reference["ages"].clone()).unwrap();

    let ensemble = Ensemble::load(package, &RuntimeOptions::cpu(2)).unwrap();
    let predictions = ensemble
        .predict_age(&image, Some(&covariates), &ages)
        .unwrap();
    let torch_folds = reference["folds"].as_array().unwrap();
    let mut worst = 0.0f64;
    for (i, p) in predictions.iter().enumerate() {
        for (k, fold) in torch_folds.iter().enumerate() {
            let want = fold[i].as_f64().unwrap();
            let got = p.raw.folds[k];
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= 1e-4,
                "subject {i} fold {k}: ort {got}, torch {want}"
            );
        }
        let want_mean = reference["mean"][i].as_f64().unwrap();
        let want_std = reference["std"][i].as_f64().unwrap();
        assert!((p.raw.mean - want_mean).abs() <= 1e-4);
        assert!((p.raw.std - want_std).abs() <= 1e-4);
        match &reference["corrected"][i] {
            serde_json::Value::Null => assert!(p.corrected.is_none()),
            values => {
                let c = p.corrected.as_ref().expect("age known: corrected values");
                for (k, v) in values.as_array().unwrap().iter().enumerate() {
                    assert!((c.folds[k] - v.as_f64().unwrap()).abs() <= 1e-4);
                }
            }
        }
    }
    println!("largest |ort − torch| over folds and subjects: {worst:.2e} years");
    // The batch is dynamic: one subject alone gives the same answer as inside the batch.
    let single = image.index_axis(Axis(0), 1).insert_axis(Axis(0)).to_owned();
    let single_cov = covariates
        .index_axis(Axis(0), 1)
        .insert_axis(Axis(0))
        .to_owned();
    let alone = ensemble
        .predict_age(&single, Some(&single_cov), &[None])
        .unwrap();
    for k in 0..2 {
        assert!((alone[0].raw.folds[k] - predictions[1].raw.folds[k]).abs() <= 1e-4);
    }

    // `models bench` prints each fold's prediction for the image file it timed (with the
    // covariates of unknown sex and race), which is how bench/infer_cuda.sh compares a provider
    // with PyTorch: it must be that fold's output on exactly that input.
    let image_file = root.join("subject-1.f32");
    let bytes: Vec<u8> = single.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&image_file, bytes).unwrap();
    let bench = infer_support::run_json(
        infer_support::brainaged()
            .args(["models", "--models-dir", models.to_str().unwrap()])
            .args(["bench", "braid-wm-age-nonrigid", "--runs", "1"])
            .args(["--threads", "2", "--providers", "cpu", "--json", "--input"])
            .arg(&image_file),
    );
    let unknown = braid_demographics(Sex::Unknown, Race::Unknown);
    let unknown = ndarray::ArrayD::from_shape_vec(vec![1, 6], unknown.to_vec()).unwrap();
    for k in 0..2 {
        let want = ensemble.run_fold(k, &single, Some(&unknown)).unwrap()[[0, 0]];
        let got = bench["folds"][k]["output"][0].as_f64().unwrap();
        assert!(
            (got - want as f64).abs() <= 1e-4,
            "bench fold {k}: printed {got}, ensemble {want}"
        );
    }
}
