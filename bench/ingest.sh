#!/usr/bin/env bash
# Ingest benchmark: real MR instances from DCMTK storescu (TCP_NODELAY=1) into
#   brainaged serve   (durable: fsync'd spool + PostgreSQL commit before each C-STORE-RSP),
#   storescp -od DIR  (DCMTK, to disk, no fsync; --fork for the concurrent case),
#   storescp --ignore (DCMTK, receives and discards: the protocol-only ceiling),
#   storescp durable  (storescp to disk under bench/durable_shim.c: each file fdatasync'ed and its
#                      directory fsync'ed before the response, the flushes brainaged's rule costs),
# with one association and with four concurrent associations, in the same run.
# Prints instances/s and MB/s (medians of REPEATS runs, the receivers taking turns), the share of
# the machine's CPU left idle during the send (a receiver that leaves CPU idle is waiting on
# something: flushes, a commit), the CPU the whole machine used per instance (senders, receiver,
# database, kernel: what a receiver costs in total, whatever it leaves idle), storescu's own CPU
# per instance, the device flushes per instance that the disk holding the spools completed during
# the send (what the durability rule asks of the disk; storescp to disk makes none), and
# brainaged's ratios to the others, and storescp durable's to storescp to disk (what the rule's
# flushes cost storescp itself). Last, the floor the durability rule sets
# under one association (storescu's CPU + the spool file's and the index's durable writes, bare)
# and where brainaged and storescp stand to it.
#
# usage: bench/ingest.sh [FOLDER] [REPEATS]
#   FOLDER   default: $BRAINAGED_SHARED/dicom/philips-dwi-bangalore (2040 files)
#   REPEATS  default: 3
#   TLS=1    every association over mutual TLS instead: storescu and echoscu with a client
#            certificate (DCMTK's default BCP 195 non-downgrading profile), storescp with the
#            server certificate, brainaged with [dicom.tls] and no plain listener; one test CA
#            made with openssl for the run, RSA 2048 keys.
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

# TLS=1: a CA, a server and a client certificate for this run, and the options that use them.
scu_tls=() scp_tls=()
if [ "${TLS:-0}" = 1 ]; then
    pki=$work/pki; mkdir "$pki"
    printf '%s\n' '[req]' 'distinguished_name = dn' '[dn]' '[ca]' 'basicConstraints = critical,CA:TRUE' \
        'keyUsage = critical,keyCertSign,cRLSign' '[leaf]' 'basicConstraints = CA:FALSE' \
        'subjectAltName = DNS:localhost,IP:127.0.0.1' >"$pki/cnf"
    openssl req -x509 -config "$pki/cnf" -extensions ca -newkey rsa:2048 -nodes -days 1 \
        -subj /CN=bench-ca -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
    for leaf in server client; do
        openssl req -new -config "$pki/cnf" -newkey rsa:2048 -nodes -subj "/CN=$leaf" \
            -keyout "$pki/$leaf.key" -out "$pki/$leaf.csr" 2>/dev/null
        openssl x509 -req -in "$pki/$leaf.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
            -CAcreateserial -days 1 -extfile "$pki/cnf" -extensions leaf -out "$pki/$leaf.pem" 2>/dev/null
    done
    scu_tls=(+tls "$pki/client.key" "$pki/client.pem" -pw +cf "$pki/ca.pem")
    scp_tls=(+tls "$pki/server.key" "$pki/server.pem" -pw +cf "$pki/ca.pem")
fi

# The DICOM files of the folder that storescu can send, split into 4 lists. Without a
# configuration file storescu proposes only the standard storage SOP classes, so a file of a
# private class (e.g. Philips' 1.3.46.670589.11.0.0.12.x) never leaves it, and it skips a DICOMDIR
# (a media directory, not an instance): both are left out here.
python3 - "$folder" "$work" <<'PY'
import os, sys
from pydicom.filereader import read_file_meta_info
folder, work = sys.argv[1], sys.argv[2]
MEDIA_DIRECTORY = '1.2.840.10008.1.3.10'
files, left_out = [], 0
for r, _d, names in os.walk(folder):
    for n in sorted(names):
        p = os.path.join(r, n)
        with open(p, 'rb') as f:
            head = f.read(132)
        if head[128:132] != b'DICM':
            continue
        sop_class = str(read_file_meta_info(p).get('MediaStorageSOPClassUID', ''))
        if sop_class.startswith('1.2.840.10008.') and sop_class != MEDIA_DIRECTORY:
            files.append(p)
        else:
            left_out += 1
if left_out:
    print(f"left out {left_out} files storescu would not send (private SOP class, DICOMDIR)",
          file=sys.stderr)
