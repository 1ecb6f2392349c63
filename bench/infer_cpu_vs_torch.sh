#!/usr/bin/env bash
# ONNX Runtime CPU (brainaged, through `models bench`) against PyTorch CPU for one exported BRAID
# ResNet-101 fold: same random weights, same image file, same covariates, same thread count.
# Prints both medians and the ratio brainaged/PyTorch (below 1: brainaged is faster).
#
#   bash bench/infer_cpu_vs_torch.sh [X,Y,Z] [threads] [runs]
# Defaults: 64,76,64 (half BRAID's 128,152,128 grid per axis, to fit a 2-core machine), 2, 5.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/env.sh"
spatial=${1:-64,76,64}
threads=${2:-2}
runs=${3:-5}
python=${BRAINAGED_VENV}/bin/python
bin=${BRAINAGED_BIN:-$root/target/release/brainaged}
[ -x "$bin" ] || (cd "$root" && cargo build --release -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" "$root/tools/make_braid_fixture.py" "$work" --folds 1 --spatial "$spatial" --batch 1 >/dev/null
"$bin" models --models-dir "$work/models" import braid "$work/braid-v1.0" --spatial-shape "$spatial" >/dev/null
image="$work/reference/wm-age-nonrigid/image.f32"

ours=$("$bin" models --models-dir "$work/models" bench braid-wm-age-nonrigid \
    --input "$image" --runs "$runs" --threads "$threads" --providers cpu --json)
peer=$("$python" "$root/bench/infer_torch_peer.py" "$work/braid-v1.0/wm-age-nonrigid/wm-age-nonrigid-fold-1.pth" \
    "$image" "2,$spatial" --threads "$threads" --runs "$runs" --device cpu)

python3 - "$ours" "$peer" "$spatial" "$threads" "$runs" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
o = ours["folds"][0]["median_ms"]
p = peer["median_ms"]
print(f"BRAID ResNet-101, input [1,2,{sys.argv[3]}], {sys.argv[4]} threads, {sys.argv[5]} runs, median:")
print(f"  brainaged (ort {ours['provider']}): {o:9.1f} ms")
print(f"  PyTorch {peer['torch']} CPU:      {p:9.1f} ms")
print(f"  ratio brainaged/PyTorch: {o / p:.2f}")
PY
