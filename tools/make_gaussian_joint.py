#!/usr/bin/env python3
"""Writes a joint_diffusion package whose denoiser is the exact epsilon-predictor of a known
multivariate Gaussian, for testing the sampler against closed-form answers.

Data (in the model's normalised space) is x0 ~ N(mu, Sigma) over the variables
x (3 components), age (1) and sex (2, the +/-1 class components treated as Gaussian).
With one timestep per variable, x_t = S x0 + N eps where S = diag(sqrt(abar(t_v))) and
N = diag(sqrt(1 - abar(t_v))) per component, and the exact predictor is
    E[eps | x_t] = N (S Sigma S + N^2)^-1 (x_t - S mu).
The ONNX graph computes exactly that for any pattern of per-variable timesteps (conditioning
"per_variable_t", t is [N, V]) or for one shared timestep ("replacement", t is [N]); the matrix
inverse is ONNX Runtime's com.microsoft Inverse. truth.json holds mu and Sigma so that a test can
compute the true conditionals. The tool checks its own graph against numpy before writing.

With --image, x is an image variable instead: a 3 x 1 x 1 voxel grid, with encoder.onnx
(latent = a * voxels, a = ENCODER_SCALE per component) and decoder.onnx (its inverse), so that
the Gaussian above is over the latent; the tool also writes x_known.nii.gz (nibabel) holding the
voxels [0.25, -0.4, -0.6], whose latent is [0.5, -0.2, 0.9].

Usage: make_gaussian_joint.py OUT_DIR [--conditioning per_variable_t|replacement] [--seed N] [--image]
"""
import argparse
import hashlib
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VARIABLES = [
    {"name": "x", "size": 3, "kind": "continuous", "mean": 0.0, "std": 1.0},
    {"name": "age", "size": 1, "kind": "continuous", "mean": 60.0, "std": 12.0},
    {"name": "sex", "size": 2, "kind": "categorical", "classes": ["F", "M"]},
]
ENCODER_SCALE = [2.0, 0.5, -1.5]
IMAGE_SHAPE = [3, 1, 1]
T = 1000
BETA_START, BETA_END = 1e-4, 0.02


def alpha_bar_table():
    betas = np.linspace(BETA_START, BETA_END, T, dtype=np.float64)
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


def gaussian(seed):
    rng = np.random.default_rng(seed)
    d = sum(v["size"] for v in VARIABLES)
    a = rng.normal(size=(d, d))
    sigma = a @ a.T / d + 0.3 * np.eye(d)
    scale = 1.0 / np.sqrt(np.diag(sigma))
    sigma = sigma * np.outer(scale, scale)  # unit variances, random correlations
    mu = rng.normal(scale=0.5, size=d)
    return mu, sigma


def var_index():
    idx = []
    for i, v in enumerate(VARIABLES):
        idx += [i] * v["size"]
    return np.array(idx, dtype=np.int64)