files.sort()
open(os.path.join(work, 'all'), 'w').write('\n'.join(files) + '\n')
for k in range(4):
    open(os.path.join(work, f'part{k}'), 'w').write('\n'.join(files[k::4]) + '\n')
print(len(files), sum(os.path.getsize(p) for p in files), file=open(os.path.join(work, 'size'), 'w'))
PY
read -r count bytes < "$work/size"
if [ "$count" -eq 0 ]; then
    echo "no DICOM files that storescu can send under '$folder' (is BRAINAGED_SHARED set?)" >&2
    exit 1
fi
mb=$(python3 -c "print($bytes/1e6)")
echo "data: $folder: $count instances, $mb MB; repeats: $repeats; $(nproc) cores"
echo "transport: $( [ ${#scu_tls[@]} -gt 0 ] && echo "mutual TLS (RSA 2048, DCMTK's default BCP 195 non-downgrading profile)" || echo "plain TCP")"
# Whether idle cores poll before they halt (KVM guests): with the limit at 0, every wake-up a
# flushing receiver waits for goes through the host (BENCHMARKS.md, session 17).
haltpoll=/sys/module/haltpoll/parameters/guest_halt_poll_ns
echo "guest halt polling: $( [ -r $haltpoll ] && echo "guest_halt_poll_ns=$(cat $haltpoll)" || echo "no haltpoll driver")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_echo() {  # port
    for _ in $(seq 1 300); do
        /usr/bin/echoscu "${scu_tls[@]}" -aec BRAINAGED 127.0.0.1 "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not answer C-ECHO" >&2; return 1
}

# Every run writes into a new directory, and nothing is deleted until the end. Deleting a run's
# thousands of files just before the next run makes the next run's file creations slow for a
# reason of the benchmark's own making: without a journal, ext4 will not reuse an inode deleted in
# the last minute (six, while its inode table block is still dirty) and scans past every such
# inode on each allocation (perf: a fifth of all CPU in `recently_deleted`/`find_get_block_common`
# under openat; strace: a median create of 0.8 ms instead of 0.01 ms). A spool does not delete a
# study's worth of files between two instances. The same holds for whatever ran before the
# benchmark (a previous run's clean-up, a build): wait until creating a file is cheap again.
settle_creates() {
    python3 - "$work/probe" <<'PY'
import os, sys, time
probe = sys.argv[1]
os.makedirs(probe)
for attempt in range(15):
    times = []
    for i in range(200):
        t0 = time.perf_counter()
        os.close(os.open(os.path.join(probe, f"{attempt}.{i}"), os.O_WRONLY | os.O_CREAT, 0o644))
        times.append(time.perf_counter() - t0)
    median_ms = sorted(times)[100] * 1e3
    if median_ms < 0.1:
        sys.exit(0)
    print(f"creating a file takes {median_ms:.2f} ms (recently deleted inodes): waiting 30 s",
          file=sys.stderr)
    time.sleep(30)
print("file creation is still slow; measuring anyway", file=sys.stderr)
PY
}
settle_creates
run_no=0
start_server() {  # kind port
    local kind=$1 port=$2
    run_no=$((run_no + 1))
    out="$work/out$run_no"; mkdir -p "$out"
    case $kind in
    brainaged)
        local db="brainaged_bench_$$"
        psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
        if [ ${#scu_tls[@]} -gt 0 ]; then
            export BRAINAGED__DICOM__TLS__BIND=127.0.0.1:$port \
                BRAINAGED__DICOM__TLS__CERTIFICATE=$pki/server.pem \
                BRAINAGED__DICOM__TLS__PRIVATE_KEY=$pki/server.key \
                BRAINAGED__DICOM__TLS__CLIENT_CA=$pki/ca.pem \
                BRAINAGED__DICOM__TLS__PLAIN_LISTENER=false
        fi
        BRAINAGED__DICOM__BIND=127.0.0.1:$port BRAINAGED__DICOM__ACCEPT_ANY_CALLER=true \
        BRAINAGED__SPOOL__DIR=$out/spool \
        BRAINAGED__DATABASE__URL="${pg_admin%/*}/$db" RUST_LOG=warn \
            "$bin" serve >"$work/server.log" 2>&1 &
        ;;
    storescp-disk1)
        /usr/bin/storescp "${scp_tls[@]}" -aet BRAINAGED -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-disk4)
        /usr/bin/storescp "${scp_tls[@]}" -aet BRAINAGED --fork -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-durable1)
        DURABLE_DIR=$out DURABLE_REPORT=$work/flushed$run_no LD_PRELOAD=$work/durable_shim.so \
            /usr/bin/storescp "${scp_tls[@]}" -aet BRAINAGED -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-durable4)
        DURABLE_DIR=$out DURABLE_REPORT=$work/flushed$run_no LD_PRELOAD=$work/durable_shim.so \
            /usr/bin/storescp "${scp_tls[@]}" -aet BRAINAGED --fork -od "$out" "$port" >"$work/server.log" 2>&1 & ;;
    storescp-ignore1)
        /usr/bin/storescp "${scp_tls[@]}" -aet BRAINAGED --ignore "$port" >"$work/server.log" 2>&1 & ;;
    storescp-ignore4)
        /usr/bin/storescp "${scp_tls[@]}" -aet BRAINAGED --fork --ignore "$port" >"$work/server.log" 2>&1 & ;;
    esac
    server_pid=$!
    wait_echo "$port"
    # Creating the database and its tables left dirty pages in PostgreSQL's buffers; write them
    # now, as `sync` does for the files, rather than in a checkpoint during the send.
    if [ "$kind" = brainaged ]; then psql -q "$pg_admin" -c CHECKPOINT; fi
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# Reads every file to be sent, outside the timed window, so that storescu finds them all in the
# page cache whichever receiver it sends to. These machines run DAMON's proactive reclaim
# (kdamond, action pageout for memory not accessed for about a minute); between runs it evicts
# the source files, storescu then reads them from disk during the timed send, and the receiver
# that runs first after a pause pays for it (seen: 30 % of the folder resident before one
# brainaged run; in the profile of another, storescu's reads went to the disk).
warm_sources() {
    xargs -a "$work/all" cat >/dev/null
}

