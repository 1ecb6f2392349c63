#!/usr/bin/env bash
# Ingest benchmark: real MR instances from DCMTK storescu (TCP_NODELAY=1) into
#   brainaged serve   (durable: fsync'd spool + PostgreSQL commit before each C-STORE-RSP),
#   storescp -od DIR  (DCMTK, to disk, no fsync; --fork for the concurrent case),
#   storescp --ignore (DCMTK, receives and discards: the protocol-only ceiling),
#   storescp durable  (storescp to disk under bench/durable_shim.c: each file fdatasync'ed and its
#                      directory fsync'ed before the response, the flushes brainaged's rule costs),
# with one association and with four concurrent associations, in the same run.
# Prints instances/s and MB/s (medians of REPEATS runs), the share of the machine's CPU left idle
# during the send (a receiver that leaves CPU idle is waiting on something: flushes, a commit),
# and brainaged's ratios to the others.
# Last, the floor the durability rule sets under one association (protocol cycle + a bare durable
# write) and the share of it brainaged reaches.
#
# usage: bench/ingest.sh [FOLDER] [REPEATS]
#   FOLDER   default: $BRAINAGED_SHARED/dicom/philips-dwi-bangalore (2040 files)
#   REPEATS  default: 3
# Needs: a release build (cargo build --release), DCMTK, PostgreSQL on 127.0.0.1:5432
# (BRAINAGED_BENCH_PG to override the admin URL).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/env.sh"
export TCP_NODELAY=1
folder=${1:-$BRAINAGED_SHARED/dicom/philips-dwi-bangalore}
repeats=${2:-3}
bin=${CARGO_TARGET_DIR:-$root/target}/release/brainaged
pg_admin=${BRAINAGED_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
shim_src="$root/bench/durable_shim.c"
[ -x "$bin" ] || { echo "build first: cargo build --release ($bin missing)" >&2; exit 1; }
for t in /usr/bin/storescu /usr/bin/storescp /usr/bin/echoscu psql python3; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

work=$(mktemp -d /tmp/brainaged-bench.XXXXXX)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS brainaged_bench_$$ WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -Wall -shared -fPIC -o "$work/durable_shim.so" "$shim_src" -ldl

# The DICOM files of the folder (storescu would skip the others anyway), split into 4 lists.
python3 - "$folder" "$work" <<'PY'
import os, sys
folder, work = sys.argv[1], sys.argv[2]
files = []
for r, _d, names in os.walk(folder):
    for n in sorted(names):
        p = os.path.join(r, n)
        with open(p, 'rb') as f:
            head = f.read(132)
        if head[128:132] == b'DICM':
            files.append(p)
files.sort()
open(os.path.join(work, 'all'), 'w').write('\n'.join(files) + '\n')
for k in range(4):
    open(os.path.join(work, f'part{k}'), 'w').write('\n'.join(files[k::4]) + '\n')
print(len(files), sum(os.path.getsize(p) for p in files), file=open(os.path.join(work, 'size'), 'w'))
PY
read -r count bytes < "$work/size"
mb=$(python3 -c "print($bytes/1e6)")
echo "data: $folder: $count instances, $mb MB; repeats: $repeats; $(nproc) cores"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_echo() {  # port
    for _ in $(seq 1 300); do
        /usr/bin/echoscu -aec BRAINAGED 127.0.0.1 "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not answer C-ECHO" >&2; return 1
}

# Every run writes into a new directory, and nothing is deleted until the end. Deleting a run's
# thousands of files just before the next run makes the next run's file creations slow for a
# reason of the benchmark's own making: without a journal, ext4 will not reuse an inode deleted in
# the last few seconds and scans past every such inode on each allocation (perf: a fifth of all CPU
# in `recently_deleted`/`find_get_block_common` under openat). A spool does not delete a study's
# worth of files between two instances.
run_no=0
start_server() {  # kind port
    local kind=$1 port=$2
    run_no=$((run_no + 1))
    out="$work/out$run_no"; mkdir -p "$out"
    case $kind in
    brainaged)
        local db="brainaged_bench_$$"
        psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
        BRAINAGED__DICOM__BIND=127.0.0.1:$port BRAINAGED__DICOM__ACCEPT_ANY_CALLER=true \
        BRAINAGED__SPOOL__DIR=$out/spool \
        BRAINAGED__DATABASE__URL="${pg_admin%/*}/$db" RUST_LOG=warn \
            "$bin" serve >"$work/server.log" 2>&1 &
        ;;
    storescp-disk1)
        /usr/bin/storescp -aet BRAINAGED -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-disk4)
        /usr/bin/storescp -aet BRAINAGED --fork -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-durable1)
        DURABLE_DIR=$out DURABLE_REPORT=$work/flushed$run_no LD_PRELOAD=$work/durable_shim.so \
            /usr/bin/storescp -aet BRAINAGED -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-durable4)
        DURABLE_DIR=$out DURABLE_REPORT=$work/flushed$run_no LD_PRELOAD=$work/durable_shim.so \
            /usr/bin/storescp -aet BRAINAGED --fork -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-ignore1)
        /usr/bin/storescp -aet BRAINAGED --ignore "$port" >"$work/server.log" 2>&1 & ;;
    storescp-ignore4)
        /usr/bin/storescp -aet BRAINAGED --fork --ignore "$port" >"$work/server.log" 2>&1 & ;;
    esac
    server_pid=$!
    wait_echo "$port"
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# Idle and total CPU time of the machine so far, in clock ticks (/proc/stat: idle + iowait).
cpu_ticks() { awk '/^cpu /{print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }

send() {  # port associations -> prints seconds; leaves the share of CPU left idle in $work/idle
    local port=$1 n=$2 start end before after
    before=$(cpu_ticks)
    start=$(date +%s.%N)
    if [ "$n" = 1 ]; then
        xargs -a "$work/all" /usr/bin/storescu -aec BRAINAGED 127.0.0.1 "$port" >"$work/scu.log" 2>&1
    else
        for k in 0 1 2 3; do
            xargs -a "$work/part$k" /usr/bin/storescu -aec BRAINAGED 127.0.0.1 "$port" >"$work/scu$k.log" 2>&1 &
        done
        wait
    fi
    end=$(date +%s.%N)
    after=$(cpu_ticks)
    echo "$before $after" | awk '{print ($3 - $1) / ($4 - $2)}' >"$work/idle"
    python3 -c "print($end - $start)"
}

check_brainaged() {  # every instance indexed and spooled
    local db="brainaged_bench_$$" rows files
    rows=$(psql -tA "${pg_admin%/*}/$db" -c "SELECT count(*) FROM instances")
    files=$(find "$out/spool" -name '*.dcm' | wc -l)
    if [ "$rows" != "$count" ] || [ "$files" != "$count" ]; then
        echo "brainaged stored $files files / $rows rows of $count" >&2; exit 1
    fi
}

check_storescp() {  # kind: every instance written (and, under the shim, flushed)
    local files flushed
    files=$(find "$out" -type f | wc -l)
    if [ "$files" != "$count" ]; then
        echo "$1 wrote $files files of $count" >&2; exit 1
    fi
    if [ "${1%[14]}" = storescp-durable ]; then
        flushed=$(stat -c %s "$work/flushed$run_no" 2>/dev/null || echo 0)
        if [ "$flushed" != "$count" ]; then
            echo "$1 flushed $flushed files of $count" >&2; exit 1
        fi
    fi
}

declare -A median
for mode in 1 4; do
    for kind in brainaged storescp-disk storescp-durable storescp-ignore; do
        k=$kind; [ "$kind" != brainaged ] && k="$kind$mode"
        times=() idles=()
        for r in $(seq 1 "$repeats"); do
            port=$(free_port)
            sync; start_server "$k" "$port"
            t=$(send "$port" "$mode")
            case $kind in
            brainaged) check_brainaged ;;
            storescp-disk | storescp-durable) check_storescp "$k" ;;
            esac
            stop_server
            times+=("$t") idles+=("$(cat "$work/idle")")
        done
        median[$kind$mode]=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}')
        idle=$(printf '%s\n' "${idles[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
        printf '%-16s assoc=%s  runs(s): %s  median %.2fs  %.0f inst/s  %.1f MB/s  CPU idle %.0f%%\n' \
            "$kind" "$mode" "${times[*]}" "${median[$kind$mode]}" \
            "$(python3 -c "print($count/${median[$kind$mode]})")" \
            "$(python3 -c "print($mb/${median[$kind$mode]})")" \
            "$(python3 -c "print(100*$idle)")"
    done
    python3 - "${median[brainaged$mode]}" "${median[storescp-disk$mode]}" "${median[storescp-durable$mode]}" "${median[storescp-ignore$mode]}" "$mode" <<'PY'
import sys
b, d, s, i, m = map(float, sys.argv[1:6])
print(f"  assoc={int(m)}: brainaged/storescp-disk throughput ratio {d/b:.2f}; "
      f"brainaged/storescp-durable {s/b:.2f}; brainaged/storescp-ignore {i/b:.2f}")
PY
done

# The floor the durability rule sets under one association: storescu waits for each response, so
# no receiver can complete a cycle faster than the protocol alone (storescp --ignore) plus one
# bare durable write of a file of the mean size on this filesystem (bench/durable_write.sh).
mkdir "$work/flush"
write_ms=$(bash "$root/bench/durable_write.sh" "$work/flush" 300 $((bytes / count)) |
    awk '$1 == "durable" {print $3}')
python3 - "$count" "${median[storescp-ignore1]}" "$write_ms" "${median[brainaged1]}" "${median[storescp-disk1]}" <<'PY'
import sys
n, ignore_s, write_ms, brainaged_s, disk_s = int(sys.argv[1]), *map(float, sys.argv[2:6])
cycle_ms = ignore_s / n * 1e3
floor = 1e3 / (cycle_ms + write_ms)
print(f"  assoc=1 floor under the durability rule: protocol cycle {cycle_ms:.3f} ms + bare durable "
      f"write {write_ms:.3f} ms = {floor:.0f} inst/s; brainaged reaches {n / brainaged_s / floor:.2f} of it")
# storescp to disk above the floor means that no receiver honouring the rule can match it here.
print(f"  storescp to disk (no fsync) runs at {n / disk_s / floor:.2f} of that floor")
PY
