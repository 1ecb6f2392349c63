//! The joint-diffusion sampler against closed-form answers.
//!
//! `tools/make_gaussian_joint.py` writes a denoiser that is the exact ε-predictor of a known
//! Gaussian over (x ∈ R³, age, sex components) for every per-variable timestep pattern. With
//! the exact predictor, the sampler's conditionals must be the Gaussian's: checked within 3
//! Monte-Carlo standard errors for DDPM and DDIM, for age given x, age given x and sex, sex given
//! x and age, and for unconditional generation (means and the whole covariance). The replacement
//! scheme is measured against the same truth and its bias printed (see BENCHMARKS.md); it must
//! still move the answer from the marginal towards the conditional, and resampling must shrink
//! its bias.

mod infer_support;

use std::collections::BTreeMap;
use std::path::Path;

use brainaged::infer::RuntimeOptions;
use brainaged::infer::diffusion::{JointModel, Known, Method, SampleRequest, VariableSummary};
use brainaged::infer::package::ModelPackage;
use nalgebra::{DMatrix, DVector};

const K: usize = 4000;

struct Truth {
    mu: DVector<f64>,
    sigma: DMatrix<f64>,
}

fn make_package(dir: &Path, conditioning: &str) -> (JointModel, Truth) {
    infer_support::require_ort();
    let out = dir.join(conditioning);
    infer_support::run_tool(
        "make_gaussian_joint.py",
        &[out.to_str().unwrap(), "--conditioning", conditioning],
    );
    let truth = infer_support::read_json(&out.join("truth.json"));
    let mu: Vec<f64> = serde_json::from_value(truth["mu"].clone()).unwrap();
    let sigma: Vec<Vec<f64>> = serde_json::from_value(truth["sigma"].clone()).unwrap();
    let d = mu.len();
    let truth = Truth {
        mu: DVector::from_vec(mu),
        sigma: DMatrix::from_fn(d, d, |i, j| sigma[i][j]),
    };
    let package = ModelPackage::open(&out).unwrap();
    let model = JointModel::load(package, &RuntimeOptions::cpu(2)).unwrap();
    (model, truth)
}

/// Mean and covariance of the components `u` given the components `k` equal `values`
/// (all in the normalised space).
fn conditional(
    t: &Truth,
    u: &[usize],
    k: &[usize],
    values: &[f64],
) -> (DVector<f64>, DMatrix<f64>) {
    let sub =
        |r: &[usize], c: &[usize]| DMatrix::from_fn(r.len(), c.len(), |i, j| t.sigma[(r[i], c[j])]);
    let s_uk = sub(u, k);
    let s_kk = sub(k, k);
    let s_uu = sub(u, u);
    let inv = s_kk.try_inverse().unwrap();
    let dx = DVector::from_fn(k.len(), |i, _| values[i] - t.mu[k[i]]);
    let mean = DVector::from_fn(u.len(), |i, _| t.mu[u[i]]) + &s_uk * &inv * dx;
    let cov = s_uu - &s_uk * inv * s_uk.transpose();
    (mean, cov)
}

/// Standard normal CDF (Numerical Recipes' erfc, relative error < 1.2e-7).
fn phi(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    let erfc = if x >= 0.0 { r } else { 2.0 - r };
    1.0 - 0.5 * erfc
}

const AGE_MEAN: f64 = 60.0;
const AGE_STD: f64 = 12.0;
// Component layout: x = 0..3, age = 3, sex = 4 (F), 5 (M).
const X: [usize; 3] = [0, 1, 2];

/// DDPM with the posterior variance under-disperses by about 0.5% at 1000 steps and 2% at 250
/// (a property of the discretisation, not of the model); DDIM by 0.4% at 500 steps. Both are
/// well inside 3 standard errors of K = 4000 samples at these step counts.
fn request(known: BTreeMap<String, Known>, method: Method, seed: u64) -> SampleRequest {
    SampleRequest {
        known,
        samples: K,
        steps: match method {
            Method::Ddpm => 1000,
            Method::Ddim { .. } => 500,
        },
        method,
        seed,
        resample: 1,
    }
}