# Sends the folder over N associations (one storescu per list) and prints the seconds it took.
# Leaves in $work/idle the share of the machine's CPU left idle meanwhile (/proc/stat: idle +
# iowait), in $work/machine_ms the CPU the whole machine used per instance, in $work/flushes the
# device flushes per instance of the disk under $work ("nan" where the kernel does not count
# them), and in
# $work/sender_ms the CPU time the storescu processes used per instance.
send() {  # port associations
    python3 - "$1" "$2" "$work" "$count" "${scu_tls[@]}" <<'PY'
import os, resource, subprocess, sys, time
port, n, work, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tls = sys.argv[5:]
lists = ["all"] if n == 1 else [f"part{k}" for k in range(n)]

def ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return v[3] + v[4], sum(v)

def flush_counter():
    """The kernel's count of completed flush requests of the disk holding `work`, or None."""
    dev = os.stat(work).st_dev
    sysdir = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if os.path.exists(os.path.join(sysdir, "partition")):
        sysdir = os.path.join(sysdir, "..")  # flushes are counted for the whole disk
    try:
        fields = open(os.path.join(sysdir, "stat")).read().split()
    except OSError:
        return None
    return int(fields[15]) if len(fields) >= 17 else None

flushes0 = flush_counter()
idle0, total0 = ticks()
t0 = time.perf_counter()
senders = [
    subprocess.Popen(["xargs", "-a", os.path.join(work, name), "/usr/bin/storescu", *tls,
                      "-aec", "BRAINAGED", "127.0.0.1", port],
                     stdout=open(os.path.join(work, f"scu-{name}.log"), "w"),
                     stderr=subprocess.STDOUT)
    for name in lists
]
for p in senders:
    p.wait()
seconds = time.perf_counter() - t0
idle1, total1 = ticks()
flushes1 = flush_counter()
flushes = "nan" if flushes0 is None or flushes1 is None else (flushes1 - flushes0) / count
open(os.path.join(work, "flushes"), "w").write(f"{flushes}\n")
used = resource.getrusage(resource.RUSAGE_CHILDREN)
open(os.path.join(work, "idle"), "w").write(f"{(idle1 - idle0) / (total1 - total0)}\n")
open(os.path.join(work, "sender_ms"), "w").write(f"{(used.ru_utime + used.ru_stime) / count * 1e3}\n")
busy = ((total1 - total0) - (idle1 - idle0)) / os.sysconf("SC_CLK_TCK")
open(os.path.join(work, "machine_ms"), "w").write(f"{busy / count * 1e3}\n")
print(seconds)
PY
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

kinds="brainaged storescp-disk storescp-durable storescp-ignore"
median_of() { sort -g | awk '{a[NR]=$1} END{print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

# The receivers take turns within each repeat (brainaged, storescp to disk, ..., then again), so
# that a slow spell of this shared machine falls on all of them alike instead of on one.
declare -A median times idles senders busy flushes
for mode in 1 4; do
    for kind in $kinds; do
        times[$kind]="" idles[$kind]="" senders[$kind]="" busy[$kind]="" flushes[$kind]=""
    done
    for r in $(seq 1 "$repeats"); do
        for kind in $kinds; do
            k=$kind; [ "$kind" != brainaged ] && k="$kind$mode"
            port=$(free_port)
            start_server "$k" "$port"; sync; warm_sources
            t=$(send "$port" "$mode")
            case $kind in
            brainaged) check_brainaged ;;
            storescp-disk | storescp-durable) check_storescp "$k" ;;
            esac
            stop_server
            times[$kind]+="$t " idles[$kind]+="$(cat "$work/idle") "
            senders[$kind]+="$(cat "$work/sender_ms") "
            busy[$kind]+="$(cat "$work/machine_ms") "
            flushes[$kind]+="$(cat "$work/flushes") "
        done
    done
    for kind in $kinds; do
        median[$kind$mode]=$(printf '%s\n' ${times[$kind]} | median_of)
        idle=$(printf '%s\n' ${idles[$kind]} | median_of)
        median[sender-$kind$mode]=$(printf '%s\n' ${senders[$kind]} | median_of)
        machine=$(printf '%s\n' ${busy[$kind]} | median_of)
        flush=$(printf '%s\n' ${flushes[$kind]} | median_of)
        printf '%-16s assoc=%s  runs(s): %s  median %.2fs  %.0f inst/s  %.1f MB/s  CPU idle %.0f%%  machine CPU %.2f ms/inst  storescu CPU %.3f ms/inst  device flushes %.2f/inst\n' \
            "$kind" "$mode" "${times[$kind]% }" "${median[$kind$mode]}" \
            "$(python3 -c "print($count/${median[$kind$mode]})")" \
            "$(python3 -c "print($mb/${median[$kind$mode]})")" \
            "$(python3 -c "print(100*$idle)")" "$machine" "${median[sender-$kind$mode]}" "$flush"
    done
    python3 - "${median[brainaged$mode]}" "${median[storescp-disk$mode]}" "${median[storescp-durable$mode]}" "${median[storescp-ignore$mode]}" "$mode" <<'PY'
