#!/usr/bin/env python3
"""Writes a BRAID v1.0-shaped weights folder with randomly initialised networks, and the
PyTorch reference outputs for a random input, for the exporter round-trip test.

Out: OUT/braid-v1.0/<type>/{config.yaml, <type>-fold-k.pth, <type>-fold-k-bc-params.json}
     OUT/reference/<type>/{image.f32, covariates.f32, reference.json}
The .f32 files are raw little-endian float32 in C order; reference.json has their shapes, each
fold's PyTorch output, the fold mean and (population) std as BRAID computes them, and the
chronological ages with BRAID's bias-corrected values.

Usage: make_braid_fixture.py OUT [--type wm-age-nonrigid] [--folds 2] [--spatial 24,28,24] [--batch 2]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from braid_net import BraidResNet, randomise  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--type", default="wm-age-nonrigid")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--spatial", default="24,28,24")
    ap.add_argument("--batch", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    spatial = tuple(int(v) for v in a.spatial.split(","))
    channels = 1 if a.type.startswith("gm") else 2
    src = os.path.join(a.out, "braid-v1.0", a.type)
    ref = os.path.join(a.out, "reference", a.type)
    os.makedirs(src, exist_ok=True)
    os.makedirs(ref, exist_ok=True)
    folds = list(range(1, a.folds + 1))
    with open(os.path.join(src, "config.yaml"), "w") as f:
        yaml.safe_dump({
            "modality": "DTI" if channels == 2 else "T1w",
            "model": {"name": "resnet101", "mlp_hidden_layer_sizes": [], "fold": folds,
                      "feature_vector_length": 6, "n_input_channels": channels},
            "dataset": {"age_min": 45, "age_max": 90},
        }, f)
    rng = np.random.default_rng(3)
    image = rng.normal(size=(a.batch, channels, *spatial)).astype(np.float32)
    cov = np.zeros((a.batch, 6), dtype=np.float32)
    cov[:, :2] = [0.5, 0.5]  # unknown sex
    cov[:, 2:] = 0.25  # unknown race
    cov[0] = [1, 0, 0, 1, 0, 0]  # female, Asian
    ages = [71.5] + [None] * (a.batch - 1)
    image.tofile(os.path.join(ref, "image.f32"))
    cov.tofile(os.path.join(ref, "covariates.f32"))
    outputs, bcs = [], []
    for k in folds:
        model = randomise(BraidResNet(channels, 6), seed=100 + k).eval()
        torch.save(model.state_dict(), os.path.join(src, f"{a.type}-fold-{k}.pth"))
        bc = {"slope": float(rng.uniform(-0.4, -0.1)), "intercept": float(rng.uniform(5, 20))}
        with open(os.path.join(src, f"{a.type}-fold-{k}-bc-params.json"), "w") as f:
            json.dump(bc, f)
        bcs.append(bc)
        with torch.no_grad():
            y = model(torch.from_numpy(image), torch.from_numpy(cov)).numpy().reshape(-1)
        outputs.append([float(v) for v in y])
        print(f"fold {k}: {y}", flush=True)
    per_subject = np.array(outputs).T  # [batch, folds]
    corrected = []
    for i, age in enumerate(ages):
        if age is None:
            corrected.append(None)
        else:
            corrected.append([float(per_subject[i, j] - (bcs[j]["slope"] * age + bcs[j]["intercept"]))
                              for j in range(len(folds))])
    with open(os.path.join(ref, "reference.json"), "w") as f:
        json.dump({
            "image_shape": list(image.shape), "covariates_shape": list(cov.shape),
            "folds": outputs, "mean": per_subject.mean(axis=1).tolist(),
            "std": per_subject.std(axis=1).tolist(), "ages": ages, "corrected": corrected,
            "bias": bcs, "torch": torch.__version__,
        }, f, indent=1)


if __name__ == "__main__":
    main()