def build_graph(mu, sigma, conditioning):
    d = len(mu)
    nv = len(VARIABLES)
    abar = alpha_bar_table().astype(np.float32)
    inits = [
        numpy_helper.from_array(abar, "abar"),
        numpy_helper.from_array(var_index(), "var_index"),
        numpy_helper.from_array(sigma.astype(np.float32), "sigma"),
        numpy_helper.from_array(mu.astype(np.float32), "mu"),
        numpy_helper.from_array(np.eye(d, dtype=np.float32), "eye"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "ax2"),
        numpy_helper.from_array(np.ones(d, dtype=np.float32), "ones_d"),
    ]
    n = []
    if conditioning == "per_variable_t":
        t_info = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N", nv])
        n += [
            helper.make_node("Cast", ["t"], ["t_i"], to=TensorProto.INT64),
            helper.make_node("Gather", ["abar", "t_i"], ["ab_v"]),
            helper.make_node("Gather", ["ab_v", "var_index"], ["ab"], axis=1),
        ]
    else:
        t_info = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N"])
        n += [
            helper.make_node("Cast", ["t"], ["t_i"], to=TensorProto.INT64),
            helper.make_node("Gather", ["abar", "t_i"], ["ab_n"]),
            helper.make_node("Unsqueeze", ["ab_n", "ax1"], ["ab_n1"]),
            helper.make_node("Mul", ["ab_n1", "ones_d"], ["ab"]),
        ]
    n += [
        helper.make_node("Sqrt", ["ab"], ["s"]),
        helper.make_node("Sub", ["one", "ab"], ["n2"]),
        helper.make_node("Sqrt", ["n2"], ["nn"]),
        helper.make_node("Unsqueeze", ["s", "ax2"], ["s_col"]),
        helper.make_node("Unsqueeze", ["s", "ax1"], ["s_row"]),
        helper.make_node("Mul", ["s_col", "sigma"], ["m1"]),
        helper.make_node("Mul", ["m1", "s_row"], ["m2"]),
        helper.make_node("Unsqueeze", ["n2", "ax2"], ["n2_col"]),
        helper.make_node("Mul", ["n2_col", "eye"], ["m3"]),
        helper.make_node("Add", ["m2", "m3"], ["m"]),
        helper.make_node("Inverse", ["m"], ["m_inv"], domain="com.microsoft"),
        helper.make_node("Mul", ["s", "mu"], ["s_mu"]),
        helper.make_node("Sub", ["x_t", "s_mu"], ["r"]),
        helper.make_node("Unsqueeze", ["r", "ax2"], ["r_col"]),
        helper.make_node("MatMul", ["m_inv", "r_col"], ["y_col"]),
        helper.make_node("Squeeze", ["y_col", "ax2"], ["y"]),
        helper.make_node("Mul", ["nn", "y"], ["eps"]),
    ]
    used = {i for node in n for i in node.input}
    inits = [t for t in inits if t.name in used]
    graph = helper.make_graph(
        n,
        "gaussian_eps",
        [helper.make_tensor_value_info("x_t", TensorProto.FLOAT, ["N", d]), t_info],
        [helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["N", d])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="brainaged-tools",
    )
    model.ir_version = 8  # ONNX Runtime 1.31 reads IR <= 13
    return model


def reference_eps(mu, sigma, x_t, t_pattern):
    """numpy float64: t_pattern is [N, V] integer timesteps."""
    abar = alpha_bar_table()
    idx = var_index()
    out = np.zeros_like(x_t)
    for i in range(x_t.shape[0]):
        ab = abar[t_pattern[i][idx]]
        s, nn = np.sqrt(ab), np.sqrt(1 - ab)
        m = np.outer(s, s) * sigma + np.diag(nn**2)
        out[i] = nn * np.linalg.solve(m, x_t[i] - s * mu)
    return out


def self_check(path, mu, sigma, conditioning, seed):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed + 1)
    n, nv = 64, len(VARIABLES)
    pattern = rng.integers(0, T + 1, size=(n, nv))
    pattern[::3, 0] = 0  # many rows with x clean, as in conditioning
    pattern[1::5, :] = 0
    if conditioning == "replacement":
        pattern = np.repeat(pattern[:, :1], nv, axis=1)
    x_t = rng.normal(size=(n, len(mu)))
    t_in = pattern.astype(np.float32) if conditioning == "per_variable_t" else pattern[:, 0].astype(np.float32)
    got = sess.run(None, {"x_t": x_t.astype(np.float32), "t": t_in})[0]
    want = reference_eps(mu, sigma, x_t, pattern)
    err = np.abs(got - want).max()
    if err > 1e-3:
        raise SystemExit(f"self-check failed: ONNX and numpy differ by {err}")
    return err


