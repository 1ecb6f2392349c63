#!/usr/bin/env python3
"""PyTorch peer for bench/infer_cpu_vs_torch.sh and bench/infer_cuda.sh: times one BRAID fold
(.pth) on the same raw float32 image and the same covariates brainaged's `models bench` uses.

Usage: infer_torch_peer.py FOLD.pth IMAGE.f32 C,X,Y,Z --threads T --runs N [--device cpu|cuda]
Prints one JSON line: {"median_ms": ..., "min_ms": ..., "runs": N, "device": ..., "output": [...]},
the output being the warm-up run's prediction, for comparison with brainaged's.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from braid_net import BraidResNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pth")
    ap.add_argument("image")
    ap.add_argument("shape")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shape = [1] + [int(v) for v in a.shape.split(",")]
    image = torch.from_numpy(np.fromfile(a.image, dtype="<f4").reshape(shape))
    cov = torch.tensor([[0.5, 0.5, 0.25, 0.25, 0.25, 0.25]], dtype=torch.float32)
    model = BraidResNet(shape[1], 6)
    model.load_state_dict(torch.load(a.pth, map_location="cpu", weights_only=True))
    model = model.eval().to(a.device)
    image, cov = image.to(a.device), cov.to(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        output = model(image, cov).float().cpu().flatten().tolist()
        sync()
        for _ in range(a.runs):
            t = time.perf_counter()
            model(image, cov)
            sync()
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps({"median_ms": times[len(times) // 2], "min_ms": times[0], "runs": a.runs,
                      "device": a.device, "torch": torch.__version__, "output": output}))


if __name__ == "__main__":
    main()
