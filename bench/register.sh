#!/usr/bin/env bash
# Affine + SyN registration: brainaged vs ANTsPy's antsRegistration with the same parameters
# (antsRegistrationSyN.sh -t s: MI 32 bins 25 % regular, Rigid[0.1], Affine[0.1],
# 1000x500x250x100, SyN[0.1,3,0], CC radius 4, 100x70x50x20, shrink 8x4x2x1, smoothing
# 3x2x1x0 vox, winsorise [0.005,0.995]) on the same pairs, same thread count, in one run.
# Prints per pair the median wall-clock and CPU (user + system, all threads) seconds of each
# tool and their ratios, and NCC / tissue Dice scored by one script (bench/eval_register.py).
# On a shared machine the CPU-time ratio is the fair one: wall time depends on the other load.
# Usage: bash bench/register.sh [RUNS]   (env THREADS, default all cores; PAIRS, default
# "synthetic siemens-xa30-t1")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
threads=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS=$threads ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=$threads
venv=${BRAINAGED_BENCH_VENV:-$HOME/.cache/brainaged/bench-venv}
req="$root/tools/requirements-bench.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -f "$venv/.requirements.sha256" ] || [ "$(cat "$venv/.requirements.sha256")" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$venv/.requirements.sha256"
fi
py="$venv/bin/python"
BRAINAGED_ROOT=$root bash "$root/scripts/setup.d/45-template.sh"
template=${BRAINAGED_DATA:-$HOME/.cache/brainaged}/templates/icbm152_2009a
shared=${BRAINAGED_SHARED:-$root/../shared}
(cd "$root" && cargo build --release -q)
bin=${CARGO_TARGET_DIR:-$root/target}/release/brainaged
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" "$root/bench/register_pairs.py" "$template" "$work"
dcm2niix -z y -b n -f siemens-xa30-t1 -o "$work" "$shared/dicom/siemens-xa30-t1" > /dev/null
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "threads: $threads, runs: $runs, fixed: ICBM152 2009a at 2 mm"
for pair in ${PAIRS:-synthetic siemens-xa30-t1}; do
    moving="$work/$pair.nii.gz"
    : > "$work/ours.t"; : > "$work/ants.t"
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %U %S" -o "$work/time.txt" \
            "$bin" register --fixed "$work/fixed.nii.gz" --moving "$moving" --transform syn --out "$work/ours"
        awk '{print $1, $2 + $3}' "$work/time.txt" >> "$work/ours.t"
        mkdir -p "$work/ants"
        "$py" "$root/bench/ants_register.py" "$work/fixed.nii.gz" "$moving" "$work/ants" >> "$work/ants.t"
    done
    col() { awk -v c="$1" '{print $c}' "$2" | median; }
    ours=$(col 1 "$work/ours.t"); ants=$(col 1 "$work/ants.t")
    ours_cpu=$(col 2 "$work/ours.t"); ants_cpu=$(col 2 "$work/ants.t")
    read -r n1 w1 g1 b1 <<< "$("$py" "$root/bench/eval_register.py" "$work" "$work/ours/warped.nii.gz")"
    read -r n2 w2 g2 b2 <<< "$("$py" "$root/bench/eval_register.py" "$work" "$work/ants/warped.nii.gz")"
    echo "$pair: wall brainaged ${ours}s, ANTsPy ${ants}s, ratio $(echo "scale=3; $ours / $ants" | bc)x;" \
        "CPU brainaged ${ours_cpu}s, ANTsPy ${ants_cpu}s, ratio $(echo "scale=3; $ours_cpu / $ants_cpu" | bc)x"
    echo "  NCC brainaged $n1 ANTs $n2 | WM Dice $w1 vs $w2 | GM Dice $g1 vs $g2 | brain Dice $b1 vs $b2"
done