fn scalar(summary: &VariableSummary) -> (f64, f64) {
    match summary {
        VariableSummary::Scalar { mean, std } => (*mean, *std),
        other => panic!("expected a scalar summary, got {other:?}"),
    }
}

/// |got − want| within 3 standard errors, with a message that shows the numbers.
fn within_3se(what: &str, got: f64, want: f64, se: f64) {
    within(what, got, want, se, 3.0);
}

fn within(what: &str, got: f64, want: f64, se: f64, limit: f64) {
    let z = (got - want) / se;
    println!("{what}: sampled {got:.4}, closed form {want:.4}, {z:+.2} SE (limit {limit:.2})");
    assert!(
        z.abs() <= limit,
        "{what}: sampled {got}, closed form {want}, {z:.2} standard errors apart (limit {limit:.2})"
    );
}

/// The z limit that keeps the chance of any false alarm among `m` checks at that of one 3-SE
/// check (two-sided 0.27%), by Bonferroni: Φ⁻¹(1 − 0.0027/(2m)).
fn family_limit(m: usize) -> f64 {
    let tail = (1.0 - phi(3.0)) / m as f64;
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - phi(mid) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

fn check_age_given(model: &JointModel, truth: &Truth, method: Method, label: &str) {
    let x = [0.5, -0.2, 1.0];
    // Age given x.
    let known = BTreeMap::from([("x".to_string(), Known::Values(x.to_vec()))]);
    let result = model.sample(&request(known, method, 11)).unwrap();
    let (mean, std) = scalar(&result.variables["age"]);
    let (m, c) = conditional(truth, &[3, 4, 5], &X, &x);
    let (want_mean, want_std) = (AGE_MEAN + AGE_STD * m[0], AGE_STD * c[(0, 0)].sqrt());
    within_3se(
        &format!("{label} E[age|x]"),
        mean,
        want_mean,
        want_std / (K as f64).sqrt(),
    );
    within_3se(
        &format!("{label} sd[age|x]"),
        std,
        want_std,
        want_std / (2.0 * K as f64).sqrt(),
    );
    // Sex given x: P(M) = P(s_M > s_F) under the Gaussian conditional.
    let VariableSummary::Categorical { probabilities } = &result.variables["sex"] else {
        panic!("sex is not categorical");
    };
    let diff_mean = m[2] - m[1];
    let diff_var = c[(2, 2)] + c[(1, 1)] - 2.0 * c[(1, 2)];
    let p = phi(diff_mean / diff_var.sqrt());
    within_3se(
        &format!("{label} P(M|x)"),
        probabilities["M"],
        p,
        (p * (1.0 - p) / K as f64).sqrt(),
    );

    // Age given x and sex = F (components +1, −1).
    let known = BTreeMap::from([
        ("x".to_string(), Known::Values(x.to_vec())),
        ("sex".to_string(), Known::Class("F".into())),
    ]);
    let result = model.sample(&request(known, method, 12)).unwrap();
    let (mean, std) = scalar(&result.variables["age"]);
    let (m, c) = conditional(
        truth,
        &[3],
        &[0, 1, 2, 4, 5],
        &[x[0], x[1], x[2], 1.0, -1.0],
    );
    let (want_mean, want_std) = (AGE_MEAN + AGE_STD * m[0], AGE_STD * c[(0, 0)].sqrt());
    within_3se(
        &format!("{label} E[age|x,F]"),
        mean,
        want_mean,
        want_std / (K as f64).sqrt(),
    );
    within_3se(
        &format!("{label} sd[age|x,F]"),
        std,
        want_std,
        want_std / (2.0 * K as f64).sqrt(),
    );

    // Sex given x and age = 75.
    let age = 75.0;
    let known = BTreeMap::from([
        ("x".to_string(), Known::Values(x.to_vec())),
        ("age".to_string(), Known::Values(vec![age])),
    ]);
    let result = model.sample(&request(known, method, 13)).unwrap();
    let VariableSummary::Categorical { probabilities } = &result.variables["sex"] else {
        panic!("sex is not categorical");
    };
    let z_age = (age - AGE_MEAN) / AGE_STD;
    let (m, c) = conditional(truth, &[4, 5], &[0, 1, 2, 3], &[x[0], x[1], x[2], z_age]);
    let p = phi((m[1] - m[0]) / (c[(1, 1)] + c[(0, 0)] - 2.0 * c[(0, 1)]).sqrt());
    within_3se(
        &format!("{label} P(M|x,age)"),
        probabilities["M"],
        p,
        (p * (1.0 - p) / K as f64).sqrt(),
    );
}

fn check_unconditional(model: &JointModel, truth: &Truth, method: Method, label: &str, seed: u64) {
    let result = model
        .sample(&request(BTreeMap::new(), method, seed))
        .unwrap();
    let s = &result.samples;
    let d = truth.mu.len();
    let n = s.nrows() as f64;
    // d means and d(d+1)/2 covariances are checked at once: a family-wise limit.
    let limit = family_limit(d + d * (d + 1) / 2);
    let means: Vec<f64> = (0..d).map(|j| s.column(j).sum() / n).collect();
    for (j, &mean) in means.iter().enumerate() {
        let se = (truth.sigma[(j, j)] / n).sqrt();
        within(&format!("{label} mean[{j}]"), mean, truth.mu[j], se, limit);
    }
    for i in 0..d {
        for j in i..d {
            let cov = s
                .column(i)
                .iter()
                .zip(s.column(j).iter())
                .map(|(a, b)| (a - means[i]) * (b - means[j]))
                .sum::<f64>()
                / (n - 1.0);
            let want = truth.sigma[(i, j)];
            let se = ((truth.sigma[(i, i)] * truth.sigma[(j, j)] + want * want) / n).sqrt();
            within(&format!("{label} cov[{i},{j}]"), cov, want, se, limit);
        }
    }
}

#[test]
fn per_variable_t_ddpm_matches_the_gaussian_conditionals() {
    let dir = infer_support::tempdir();
    let (model, truth) = make_package(dir.path(), "per_variable_t");
    check_age_given(&model, &truth, Method::Ddpm, "DDPM");
    check_unconditional(&model, &truth, Method::Ddpm, "DDPM unconditional", 21);
}

#[test]
fn per_variable_t_ddim_matches_the_gaussian_conditionals() {
    let dir = infer_support::tempdir();
    let (model, truth) = make_package(dir.path(), "per_variable_t");
    check_age_given(&model, &truth, Method::Ddim { eta: 0.0 }, "DDIM");
    check_unconditional(
        &model,
        &truth,
        Method::Ddim { eta: 0.0 },
        "DDIM unconditional",
        22,
    );
}

#[test]
fn replacement_conditioning_bias_is_measured() {
    let dir = infer_support::tempdir();
    let (model, truth) = make_package(dir.path(), "replacement");
    // With nothing known, replacement is plain sampling and must reproduce the joint.
    check_unconditional(
        &model,
        &truth,
        Method::Ddpm,
        "replacement unconditional",
        41,
    );
    // Given x, replacement is only approximate: report how far it lands from the truth, and
    // check what it must still do: use x, moving the answer from the marginal mean (what
    // ignoring x would give) towards the conditional one.
    let x = [0.5, -0.2, 1.0];
    let (m, c) = conditional(&truth, &[3], &X, &x);
    let (want_mean, want_std) = (AGE_MEAN + AGE_STD * m[0], AGE_STD * c[(0, 0)].sqrt());
    let marginal_mean = AGE_MEAN + AGE_STD * truth.mu[3];
    let se = want_std / (K as f64).sqrt();
    let mut ddpm_bias = f64::NAN;
    for (label, method) in [("DDPM", Method::Ddpm), ("DDIM", Method::Ddim { eta: 0.0 })] {
        let known = BTreeMap::from([("x".to_string(), Known::Values(x.to_vec()))]);
        let result = model.sample(&request(known, method, 31)).unwrap();
        let (mean, std) = scalar(&result.variables["age"]);
        report_replacement(label, (mean, std), (want_mean, want_std));
        uses_what_is_known(label, mean, want_mean, marginal_mean, se);
        if let Method::Ddpm = method {
            ddpm_bias = mean - want_mean;
        }
    }
    // RePaint-style resampling (each of 250 DDPM steps taken 4 times): measured beside plain
    // replacement at the same number of denoiser calls. Resampling lets the unknown part
    // agree with what is known, so its bias must be smaller than plain DDPM's by more than 3
    // standard errors of the difference of two independent estimates.
    let known = BTreeMap::from([("x".to_string(), Known::Values(x.to_vec()))]);
    let mut req = request(known, Method::Ddpm, 32);
    req.steps = 250;
    req.resample = 4;
    let result = model.sample(&req).unwrap();
    let (mean, std) = scalar(&result.variables["age"]);
    let label = "DDPM 250 steps x 4 resampling";
    report_replacement(label, (mean, std), (want_mean, want_std));
    uses_what_is_known(label, mean, want_mean, marginal_mean, se);
    let resampled_bias = mean - want_mean;
    let gain = ddpm_bias.abs() - resampled_bias.abs();
    assert!(
        gain > 3.0 * std::f64::consts::SQRT_2 * se,
        "resampling did not reduce replacement's bias: {resampled_bias:+.3} y against plain \
         DDPM's {ddpm_bias:+.3} y (SE of each {se:.3} y)"
    );
}

/// Prints how far a replacement-conditioned answer (mean, sd) lands from the closed form.
fn report_replacement(label: &str, (mean, std): (f64, f64), (want_mean, want_std): (f64, f64)) {
    assert!(
        mean.is_finite() && std.is_finite(),
        "{label}: {mean} ± {std}"
    );
    println!(
        "replacement {label}: E[age|x] {mean:.3} vs {want_mean:.3} (bias {:+.3} y, {:+.1} SE); \
         sd {std:.3} vs {want_std:.3} (ratio {:.3})",
        mean - want_mean,
        (mean - want_mean) / (want_std / (K as f64).sqrt()),
        std / want_std
    );
}

/// A conditioned mean must have moved from the marginal mean towards the conditional one by
/// more than 3 standard errors: a sampler that ignored what is known would land on the marginal.
fn uses_what_is_known(label: &str, mean: f64, conditional: f64, marginal: f64, se: f64) {
    let towards = (conditional - marginal).signum();
    let moved = (mean - marginal) * towards;
    assert!(
        moved > 3.0 * se,
        "{label}: E[age|x] {mean:.3} did not move from the marginal {marginal:.3} towards the \
         conditional {conditional:.3} (moved {moved:+.3} y, SE {se:.3} y)"
    );
}

#[test]
fn sample_cli_answers_in_the_contract_shape() {
    let dir = infer_support::tempdir();
    let (model, truth) = make_package(dir.path(), "per_variable_t");
    drop(model);
    let package = dir.path().join("per_variable_t");
    let json = infer_support::run_json(infer_support::brainaged().args([
        "sample",
        "--package",
        package.to_str().unwrap(),
        "--known",
        "x=0.5,-0.2,1.0",
        "--known",
        "sex=M",
        "--samples",
        "2000",
        "--steps",
        "250",
        "--sampler",
        "ddpm",
        "--seed",
        "5",
        "--json",
    ]));
    let age = &json["variables"]["age"];
    let (mean, std) = (age["mean"].as_f64().unwrap(), age["std"].as_f64().unwrap());
    let (m, c) = conditional(&truth, &[3], &[0, 1, 2, 4, 5], &[0.5, -0.2, 1.0, -1.0, 1.0]);
    let want_std = AGE_STD * c[(0, 0)].sqrt();
    within_3se(
        "CLI E[age|x,M]",
        mean,
        AGE_MEAN + AGE_STD * m[0],
        want_std / 2000f64.sqrt(),
    );
    assert!(
        json["variables"].get("sex").is_none(),
        "known variables are not answered"
    );
    assert!(json["variables"].get("x").is_none());
    assert_eq!(json["provider"], "cpu");
    assert!((std - want_std).abs() < 0.1 * want_std);
    // `models verify` runs the denoiser on a dummy sample and checks its output shape.
    let report = infer_support::run_json(infer_support::brainaged().args([
        "models",
        "--models-dir",
        dir.path().to_str().unwrap(),
        "verify",
        "--json",
    ]));
    assert_eq!(report[0]["files"][0]["status"], "ok", "{report}");
}

/// The image questions of the CLI contract, through an encoder and a decoder: age from an image
/// (`--known-image`), and an image from age and sex written as NIfTI. The package's x is a
/// 3×1×1 image whose latent is `encoder_scale` × voxels; the Gaussian is over the latent.
#[test]
fn image_questions_go_through_encoder_and_decoder() {
    infer_support::require_ort();
    let dir = infer_support::tempdir();
    let package = dir.path().join("image");
    infer_support::run_tool(
        "make_gaussian_joint.py",
        &[package.to_str().unwrap(), "--image"],
    );
    let truth_json = infer_support::read_json(&package.join("truth.json"));
    let mu: Vec<f64> = serde_json::from_value(truth_json["mu"].clone()).unwrap();
    let sigma: Vec<Vec<f64>> = serde_json::from_value(truth_json["sigma"].clone()).unwrap();
    let scale: Vec<f64> = serde_json::from_value(truth_json["encoder_scale"].clone()).unwrap();
    let d = mu.len();
    let truth = Truth {
        mu: DVector::from_vec(mu),
        sigma: DMatrix::from_fn(d, d, |i, j| sigma[i][j]),
    };
    let k = 2000usize;
    let common = [
        "--samples",
        "2000",
        "--steps",
        "1000",
        "--sampler",
        "ddpm",
        "--seed",
        "9",
        "--json",
    ];

    // Age from the image: the voxels written by nibabel are [0.25, -0.4, -0.6].
    let voxels = [0.25, -0.4, -0.6];
    let latent: Vec<f64> = voxels.iter().zip(&scale).map(|(v, a)| v * a).collect();
    let known = format!("x={}", package.join("x_known.nii.gz").display());
    let json = infer_support::run_json(
        infer_support::brainaged()
            .args([
                "sample",
                "--package",
                package.to_str().unwrap(),
                "--known-image",
                &known,
            ])
            .args(common),
    );
    let (m, c) = conditional(&truth, &[3], &X, &latent);
    let want_std = AGE_STD * c[(0, 0)].sqrt();
    let age = &json["variables"]["age"];
    within_3se(
        "E[age|image]",
        age["mean"].as_f64().unwrap(),
        AGE_MEAN + AGE_STD * m[0],
        want_std / (k as f64).sqrt(),
    );
    within_3se(
        "sd[age|image]",
        age["std"].as_f64().unwrap(),
        want_std,
        want_std / (2.0 * k as f64).sqrt(),
    );

    // An image from age 70 and sex M, decoded and written as NIfTI (mean and std over samples).
    let out_dir = dir.path().join("generated");
    let json = infer_support::run_json(
        infer_support::brainaged()
            .args(["sample", "--package", package.to_str().unwrap()])
            .args(["--known", "age=70", "--known", "sex=M", "--output-dir"])
            .arg(&out_dir)
            .args(common),
    );
    let file = json["variables"]["x"]["file"].as_str().unwrap();
    let std_file = json["variables"]["x"]["std_file"].as_str().unwrap();
    let mean_img = brainaged::nifti_io::read_volume_f32(Path::new(file))
        .unwrap()
        .data
        .to_f32();
    let std_img = brainaged::nifti_io::read_volume_f32(Path::new(std_file))
        .unwrap()
        .data
        .to_f32();
    assert_eq!(mean_img.shape(), [3, 1, 1]);
    let z_age = (70.0 - AGE_MEAN) / AGE_STD;
    let (m, c) = conditional(&truth, &X, &[3, 4, 5], &[z_age, -1.0, 1.0]);
    let limit = family_limit(6);
    for i in 0..3 {
        let sd = c[(i, i)].sqrt() / scale[i].abs();
        let want = m[i] / scale[i];
        let got = mean_img[[i, 0, 0]] as f64;
        within(
            &format!("E[voxel {i}|age,M]"),
            got,
            want,
            sd / (k as f64).sqrt(),
            limit,
        );
        let got_sd = std_img[[i, 0, 0]] as f64;
        within(
            &format!("sd[voxel {i}|age,M]"),
            got_sd,
            sd,
            sd / (2.0 * k as f64).sqrt(),
            limit,
        );
    }
}