import sys
b, d, s, i, m = map(float, sys.argv[1:6])
print(f"  assoc={int(m)}: brainaged/storescp-disk throughput ratio {d/b:.2f}; "
      f"brainaged/storescp-durable {s/b:.2f}; brainaged/storescp-ignore {i/b:.2f}")
# What the rule's two flushes per instance cost storescp itself. A receiver that honours the rule
# reaches storescp to disk only by running faster than storescp under the same flushes by the
# inverse of this ratio.
print(f"  assoc={int(m)}: storescp-durable/storescp-disk throughput ratio {d/s:.2f}")
PY
done

# The floor the durability rule sets under one association. storescu waits for each response
# before it reads and sends the next file, so one cycle is at least storescu's own CPU time per
# instance (the least of its medians with the four receivers) plus the two durable writes the rule needs before the
# response, the spool file and the index commit, done bare and overlapped on this filesystem
# (bench/durable_write.sh "both"). The network, the receiver's CPU and the database's work are
# left out, so no receiver that honours the rule can be faster than this here; storescp to disk
# pays none of it, and when it runs above the floor the target "at least as fast as storescp to
# disk" cannot be met on this machine by any implementation of the rule.
mkdir "$work/flush"
bash "$root/bench/durable_write.sh" "$work/flush" 300 $((bytes / count)) >"$work/flush.txt"
sed 's/^/  bare: /' "$work/flush.txt"
both_ms=$(awk '$1 == "both" {print $3}' "$work/flush.txt")
sender_ms=$(for kind in $kinds; do echo "${median[sender-${kind}1]}"; done | sort -g | head -1)
python3 - "$count" "$sender_ms" "$both_ms" "${median[brainaged1]}" "${median[storescp-disk1]}" <<'PY'
import sys
n, sender_ms, both_ms, brainaged_s, disk_s = int(sys.argv[1]), *map(float, sys.argv[2:6])
floor = 1e3 / (sender_ms + both_ms)
print(f"  assoc=1 floor under the durability rule: storescu CPU {sender_ms:.3f} ms + spool file and "
      f"index commit, bare and overlapped, {both_ms:.3f} ms = {floor:.0f} inst/s")
print(f"  brainaged reaches {n / brainaged_s / floor:.2f} of the floor; storescp to disk (no fsync) "
      f"runs at {n / disk_s / floor:.2f} of it")
PY