def scale_model(scale, image_to_latent):
    """Encoder ([N, 3, 1, 1] -> [N, 3], times scale) or decoder (the inverse)."""
    n = len(scale)
    if image_to_latent:
        nodes = [helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
                 helper.make_node("Mul", ["flat", "scale"], ["latent"])]
        inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N"] + IMAGE_SHAPE)]
        outputs = [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", n])]
        inits = [numpy_helper.from_array(np.array([-1, n], dtype=np.int64), "flat_shape"),
                 numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale")]
    else:
        nodes = [helper.make_node("Div", ["latent", "scale"], ["flat"]),
                 helper.make_node("Reshape", ["flat", "image_shape"], ["image"])]
        inputs = [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", n])]
        outputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N"] + IMAGE_SHAPE)]
        inits = [numpy_helper.from_array(np.array([-1] + IMAGE_SHAPE, dtype=np.int64), "image_shape"),
                 numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale")]
    g = helper.make_graph(nodes, "scale", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def manifest(conditioning, sha, image=False):
    lines = [
        'name = "gaussian-joint-%s"' % conditioning.replace("_", "-"),
        'version = "1"',
        'task = "joint_diffusion"',
        'modality = "t1w"',
        'description = "Exact epsilon-predictor of a known Gaussian (test model, tools/make_gaussian_joint.py)"',
        'licence = "Apache-2.0"',
        'source = "tools/make_gaussian_joint.py"',
        "",
        "[joint]",
        'conditioning = "%s"' % conditioning,
        'denoiser = "denoiser.onnx"',
        'denoiser_sha256 = "%s"' % sha,
    ] + (['encoder = "encoder.onnx"', 'decoder = "decoder.onnx"'] if image else []) + [
        "",
        "[joint.schedule]",
        'kind = "linear"',
        "num_train_steps = %d" % T,
        "beta_start = %r" % BETA_START,
        "beta_end = %r" % BETA_END,
    ]
    for v in VARIABLES:
        kind = "image" if (image and v["name"] == "x") else v["kind"]
        lines += ["", "[[joint.variables]]", 'name = "%s"' % v["name"], "size = %d" % v["size"],
                  'kind = "%s"' % kind]
        if kind == "image":
            lines += ["shape = [%s]" % ", ".join(map(str, IMAGE_SHAPE))]
        elif "mean" in v:
            lines += ["mean = %r" % v["mean"], "std = %r" % v["std"]]
        if "classes" in v:
            lines += ["classes = [%s]" % ", ".join('"%s"' % c for c in v["classes"])]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--conditioning", default="per_variable_t", choices=["per_variable_t", "replacement"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--image", action="store_true", help="x is an image variable with encoder/decoder")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    mu, sigma = gaussian(a.seed)
    model = build_graph(mu, sigma, a.conditioning)
    onnx.checker.check_model(model)
    path = os.path.join(a.out, "denoiser.onnx")
    onnx.save(model, path)
    err = self_check(path, mu, sigma, a.conditioning, a.seed)
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    with open(os.path.join(a.out, "model.toml"), "w") as f:
        f.write(manifest(a.conditioning, sha, a.image))
    if a.image:
        import nibabel as nib

        onnx.save(scale_model(ENCODER_SCALE, True), os.path.join(a.out, "encoder.onnx"))
        onnx.save(scale_model(ENCODER_SCALE, False), os.path.join(a.out, "decoder.onnx"))
        voxels = np.array([0.25, -0.4, -0.6], dtype=np.float32).reshape(IMAGE_SHAPE)
        nib.save(nib.Nifti1Image(voxels, np.eye(4)), os.path.join(a.out, "x_known.nii.gz"))
    with open(os.path.join(a.out, "truth.json"), "w") as f:
        json.dump({"variables": VARIABLES, "mu": mu.tolist(), "sigma": sigma.tolist(),
                   "encoder_scale": ENCODER_SCALE if a.image else None,
                   "self_check_max_abs_error": float(err)}, f, indent=1)
    print(f"wrote {a.out} (self-check max |error| {err:.2e})")


if __name__ == "__main__":
    main()
