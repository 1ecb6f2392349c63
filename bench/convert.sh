#!/usr/bin/env bash
# Conversion time: `brainaged convert` against dcm2niix (PyPI) on the same folders in the same
# run, both writing .nii.gz + JSON (+ bval/bvec) into a fresh folder each time. Runs alternate
# between the two tools so that machine load affects both alike. Prints per-folder medians of
# RUNS runs and the ratio ours / dcm2niix (target ≤ 0.5).
# dcm2niix runs with its defaults (-z y: pigz when installed, else internal zlib, level 6);
# brainaged compresses on all cores at level 1. Both outputs are the same voxels (see
# tests/convert_vs_dcm2niix.rs); file sizes are printed so the trade-off is visible.
# With COMPRESS=jpeg-ls, rle or jpeg-lossless, each folder is first compressed file by file with
# DCMTK (dcmcjpls +el, dcmcrle, dcmcjpeg +e1; files it cannot compress are copied as they are)
# and both tools convert the compressed copy, as a PACS may store and push it.
# usage: bench/convert.sh [RUNS] [FOLDER...]   (env BRAINAGED_SHARED, default ../shared; COMPRESS)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
shift || true
shared=${BRAINAGED_SHARED:-$root/../shared}
bin=${BRAINAGED_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/brainaged}
[ -x "$bin" ] || (cd "$root" && cargo build --release -q)
folders=("$@")
if [ ${#folders[@]} -eq 0 ]; then
    # GE T1 (130 files), Siemens mosaic DWI, XA30 enhanced DWI, Philips 680-file DWI,
    # Philips 2040-file classic DWI.
    folders=(ge-t1-mprage siemens-mosaic-dwi-sag siemens-xa30-dwi philips-dwi-vanderbilt philips-dwi-bangalore)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The folder to convert: the shared one, or its compressed copy under $work/src.
source_folder() {
    local from=$shared/dicom/$1 tool
    case "${COMPRESS:-}" in
        "") echo "$from"; return ;;
        jpeg-ls) tool=(dcmcjpls +el) ;;
        rle) tool=(dcmcrle) ;;
        jpeg-lossless) tool=(dcmcjpeg +e1) ;;
        *) echo "COMPRESS must be jpeg-ls, rle or jpeg-lossless" >&2; exit 2 ;;
    esac
    local to=$work/src/$1
    mkdir -p "$to"
    find "$from" -type f | while read -r f; do
        out=$to/${f#"$from"/}
        mkdir -p "$(dirname "$out")"
        "${tool[@]}" "$f" "$out" >/dev/null 2>&1 || cp "$f" "$out"
    done
    echo "$to"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }
size() { du -sk "$1" | cut -f1; }
printf "%-24s %6s %9s %11s %7s %9s %9s\n" folder files "ours(s)" "dcm2niix(s)" ratio "ours(kB)" "d2n(kB)"
for folder in "${folders[@]}"; do
    in=$(source_folder "$folder")
    nfiles=$(find "$in" -type f | wc -l)
    ours=(); theirs=()
    rm -rf "$work"/ours-* "$work"/d2n-*
    for i in $(seq "$runs"); do
        o=$work/ours-$i; t=$work/d2n-$i
        mkdir -p "$o" "$t"
        t0=$(now)
        "$bin" convert "$in" "$o" >/dev/null 2>"$work/err" || { echo "brainaged failed on $folder: $(head -c 300 "$work/err")"; ours=(); break; }
        t1=$(now)
        dcm2niix -z y -f %s_%d -o "$t" "$in" >/dev/null 2>"$work/err" || { echo "dcm2niix failed on $folder: $(grep -m1 -i error "$work/err" | head -c 300)"; ours=(); break; }
        t2=$(now)
        ours+=("$(echo "$t1 - $t0" | bc -l)"); theirs+=("$(echo "$t2 - $t1" | bc -l)")
    done
    if [ ${#ours[@]} -eq 0 ]; then continue; fi
    mo=$(printf "%s\n" "${ours[@]}" | median); mt=$(printf "%s\n" "${theirs[@]}" | median)
    printf "%-24s %6s %9.3f %11.3f %7.3f %9s %9s\n" "$folder" "$nfiles" "$mo" "$mt" \
        "$(echo "$mo / $mt" | bc -l)" "$(size "$work/ours-1")" "$(size "$work/d2n-1")"
done
echo "(${COMPRESS:-as stored}; $runs runs each, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ))"
