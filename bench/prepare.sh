#!/usr/bin/env bash
# Model-input recipe time: `brainaged prepare --recipe braid-t1-affine --in-template-space` against
# MONAI 1.4.0 running the same transforms (LoadImage → Orientation RAS → CenterSpatialCrop
# (192, 228, 192) → Spacing 1.5 mm bilinear → NormalizeIntensity(nonzero) → np.save) on the same
# synthetic T1 on the 1 mm MNI grid, same run. Ours is timed as a whole process (read, transform,
# .npy and QA PNG); MONAI in-process, after its import, so its start-up is not counted.
# Prints medians of RUNS runs and the ratio ours / MONAI.
# usage: bench/prepare.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
py=${BRAINAGED_VENV:-$HOME/.cache/brainaged/venv}/bin/python
bin=${BRAINAGED_BIN:-$root/target/release/brainaged}
[ -x "$bin" ] || (cd "$root" && cargo build --release -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" - "$work" "$runs" <<'PY'
import sys, time, numpy as np, nibabel as nib, torch
torch.set_num_threads(2)
from monai.transforms import LoadImage, Orientation, CenterSpatialCrop, Spacing, NormalizeIntensity
work, runs = sys.argv[1], int(sys.argv[2])
x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in (193, 229, 193)], indexing="ij")
t1 = np.where(x**2 / 0.7 + y**2 / 0.8 + z**2 / 0.6 < 1, 400 + 300 * np.sin(9 * x) * np.cos(7 * y + z), 0)
aff = np.array([[1.0, 0, 0, -96], [0, 1, 0, -132], [0, 0, 1, -78], [0, 0, 0, 1]])
img = nib.Nifti1Image(t1.astype(np.float32), aff); img.set_sform(aff, 1); img.set_qform(aff, 1)
nib.save(img, f"{work}/t1.nii.gz")
load = LoadImage(image_only=True, ensure_channel_first=True, reader="NibabelReader")
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    v = load(f"{work}/t1.nii.gz")
    v = Orientation(axcodes="RAS")(v)
    v = CenterSpatialCrop((192, 228, 192))(v)
    v = Spacing(pixdim=(1.5, 1.5, 1.5), mode="bilinear")(v)
    v = NormalizeIntensity(nonzero=True)(v)
    np.save(f"{work}/monai.npy", v.numpy()[None])
    times.append(time.perf_counter() - t0)
open(f"{work}/monai.times", "w").write("\n".join(f"{t:.4f}" for t in times) + "\n")
PY
: > "$work/ours.times"
for _ in $(seq "$runs"); do
    /usr/bin/time -a -o "$work/ours.times" -f "%e" "$bin" prepare --recipe braid-t1-affine \
        --t1 "$work/t1.nii.gz" --in-template-space --out "$work/ours" >/dev/null
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mo=$(median < "$work/ours.times"); mm=$(median < "$work/monai.times")
"$py" -c "import numpy as np,sys; a=np.load('$work/ours/input.npy'); b=np.load('$work/monai.npy'); print('max |Δ| ours vs MONAI: %.2e' % abs(a-b).max())"
printf "braid-t1-affine  ours %.3f s  MONAI %.3f s  ratio %.3f  (%s runs, %s cores, load %s)\n" \
    "$mo" "$mm" "$(awk -v a="$mo" -v b="$mm" 'BEGIN {print a / b}')" "$runs" "$(nproc)" \
    "$(cut -d' ' -f1 /proc/loadavg)"
