#!/usr/bin/env bash
# DTI fit time: `brainaged dti` against MRtrix 3.0.3 `dwi2tensor` + `tensor2metric -fa -adc`, same
# inputs (dcm2niix conversion of ../shared/dicom diffusion series, same dwi2mask mask), same run.
# Both read the same .nii.gz with FSL gradients and write FA and MD. Prints per-series medians of
# RUNS runs of wall time and of CPU time (user + system; steadier on a shared machine) and the
# ratios ours / MRtrix (target ≤ 0.5).
# usage: bench/dti.sh [RUNS]   (env BRAINAGED_SHARED, default ../shared)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
shared=${BRAINAGED_SHARED:-$root/../shared}
bin=${BRAINAGED_BIN:-$root/target/release/brainaged}
[ -x "$bin" ] || (cd "$root" && cargo build --release -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Runs a command and appends "wall cpu" seconds to the file named by $1.
timed() { local log=$1; shift; /usr/bin/time -a -o "$log" -f "%e %U %S" "$@" >/dev/null; }
printf "%-24s %4s %9s %9s %6s %9s %9s %6s\n" series vols "ours-wall" "mr-wall" ratio "ours-cpu" "mr-cpu" ratio
for series in philips-dwi-bangalore siemens-xa30-dwi siemens-mosaic-dwi-sag philips-dwi-classic; do
    d=$work/$series; mkdir -p "$d"
    dcm2niix -z y -f dwi -o "$d" "$shared/dicom/$series" >/dev/null
    mrconvert -quiet "$d/dwi.nii.gz" -fslgrad "$d/dwi.bvec" "$d/dwi.bval" "$d/dwi.mif"
    dwi2mask -quiet "$d/dwi.mif" "$d/mask.nii"
    : > "$d/ours.log"; : > "$d/mr.log"
    for i in $(seq "$runs"); do
        timed "$d/ours.log" "$bin" dti --dwi "$d/dwi.nii.gz" --bval "$d/dwi.bval" --bvec "$d/dwi.bvec" \
            --mask "$d/mask.nii" --out "$d/ours"
        : > "$d/mr1.log"
        timed "$d/mr1.log" dwi2tensor -quiet -force -fslgrad "$d/dwi.bvec" "$d/dwi.bval" \
            -mask "$d/mask.nii" "$d/dwi.nii.gz" "$d/dt.mif"
        timed "$d/mr1.log" tensor2metric -quiet -force "$d/dt.mif" -fa "$d/fa.nii.gz" -adc "$d/md.nii.gz"
        awk '{w+=$1; c+=$2+$3} END {print w, c}' "$d/mr1.log" >> "$d/mr.log"
    done
    ow=$(awk '{print $1}' "$d/ours.log" | median); oc=$(awk '{print $2+$3}' "$d/ours.log" | median)
    mw=$(awk '{print $1}' "$d/mr.log" | median); mc=$(awk '{print $2}' "$d/mr.log" | median)
    vols=$(wc -w < "$d/dwi.bval")
    printf "%-24s %4s %9.3f %9.3f %6.3f %9.3f %9.3f %6.3f\n" "$series" "$vols" "$ow" "$mw" \
        "$(awk -v a="$ow" -v b="$mw" 'BEGIN {print a / b}')" "$oc" "$mc" \
        "$(awk -v a="$oc" -v b="$mc" 'BEGIN {print a / b}')"
done
echo "($runs runs each, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ))"
