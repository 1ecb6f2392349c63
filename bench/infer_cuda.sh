#!/usr/bin/env bash
# CUDA latency per fold for BRAID at its real grid (128x152x128, 5 folds), on a machine with an
# NVIDIA GPU: installs the GPU flavour of ONNX Runtime (BRAINAGED_GPU=1), imports five random
# folds, and times every fold with brainaged (providers cuda,cpu) beside PyTorch CUDA on fold 1.
# The provider actually used is printed: "cpu" means CUDA could not start and numbers are CPU's.
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
spatial=128,152,128

"$python" "$root/tools/make_braid_fixture.py" "$work" --folds 5 --spatial "$spatial" --batch 1 >/dev/null
"$bin" models --models-dir "$work/models" import braid "$work/braid-v1.0" --spatial-shape "$spatial" >/dev/null
image="$work/reference/wm-age-nonrigid/image.f32"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
"$bin" models --models-dir "$work/models" bench braid-wm-age-nonrigid \
    --input "$image" --runs "$runs" --providers cuda,cpu
if "$python" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "PyTorch CUDA, fold 1:"
    "$python" "$root/bench/infer_torch_peer.py" "$work/braid-v1.0/wm-age-nonrigid/wm-age-nonrigid-fold-1.pth" \
        "$image" "2,$spatial" --runs "$runs" --device cuda
fi
