#!/usr/bin/env bash
# What the durability rule's spool write costs the machine's CPU, beside a plain write (what
# storescp to disk does). On four associations both receivers keep the two cores busy, so a
# receiver's throughput there is bounded by the CPU the whole machine spends per instance; this
# gives the part of it the rule adds, measured bare (no DICOM, no database).
#
# Runs bench/durable_cpu.c with 1 and 4 writers, plain and durable taking turns, REPEATS times,
# and prints the medians of the machine CPU per file (all cores, interrupts included).
#
# usage: bench/durable_cpu.sh [REPEATS] [N] [SIZE]
#   REPEATS default 5; N files per writer, default 2000; SIZE default 41386 (a Philips DWI slice,
#   the ingest benchmark's mean instance)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repeats=${1:-5}
n=${2:-2000}
size=${3:-41386}
# On the root filesystem, as the spool and the ingest benchmark's receivers are.
work=$(mktemp -d /tmp/brainaged-durable-cpu.XXXXXX)
trap 'rm -rf "$work"' EXIT
gcc -O2 -Wall -o "$work/durable_cpu" "$root/bench/durable_cpu.c"
# Without a journal, ext4 skips inodes deleted in the last minutes on every allocation, which
# makes creates (and so a plain write) several times dearer after any mass deletion, this
# script's own clean-up included (see bench/ingest.sh). A create probe in another directory did
# not always see it here, so the probe is a plain pass of the measurement itself: wait until it
# costs under 0.1 ms of machine CPU per file (0.05 on an idle machine without deletions).
for attempt in $(seq 1 15); do
    mkdir "$work/probe$attempt"
    probe=$("$work/durable_cpu" "$work/probe$attempt" "$n" "$size" plain 1)
    cost=$(sed 's/.*cpu_ms_per_file=\([0-9.]*\).*/\1/' <<<"$probe")
    if python3 -c "import sys; sys.exit(0 if $cost < 0.1 else 1)"; then break; fi
    echo "a plain write costs $cost ms of CPU (recently deleted inodes): waiting 30 s" >&2
    sleep 30
done
run=0
for writers in 1 4; do
    for r in $(seq 1 "$repeats"); do
        for mode in plain durable; do
            run=$((run + 1))
            mkdir "$work/$run"
            "$work/durable_cpu" "$work/$run" "$n" "$size" "$mode" "$writers" >>"$work/results"
        done
    done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [dict(kv.split("=") for kv in line.split()[1:]) | {"mode": line.split()[0]}
        for line in open(sys.argv[1])]
for writers in ("1", "4"):
    got = {}
    for mode in ("plain", "durable"):
        sel = [r for r in rows if r["mode"] == mode and r["writers"] == writers]
        cpu = statistics.median(float(r["cpu_ms_per_file"]) for r in sel)
        wall = statistics.median(float(r["wall_ms_per_file"]) for r in sel)
        idle = statistics.median(float(r["idle"]) for r in sel)
        got[mode] = cpu
        runs = " ".join(f'{float(r["cpu_ms_per_file"]):.3f}' for r in sel)
        print(f"writers={writers} {mode:8s} machine CPU {cpu:.3f} ms/file (runs: {runs})  "
              f"wall {wall:.3f} ms/file  idle {idle * 100:.0f}%")
    print(f"writers={writers} the rule adds {got['durable'] - got['plain']:.3f} ms of machine CPU "
          f"per file")
PY
