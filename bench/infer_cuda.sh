#!/usr/bin/env bash
# CUDA latency per fold for BRAID at its real grid (128x152x128, 5 folds), on a machine with an
# NVIDIA GPU: installs the GPU flavour of ONNX Runtime (BRAINAGED_GPU=1), imports five random
# folds, and times every fold with brainaged (providers cuda,cpu) beside PyTorch CUDA on fold 1.
# The provider actually used is printed: "cpu" means CUDA could not start and numbers are CPU's.
# Fold 1's output is compared with PyTorch's on the CPU (float32) and on CUDA.
#
#   bash bench/infer_cuda.sh [runs]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-10}
export BRAINAGED_ROOT=$root
BRAINAGED_GPU=1 bash "$root/scripts/setup.d/50-onnxruntime.sh"
source "$root/scripts/env.sh"
python=${BRAINAGED_VENV}/bin/python
bin=${BRAINAGED_BIN:-$root/target/release/brainaged}
[ -x "$bin" ] || (cd "$root" && cargo build --release -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
spatial=${BRAINAGED_BENCH_SPATIAL:-128,152,128}  # smaller grids only to try the script out

"$python" "$root/tools/make_braid_fixture.py" "$work" --folds 5 --spatial "$spatial" --batch 1 >/dev/null
"$bin" models --models-dir "$work/models" import braid "$work/braid-v1.0" --spatial-shape "$spatial" >/dev/null
image="$work/reference/wm-age-nonrigid/image.f32"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
ours=$("$bin" models --models-dir "$work/models" bench braid-wm-age-nonrigid \
    --input "$image" --runs "$runs" --providers cuda,cpu --json)
fold1="$work/braid-v1.0/wm-age-nonrigid/wm-age-nonrigid-fold-1.pth"
# PyTorch on the CPU gives fold 1's reference output in plain float32 arithmetic.
reference=$("$python" "$root/bench/infer_torch_peer.py" "$fold1" "$image" "2,$spatial" \
    --threads "$(nproc)" --runs 1 --device cpu)
peer=null
if "$python" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    peer=$("$python" "$root/bench/infer_torch_peer.py" "$fold1" "$image" "2,$spatial" \
        --runs "$runs" --device cuda)
fi
python3 - "$ours" "$peer" "$reference" "$runs" <<'PY'
import json, sys
ours, peer, ref = (json.loads(a) for a in sys.argv[1:4])
print(f"brainaged (ort provider {ours['provider']}), input {ours['input_shape']}, "
      f"{sys.argv[4]} runs per fold, load {ours['load_ms']:.0f} ms:")
for f in ours["folds"]:
    print(f"  fold {f['fold']}: median {f['median_ms']:.1f} ms (min {f['min_ms']:.1f}), "
          f"output {f['output'][0]:.4f}")
r = ref["output"][0]
o = ours["folds"][0]["output"][0]
print(f"fold 1 output: brainaged {o:.4f}, PyTorch CPU {r:.4f} (difference {o - r:+.4f})")
if peer:
    p = peer["median_ms"]
    print(f"PyTorch {peer['torch']} CUDA, fold 1: median {p:.1f} ms (min {peer['min_ms']:.1f}), "
          f"output {peer['output'][0]:.4f} (difference from CPU {peer['output'][0] - r:+.4f})")
    print(f"ratio brainaged/PyTorch CUDA, fold 1: {ours['folds'][0]['median_ms'] / p:.2f}")
PY
