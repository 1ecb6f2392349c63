#!/usr/bin/env python3
"""Turns a BRAID v1.0 weights folder into brainaged model packages.

BRAID v1.0 layout: <type>/config.yaml, <type>-fold-{k}.pth, <type>-fold-{k}-bc-params.json
for <type> in wm-age-nonrigid, wm-age-affine, gm-age-ours. For each type found, this writes
<out>/<package>/ with one ONNX file per fold (inputs "image" [N, C, X, Y, Z] and "covariates"
[N, 6], output "age" [N, 1], dynamic batch), the fold's bias-correction parameters, the sha256
of every ONNX file, and model.toml. Run by `brainaged models import braid DIR`.

Usage: export_braid.py BRAID_DIR --out MODELS_DIR [--types a,b] [--spatial-shape X,Y,Z]
"""
import argparse
import hashlib
import json
import os
import sys

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from braid_net import BraidResNet  # noqa: E402

TYPES = {
    # BRAID type: (package, modality, recipe, description)
    "wm-age-nonrigid": ("braid-wm-age-nonrigid", "dwi", "braid-dti-nonrigid",
                        "BRAID WM age: FA and MD warped non-rigidly to MNI152"),
    "wm-age-affine": ("braid-wm-age-affine", "dwi", "braid-dti-affine",
                      "BRAID WM age: FA and MD registered affinely to MNI152"),
    "gm-age-ours": ("braid-gm-age", "t1w", "braid-t1w-affine",
                    "BRAID GM age: skull-stripped T1w registered affinely to MNI152"),
}
# BRAID crops 192 x 228 x 192 mm at 1 mm and resamples to 1.5 mm.
DEFAULT_SPATIAL = (128, 152, 128)
OPSET = 17


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_dict_of(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_fold(model, path):
    state = state_dict_of(path)
    # num_batches_tracked only matters for training; older checkpoints lack it.
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if not expected.issubset(state.keys()):
        # A wrapper module (e.g. "resnet.") in front of MONAI's names: strip one common prefix.
        prefixes = {k.split(".", 1)[0] for k in state if "." in k}
        for prefix in prefixes:
            stripped = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
            if expected.issubset(stripped.keys()):
                state = stripped
                break
    missing = sorted(expected - set(state.keys()))
    if missing:
        raise SystemExit(f"{path}: parameters missing for BRAID ResNet-101: {missing[:8]} ...")
    unexpected = sorted(k for k in state if k not in expected and not k.endswith("num_batches_tracked"))
    if unexpected:
        raise SystemExit(f"{path}: parameters the network does not have: {unexpected[:8]} ...")
    result = model.load_state_dict({k: state[k] for k in expected}, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    return model.eval()


def export_fold(model, channels, spatial, features, path):
    image = torch.zeros(1, channels, *spatial)
    cov = torch.full((1, features), 0.25)
    torch.onnx.export(
        model, (image, cov), path,
        input_names=["image", "covariates"], output_names=["age"],
        dynamic_axes={"image": {0: "N"}, "covariates": {0: "N"}, "age": {0: "N"}},
        opset_version=OPSET,
    )


def toml_str(s):
    return json.dumps(str(s))


def manifest(btype, config, channels, spatial, features, folds, src):
    package, modality, recipe, description = TYPES[btype]
    ds = config.get("dataset", {}) or {}
    age_min, age_max = ds.get("age_min", 45), ds.get("age_max", 90)
    lines = [
        f"name = {toml_str(package)}",
        'version = "1.0"',
        'task = "brain_age"',
        f"modality = {toml_str(modality)}",
        f"recipe = {toml_str(recipe)}",
        f"description = {toml_str(description)}",
        'licence = "CC BY-NC 4.0 (BRAID v1.0 weights, MASILab)"',
        'source = "BRAID v1.0 (Gao et al., Imaging Neuroscience 2025); exported by tools/export_braid.py"',
        f"training_age_range = [{float(age_min)}, {float(age_max)}]",
        "",
        "[[inputs]]",
        'name = "image"',
        'kind = "image"',
        'dtype = "float32"',
        f"shape = [-1, {channels}, {spatial[0]}, {spatial[1]}, {spatial[2]}]",
        "",
        "[[inputs]]",
        'name = "covariates"',
        'kind = "covariates"',
        'dtype = "float32"',
        f"shape = [-1, {features}]",
        'encoding = "braid-demographics"',
        "",
        "[output]",
        'name = "age"',
        'semantics = "years"',
    ]
    for f in folds:
        lines += ["", "[[folds]]", f"file = {toml_str(f['file'])}", f"sha256 = {toml_str(f['sha256'])}"]
        if f.get("bias"):
            lines += ["[folds.bias]", 'method = "smith"',
                      f"slope = {float(f['bias']['slope'])!r}", f"intercept = {float(f['bias']['intercept'])!r}"]
    lines += ["", "[notes]", f"exported_from = {toml_str(os.path.abspath(src))}",
              f"onnx_opset = {toml_str(OPSET)}", f"torch = {toml_str(torch.__version__)}"]
    return "\n".join(lines) + "\n"


def export_type(root, btype, out, spatial):
    src = os.path.join(root, btype)
    with open(os.path.join(src, "config.yaml")) as f:
        config = yaml.safe_load(f)
    m = config.get("model", {})
    if str(m.get("name", "resnet101")).lower() != "resnet101":
        raise SystemExit(f"{src}: model {m.get('name')!r} is not supported (resnet101 only)")
    if m.get("mlp_hidden_layer_sizes"):
        raise SystemExit(f"{src}: MLP heads are not supported (mlp_hidden_layer_sizes must be [])")
    channels = int(m.get("n_input_channels", 2 if btype.startswith("wm") else 1))
    features = int(m.get("feature_vector_length", 6))
    fold_ids = m.get("fold") or [1, 2, 3, 4, 5]
    package = TYPES[btype][0]
    dest = os.path.join(out, package)
    os.makedirs(dest, exist_ok=True)
    folds = []
    for k in fold_ids:
        pth = os.path.join(src, f"{btype}-fold-{k}.pth")
        if not os.path.isfile(pth):
            raise SystemExit(f"{pth} is missing")
        model = load_fold(BraidResNet(channels, features), pth)
        name = f"{package}-fold-{k}.onnx"
        export_fold(model, channels, spatial, features, os.path.join(dest, name))
        bias = None
        bc = os.path.join(src, f"{btype}-fold-{k}-bc-params.json")
        if os.path.isfile(bc):
            with open(bc) as f:
                bias = json.load(f)
        folds.append({"file": name, "sha256": sha256(os.path.join(dest, name)), "bias": bias})
        print(f"exported {pth} -> {os.path.join(dest, name)}", flush=True)
    with open(os.path.join(dest, "model.toml"), "w") as f:
        f.write(manifest(btype, config, channels, spatial, features, folds, src))
    return dest


def main():
    ap = argparse.ArgumentParser(description="Export BRAID v1.0 weights to brainaged packages")
    ap.add_argument("braid_dir")
    ap.add_argument("--out", required=True, help="models directory to write packages into")
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated BRAID types")
    ap.add_argument("--spatial-shape", default=",".join(map(str, DEFAULT_SPATIAL)),
                    help="image grid declared in the manifest (tests use a smaller one)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    spatial = tuple(int(v) for v in a.spatial_shape.split(","))
    found = 0
    for btype in [t for t in a.types.split(",") if t]:
        if btype not in TYPES:
            raise SystemExit(f"unknown BRAID type {btype!r} (known: {', '.join(TYPES)})")
        if not os.path.isfile(os.path.join(a.braid_dir, btype, "config.yaml")):
            print(f"skipping {btype}: no {btype}/config.yaml", flush=True)
            continue
        dest = export_type(a.braid_dir, btype, a.out, spatial)
        print(f"package {dest}", flush=True)
        found += 1
    if found == 0:
        raise SystemExit(f"{a.braid_dir}: no BRAID model types found (expected {', '.join(TYPES)})")


if __name__ == "__main__":
    main()
